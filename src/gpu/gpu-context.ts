/**
 * GPU access shared unchanged by the page, the CLI and the tests: picks a high-performance adapter,
 * records what it offers, requests a device with every optional feature we use that is present and the
 * largest limits the adapter allows, turns validation errors into exceptions and reports device loss.
 * Node callers obtain `gpu` from src/gpu/node-gpu.ts (Dawn); the page passes `navigator.gpu`.
 */
import type { MatrixBuiltinSpelling, MatrixConfig } from '../kernels/paged-decode-matrix';

/**
 * Optional features the kernels can use. None is required. `chromium-experimental-subgroup-matrix`
 * (tensor cores) needs `subgroups`; in Chrome it and, on NVIDIA, `shader-f16` come with
 * `--enable-unsafe-webgpu --enable-dawn-features=vulkan_enable_f16_on_nvidia` (see FEATURE_HELP).
 */
export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query', 'chromium-experimental-subgroup-matrix'] as const;

/** How a user gets each optional feature in Chrome when the adapter does not offer it. */
export const FEATURE_HELP: Record<OptionalFeature, string> = {
  'shader-f16': 'f16 in shaders: offered by most Apple, AMD and Intel adapters; on NVIDIA start Chrome with --enable-dawn-features=vulkan_enable_f16_on_nvidia',
  subgroups: 'subgroup operations: Chrome 134+ on most GPUs',
  'timestamp-query': 'GPU timestamps: Chrome 121+ (otherwise wall-clock timing)',
  'chromium-experimental-subgroup-matrix': 'tensor cores (subgroup matrices): start Chrome with --enable-unsafe-webgpu (experimental; Vulkan on NVIDIA/AMD/Intel, Metal on Apple M1+)',
};
export type OptionalFeature = (typeof OPTIONAL_FEATURES)[number];

/** Limits raised to the adapter's maximum, because big caches and big workgroups need them. */
export const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
] as const;
export type RaisedLimit = (typeof RAISED_LIMITS)[number];

export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** True for software adapters such as SwiftShader. */
  isFallbackAdapter: boolean;
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** The adapter's subgroup-matrix configurations ([] without the feature). */
  subgroupMatrixConfigs: MatrixConfig[];
}

export interface GpuContext {
  adapter: GPUAdapter;
  device: GPUDevice;
  adapterInfo: AdapterSummary;
  /** Optional features enabled on the device (after any the caller disabled). */
  features: Record<OptionalFeature, boolean>;
  /** The device's values of RAISED_LIMITS. */
  limits: Record<RaisedLimit, number>;
  /**
   * How this device's WGSL spells subgroup-matrix loads and stores (detectMatrixBuiltins); null
   * without the matrix feature. Absent: 'template'.
   */
  matrixBuiltins?: MatrixBuiltinSpelling | null;
  /** Dawn toggles the caller enabled beyond the defaults (Node's `--dawn-toggle`); absent or empty: none. */
  dawnToggles?: readonly string[];
  /** Set once the device is lost; every later call should fail with this reason. */
  lostReason: string | null;
  /** Resolves when the device is lost (never for a healthy device). */
  lost: Promise<GPUDeviceLostInfo>;
}

export interface OpenGpuOptions {
  /** Features to leave off even when the adapter has them (to force and test fallbacks). */
  disableFeatures?: readonly string[];
  /** Called when the device is lost other than by destroy(). */
  onDeviceLost?: (reason: string) => void;
}

/** Raised when the GPU reports a validation, out-of-memory or internal error for our commands. */
export class GpuError extends Error {
  constructor(
    message: string,
    readonly kind: 'validation' | 'out-of-memory' | 'internal' | 'device-lost' | 'no-webgpu',
    /** Refused by a check against the device's limits before anything was allocated (a size to change, not a fault). */
    readonly beforeWork = false,
  ) {
    super(message);
    this.name = 'GpuError';
  }
}

function summarizeAdapter(adapter: GPUAdapter): AdapterSummary {
  const info = adapter.info as GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number; isFallbackAdapter?: boolean; subgroupMatrixConfigs?: readonly MatrixConfig[] };
  const configs = [...(info.subgroupMatrixConfigs ?? [])].map((c) => ({ componentType: c.componentType, resultComponentType: c.resultComponentType, M: c.M, N: c.N, K: c.K }));
  return {
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    device: info.device ?? '',
    description: info.description ?? '',
    isFallbackAdapter: Boolean(info.isFallbackAdapter),
    subgroupMinSize: info.subgroupMinSize,
    subgroupMaxSize: info.subgroupMaxSize,
    subgroupMatrixConfigs: configs,
  };
}

/** "f16→f32 16×8×16" for a matrix configuration (M × N × K). */
export function describeMatrixConfig(c: MatrixConfig): string {
  return `${c.componentType}→${c.resultComponentType} ${c.M}×${c.N}×${c.K}`;
}

/** Opens a device on the best adapter `gpu` offers. Throws GpuError('no-webgpu') when there is none. */
export async function openGpu(gpu: GPU | undefined, options: OpenGpuOptions = {}): Promise<GpuContext> {
  if (!gpu) throw new GpuError('WebGPU is not available here (navigator.gpu is missing).', 'no-webgpu');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new GpuError('WebGPU is present but no adapter was found (GPU blocklisted or drivers missing).', 'no-webgpu');
  return openDevice(adapter, options);
}

/** Requests the device on a given adapter (see openGpu). */
export async function openDevice(adapter: GPUAdapter, options: OpenGpuOptions = {}): Promise<GpuContext> {
  const disabled = new Set(options.disableFeatures ?? []);
  // The matrix feature needs subgroups: leaving subgroups off leaves it off too.
  if (disabled.has('subgroups')) disabled.add('chromium-experimental-subgroup-matrix');
  const requiredFeatures = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f) && !disabled.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits });
  const features = Object.fromEntries(OPTIONAL_FEATURES.map((f) => [f, device.features.has(f)])) as Record<OptionalFeature, boolean>;
  const limits = Object.fromEntries(RAISED_LIMITS.map((l) => [l, device.limits[l]])) as Record<RaisedLimit, number>;
  const context: GpuContext = {
    adapter,
    device,
    adapterInfo: summarizeAdapter(adapter),
    features,
    limits,
    lostReason: null,
    lost: device.lost,
    matrixBuiltins: features['chromium-experimental-subgroup-matrix'] ? await detectMatrixBuiltins(device) : null,
  };
  device.lost.then((info) => {
    context.lostReason = `GPU device lost (${info.reason}): ${info.message || 'no message'}`;
    if (info.reason !== 'destroyed') options.onDeviceLost?.(context.lostReason);
  });
  return context;
}

/**
 * Whether the device's WGSL takes the template spelling of subgroup-matrix loads and stores
 * (`subgroupMatrixLoad<T, col_major>(p, offset, stride)`: current Dawn, which warns once per call
 * at the older spelling) or only the argument spelling of the first implementations: one tiny module
 * compiled in an error scope, once per device.
 */
export async function detectMatrixBuiltins(device: GPUDevice): Promise<MatrixBuiltinSpelling> {
  const code = `enable chromium_experimental_subgroup_matrix;
var<workgroup> probe: array<f32, 64>;
@compute @workgroup_size(64) fn main() {
  let m = subgroupMatrixLoad<subgroup_matrix_result<f32, 8, 8>, col_major>(&probe, 0u, 8u);
  subgroupMatrixStore<row_major>(&probe, 0u, m, 8u);
}`;
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ label: 'subgroup-matrix spelling probe', code });
  const info = await module.getCompilationInfo();
  const error = await device.popErrorScope();
  return error || info.messages.some((m) => m.type === 'error') ? 'argument' : 'template';
}

/**
 * Runs `work` (which records and submits GPU commands) inside validation, out-of-memory and internal
 * error scopes, and throws a GpuError naming `what` if any scope caught an error.
 */
export async function withGpuErrors<T>(device: GPUDevice, what: string, work: () => T | Promise<T>): Promise<T> {
  device.pushErrorScope('internal');
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  let result: T;
  try {
    result = await work();
  } finally {
    const validation = await device.popErrorScope();
    const oom = await device.popErrorScope();
    const internal = await device.popErrorScope();
    if (validation) throw new GpuError(`${what}: GPU validation error: ${validation.message}`, 'validation');
    if (oom) throw new GpuError(`${what}: GPU out of memory: ${oom.message}`, 'out-of-memory');
    if (internal) throw new GpuError(`${what}: GPU internal error: ${internal.message}`, 'internal');
  }
  return result;
}

/** A one-line description for logs and the page. */
export function describeGpu(ctx: GpuContext): string {
  const a = ctx.adapterInfo;
  const name = [a.vendor, a.architecture, a.description].filter(Boolean).join(' ') || 'unknown adapter';
  const feats = OPTIONAL_FEATURES.filter((f) => ctx.features[f]).join(', ') || 'none';
  const matrices = ctx.features['chromium-experimental-subgroup-matrix'] ? `; matrix configs: ${a.subgroupMatrixConfigs.map(describeMatrixConfig).join(', ')}` : '';
  const toggles = ctx.dawnToggles?.length ? `; Dawn toggles: ${ctx.dawnToggles.join(', ')}` : '';
  return `${name}${a.isFallbackAdapter ? ' (software)' : ''}; features: ${feats}${matrices}${toggles}`;
}
