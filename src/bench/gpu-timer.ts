/**
 * GPU timing for the benchmarks (docs/design.md, "Measuring"). Runs in Node (Dawn) and in the browser.
 *
 * One *sample* is one compute pass holding `dispatchesPerSample` repetitions of the work (one call of
 * `encode` = one repetition, which may itself record several dispatches, e.g. decode + split-K
 * merge). Every figure returned is per repetition: the sample's time divided by the repetitions.
 *
 * - `timestamp` (device has `timestamp-query`): each timed pass carries `timestampWrites` at its
 *   beginning and end; up to MAX_SAMPLES_PER_SUBMIT passes go into one submit, their query pairs are
 *   resolved into a buffer and read back as u64 nanoseconds. Only differences inside one pass are
 *   used, so the clocks of different passes never need to agree.
 * - `wall-clock` (no `timestamp-query`, or timestamps that come back unusable): one pass per submit,
 *   timed with `performance.now()` from before the submit to `queue.onSubmittedWorkDone()`; the submit
 *   and completion-callback latency is spread over the repetitions, which is why small work gets many.
 *
 * With `dispatchesPerSample: 'auto'` (the default) the repetitions are doubled, then scaled, until one
 * sample lasts `targetSampleMs`, so coarse clocks (browsers quantize timestamps, often to 100 µs) and
 * submit latency stay a small fraction of each sample. Then warm-up samples run until `warmupMs` has
 * passed, then samples are collected for `measureMs` and at least `minSamples`. A set of samples whose
 * two halves' medians differ by more than STEADY_TOLERANCE (WALL_CLOCK_STEADY_TOLERANCE with the wall
 * clock) was not taken in one state of the GPU (e.g. its clocks still ramping up after idling:
 * docs/benchmarks.md, 2026-12-04); it is discarded and measured again, at most MAX_UNSTEADY_REPEATS
 * times, and the timing lists the discarded sets' medians.
 *
 * Repeating work back to back inside one pass keeps its inputs hot in the GPU's caches when they are
 * small: an attention over a few MiB of KV is then timed at L2 rather than DRAM speed.
 *
 * @example
 *   const t = await measureGpu(ctx, (pass) => prepared.encode(pass), { measureMs: 300 });
 *   console.log(`${(t.medianNs / 1e3).toFixed(2)} µs per call (${t.method})`);
 */
import { withGpuErrors, type GpuContext } from '../gpu/gpu-context';

export type TimingMethod = 'timestamp' | 'wall-clock';

export interface MeasureOptions {
  /** Warm-up time before samples count, calibration included (default 100 ms). */
  warmupMs?: number;
  /** Time spent collecting samples (default 500 ms). */
  measureMs?: number;
  /** Samples collected even when `measureMs` has passed (default 5). */
  minSamples?: number;
  /** Stop after this many samples (default 2000). */
  maxSamples?: number;
  /** Repetitions of `encode` per timed pass, or 'auto' (default) to reach `targetSampleMs`. */
  dispatchesPerSample?: number | 'auto';
  /** 'auto': aim each sample at this many ms (default 1 for timestamps, 4 for wall-clock). */
  targetSampleMs?: number;
  /** 'auto': never more repetitions per pass than this (default 1024). */
  maxDispatchesPerSample?: number;
  /** 'auto' (default): timestamps when the device has `timestamp-query`, else wall-clock. */
  method?: TimingMethod | 'auto';
  /** Names the work in error messages. */
  label?: string;
}

export interface GpuTiming {
  /** [samples] ns per repetition of the work, in the order measured. */
  samplesNs: number[];
  medianNs: number;
  minNs: number;
  method: TimingMethod;
  /** Repetitions of the work inside each timed pass. */
  dispatchesPerSample: number;
  /** Medians (ns per repetition) of the sample sets discarded as unsteady, in order (empty: none). */
  unsteadyMediansNs: number[];
  /** Why timestamps were asked for (or available) but wall-clock was used. */
  fallbackReason?: string;
}

export const DEFAULT_MEASURE_OPTIONS = {
  warmupMs: 100,
  measureMs: 500,
  minSamples: 5,
  maxSamples: 2000,
  maxDispatchesPerSample: 1024,
} as const;

/** Timed passes per submit with timestamps (2 queries each). */
const MAX_SAMPLES_PER_SUBMIT = 64;
/** Aim each timestamp submit at about this long, so the loop still checks the clock often. */
const TARGET_SUBMIT_NS = 20e6;
/** Give up when this many samples in a row come back unusable. */
const MAX_BAD_SAMPLES = 16;
/**
 * A sample set is steady when the medians of its first and second halves differ by at most this
 * fraction of the smaller. On the H200 a batch-1 step measured right after the host compiled its
 * pipelines once ran 85, 47, 25.5 and finally 19.1 µs within one set (docs/benchmarks.md, 2026-12-04).
 */
export const STEADY_TOLERANCE = 0.03;
/** The same for wall-clock samples, whose submit and callback latency jitters more. */
export const WALL_CLOCK_STEADY_TOLERANCE = 0.1;
/** Unsteady sample sets discarded before the last one is kept as it is. */
export const MAX_UNSTEADY_REPEATS = 3;

/** Median of `values` (mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * Whether the samples (in the order measured) come from one steady state: the medians of the first
 * and second halves within `tolerance` of the smaller one. Fewer than 8 samples count as steady.
 */
export function isSteady(samplesNs: readonly number[], tolerance = STEADY_TOLERANCE): boolean {
  if (samplesNs.length < 8) return true;
  const half = samplesNs.length >> 1;
  const first = median(samplesNs.slice(0, half));
  const second = median(samplesNs.slice(samplesNs.length - half));
  return Math.abs(first - second) <= tolerance * Math.min(first, second);
}

/** Times `reps` repetitions of the work in each of `count` samples; NaN marks an unusable sample. */
interface SampleRunner {
  readonly method: TimingMethod;
  /** [count] ns of each whole sample (not yet divided by reps). */
  run(reps: number, count: number): Promise<number[]>;
  destroy(): void;
}

function encodeRepetitions(pass: GPUComputePassEncoder, encode: (pass: GPUComputePassEncoder) => void, reps: number): void {
  for (let r = 0; r < reps; r++) encode(pass);
  pass.end();
}

function timestampRunner(device: GPUDevice, encode: (pass: GPUComputePassEncoder) => void): SampleRunner {
  const queryCount = 2 * MAX_SAMPLES_PER_SUBMIT;
  const querySet = device.createQuerySet({ type: 'timestamp', count: queryCount });
  // [2 * MAX_SAMPLES_PER_SUBMIT] u64 ns: begin, end of each timed pass
  const resolved = device.createBuffer({ size: queryCount * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
  const readback = device.createBuffer({ size: queryCount * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
  return {
    method: 'timestamp',
    async run(reps, count) {
      count = Math.max(1, Math.min(count, MAX_SAMPLES_PER_SUBMIT));
      const encoder = device.createCommandEncoder();
      for (let i = 0; i < count; i++) {
        const pass = encoder.beginComputePass({
          timestampWrites: { querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 },
        });
        encodeRepetitions(pass, encode, reps);
      }
      encoder.resolveQuerySet(querySet, 0, 2 * count, resolved, 0);
      encoder.copyBufferToBuffer(resolved, 0, readback, 0, 16 * count);
      device.queue.submit([encoder.finish()]);
      await readback.mapAsync(GPUMapMode.READ, 0, 16 * count);
      const stamps = new BigUint64Array(readback.getMappedRange(0, 16 * count).slice(0));
      readback.unmap();
      const out: number[] = [];
      for (let i = 0; i < count; i++) {
        const ns = Number(stamps[2 * i + 1] - stamps[2 * i]);
        out.push(ns > 0 ? ns : NaN);
      }
      return out;
    },
    destroy() {
      querySet.destroy();
      resolved.destroy();
      readback.destroy();
    },
  };
}

function wallClockRunner(device: GPUDevice, encode: (pass: GPUComputePassEncoder) => void): SampleRunner {
  return {
    method: 'wall-clock',
    async run(reps, count) {
      const out: number[] = [];
      for (let i = 0; i < count; i++) {
        const encoder = device.createCommandEncoder();
        encodeRepetitions(encoder.beginComputePass(), encode, reps);
        const commands = encoder.finish();
        const startMs = performance.now();
        device.queue.submit([commands]);
        await device.queue.onSubmittedWorkDone();
        const ns = (performance.now() - startMs) * 1e6;
        out.push(ns > 0 ? ns : NaN);
      }
      return out;
    },
    destroy() {},
  };
}

function resolveOptions(options: MeasureOptions) {
  const o = { ...DEFAULT_MEASURE_OPTIONS, ...stripUndefined(options) };
  for (const [name, value] of [['warmupMs', o.warmupMs], ['measureMs', o.measureMs]] as const) {
    if (!(value >= 0)) throw new RangeError(`${name} must be ≥ 0, got ${value}`);
  }
  for (const [name, value] of [['minSamples', o.minSamples], ['maxSamples', o.maxSamples], ['maxDispatchesPerSample', o.maxDispatchesPerSample]] as const) {
    if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${value}`);
  }
  const reps = options.dispatchesPerSample ?? 'auto';
  if (reps !== 'auto' && (!Number.isInteger(reps) || reps < 1)) throw new RangeError(`dispatchesPerSample must be a positive integer or 'auto', got ${reps}`);
  return { ...o, minSamples: Math.min(o.minSamples, o.maxSamples), reps };
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Samples until one is usable; NaN after MAX_BAD_SAMPLES unusable ones. */
async function firstUsableSample(runner: SampleRunner, reps: number): Promise<number> {
  for (let tries = 0; tries < MAX_BAD_SAMPLES; tries++) {
    const [ns] = await runner.run(reps, 1);
    if (Number.isFinite(ns)) return ns;
  }
  return NaN;
}

/**
 * Doubles, then scales, the repetitions until one sample lasts `targetNs` (or the cap is reached).
 * Returns the repetitions and the last sample's ns, or null when no sample was usable.
 */
async function calibrateReps(runner: SampleRunner, targetNs: number, maxReps: number): Promise<{ reps: number; sampleNs: number } | null> {
  let reps = 1;
  for (;;) {
    const ns = await firstUsableSample(runner, reps);
    if (!Number.isFinite(ns)) return null;
    if (ns >= targetNs || reps >= maxReps) return { reps, sampleNs: ns };
    reps = Math.min(maxReps, Math.max(2 * reps, Math.ceil((reps * targetNs) / ns)));
  }
}

/**
 * Times the GPU work that `encode` records (see the module comment).
 * @param encode records one repetition of the work into a compute pass; called many times
 * @returns per-repetition times in ns
 */
export async function measureGpu(ctx: GpuContext, encode: (pass: GPUComputePassEncoder) => void, options: MeasureOptions = {}): Promise<GpuTiming> {
  const o = resolveOptions(options);
  const hasTimestamps = ctx.features['timestamp-query'];
  const wanted = o.method ?? 'auto';
  let fallbackReason: string | undefined;
  let method: TimingMethod = wanted === 'auto' ? (hasTimestamps ? 'timestamp' : 'wall-clock') : wanted;
  if (method === 'timestamp' && !hasTimestamps) {
    method = 'wall-clock';
    fallbackReason = 'the device has no timestamp-query feature';
  }
  return withGpuErrors(ctx.device, `timing ${o.label ?? 'GPU work'}`, async () => {
    let runner = method === 'timestamp' ? timestampRunner(ctx.device, encode) : wallClockRunner(ctx.device, encode);
    try {
      const startMs = performance.now();
      const targetNs = 1e6 * (o.targetSampleMs ?? (runner.method === 'timestamp' ? 1 : 4));
      const calibrate = async () => {
        if (o.reps === 'auto') return calibrateReps(runner, targetNs, o.maxDispatchesPerSample);
        const ns = await firstUsableSample(runner, o.reps);
        return Number.isFinite(ns) ? { reps: o.reps, sampleNs: ns } : null;
      };
      let calibrated = await calibrate();
      if (!calibrated && runner.method === 'timestamp') {
        runner.destroy();
        runner = wallClockRunner(ctx.device, encode);
        fallbackReason = `timestamps came back unusable (end ≤ begin) ${MAX_BAD_SAMPLES} times in a row`;
        calibrated = await calibrate();
      }
      if (!calibrated) throw new Error(`timing ${o.label ?? 'GPU work'}: no usable sample (the clock did not advance)`);
      const reps = calibrated.reps;
      // ns of one whole sample (updated as samples come in), to size timestamp batches.
      let sampleNs = calibrated.sampleNs;
      // Timestamp samples per submit: about TARGET_SUBMIT_NS of work, no more than the time left needs.
      const batchSize = (maxCount: number, neededNs: number) =>
        runner.method === 'timestamp'
          ? Math.max(1, Math.min(MAX_SAMPLES_PER_SUBMIT, maxCount, Math.floor(TARGET_SUBMIT_NS / sampleNs), Math.ceil(neededNs / sampleNs)))
          : 1;
      const collect = async (count: number): Promise<number[]> => {
        const got = await runner.run(reps, count);
        const usable = got.filter(Number.isFinite);
        if (usable.length) sampleNs = median(usable);
        return usable;
      };

      for (let leftMs = o.warmupMs - (performance.now() - startMs); leftMs > 0; leftMs = o.warmupMs - (performance.now() - startMs)) {
        await collect(batchSize(MAX_SAMPLES_PER_SUBMIT, leftMs * 1e6));
      }

      const measureSet = async (): Promise<number[]> => {
        const samplesNs: number[] = [];
        const measureStartMs = performance.now();
        let badInARow = 0;
        while (samplesNs.length < o.maxSamples && (samplesNs.length < o.minSamples || performance.now() - measureStartMs < o.measureMs)) {
          const leftNs = Math.max((o.measureMs - (performance.now() - measureStartMs)) * 1e6, (o.minSamples - samplesNs.length) * sampleNs);
          const usable = await collect(batchSize(o.maxSamples - samplesNs.length, leftNs));
          badInARow = usable.length ? 0 : badInARow + 1;
          if (badInARow >= MAX_BAD_SAMPLES) throw new Error(`timing ${o.label ?? 'GPU work'}: ${MAX_BAD_SAMPLES} unusable samples in a row`);
          for (const ns of usable) samplesNs.push(ns / reps);
        }
        return samplesNs;
      };
      let samplesNs = await measureSet();
      const unsteadyMediansNs: number[] = [];
      const tolerance = runner.method === 'timestamp' ? STEADY_TOLERANCE : WALL_CLOCK_STEADY_TOLERANCE;
      while (!isSteady(samplesNs, tolerance) && unsteadyMediansNs.length < MAX_UNSTEADY_REPEATS) {
        unsteadyMediansNs.push(median(samplesNs));
        samplesNs = await measureSet();
      }
      const timing: GpuTiming = {
        samplesNs,
        medianNs: median(samplesNs),
        minNs: Math.min(...samplesNs),
        method: runner.method,
        dispatchesPerSample: reps,
        unsteadyMediansNs,
      };
      if (fallbackReason) timing.fallbackReason = fallbackReason;
      return timing;
    } finally {
      runner.destroy();
    }
  });
}
