/**
 * Host side of shaders/bandwidth-probe.wgsl: streams a buffer read-only and reports what it summed,
 * so the probe is both a correctness-checked kernel and the roofline for the benchmarks.
 */
import probeWgsl from '../../shaders/bandwidth-probe.wgsl?raw';
import { withGpuErrors, type GpuContext } from '../gpu/gpu-context';
import { bindBuffers, readBuffer, storageBuffer, uniformBufferFrom } from './gpu-buffers';
import { getPipeline, wgslU32Constants } from './pipeline-cache';

export const PROBE_WORKGROUP_SIZE = 256;

export function bandwidthProbeVariant() {
  return {
    key: `bandwidth-probe/wg${PROBE_WORKGROUP_SIZE}`,
    code: () => `${wgslU32Constants({ WORKGROUP_SIZE: PROBE_WORKGROUP_SIZE })}\n${probeWgsl}`,
  };
}

export interface BandwidthProbe {
  /** Records one full read of the source buffer into `pass`. */
  encode(pass: GPUComputePassEncoder): void;
  /** Bytes one dispatch reads. */
  bytesRead: number;
  /** The per-workgroup sums buffer ([numWorkgroups] u32). */
  sums: GPUBuffer;
  numWorkgroups: number;
  destroy(): void;
}

/**
 * Prepares a probe over `source` (a storage buffer whose size is a multiple of 16 bytes).
 * `numWorkgroups` defaults to enough to keep any GPU busy while each invocation still loops.
 */
export async function createBandwidthProbe(ctx: GpuContext, source: GPUBuffer, numWorkgroups = 2048): Promise<BandwidthProbe> {
  if (source.size % 16 !== 0) throw new Error(`probe source size ${source.size} is not a multiple of 16 bytes`);
  const pipeline = await getPipeline(ctx.device, bandwidthProbeVariant());
  const numVec4 = source.size / 16;
  const sums = storageBuffer(ctx, 'probe sums', numWorkgroups * 4);
  const params = uniformBufferFrom(ctx, 'probe params', new Uint32Array([numVec4, numWorkgroups * PROBE_WORKGROUP_SIZE]));
  const bindGroup = bindBuffers(ctx.device, pipeline, [source, sums, params], 'bandwidth probe');
  return {
    bytesRead: source.size,
    sums,
    numWorkgroups,
    encode(pass) {
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, bindGroup);
      pass.dispatchWorkgroups(numWorkgroups);
    },
    destroy() {
      sums.destroy();
      params.destroy();
    },
  };
}

/** Runs the probe once over `data` and returns the wrapping u32 sum of everything it read. */
export async function runBandwidthProbeSum(ctx: GpuContext, data: Uint32Array, numWorkgroups = 64): Promise<number> {
  return withGpuErrors(ctx.device, 'bandwidth probe', async () => {
    const padded = new Uint32Array(Math.ceil(data.length / 4) * 4);
    padded.set(data);
    const source = storageBuffer(ctx, 'probe source', padded.byteLength);
    ctx.device.queue.writeBuffer(source, 0, padded);
    const probe = await createBandwidthProbe(ctx, source, numWorkgroups);
    const encoder = ctx.device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    probe.encode(pass);
    pass.end();
    ctx.device.queue.submit([encoder.finish()]);
    const sums = new Uint32Array(await readBuffer(ctx, probe.sums));
    probe.destroy();
    source.destroy();
    return sums.reduce((acc, s) => (acc + s) >>> 0, 0);
  });
}
