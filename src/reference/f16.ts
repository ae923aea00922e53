/**
 * IEEE binary16 rounding for the reference: round to nearest, ties to even; overflow to ±Infinity;
 * NaN stays NaN. The kernels implement the same rounding in integer arithmetic (shaders/lib/f16.wgsl)
 * so cache bytes agree bit for bit whatever the GPU's own conversion does.
 */

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** binary16 bits of `x` (x is first rounded to f32, as the GPU sees it). */
export function f16Bits(x: number): number {
  f32Scratch[0] = x;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const unbiased = exponent - 127;
  if (unbiased > 15) return sign | 0x7c00;
  if (unbiased >= -14) {
    // Normal half: keep 10 mantissa bits, round the 13 dropped bits to nearest even.
    let half = ((unbiased + 15) << 10) | (mantissa >>> 13);
    const dropped = mantissa & 0x1fff;
    if (dropped > 0x1000 || (dropped === 0x1000 && (half & 1) === 1)) half += 1; // may carry into exponent: correct
    return sign | half;
  }
  if (unbiased < -25) return sign; // below half the smallest subnormal: rounds to zero
  // Subnormal half: value = m * 2^-24 with m = (1.mantissa) * 2^(unbiased + 24).
  const full = mantissa | 0x800000;
  const shift = -unbiased - 1; // 14..24 bits dropped from the 24-bit significand
  let half = full >>> shift;
  const dropped = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (dropped > halfway || (dropped === halfway && (half & 1) === 1)) half += 1;
  return sign | half;
}

/** The number a binary16 bit pattern denotes. */
export function f16FromBits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/** `x` rounded to the nearest binary16 value. */
export function roundToF16(x: number): number {
  return f16FromBits(f16Bits(x));
}

/** pack2x16float: `low` in bits 0..15, `high` in bits 16..31. */
export function packHalves(low: number, high: number): number {
  return (f16Bits(low) | (f16Bits(high) << 16)) >>> 0;
}

export function unpackHalves(word: number): [number, number] {
  return [f16FromBits(word & 0xffff), f16FromBits(word >>> 16)];
}
