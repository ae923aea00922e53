import { describe, expect, it } from 'vitest';
import { runBandwidthProbeSum } from '../src/kernels/bandwidth-probe';
import { SeededRandom } from '../src/reference/random';
import { testGpu } from './gpu-harness';

function wrappingSum(data: Uint32Array): number {
  let sum = 0;
  for (const x of data) sum = (sum + x) >>> 0;
  return sum;
}

describe('bandwidth-probe (real WGSL through Dawn)', () => {
  it('reads every word exactly once: its sum equals the CPU sum', async () => {
    const ctx = await testGpu();
    const rng = new SeededRandom(7);
    // Not a multiple of the grid: the stride loop's tail must be handled.
    const data = Uint32Array.from({ length: 1_000_003 }, () => rng.nextU32());
    expect(await runBandwidthProbeSum(ctx, data)).toBe(wrappingSum(data));
  });

  it('a corrupted input word changes the sum (the check bites)', async () => {
    const ctx = await testGpu();
    const data = Uint32Array.from({ length: 4096 }, (_, i) => i * 2654435761);
    const want = wrappingSum(data);
    data[1234] ^= 1 << 17;
    expect(await runBandwidthProbeSum(ctx, data, 3)).not.toBe(want);
  });
});
