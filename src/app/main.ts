/**
 * The demo page's entry: finds the GPU and shows what it offers. No numeric logic lives here; the page
 * calls the same library functions as the CLI.
 */
import { describeGpu, GpuError, openGpu, OPTIONAL_FEATURES, RAISED_LIMITS, type GpuContext } from '../gpu/gpu-context';
import { formatBytes } from '../kernels/gpu-buffers';
import { runBandwidthProbeSum } from '../kernels/bandwidth-probe';

const NO_WEBGPU_HELP =
  'This page needs WebGPU: Chrome or Edge 113+ (on Linux start with --enable-unsafe-webgpu), ' +
  'Safari 26+, or Firefox 141+ (Windows; elsewhere enable dom.webgpu.enabled in about:config).';

function row(list: HTMLElement, term: string, value: string): void {
  const dt = document.createElement('dt');
  dt.textContent = term;
  const dd = document.createElement('dd');
  dd.textContent = value;
  list.append(dt, dd);
}

function showGpu(ctx: GpuContext): void {
  const status = document.getElementById('gpu-status')!;
  const details = document.getElementById('gpu-details')!;
  status.textContent = `WebGPU ready: ${describeGpu(ctx)}`;
  status.className = 'ok';
  const a = ctx.adapterInfo;
  row(details, 'Adapter', [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' · ') || 'unknown');
  row(details, 'Software adapter', a.isFallbackAdapter || a.architecture === 'swiftshader' ? 'yes' : 'no');
  for (const f of OPTIONAL_FEATURES) row(details, `Feature ${f}`, ctx.features[f] ? 'yes' : 'no');
  row(details, 'Kernel variants', [
    ctx.features.subgroups ? 'subgroup reductions' : 'workgroup-memory reductions',
    'f16 packed in u32 (no shader-f16 needed)',
    ctx.features['timestamp-query'] ? 'GPU timestamps' : 'wall-clock timing',
  ].join('; '));
  for (const l of RAISED_LIMITS) {
    const v = ctx.limits[l];
    row(details, l, l.includes('Size') && !l.includes('Workgroup') ? formatBytes(v) : String(v));
  }
  details.hidden = false;
}

async function selfCheck(ctx: GpuContext): Promise<void> {
  const details = document.getElementById('gpu-details')!;
  const data = Uint32Array.from({ length: 1 << 16 }, (_, i) => (i * 2654435761) >>> 0);
  const want = data.reduce((s, x) => (s + x) >>> 0, 0);
  const got = await runBandwidthProbeSum(ctx, data);
  row(details, 'Kernel self-check', got === want ? 'passed (bandwidth probe read every word once)' : `FAILED: sum ${got}, expected ${want}`);
}

async function main(): Promise<void> {
  const status = document.getElementById('gpu-status')!;
  try {
    const ctx = await openGpu(navigator.gpu, {
      onDeviceLost: (reason) => {
        status.textContent = `${reason}. Reload the page to start again.`;
        status.className = 'error';
      },
    });
    showGpu(ctx);
    await selfCheck(ctx);
  } catch (e) {
    status.className = 'error';
    status.textContent = e instanceof GpuError && e.kind === 'no-webgpu' ? `${e.message} ${NO_WEBGPU_HELP}` : `Error: ${e instanceof Error ? e.message : String(e)}`;
  }
}

void main();
