/** The cache-write kernels' bytes against the reference encoding (docs/numeric-contract.md, layout in src/layout.ts). */
import { describe, expect, it } from 'vitest';
import { PagedKvCache, type KvCacheConfig } from '../src/cache/paged-kv-cache';
import { scaleMinWordIndex, rowWordIndex } from '../src/layout';
import { f16FromBits, roundToF16 } from '../src/reference/f16';
import { roundHalfEven, unpackCodes } from '../src/reference/int4';
import type { MethodConfig } from '../src/reference/kv-methods';
import { SeededRandom } from '../src/reference/random';
import { compareCacheRows, type RowLocation } from './cache-check';
import { testGpu } from './gpu-harness';
import { appendUnchecked } from './kernel-case';

interface WriteCase {
  config: Omit<KvCacheConfig, 'numPages'>;
  tokens: number;
  outlierScale?: number;
}

/** `mutate` may put values append refuses (NaN, Inf): then the rows go in through appendUnchecked. */
async function writeAndRead(c: WriteCase, mutate?: (k: Float32Array, v: Float32Array) => void) {
  const ctx = await testGpu();
  const { headDim: d, numKvHeads: hkv } = c.config;
  const pageSize = c.config.pageSize ?? 16;
  const rng = new SeededRandom(c.tokens * 31 + d);
  const k = rng.normalArray(c.tokens * hkv * d);
  const v = rng.normalArray(c.tokens * hkv * d);
  if (c.outlierScale) for (let i = 5; i < k.length; i += d) k[i] *= c.outlierScale;
  mutate?.(k, v);
  const cache = await PagedKvCache.create(ctx, { ...c.config, numPages: Math.ceil(c.tokens / pageSize) + 2, pageShuffleSeed: 17 });
  const seq = cache.createSequence();
  if (mutate) await appendUnchecked(cache, [seq], [c.tokens], k, v);
  else await cache.append([seq], [c.tokens], k, v);
  const words = await cache.readCacheWords();
  const table = cache.allocator.blockTable(seq);
  const rowsOf = (x: Float32Array): RowLocation[] =>
    Array.from({ length: c.tokens }, (_, t) => ({ page: table[Math.floor(t / pageSize)], slot: t % pageSize, values: x.subarray(t * hkv * d, (t + 1) * hkv * d) }));
  const cfg: MethodConfig = { method: cache.config.method, hadamardBlock: cache.config.hadamardBlock, rotateV: cache.config.rotateV, signs: cache.signs };
  cache.destroy();
  return { cache, words, k, v, rowsOf, cfg };
}

const CASES: WriteCase[] = [
  { config: { method: 'fp16', headDim: 64, numQueryHeads: 2, numKvHeads: 2, pageSize: 8 }, tokens: 19 },
  { config: { method: 'fp16', headDim: 256, numQueryHeads: 1, numKvHeads: 1, pageSize: 16 }, tokens: 5 },
  { config: { method: 'int4', headDim: 64, numQueryHeads: 4, numKvHeads: 2, pageSize: 8 }, tokens: 21, outlierScale: 20 },
  { config: { method: 'int4', headDim: 128, numQueryHeads: 8, numKvHeads: 1, pageSize: 32 }, tokens: 40 },
  { config: { method: 'int4', headDim: 256, numQueryHeads: 2, numKvHeads: 2, pageSize: 16 }, tokens: 9 },
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 2, numKvHeads: 2, pageSize: 8, hadamardBlock: 16 }, tokens: 17, outlierScale: 20 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 4, numKvHeads: 2, pageSize: 16, hadamardBlock: 32, rotateV: true }, tokens: 33 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 4, numKvHeads: 4, pageSize: 128, hadamardBlock: 128, hadamardSignSeed: 7 }, tokens: 30, outlierScale: 20 },
  { config: { method: 'int4-hadamard', headDim: 256, numQueryHeads: 2, numKvHeads: 1, pageSize: 8, hadamardBlock: 64, rotateV: true, hadamardSignSeed: 3 }, tokens: 11 },
  // extra methods (cache-write-quant.wgsl): token-wise INT8, INT4 with a scale/min per 32 channels
  { config: { method: 'int8', headDim: 64, numQueryHeads: 4, numKvHeads: 2, pageSize: 8 }, tokens: 19, outlierScale: 20 },
  { config: { method: 'int8', headDim: 128, numQueryHeads: 8, numKvHeads: 1, pageSize: 16 }, tokens: 33 },
  { config: { method: 'int8', headDim: 256, numQueryHeads: 2, numKvHeads: 2, pageSize: 32 }, tokens: 9 },
  { config: { method: 'int4-g32', headDim: 32, numQueryHeads: 3, numKvHeads: 3, pageSize: 8 }, tokens: 17, outlierScale: 20 },
  { config: { method: 'int4-g32', headDim: 128, numQueryHeads: 4, numKvHeads: 2, pageSize: 16 }, tokens: 40, outlierScale: 20 },
  { config: { method: 'int4-g32', headDim: 256, numQueryHeads: 2, numKvHeads: 1, pageSize: 8 }, tokens: 11 },
  // pools over 3 storage buffers (shuffled pages: a sequence's rows land in every buffer)
  { config: { method: 'int4-hadamard', headDim: 64, numQueryHeads: 4, numKvHeads: 2, pageSize: 8, hadamardBlock: 64, rotateV: true, maxPagesPerBuffer: 3 }, tokens: 40, outlierScale: 20 },
  { config: { method: 'fp16', headDim: 96, numQueryHeads: 3, numKvHeads: 3, pageSize: 8, maxPagesPerBuffer: 2 }, tokens: 19 },
];
const INT8_CASE = CASES[10];
const INT4_G32_CASE = CASES[13];

describe('cache-write kernels: bytes equal the reference encoding', () => {
  for (const c of CASES) {
    const cfg = c.config;
    const name = `${cfg.method} D=${cfg.headDim} Hkv=${cfg.numKvHeads} P=${cfg.pageSize} B=${cfg.hadamardBlock ?? '-'} rotateV=${cfg.rotateV ?? false} signs=${cfg.hadamardSignSeed ?? 'none'} N=${c.tokens}${cfg.maxPagesPerBuffer ? ` ≤${cfg.maxPagesPerBuffer} pages/buffer` : ''}`;
    it(name, async () => {
      const { words, k, v, rowsOf, cache, cfg: methodCfg } = await writeAndRead(c);
      expect(compareCacheRows(cache.layout, methodCfg, words.k, rowsOf(k), true)).toEqual([]);
      expect(compareCacheRows(cache.layout, methodCfg, words.v, rowsOf(v), false)).toEqual([]);
    });
  }

  it('a corrupted cache word is reported (the comparison bites)', async () => {
    const { words, k, rowsOf, cache, cfg } = await writeAndRead(CASES[6]);
    const table = rowsOf(k);
    words.k[rowWordIndex(cache.layout, table[3].page, 1, table[3].slot) + 2] ^= 0x10;
    expect(compareCacheRows(cache.layout, cfg, words.k, rowsOf(k), true).length).toBeGreaterThan(0);
    const fp16 = await writeAndRead(CASES[0]);
    fp16.words.v[rowWordIndex(fp16.cache.layout, fp16.rowsOf(fp16.v)[0].page, 0, 0)] ^= 1;
    expect(compareCacheRows(fp16.cache.layout, fp16.cfg, fp16.words.v, fp16.rowsOf(fp16.v), false).length).toBeGreaterThan(0);
  });

  it('a corrupted INT8 code or int4-g32 group scale is reported', async () => {
    for (const c of [INT8_CASE, INT4_G32_CASE]) {
      const { words, k, rowsOf, cache, cfg } = await writeAndRead(c);
      const row = rowsOf(k)[2];
      const copy = Uint32Array.from(words.k);
      copy[rowWordIndex(cache.layout, row.page, 0, row.slot) + 1] ^= 0x100;
      expect(compareCacheRows(cache.layout, cfg, copy, rowsOf(k), true).length, c.config.method).toBeGreaterThan(0);
      const scaleCopy = Uint32Array.from(words.k);
      scaleCopy[scaleMinWordIndex(cache.layout, row.page, 0, row.slot) + cache.layout.scaleMinWords - 1] ^= 1;
      expect(compareCacheRows(cache.layout, cfg, scaleCopy, rowsOf(k), true).length, c.config.method).toBeGreaterThan(0);
    }
  });

  it('a constant vector quantizes without NaN: scale 0, codes 0, min = f16(value)', async () => {
    const c = CASES[7];
    const { words, cache, rowsOf, k } = await writeAndRead(c, (kk) => kk.fill(0.3, 0, 4 * 128));
    const row = rowsOf(k)[0];
    for (let h = 0; h < 4; h++) {
      const sm = words.k[scaleMinWordIndex(cache.layout, row.page, h, row.slot)];
      // rotating a constant vector with random signs is not constant; without signs only element 0 survives
      expect(Number.isFinite(f16FromBits(sm & 0xffff))).toBe(true);
    }
    const plain = await writeAndRead(CASES[2], (kk) => kk.fill(-1.25, 0, 2 * 64));
    const r = plain.rowsOf(plain.k)[0];
    for (let h = 0; h < 2; h++) {
      const sm = plain.words.k[scaleMinWordIndex(plain.cache.layout, r.page, h, r.slot)];
      expect(f16FromBits(sm & 0xffff)).toBe(0);
      expect(f16FromBits(sm >>> 16)).toBe(roundToF16(-1.25));
      const start = rowWordIndex(plain.cache.layout, r.page, h, r.slot);
      expect(Array.from(plain.words.k.subarray(start, start + 8))).toEqual(new Array(8).fill(0));
    }
  });

  it('codes at and a hair around half-steps round exactly like float64 (half to even, TwoSum tie-break)', async () => {
    // One INT4 row, min −3.75 and max 3.75: scale = 7.5 / 15 = 0.5 and min are exact in f16, so the
    // reference's (x − min)/scale is exact and every code is pinned, with no tie window.
    const d = 64;
    const row = new Float32Array(d);
    const nextUp = (x: number) => new Float32Array(new Int32Array([new Int32Array(new Float32Array([x]).buffer)[0] + (x >= 0 ? 1 : -1)]).buffer)[0];
    const nextDown = (x: number) => new Float32Array(new Int32Array([new Int32Array(new Float32Array([x]).buffer)[0] + (x > 0 ? -1 : 1)]).buffer)[0];
    const values = [-3.75, 3.75];
    for (let c = 0; c < 15; c++) {
      const tie = -3.75 + (c + 0.5) * 0.5;  // x − min = (c + ½)·scale exactly: rounds to the even code
      values.push(tie, nextUp(tie), nextDown(tie));
    }
    // x − min is not an f32 here: hi = 3.75 exactly, lo = ±2^-30 decides (7.5 ± 2^-29 → 8 or 7), 0 is a tie (→ 8)
    values.push(2 ** -30, -(2 ** -30), 0);
    row.set(values); // every value is an f32 already
    const ctx = await testGpu();
    const cache = await PagedKvCache.create(ctx, { method: 'int4', headDim: d, numQueryHeads: 1, numKvHeads: 1, pageSize: 8, numPages: 1 });
    const seq = cache.createSequence();
    await cache.append([seq], [1], row, row);
    const words = await cache.readCacheWords();
    const page = cache.allocator.blockTable(seq)[0];
    const start = rowWordIndex(cache.layout, page, 0, 0);
    const codes = unpackCodes(words.k.subarray(start, start + cache.layout.rowWords), d);
    const scaleMin = words.k[scaleMinWordIndex(cache.layout, page, 0, 0)];
    expect([f16FromBits(scaleMin & 0xffff), f16FromBits(scaleMin >>> 16)]).toEqual([0.5, -3.75]);
    const want = Array.from(row, (x) => Math.min(15, Math.max(0, roundHalfEven((x + 3.75) / 0.5))));
    expect(Array.from(codes)).toEqual(want);
    expect(want.slice(values.length - 3, values.length)).toEqual([8, 7, 8]);
    cache.destroy();
  });

  it('NaN and Inf in one token (written past append\'s check) change no other token or head', async () => {
    for (const c of [CASES[3], CASES[7], INT8_CASE, INT4_G32_CASE]) {
      const clean = await writeAndRead(c);
      const dirty = await writeAndRead(c, (kk, vv) => {
        const d = c.config.headDim;
        kk[(5 * c.config.numKvHeads + 0) * d + 3] = NaN; // token 5, kv head 0
        vv[(6 * c.config.numKvHeads + 0) * d + 1] = Infinity; // token 6, kv head 0
      });
      const d = c.config.headDim;
      const hkv = c.config.numKvHeads;
      const rows = clean.rowsOf(clean.k);
      for (let t = 0; t < c.tokens; t++) {
        for (let h = 0; h < hkv; h++) {
          const start = rowWordIndex(clean.cache.layout, rows[t].page, h, rows[t].slot);
          const sm = scaleMinWordIndex(clean.cache.layout, rows[t].page, h, rows[t].slot);
          const span = (w: Uint32Array) => Array.from(w.subarray(start, start + clean.cache.layout.rowWords)).concat(Array.from(w.subarray(sm, sm + clean.cache.layout.scaleMinWords)));
          if (!(t === 5 && h === 0)) expect(span(dirty.words.k), `K token ${t} head ${h}`).toEqual(span(clean.words.k));
          if (!(t === 6 && h === 0)) expect(span(dirty.words.v), `V token ${t} head ${h}`).toEqual(span(clean.words.v));
        }
      }
      void d;
    }
  });
});
