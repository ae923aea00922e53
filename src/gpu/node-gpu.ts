/**
 * WebGPU in Node through Dawn (the `webgpu` npm package), for the CLI and the tests.
 *
 * Tries the machine's own Vulkan drivers first. When they give no adapter, one that cannot run a
 * trivial compute shader, or only Mesa's CPU driver (lavapipe/llvmpipe, which `--adapter lavapipe`
 * picks on purpose), it switches the Vulkan loader to the SwiftShader driver that Debian's `chromium`
 * package ships and tries again: no variable to set.
 */
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GpuError, openDevice, withGpuErrors, type GpuContext, type OpenGpuOptions } from './gpu-context';

/** Where SwiftShader's Vulkan ICD manifest lives in common Chromium/Chrome packages. */
export const SWIFTSHADER_ICD_CANDIDATES = [
  '/usr/lib/chromium/vk_swiftshader_icd.json',
  '/usr/lib/chromium-browser/vk_swiftshader_icd.json',
  '/usr/lib64/chromium-browser/vk_swiftshader_icd.json',
  '/opt/google/chrome/vk_swiftshader_icd.json',
];

/** Where lavapipe's Vulkan ICD manifest lives (Debian's mesa-vulkan-drivers). */
export const LAVAPIPE_ICD_CANDIDATES = ['/usr/share/vulkan/icd.d/lvp_icd.json'];

/** Which adapter to open. */
export const NODE_ADAPTERS = ['auto', 'swiftshader', 'lavapipe'] as const;
export type NodeAdapterChoice = (typeof NODE_ADAPTERS)[number];

export interface NodeGpuOptions extends OpenGpuOptions {
  /**
   * 'auto' (default): a GPU first, then SwiftShader; 'swiftshader': SwiftShader only; 'lavapipe': Mesa's
   * CPU Vulkan driver only (Mesa ≥ 25 offers shader-f16, which SwiftShader lacks).
   */
  adapter?: NodeAdapterChoice;
  /**
   * Open Dawn with DAWN_UNSAFE_TOGGLES (default true): the toggles that expose `shader-f16` on NVIDIA
   * and `chromium-experimental-subgroup-matrix` (tensor cores) wherever the driver has them.
   */
  unsafeFeatures?: boolean;
  /**
   * More Dawn toggles to enable (names as Dawn spells them, e.g. `enable_integer_range_analysis_in_robustness`),
   * for measuring what a toggle changes; recorded in GpuContext.dawnToggles and every bench report.
   */
  dawnToggles?: readonly string[];
}

/** A Dawn toggle name: lower-case words joined by underscores. */
export const DAWN_TOGGLE_NAME = /^[a-z0-9]+(_[a-z0-9]+)*$/;

type DawnModule = { create: (flags: string[]) => GPU; globals: Record<string, unknown> };
let dawn: DawnModule | null = null;

async function loadDawn(): Promise<DawnModule> {
  if (!dawn) {
    dawn = (await import('webgpu')) as unknown as DawnModule;
    // GPUBufferUsage and friends, as a browser has them.
    Object.assign(globalThis, dawn.globals);
  }
  return dawn;
}

/** Dawn toggles: exact timestamps (Dawn quantizes them by default). */
const DAWN_FLAGS = ['disable-dawn-features=timestamp_quantization'];
/**
 * Dawn toggles that unlock experimental features: `allow_unsafe_apis` (subgroup matrices) and
 * `vulkan_enable_f16_on_nvidia` (Dawn hides shader-f16 on NVIDIA's Vulkan driver by default). The
 * browser equivalent: `--enable-unsafe-webgpu --enable-dawn-features=vulkan_enable_f16_on_nvidia`.
 */
export const DAWN_UNSAFE_TOGGLES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'] as const;

/** The toggles an instance is opened with beyond DAWN_FLAGS: the unsafe ones (unless turned off), then the caller's. */
function enabledDawnToggles(options: NodeGpuOptions): string[] {
  const extra = options.dawnToggles ?? [];
  for (const name of extra) {
    if (!DAWN_TOGGLE_NAME.test(name)) throw new GpuError(`${JSON.stringify(name)} is not a Dawn toggle name (lower-case words joined by '_', e.g. enable_integer_range_analysis_in_robustness)`, 'no-webgpu', true);
  }
  const toggles: string[] = options.unsafeFeatures === false ? [] : [...DAWN_UNSAFE_TOGGLES];
  for (const name of extra) if (!toggles.includes(name)) toggles.push(name);
  return toggles;
}

/**
 * Every Dawn instance we created. Dawn-node frees an instance when its JS object is collected, even
 * while adapters and devices made from it live on, and then crashes in ProcessEvents: keep them all.
 */
const liveInstances: GPU[] = [];

/** Mesa's CPU Vulkan driver (lavapipe) reports itself as llvmpipe. */
function isLavapipe(adapter: GPUAdapter): boolean {
  const info = adapter.info;
  return /llvmpipe|lavapipe/i.test(`${info.description} ${info.architecture} ${info.device}`);
}

async function tryAdapter(options: NodeGpuOptions, accept: (adapter: GPUAdapter) => boolean = () => true): Promise<GpuContext | null> {
  const { create } = await loadDawn();
  const toggles = enabledDawnToggles(options);
  const instance = create(toggles.length === 0 ? DAWN_FLAGS : [...DAWN_FLAGS, `enable-dawn-features=${toggles.join(',')}`]);
  liveInstances.push(instance);
  const adapter = await instance.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter || !accept(adapter)) return null;
  try {
    const ctx = await openDevice(adapter, options);
    await smokeTest(ctx.device);
    ctx.dawnToggles = [...(options.dawnToggles ?? [])];
    return ctx;
  } catch {
    return null;
  }
}

/** Runs a one-invocation compute shader and checks what it wrote. */
async function smokeTest(device: GPUDevice): Promise<void> {
  await withGpuErrors(device, 'adapter smoke test', async () => {
    const module = device.createShaderModule({
      code: '@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n@compute @workgroup_size(1) fn main() { out[0] = 0x1234567u; }',
    });
    const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
    const storage = device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC });
    const readback = device.createBuffer({ size: 4, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    const encoder = device.createCommandEncoder();
    const pass = encoder.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: storage } }] }));
    pass.dispatchWorkgroups(1);
    pass.end();
    encoder.copyBufferToBuffer(storage, 0, readback, 0, 4);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ);
    const value = new Uint32Array(readback.getMappedRange())[0];
    readback.unmap();
    storage.destroy();
    readback.destroy();
    if (value !== 0x1234567) throw new Error('smoke test wrote the wrong value');
  });
}

function useIcd(candidates: readonly string[], missing: string): void {
  const icd = candidates.find((path) => existsSync(path));
  if (!icd) throw new GpuError(missing, 'no-webgpu');
  process.env.VK_ICD_FILENAMES = icd;
  process.env.VK_DRIVER_FILES = icd;
}

function useSwiftShader(): void {
  useIcd(
    SWIFTSHADER_ICD_CANDIDATES,
    'No usable GPU adapter, and no SwiftShader to fall back to. Install Debian/Ubuntu packages ' +
      '`chromium` (ships SwiftShader) and `libvulkan1` (the Vulkan loader Dawn needs).',
  );
}

/** Opens the best Node WebGPU device: hardware if usable, else SwiftShader. */
export async function openNodeGpu(options: NodeGpuOptions = {}): Promise<GpuContext> {
  // The Vulkan loader complains on every start without it.
  process.env.XDG_RUNTIME_DIR ??= mkdtempSync(join(tmpdir(), 'xdg-'));
  if (options.adapter === 'lavapipe') {
    useIcd(LAVAPIPE_ICD_CANDIDATES, 'lavapipe is not installed: `bash scripts/install-debian-deps.sh` installs Mesa 25 (mesa-vulkan-drivers from bookworm-backports).');
    const lavapipe = await tryAdapter(options);
    if (lavapipe) return lavapipe;
    throw new GpuError('lavapipe gave no usable adapter (Dawn needs Mesa ≥ 25 for it).', 'no-webgpu');
  }
  if (options.adapter !== 'swiftshader') {
    const hardware = await tryAdapter(options, (adapter) => !isLavapipe(adapter));
    if (hardware) return hardware;
  }
  useSwiftShader();
  const software = await tryAdapter(options);
  if (software) return software;
  throw new GpuError(
    'SwiftShader gave no usable adapter either. Is `libvulkan1` installed (Dawn loads libvulkan.so.1)?',
    'no-webgpu',
  );
}
