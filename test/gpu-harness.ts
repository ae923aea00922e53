/**
 * Device-test helper: one Dawn device per test file (hardware if usable, else SwiftShader), every
 * piece of GPU work wrapped in error scopes by the library itself. There is no skip: a machine that
 * cannot run WebGPU fails these tests with the reason.
 */
import { afterAll } from 'vitest';
import type { GpuContext } from '../src/gpu/gpu-context';
import { openNodeGpu, type NodeGpuOptions } from '../src/gpu/node-gpu';

const contexts = new Map<string, Promise<GpuContext>>();

/** The shared device for `options` (e.g. { disableFeatures: ['subgroups'] }). */
export function testGpu(options: NodeGpuOptions = {}): Promise<GpuContext> {
  const key = JSON.stringify(options);
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = openNodeGpu(options);
    contexts.set(key, ctx);
  }
  return ctx;
}

/**
 * A device with `subgroups`, for the subgroup kernels: the default device when it has them,
 * otherwise SwiftShader (which has them), so those kernels are tested on every machine.
 */
export async function subgroupTestGpu(): Promise<GpuContext> {
  const ctx = await testGpu();
  return ctx.features.subgroups ? ctx : testGpu({ adapter: 'swiftshader' });
}

afterAll(async () => {
  for (const ctx of contexts.values()) (await ctx).device.destroy();
  contexts.clear();
});

/** Index and values of the first element where |got − want| > tol (NaN counts), or null. */
export function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, tol: number): string | null {
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i] - want[i]);
    if (!(err <= tol)) return `index ${i}: got ${got[i]}, want ${want[i]}, |error| ${err} > ${tol}`;
  }
  return null;
}
