/** Unit tests of the float64 CPU reference (no GPU). */
import { describe, expect, it } from 'vitest';
import { cacheLayout, HADAMARD_BLOCKS, NO_PAGE, rowWordIndex, type KvMethod } from '../src/layout';
import { kvHeadOf } from '../src/reference/attention';
import { f16Bits, f16FromBits, roundToF16 } from '../src/reference/f16';
import { hadamardMatrix, randomSigns, rotate, unrotate } from '../src/reference/hadamard';
import { dequantizeRow, packCodes, packScaleMin, quantizeRow, roundHalfEven, unpackCodes } from '../src/reference/int4';
import { packBytes, unpackBytes } from '../src/reference/int8';
import { decodeRowWords, encodeRow, type MethodConfig } from '../src/reference/kv-methods';
import { cosineSimilarity, klDivergence, maxAbsError, relativeL2 } from '../src/reference/metrics';
import { gatherDecodedRows, readStoredRow, shuffledPaging, slotOf, writeCacheRows } from '../src/reference/paged-cache';
import { SeededRandom } from '../src/reference/random';
import { decodeAll, exactDecode, referenceDecode } from '../src/reference/saw-int4';

/** float64 round-off allowed in transforms of O(1) values. */
const FLOAT64_TOL = 1e-12;

describe('Hadamard', () => {
  for (const b of HADAMARD_BLOCKS) {
    it(`H_${b} is orthogonal and symmetric (its own inverse)`, () => {
      const h = hadamardMatrix(b);
      for (let i = 0; i < b; i++) {
        for (let j = 0; j < b; j++) {
          let dot = 0;
          for (let k = 0; k < b; k++) dot += h[i * b + k] * h[k * b + j];
          expect(Math.abs(dot - (i === j ? 1 : 0))).toBeLessThan(FLOAT64_TOL);
          expect(h[i * b + j]).toBe(h[j * b + i]);
        }
      }
    });
  }

  it('the fast transform equals the dense block-diagonal matrix, and unrotate inverts it (with signs)', () => {
    const rng = new SeededRandom(1);
    const d = 128;
    for (const b of HADAMARD_BLOCKS) {
      const x = rng.normalArray(d);
      const signs = randomSigns(d, 99);
      const y = rotate(x, b, signs);
      const h = hadamardMatrix(b);
      for (let j = 0; j < d; j++) {
        const blk = Math.floor(j / b) * b;
        let want = 0;
        for (let i = 0; i < b; i++) want += x[blk + i] * signs[blk + i] * h[i * b + (j - blk)];
        expect(Math.abs(y[j] - want)).toBeLessThan(FLOAT64_TOL);
      }
      const back = unrotate(y, b, signs);
      expect(maxAbsError(back, x).value).toBeLessThan(FLOAT64_TOL);
      expect(Math.abs(relativeL2(y, new Float64Array(d)) - 1)).toBeGreaterThan(-1); // norms compared below
      const norm = (v: ArrayLike<number>) => Math.hypot(...Array.from(v));
      expect(Math.abs(norm(y) - norm(x))).toBeLessThan(1e-9);
    }
  });

  it('rejects blocks that are not powers of two or do not divide the length', () => {
    expect(() => rotate(new Float64Array(128), 48)).toThrow(/power of two/);
    expect(() => rotate(new Float64Array(96), 64)).toThrow(/not divisible/);
  });
});

describe('f16 rounding', () => {
  it('rounds to nearest even, overflows to infinity and keeps NaN', () => {
    expect(roundToF16(1)).toBe(1);
    expect(roundToF16(1 + 2 ** -11)).toBe(1); // tie → even
    expect(roundToF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // tie → even (up)
    expect(roundToF16(65504)).toBe(65504);
    expect(roundToF16(65520)).toBe(Infinity);
    expect(roundToF16(2 ** -24)).toBe(2 ** -24);
    expect(roundToF16(2 ** -26)).toBe(0);
    expect(Number.isNaN(roundToF16(NaN))).toBe(true);
  });

  it('agrees with every f16 value and midpoint (exhaustive over finite halves)', () => {
    for (let bits = 0; bits < 0x7c00; bits++) {
      const v = f16FromBits(bits);
      expect(f16Bits(v)).toBe(bits);
      expect(f16Bits(-v)).toBe(bits | 0x8000);
    }
  });
});

describe('INT4 scheme (docs/numeric-contract.md)', () => {
  it('per-element error ≤ scale/2 (plus f16 rounding of the minimum), codes in 0..15', () => {
    const rng = new SeededRandom(2);
    for (let trial = 0; trial < 200; trial++) {
      const x = rng.normalArray(128, 0.1 + trial);
      const row = quantizeRow(x);
      const xhat = dequantizeRow(row);
      const mx = Math.max(...x);
      const mn = Math.min(...x);
      // The f16 minimum can sit up to half an f16 ulp away from the true one, pushing the end codes
      // against the clamp; that adds at most |mn − mn16| + 15·|scale − scale16| of error.
      const clampSlack = Math.abs(mn - row.min) + 15 * Math.abs((mx - mn) / 15 - row.scale);
      for (let i = 0; i < x.length; i++) {
        expect(row.codes[i]).toBeLessThanOrEqual(15);
        expect(Math.abs(xhat[i] - x[i])).toBeLessThanOrEqual(row.scale / 2 + clampSlack + 1e-12);
      }
    }
  });

  it('a constant vector quantizes without NaN and round-trips', () => {
    const row = quantizeRow(new Float64Array(64).fill(0.7));
    expect(row.scale).toBe(0);
    expect(Array.from(dequantizeRow(row)).every((v) => v === roundToF16(0.7))).toBe(true);
  });

  it('round half to even, like WGSL round()', () => {
    expect([0.5, 1.5, 2.5, -0.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, -0, 2, 3]);
  });

  it('pack/unpack round trip in NIBBLE ORDER', () => {
    const rng = new SeededRandom(3);
    const codes = Uint8Array.from({ length: 256 }, () => rng.int(16));
    const words = packCodes(codes);
    expect(words.length).toBe(32);
    expect(Array.from(unpackCodes(words))).toEqual(Array.from(codes));
    // element 8w+j: byte j%4, low nibble for j<4, high for j>=4
    const one = packCodes(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(one[0]).toBe(0x84736251);
  });
});

describe('paged cache model', () => {
  const methods: MethodConfig[] = [
    { method: 'fp16', hadamardBlock: 128, rotateV: false, signs: null },
    { method: 'int4', hadamardBlock: 128, rotateV: false, signs: null },
    { method: 'int4-hadamard', hadamardBlock: 32, rotateV: true, signs: randomSigns(64, 5) },
  ];
  for (const cfg of methods) {
    it(`paged gather equals contiguous (${cfg.method}), with shuffled pages and ragged lengths`, () => {
      const rng = new SeededRandom(4);
      const d = 64;
      const hkv = 2;
      const contextLens = [1, 8, 13, 30];
      const total = contextLens.reduce((a, b) => a + b);
      const layout = cacheLayout({ method: cfg.method as KvMethod, headDim: d, numKvHeads: hkv, pageSize: 8, numPages: 16 });
      const paging = shuffledPaging(contextLens, 8, 16, 11);
      const k = rng.normalArray(total * hkv * d);
      const cache = new Uint32Array(layout.pageWords * layout.numPages);
      writeCacheRows(layout, cfg, cache, k, paging, true);
      const contiguous = decodeAll(cfg, k, d, true);
      const decodeAt = (page: number, h: number, slot: number) => {
        // Decode the row from the cache words themselves, independently of encodeRow's output.
        const words = cache.subarray(rowWordIndex(layout, page, h, slot), rowWordIndex(layout, page, h, slot) + layout.rowWords);
        if (cfg.method === 'fp16') return Float64Array.from({ length: d }, (_, i) => f16FromBits((words[i >> 1] >>> (16 * (i & 1))) & 0xffff));
        const sm = cache[page * layout.pageWords + layout.scaleMinRegionOffset + h * layout.pageSize + slot];
        const codes = unpackCodes(words, d);
        return dequantizeRow({ codes, scale: f16FromBits(sm & 0xffff), min: f16FromBits(sm >>> 16) });
      };
      let first = 0;
      contextLens.forEach((len, s) => {
        const gathered = gatherDecodedRows(layout, decodeAt, paging.blockTables[s], len);
        const want = contiguous.subarray(first * hkv * d, (first + len) * hkv * d);
        expect(maxAbsError(gathered, want).value).toBe(0);
        first += len;
      });
    });
  }

  it('pages are shuffled and never shared; a missing page is an error', () => {
    const paging = shuffledPaging([20, 5, 33], 8, 12, 3);
    const all = paging.blockTables.flat();
    expect(new Set(all).size).toBe(all.length);
    expect(all).not.toEqual([...all].sort((a, b) => a - b));
    expect(() => slotOf([3, NO_PAGE], 8, 9)).toThrow(/no page/);
    expect(() => shuffledPaging([100], 8, 4, 1)).toThrow(/need 13 pages/);
  });
});

describe('attention and metrics', () => {
  it('GQA maps query head h to kv head ⌊h / (Hq/Hkv)⌋', () => {
    expect([0, 1, 2, 3, 4, 5, 6, 7].map((h) => kvHeadOf(h, 8, 2))).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
    expect([0, 5, 31].map((h) => kvHeadOf(h, 32, 1))).toEqual([0, 0, 0]);
    expect([0, 5, 31].map((h) => kvHeadOf(h, 32, 32))).toEqual([0, 5, 31]);
  });

  it('GQA attention equals MHA attention with K/V heads repeated', () => {
    const rng = new SeededRandom(6);
    const d = 16;
    const contextLens = [3, 7];
    const total = 10;
    const q = rng.normalArray(2 * 4 * d);
    const k = rng.normalArray(total * 2 * d);
    const v = rng.normalArray(total * 2 * d);
    const repeat = (x: Float32Array) => {
      const out = new Float32Array(total * 4 * d);
      for (let t = 0; t < total; t++) for (let h = 0; h < 4; h++) out.set(x.subarray((t * 2 + (h >> 1)) * d, (t * 2 + (h >> 1) + 1) * d), (t * 4 + h) * d);
      return out;
    };
    const gqa = exactDecode({ numQueryHeads: 4, numKvHeads: 2, headDim: d, contextLens, q, k, v });
    const mha = exactDecode({ numQueryHeads: 4, numKvHeads: 4, headDim: d, contextLens, q, k: repeat(k), v: repeat(v) });
    expect(maxAbsError(gqa, mha).value).toBeLessThan(FLOAT64_TOL);
  });

  it('int4-hadamard with rotated V attends in the rotated space and equals attending over unrotated decoded K/V', () => {
    const rng = new SeededRandom(8);
    const d = 64;
    const shape = { numQueryHeads: 2, numKvHeads: 1, headDim: d, contextLens: [9] };
    const c = { ...shape, q: rng.normalArray(2 * d), k: rng.normalArray(9 * d), v: rng.normalArray(9 * d) };
    const cfg: MethodConfig = { method: 'int4-hadamard', hadamardBlock: 64, rotateV: true, signs: randomSigns(d, 1) };
    const ref = referenceDecode(cfg, c);
    const unrot = (x: Float64Array) => {
      const out = new Float64Array(x.length);
      for (let i = 0; i < x.length; i += d) out.set(unrotate(x.subarray(i, i + d), 64, cfg.signs), i);
      return out;
    };
    const direct = exactDecode({ ...shape, q: c.q, k: unrot(ref.kDecoded), v: unrot(ref.vDecoded) });
    expect(maxAbsError(ref.out, direct).value).toBeLessThan(1e-10);
  });

  it('metrics: zero error for equal vectors, known values otherwise', () => {
    expect(relativeL2([1, 2, 2], [1, 2, 2])).toBe(0);
    expect(relativeL2([1, 2, 3], [1, 2, 2])).toBeCloseTo(1 / 3, 12);
    expect(cosineSimilarity([1, 0], [0, 1])).toBe(0);
    expect(maxAbsError([1, NaN, 3], [1, 2, 3])).toEqual({ value: Infinity, index: 1 });
    expect(klDivergence([0.5, 0.5], [0.5, 0.5])).toBe(0);
    expect(klDivergence([1, 0], [0.5, 0.5])).toBeCloseTo(Math.log(2), 12);
  });

  it('encodeRow fp16 decodes to the f16-rounded input', () => {
    const row = encodeRow({ method: 'fp16', hadamardBlock: 128, rotateV: false, signs: null }, [1 / 3, -2.5, 70000, 0], true);
    expect(Array.from(row.decoded)).toEqual([roundToF16(1 / 3), -2.5, Infinity, 0]);
  });
});

describe('extra methods (int8, int4-g32) and decoding stored rows', () => {
  const plain = (method: KvMethod): MethodConfig => ({ method, hadamardBlock: 64, rotateV: false, signs: null });

  it('int8: 255 levels over the row, BYTE ORDER, one scale/min word', () => {
    const x = Array.from({ length: 64 }, (_, i) => (i === 5 ? 3 : i === 9 ? -1 : (i % 7) / 10));
    const row = encodeRow(plain('int8'), x, true);
    const scale = roundToF16(4 / 255);
    expect(row.words).toHaveLength(16);
    expect(row.scaleMins).toEqual(Uint32Array.of(row.scaleMin));
    expect(f16FromBits(row.scaleMin & 0xffff)).toBe(scale);
    expect(f16FromBits(row.scaleMin >>> 16)).toBe(-1);
    // element 5 (the max) is byte 1 of word 1; element 9 (the min) is byte 1 of word 2
    expect((row.words[1] >>> 8) & 0xff).toBe(Math.min(255, roundHalfEven(4 / scale)));
    expect((row.words[2] >>> 8) & 0xff).toBe(0);
    for (let i = 0; i < 64; i++) expect(Math.abs(row.decoded[i] - x[i])).toBeLessThanOrEqual(scale / 2 + 1e-12);
    expect(unpackBytes(packBytes(Uint8Array.from({ length: 8 }, (_, i) => 30 * i)))).toEqual(Uint8Array.from({ length: 8 }, (_, i) => 30 * i));
  });

  it('int4-g32: one scale/min per 32 channels, so an outlier only coarsens its own group', () => {
    const rng = new SeededRandom(12);
    const x = Array.from(rng.normalArray(128));
    x[40] = 50; // group 1
    const grouped = encodeRow(plain('int4-g32'), x, true);
    const rowWise = encodeRow(plain('int4'), x, true);
    expect(grouped.scaleMins).toHaveLength(4);
    expect(grouped.scaleMin).toBe(grouped.scaleMins[0]);
    for (let g = 0; g < 4; g++) {
      const group = quantizeRow(x.slice(32 * g, 32 * g + 32));
      expect(grouped.scaleMins[g]).toBe(packScaleMin(group.scale, group.min));
      expect(Array.from(unpackCodes(grouped.words, 128).subarray(32 * g, 32 * g + 32))).toEqual(Array.from(group.codes));
    }
    const errorIn = (decoded: Float64Array, from: number, to: number) => relativeL2(decoded.subarray(from, to), x.slice(from, to));
    expect(errorIn(grouped.decoded, 0, 32)).toBeLessThan(errorIn(rowWise.decoded, 0, 32) / 4);
    expect(errorIn(grouped.decoded, 32, 64)).toBeCloseTo(errorIn(rowWise.decoded, 32, 64), 1);
  });

  it('decodeRowWords / readStoredRow give back what encodeRow says attention reads, for every method', () => {
    const rng = new SeededRandom(13);
    const d = 64;
    const methods: MethodConfig[] = [
      plain('fp16'), plain('int4'), plain('int8'), plain('int4-g32'),
      { method: 'int4-hadamard', hadamardBlock: 32, rotateV: true, signs: randomSigns(d, 2) },
    ];
    for (const cfg of methods) {
      const layout = cacheLayout({ method: cfg.method, headDim: d, numKvHeads: 2, pageSize: 8, numPages: 4 });
      const paging = shuffledPaging([5, 11], 8, 4, 7);
      const v = rng.normalArray(16 * 2 * d);
      const cache = new Uint32Array(layout.pageWords * layout.numPages);
      writeCacheRows(layout, cfg, cache, v, paging, false);
      const want = decodeAll(cfg, v, d, false);
      let first = 0;
      paging.contextLens.forEach((len, s) => {
        const gathered = gatherDecodedRows(layout, (page, h, slot) => readStoredRow(layout, cache, page, h, slot), paging.blockTables[s], len);
        expect(maxAbsError(gathered, want.subarray(first * 2 * d, (first + len) * 2 * d)).value, cfg.method).toBe(0);
        first += len;
      });
      const row = encodeRow(cfg, v.subarray(0, d), false);
      expect(decodeRowWords(cfg.method, row.words, row.scaleMins, d)).toEqual(row.decoded);
    }
  });

  it('layouts: int8 D/4 words + 1 scale/min, int4-g32 D/8 words + D/32 scale/min; existing methods unchanged', () => {
    const at = (method: KvMethod, headDim: number) => cacheLayout({ method, headDim, numKvHeads: 2, pageSize: 16, numPages: 1 });
    expect([at('int8', 128).rowWords, at('int8', 128).scaleMinWords, at('int8', 128).bytesPerToken]).toEqual([32, 1, 2 * 2 * 33 * 4]);
    expect([at('int4-g32', 128).rowWords, at('int4-g32', 128).scaleMinWords, at('int4-g32', 128).bytesPerToken]).toEqual([16, 4, 2 * 2 * 20 * 4]);
    expect([at('int4', 128).rowWords, at('int4', 128).scaleMinWords, at('int4', 128).bytesPerToken]).toEqual([16, 1, 2 * 2 * 17 * 4]);
    expect([at('fp16', 128).rowWords, at('fp16', 128).scaleMinWords, at('fp16', 128).bytesPerToken]).toEqual([64, 0, 2 * 2 * 64 * 4]);
    expect(at('int4-g32', 64).scaleMinRegionOffset % 4).toBe(0);
    expect(at('int4', 128).pageWords).toBe(2 * 16 * 17);
  });
});
