/**
 * GPU time of one simulator step: each step is a few compute passes that run ONCE (they append tokens,
 * so they cannot be repeated the way src/bench/gpu-timer.ts repeats work to calibrate a sample).
 *
 * - `timestamp` (device has `timestamp-query`): every pass carries `timestampWrites` at its beginning
 *   and end; all passes go into one submit, the query pairs are resolved and read back as u64 ns.
 *   Browsers may quantize timestamps (often to 100 µs): short passes can then read 0. After
 *   MAX_BAD_STEPS steps in a row with a non-empty pass that reads ≤ 0 the timer switches to wall-clock.
 * - `wall-clock`: each pass is its own submit, timed with `performance.now()` from before the submit
 *   to `queue.onSubmittedWorkDone()`; includes submit and callback latency (tens of µs to ms).
 */
import { withGpuErrors, type GpuContext } from '../gpu/gpu-context';

export type StepTimingMethod = 'timestamp' | 'wall-clock';

/** One pass of a step; `encode` null means nothing to run (time 0). */
export type PassEncoder = ((pass: GPUComputePassEncoder) => void) | null;

/** Timed passes per step at most (2 queries each). */
export const MAX_PASSES_PER_STEP = 4;
/** Consecutive steps with unusable timestamps before falling back to wall-clock. */
const MAX_BAD_STEPS = 8;

export class StepTimer {
  private querySet: GPUQuerySet | null = null;
  private resolved: GPUBuffer | null = null;
  private readback: GPUBuffer | null = null;
  private badSteps = 0;
  /** Set when timestamps were available (or asked for) but wall-clock is used. */
  fallbackReason: string | undefined;
  method: StepTimingMethod;

  constructor(
    private readonly ctx: GpuContext,
    wanted: StepTimingMethod | 'auto' = 'auto',
  ) {
    const has = ctx.features['timestamp-query'];
    this.method = wanted === 'wall-clock' || !has ? 'wall-clock' : 'timestamp';
    if (wanted === 'timestamp' && !has) this.fallbackReason = 'the device has no timestamp-query feature';
    if (this.method === 'timestamp') {
      const device = ctx.device;
      const count = 2 * MAX_PASSES_PER_STEP;
      this.querySet = device.createQuerySet({ type: 'timestamp', count });
      // [2 * MAX_PASSES_PER_STEP] u64 ns: begin, end of each pass
      this.resolved = device.createBuffer({ size: count * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
      this.readback = device.createBuffer({ size: count * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    }
  }

  /**
   * Runs the passes in order (later passes see earlier passes' writes) and returns [passes.length]
   * ns of GPU time each (0 for a null pass). Resolves once the work is done.
   */
  /**
   * Runs `passes` once, untimed, and waits for them: a warm-up, so that a pipeline's first use (where
   * a driver may still compile it: seconds on lavapipe) never falls inside a timed step.
   */
  async warmUp(label: string, passes: readonly PassEncoder[]): Promise<void> {
    const device = this.ctx.device;
    await withGpuErrors(device, `${label} (warm-up)`, () => {
      const encoder = device.createCommandEncoder();
      for (const encode of passes) {
        if (!encode) continue;
        const pass = encoder.beginComputePass();
        encode(pass);
        pass.end();
      }
      device.queue.submit([encoder.finish()]);
      return device.queue.onSubmittedWorkDone();
    });
  }

  async run(label: string, passes: readonly PassEncoder[]): Promise<number[]> {
    if (passes.length > MAX_PASSES_PER_STEP) throw new RangeError(`at most ${MAX_PASSES_PER_STEP} passes per step, got ${passes.length}`);
    return withGpuErrors(this.ctx.device, label, () => (this.method === 'timestamp' ? this.runTimestamps(passes) : this.runWallClock(passes)));
  }

  private async runTimestamps(passes: readonly PassEncoder[]): Promise<number[]> {
    const device = this.ctx.device;
    const querySet = this.querySet as GPUQuerySet;
    const readback = this.readback as GPUBuffer;
    const encoder = device.createCommandEncoder();
    const active: number[] = [];
    passes.forEach((encode, i) => {
      if (!encode) return;
      const q = 2 * active.length;
      const pass = encoder.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: q, endOfPassWriteIndex: q + 1 } });
      encode(pass);
      pass.end();
      active.push(i);
    });
    const times = passes.map(() => 0);
    if (active.length === 0) return times;
    const bytes = 16 * active.length;
    encoder.resolveQuerySet(querySet, 0, 2 * active.length, this.resolved as GPUBuffer, 0);
    encoder.copyBufferToBuffer(this.resolved as GPUBuffer, 0, readback, 0, bytes);
    device.queue.submit([encoder.finish()]);
    await readback.mapAsync(GPUMapMode.READ, 0, bytes);
    const stamps = new BigUint64Array(readback.getMappedRange(0, bytes).slice(0));
    readback.unmap();
    let bad = false;
    active.forEach((passIndex, j) => {
      const ns = Number(stamps[2 * j + 1] - stamps[2 * j]);
      if (!(ns > 0)) bad = true;
      times[passIndex] = Math.max(0, ns);
    });
    this.badSteps = bad ? this.badSteps + 1 : 0;
    if (this.badSteps >= MAX_BAD_STEPS) {
      this.method = 'wall-clock';
      this.fallbackReason = `timestamps read ≤ 0 for ${MAX_BAD_STEPS} steps in a row (quantized by the browser?)`;
    }
    return times;
  }

  private async runWallClock(passes: readonly PassEncoder[]): Promise<number[]> {
    const device = this.ctx.device;
    const times: number[] = [];
    for (const encode of passes) {
      if (!encode) {
        times.push(0);
        continue;
      }
      const encoder = device.createCommandEncoder();
      const pass = encoder.beginComputePass();
      encode(pass);
      pass.end();
      const commands = encoder.finish();
      const startMs = performance.now();
      device.queue.submit([commands]);
      await device.queue.onSubmittedWorkDone();
      times.push((performance.now() - startMs) * 1e6);
    }
    return times;
  }

  destroy(): void {
    this.querySet?.destroy();
    this.resolved?.destroy();
    this.readback?.destroy();
    this.querySet = this.resolved = this.readback = null;
  }
}
