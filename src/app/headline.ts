/**
 * The headline card: the result of this run in three numbers, in the first screen, filled in as
 * the rows arrive. Memory: × smaller than FP16 (bits per element). Error: output relative L2 vs
 * exact attention of INT4 + Hadamard, naive INT4 and FP16. Speed: decode-step time × vs FP16 at the
 * chosen concurrency and context, with the decode kernel (and plan) that ran. On a software adapter
 * it says that the timings mean nothing for a real GPU.
 *
 * Each stat keeps its numbers in data-* attributes (data-state: pending | done | not-run | stopped)
 * for tests and scripts; the text is for reading.
 */
import type { MethodAccuracy } from '../accuracy/accuracy-lab';
import type { BenchMethod, MeasuredPoint, PointResult } from '../bench/decode-step-bench';
import type { GpuContext } from '../gpu/gpu-context';
import { byId, el } from './dom';
import { formatNumber } from './tables';

/** What a run will produce, fixed when it starts. */
export interface HeadlinePlan {
  accuracy: boolean;
  bench: boolean;
  /** Accuracy id of the INT4 + Hadamard method the headline quotes (null: none chosen). */
  hadamardId: string | null;
  /** Whether naive INT4 runs. */
  int4: boolean;
  /** Bench variant of INT4 + Hadamard (null: none chosen). */
  hadamardVariant: BenchMethod | null;
  /** The shape the speed is quoted at. */
  seqs: number;
  context: number;
  /** Where the accuracy data comes from ('outlier-keys', 'your file x.safetensors'). */
  data: string;
}

type StatId = 'hl-memory' | 'hl-error' | 'hl-speed';
type StatState = 'pending' | 'done' | 'not-run' | 'stopped';

let plan: HeadlinePlan | null = null;

/** Software adapters, by name: their timings say nothing about a GPU. */
export function softwareAdapterName(ctx: GpuContext): string | null {
  const a = ctx.adapterInfo;
  const text = `${a.vendor} ${a.architecture} ${a.device} ${a.description}`;
  if (/swiftshader/i.test(text)) return 'SwiftShader';
  if (/llvmpipe|lavapipe/i.test(text)) return 'lavapipe';
  return a.isFallbackAdapter ? 'a software adapter' : null;
}

function setStat(id: StatId, state: StatState, value: string | Node, note: string, data: Record<string, number | string | null> = {}): void {
  const stat = byId(id);
  stat.dataset.state = state;
  for (const key of Object.keys(stat.dataset)) if (key !== 'state') delete stat.dataset[key];
  for (const [key, v] of Object.entries(data)) if (v !== null) stat.dataset[key] = String(v);
  stat.querySelector('.stat-value')!.replaceChildren(value);
  stat.querySelector('.stat-note')!.textContent = note;
}

const times = (x: number) => `${formatNumber(x, 3)}×`;

/** Shows the card for a run that starts now: every stat it will fill says so, the others that they are not run. */
export function startHeadline(next: HeadlinePlan, ctx: GpuContext): void {
  plan = next;
  byId('headline').hidden = false;
  const waiting = (what: string) => `Measuring ${what}…`;
  setStat('hl-memory', 'pending', '…', waiting('the cache size'));
  if (next.accuracy) setStat('hl-error', 'pending', '…', waiting('the error of each method'));
  else setStat('hl-error', 'not-run', 'not measured', 'This run times throughput only: press “Run accuracy + throughput” for the error.');
  if (next.bench) setStat('hl-speed', 'pending', '…', waiting(`the decode step at ${next.seqs} × ${next.context}`));
  else setStat('hl-speed', 'not-run', 'not timed', 'This run measures accuracy only: press “Run accuracy + throughput” for the speed.');
  const software = softwareAdapterName(ctx);
  const caveat = byId('hl-caveat');
  caveat.hidden = software === null;
  caveat.textContent = software
    ? `Running on ${software}, a CPU pretending to be a GPU: its timings say nothing about a real GPU (the sizes and errors hold everywhere).`
    : '';
}

/** The memory stat from the rows of a method (accuracy rows carry the footprint). */
function showMemory(m: MethodAccuracy, fp16Bits: number): void {
  setStat('hl-memory', 'done', el('strong', {}, `${times(m.compressionVsFp16)} smaller`),
    `than FP16: ${formatNumber(m.bitsPerElement, 3)} vs ${formatNumber(fp16Bits, 3)} stored bits per K/V element (${m.displayName}, scale and min included).`,
    { value: m.compressionVsFp16, bits: m.bitsPerElement });
}

/** Fills the memory and error stats from the accuracy rows finished so far. */
export function headlineAccuracy(rows: readonly MethodAccuracy[]): void {
  if (!plan) return;
  const p = plan;
  const fp16 = rows.find((m) => m.id === 'fp16');
  const int4 = rows.find((m) => m.id === 'int4');
  const hadamard = p.hadamardId ? rows.find((m) => m.id === p.hadamardId) : undefined;
  const quoted = hadamard ?? int4 ?? rows.find((m) => m.kvMethod !== 'fp16');
  if (quoted && fp16) showMemory(quoted, fp16.bitsPerElement);
  if (!fp16) return;
  const main = hadamard ?? int4 ?? fp16;
  const done = (!p.hadamardId || hadamard !== undefined) && (!p.int4 || int4 !== undefined);
  const against: string[] = [];
  if (int4 && main !== int4) against.push(`${formatNumber(int4.vsExact.relL2, 2)} for naive INT4 (${times(int4.vsExact.relL2 / main.vsExact.relL2)} higher)`);
  if (main !== fp16) against.push(`${formatNumber(fp16.vsExact.relL2, 2)} for FP16`);
  const rel = (m: MethodAccuracy | undefined) => (m ? m.vsExact.relL2 : null);
  setStat('hl-error', done ? 'done' : 'pending',
    el('span', {}, el('strong', {}, formatNumber(main.vsExact.relL2, 2)), ` ${main === hadamard ? 'INT4 + Hadamard' : main.displayName}`),
    `${against.length ? `vs ${against.join(' and ')}. ` : ''}Relative L2 of the attention output against exact float64 attention, on ${p.data}.` +
      (done ? '' : ' More methods are running…'),
    { hadamard: rel(hadamard), int4: rel(int4), fp16: rel(fp16), method: main.id });
}

/** A duration given in µs, in the unit that reads best: "86.2 µs", "218 ms", "1.25 s". */
export function formatDuration(us: number): string {
  if (us >= 999_500) return `${formatNumber(us / 1e6, 3)} s`; // what would round to 1000 ms
  if (us >= 9_995) return `${formatNumber(us / 1e3, 3)} ms`; // … to 10000 µs
  return `${formatNumber(us, 3)} µs`;
}

function speedNote(p: MeasuredPoint, fp16: MeasuredPoint | undefined): string {
  const step = `${formatDuration(p.stepUs)} per step${fp16 ? ` vs ${formatDuration(fp16.stepUs)} FP16` : ''}`;
  return `${step} at ${p.point.batch} × ${p.point.context} tokens, one layer (${p.variant}). Kernel: ${p.plan}.`;
}

/** Fills the speed stat (and the memory stat, when no accuracy run gives it) from the bench points so far. */
export function headlineBench(points: readonly PointResult[]): void {
  if (!plan) return;
  const p = plan;
  const atShape = points.filter((r): r is MeasuredPoint => r.status === 'ok' && r.point.batch === p.seqs && r.point.context === p.context);
  const fp16 = atShape.find((r) => r.point.method === 'fp16');
  const wanted = p.hadamardVariant ? atShape.find((r) => r.variant.startsWith(p.hadamardVariant!)) : atShape.find((r) => r.point.method === 'int4');
  if (!p.accuracy && wanted && fp16) {
    const ratio = fp16.bytesPerToken / wanted.bytesPerToken;
    setStat('hl-memory', 'done', el('strong', {}, `${times(ratio)} smaller`),
      `than FP16: ${wanted.bytesPerToken} vs ${fp16.bytesPerToken} cache bytes per token and layer (${wanted.variant}).`, { value: ratio });
  }
  const speedup = wanted?.speedupVsFp16?.step;
  if (wanted && speedup !== undefined) {
    const words = speedup >= 1 ? `${times(speedup)} faster` : `${times(1 / speedup)} slower`;
    setStat('hl-speed', 'done', el('strong', {}, words), `than FP16: ${speedNote(wanted, fp16)}`,
      { value: speedup, kernel: wanted.kernel, variant: wanted.variant });
  } else {
    const failed = points.find((r) => r.point.batch === p.seqs && r.point.context === p.context && r.status !== 'ok');
    if (failed) setStat('hl-speed', 'stopped', 'not timed', `The point ${p.seqs} × ${p.context} was ${failed.status} (see the throughput table).`);
  }
}

/** A run ended: stats still waiting say why they stay empty. */
export function finishHeadline(outcome: 'done' | 'cancelled' | 'failed'): void {
  if (!plan) return;
  const why = outcome === 'cancelled' ? 'Cancelled before this was measured.' : outcome === 'failed' ? 'The run stopped with an error before this was measured.' : 'Not measured by this run.';
  for (const id of ['hl-memory', 'hl-error', 'hl-speed'] as const) {
    const stat = byId(id);
    if (stat.dataset.state === 'pending') {
      if (stat.querySelector('strong')) {
        stat.dataset.state = 'stopped';
        stat.querySelector('.stat-note')!.textContent = stat.querySelector('.stat-note')!.textContent!.replace(' More methods are running…', ` ${why}`);
      } else setStat(id, 'stopped', '—', why);
    }
  }
}
