/**
 * The "Your GPU" panel: the adapter, its optional features, the limits that matter for big caches,
 * the kernel variants the page will run on it, and a one-kernel self-check.
 */
import { describeGpu, describeMatrixConfig, FEATURE_HELP, OPTIONAL_FEATURES, RAISED_LIMITS, type GpuContext } from '../gpu/gpu-context';
import { runBandwidthProbeSum } from '../kernels/bandwidth-probe';
import { PREFERRED_LANES_PER_TOKEN, WGSL_MIN_SUBGROUP_SIZE } from '../kernels/paged-decode';
import { formatBytes } from '../kernels/gpu-buffers';
import { addRow, byId, el } from './dom';

/** What each optional feature buys, for the feature list. */
const FEATURE_USE: Record<(typeof OPTIONAL_FEATURES)[number], string> = {
  'shader-f16': 'f16 tiles for the tensor-core decode kernel; FP16 storage is packed in u32 and never needs it',
  subgroups: 'faster softmax and dot-product reductions',
  'timestamp-query': 'GPU-side timing of each kernel',
  'chromium-experimental-subgroup-matrix': 'tensor cores for INT4 decode attention (paged-decode-matrix.wgsl)',
};

/** The kernel variants this device gets, one line each. */
export function kernelVariants(ctx: GpuContext): string[] {
  const a = ctx.adapterInfo;
  const range = a.subgroupMinSize === a.subgroupMaxSize ? `${a.subgroupMinSize}` : `${a.subgroupMinSize}–${a.subgroupMaxSize}`;
  const sizes = a.subgroupMinSize ? ` (subgroup size ${range})` : '';
  const matrix = ctx.features['chromium-experimental-subgroup-matrix'] && ctx.features['shader-f16'];
  return [
    matrix
      ? `Tensor cores: available (paged-decode-matrix.wgsl, configs ${a.subgroupMatrixConfigs.map(describeMatrixConfig).join(', ')}); the page runs the subgroup kernel, faster on the GPUs measured so far (docs/tuning.md).`
      : 'Tensor cores: not offered here (the matrix kernel needs chromium-experimental-subgroup-matrix and shader-f16: in Chrome, --enable-unsafe-webgpu and on NVIDIA --enable-dawn-features=vulkan_enable_f16_on_nvidia).',
    ctx.features.subgroups
      ? `Decode attention: subgroup path${sizes} for FP16 and INT4 (paged-decode-subgroup.wgsl: at most ${Math.min(PREFERRED_LANES_PER_TOKEN, a.subgroupMinSize ?? WGSL_MIN_SUBGROUP_SIZE)} lanes per token, so a token's lanes fit the smallest subgroup); int8 and int4-g32 use the workgroup-memory kernel.`
      : 'Decode attention: workgroup-memory path (this adapter has no subgroups).',
    'Storage: INT4 codes 8 per u32 with scale/min as packed f16; the FP16 baseline packs two halves per u32 (pack2x16float), so shader-f16 is never required.',
    'Long contexts with few sequences: split-K (flash-decoding) with a log-sum-exp merge, split count chosen per run.',
    ctx.features['timestamp-query'] ? 'Timing: GPU timestamps (timestamp-query).' : 'Timing: wall clock around many dispatches (no timestamp-query).',
  ];
}

function limitText(name: string, value: number): string {
  return name.includes('Size') && !name.includes('Workgroup') ? formatBytes(value) : String(value);
}

/** Shows the adapter in #gpu-status / #gpu-details / #gpu-variants. */
export function showGpu(ctx: GpuContext): void {
  const status = byId('gpu-status');
  status.textContent = `WebGPU ready: ${describeGpu(ctx)}`;
  status.className = 'ok';
  const details = byId('gpu-details');
  details.replaceChildren();
  const a = ctx.adapterInfo;
  addRow(details, 'Adapter', [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' · ') || 'unknown (the browser hides it)');
  const software = a.isFallbackAdapter || a.architecture === 'swiftshader';
  addRow(details, 'Software adapter', software ? 'yes: timings are not representative of a GPU' : 'no');
  for (const f of OPTIONAL_FEATURES) {
    // a software adapter lacks what it lacks whatever the flags; the flags matter on a GPU
    const help = software ? `this software adapter does not offer it; on a GPU: ${FEATURE_HELP[f]}` : FEATURE_HELP[f];
    addRow(details, `Feature ${f}`, ctx.features[f] ? `yes (${FEATURE_USE[f]})` : `no (${FEATURE_USE[f]}). To get it: ${help}`);
  }
  if (ctx.features['chromium-experimental-subgroup-matrix']) {
    addRow(details, 'Matrix configs', a.subgroupMatrixConfigs.map(describeMatrixConfig).join(', ') || 'none listed');
  }
  for (const l of RAISED_LIMITS) addRow(details, l, limitText(l, ctx.limits[l]));
  details.hidden = false;
  byId('gpu-variants').replaceChildren(...kernelVariants(ctx).map((line) => el('li', {}, line)));
  byId('gpu-variants-block').hidden = false;
}

/** Runs one real kernel (the bandwidth probe summing known words) and reports the outcome. */
export async function selfCheck(ctx: GpuContext): Promise<boolean> {
  const data = Uint32Array.from({ length: 1 << 16 }, (_, i) => (i * 2654435761) >>> 0);
  const want = data.reduce((s, x) => (s + x) >>> 0, 0);
  const got = await runBandwidthProbeSum(ctx, data);
  const ok = got === want;
  addRow(byId('gpu-details'), 'Kernel self-check', ok ? 'passed (bandwidth probe read every word once)' : `FAILED: sum ${got}, expected ${want}`);
  return ok;
}

/** Shows that no usable GPU was found. */
export function showNoGpu(message: string): void {
  const status = byId('gpu-status');
  status.textContent = message;
  status.className = 'error';
  byId('gpu-details').hidden = true;
  byId('gpu-variants-block').hidden = true;
}
