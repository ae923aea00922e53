/** Small buffer helpers shared by the kernel launchers. */
import { GpuError, type GpuContext } from '../gpu/gpu-context';

/** Rounds up to a multiple of 4 bytes (WebGPU buffer sizes and copies need it). */
export function align4(bytes: number): number {
  return Math.ceil(bytes / 4) * 4;
}

/**
 * Throws a clear error when a buffer of `bytes` cannot exist or be bound on this device, naming
 * what was too big, the limit, and how much would fit.
 */
export function checkBufferFits(ctx: GpuContext, what: string, bytes: number, bound = true): void {
  const maxBuffer = ctx.limits.maxBufferSize;
  const maxBinding = ctx.limits.maxStorageBufferBindingSize;
  const limit = bound ? Math.min(maxBuffer, maxBinding) : maxBuffer;
  if (bytes > limit) {
    const limitName = bound && maxBinding < maxBuffer ? 'maxStorageBufferBindingSize' : 'maxBufferSize';
    throw new GpuError(
      `${what} needs ${formatBytes(bytes)}, more than this device's ${limitName} of ${formatBytes(limit)}; ` +
        `at most ${(100 * limit / bytes).toFixed(1)}% of this size would fit`,
      'out-of-memory',
      true,
    );
  }
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(2)} MiB`;
  if (bytes >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** A storage buffer initialised from `data` (checked against limits). */
export function storageBufferFrom(ctx: GpuContext, label: string, data: ArrayBufferView, extraUsage = 0): GPUBuffer {
  const size = Math.max(4, align4(data.byteLength));
  checkBufferFits(ctx, label, size);
  const buffer = ctx.device.createBuffer({
    label,
    size,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC | extraUsage,
    mappedAtCreation: true,
  });
  new Uint8Array(buffer.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buffer.unmap();
  return buffer;
}

/** An empty storage buffer (checked against limits). */
export function storageBuffer(ctx: GpuContext, label: string, bytes: number): GPUBuffer {
  const size = Math.max(4, align4(bytes));
  checkBufferFits(ctx, label, size);
  return ctx.device.createBuffer({ label, size, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC });
}

/** A uniform buffer holding `data`. */
export function uniformBufferFrom(ctx: GpuContext, label: string, data: ArrayBufferView): GPUBuffer {
  const buffer = ctx.device.createBuffer({ label, size: Math.max(16, Math.ceil(data.byteLength / 16) * 16), usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST });
  ctx.device.queue.writeBuffer(buffer, 0, data.buffer, data.byteOffset, data.byteLength);
  return buffer;
}

/** Copies `bytes` of `source` back to the CPU. */
export async function readBuffer(ctx: GpuContext, source: GPUBuffer, bytes = source.size, offset = 0): Promise<ArrayBuffer> {
  const size = align4(bytes);
  const staging = ctx.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  const encoder = ctx.device.createCommandEncoder();
  encoder.copyBufferToBuffer(source, offset, staging, 0, size);
  ctx.device.queue.submit([encoder.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const copy = staging.getMappedRange().slice(0);
  staging.unmap();
  staging.destroy();
  return copy.byteLength === bytes ? copy : copy.slice(0, bytes);
}

/** Binds buffers to bindings 0, 1, 2, … of group 0 of `pipeline`. */
export function bindBuffers(device: GPUDevice, pipeline: GPUComputePipeline, buffers: GPUBuffer[], label?: string): GPUBindGroup {
  return device.createBindGroup({
    label,
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
}

/** Uploads f32 data at the start of `buffer`. */
export function writeFloats(device: GPUDevice, buffer: GPUBuffer, data: Float32Array): void {
  device.queue.writeBuffer(buffer, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}

/** The same for u32 words (block tables, lengths, uniforms). */
export function writeWords(device: GPUDevice, buffer: GPUBuffer, data: Uint32Array): void {
  device.queue.writeBuffer(buffer, 0, data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
}
