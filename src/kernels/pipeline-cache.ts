/**
 * Compute pipelines cached per device (a WeakMap, so a lost or dropped device releases them) and per
 * variant key. A variant's WGSL is built from its header of `const` declarations plus shader files.
 */

const cache = new WeakMap<GPUDevice, Map<string, GPUComputePipeline>>();

export interface ShaderVariant {
  /** Unique per distinct WGSL text: used as the cache key and the pipeline label. */
  key: string;
  /** Builds the full WGSL text (only called on a cache miss). */
  code: () => string;
  entryPoint?: string;
}

/** Returns the pipeline of a variant, compiling it on first use; compile errors become exceptions. */
export async function getPipeline(device: GPUDevice, variant: ShaderVariant): Promise<GPUComputePipeline> {
  let perDevice = cache.get(device);
  if (!perDevice) cache.set(device, (perDevice = new Map()));
  const hit = perDevice.get(variant.key);
  if (hit) return hit;
  const code = variant.code();
  const module = device.createShaderModule({ label: variant.key, code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === 'error');
  if (errors.length) {
    const lines = code.split('\n');
    const text = errors.map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}\n    ${lines[m.lineNum - 1] ?? ''}`).join('\n');
    throw new Error(`WGSL compile error in ${variant.key}:\n${text}`);
  }
  // Synchronous creation on purpose: Dawn's Node binding aborts the process on createComputePipelineAsync.
  // The driver's own compiler reports through the internal scope (e.g. a shader it cannot build).
  device.pushErrorScope('internal');
  device.pushErrorScope('validation');
  const pipeline = device.createComputePipeline({
    label: variant.key,
    layout: 'auto',
    compute: { module, entryPoint: variant.entryPoint ?? 'main' },
  });
  const err = await device.popErrorScope();
  const internal = await device.popErrorScope();
  if (err) throw new Error(`pipeline ${variant.key} failed validation: ${err.message}`);
  if (internal) throw new Error(`pipeline ${variant.key}: the driver could not build it: ${internal.message}`);
  perDevice.set(variant.key, pipeline);
  return pipeline;
}

/** `const NAME: u32 = 12u;` lines for a record of u32 constants. */
export function wgslU32Constants(values: Record<string, number>): string {
  return Object.entries(values)
    .map(([name, value]) => {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new Error(`constant ${name}=${value} is not a u32`);
      return `const ${name}: u32 = ${value}u;`;
    })
    .join('\n');
}
