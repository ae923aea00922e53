/**
 * Block-diagonal normalized Hadamard rotation, float64: x̃ = (x ⊙ signs) · H_blk with
 * H_blk = diag(H_B, …, H_B) and H_B the Sylvester Hadamard matrix of order B scaled by 1/√B.
 * H_B is orthogonal and symmetric (its own inverse), so the inverse is x = (x̃ · H_blk) ⊙ signs.
 */
import { SeededRandom } from './random';

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && (n & (n - 1)) === 0;
}

/** In-place normalized fast Walsh–Hadamard transform of x[offset .. offset+B). */
export function fwhtBlock(x: Float64Array, offset: number, blockSize: number): void {
  for (let half = 1; half < blockSize; half *= 2) {
    for (let start = 0; start < blockSize; start += 2 * half) {
      for (let i = start; i < start + half; i++) {
        const a = x[offset + i];
        const b = x[offset + i + half];
        x[offset + i] = a + b;
        x[offset + i + half] = a - b;
      }
    }
  }
  const norm = 1 / Math.sqrt(blockSize);
  for (let i = 0; i < blockSize; i++) x[offset + i] *= norm;
}

function checkBlock(length: number, blockSize: number): void {
  if (!isPowerOfTwo(blockSize)) throw new Error(`Hadamard block ${blockSize} is not a power of two`);
  if (length % blockSize !== 0) throw new Error(`vector length ${length} is not divisible by Hadamard block ${blockSize}`);
}

/** x̃ = (x ⊙ signs) · H_blk. `signs` (±1 per element) may be null for the unsigned rotation. */
export function rotate(x: ArrayLike<number>, blockSize: number, signs: Int8Array | null = null): Float64Array {
  checkBlock(x.length, blockSize);
  const y = Float64Array.from(x);
  if (signs) for (let i = 0; i < y.length; i++) y[i] *= signs[i];
  for (let offset = 0; offset < y.length; offset += blockSize) fwhtBlock(y, offset, blockSize);
  return y;
}

/** Inverse of {@link rotate}: x = (x̃ · H_blk) ⊙ signs. */
export function unrotate(y: ArrayLike<number>, blockSize: number, signs: Int8Array | null = null): Float64Array {
  checkBlock(y.length, blockSize);
  const x = Float64Array.from(y);
  for (let offset = 0; offset < x.length; offset += blockSize) fwhtBlock(x, offset, blockSize);
  if (signs) for (let i = 0; i < x.length; i++) x[i] *= signs[i];
  return x;
}

/**
 * The seeded random ±1 signs of the "randomized" variant: element i gets the i-th draw of
 * SeededRandom(seed).sign(). Kernels receive them as bits (bit i set = −1), see signBits().
 */
export function randomSigns(length: number, seed: number): Int8Array {
  const rng = new SeededRandom(seed);
  const signs = new Int8Array(length);
  for (let i = 0; i < length; i++) signs[i] = rng.sign();
  return signs;
}

/** Signs as a bit mask, 32 elements per u32, bit set where the sign is −1. */
export function signBits(signs: Int8Array | null, length: number): Uint32Array {
  const bits = new Uint32Array(Math.ceil(length / 32));
  if (signs) for (let i = 0; i < length; i++) if (signs[i] < 0) bits[i >>> 5] |= 1 << (i & 31);
  return bits;
}

/** The dense B×B normalized Sylvester Hadamard matrix (row-major), for tests. */
export function hadamardMatrix(blockSize: number): Float64Array {
  checkBlock(blockSize, blockSize);
  const h = new Float64Array(blockSize * blockSize);
  const norm = 1 / Math.sqrt(blockSize);
  for (let i = 0; i < blockSize; i++) {
    for (let j = 0; j < blockSize; j++) {
      // H[i][j] = (−1)^popcount(i & j)
      let parity = 0;
      for (let v = i & j; v; v &= v - 1) parity ^= 1;
      h[i * blockSize + j] = parity ? -norm : norm;
    }
  }
  return h;
}
