/**
 * `simulate`: the serving simulator (src/serving) from the command line: continuous batching of a
 * request stream over one paged KV cache per method, sized by one memory budget, swept over
 * concurrency caps; prints the tables of src/serving/simulate-report.ts, optionally writes the JSON.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_HADAMARD_BLOCK, DEFAULT_PAGE_SIZE, isKvMethod, KV_METHODS, type KvMethod } from '../layout';
import {
  generateRequests, isRegimeName, parseLengthDistribution, parseTrace, REGIMES, RequestSpecError, scaledRegime, TraceParseError,
  type ArrivalProcess, type RegimeName, type ServingRequest,
} from '../serving/requests';
import { SchedulerError } from '../serving/scheduler';
import { formatSimulateReport, simulateReportJson } from '../serving/simulate-report';
import { runSimulateSweep } from '../serving/simulate-sweep';
import { DEFAULT_PREFILL_CHUNK_TOKENS, LLAMA_3_1_8B, type ModelShape } from '../serving/simulator';
import type { CliCommand } from './commands';

const DEFAULTS = {
  regime: 'short' as RegimeName,
  budgetMib: 256,
  caps: [1, 2, 4, 8, 16, 32, 64, 128],
  steps: 256,
  chunk: DEFAULT_PREFILL_CHUNK_TOKENS,
  pageSize: DEFAULT_PAGE_SIZE,
  hadamardBlock: DEFAULT_HADAMARD_BLOCK,
  seed: 1,
};

export const SIMULATE_USAGE = `Usage: simulate [--regime short|long] [--budget-mib N] [--methods fp16,int4,int4-hadamard]
                [--max-concurrency 1,2,4,...] [--steps N] [--json out.json] [more flags below]

Continuous batching over the paged KV cache, through the real kernels: for each method ONE paged
cache of one attention layer, as many pages as --budget-mib buys; for each concurrency cap a run that
admits waiting requests while pages suffice, prefills prompts in chunks through the fused write
kernel, decodes every running sequence each step (append one token + paged attention), preempts the
youngest request when decoding runs out of pages (recomputed later) and frees finished requests.
Reports decode output tokens/s against the cap for each method, how many requests fit the budget,
and page utilisation over time.

What is scaled: a step is ONE layer's KV append + decode attention of the model (default
${LLAMA_3_1_8B.name}: Hq ${LLAMA_3_1_8B.numQueryHeads}, Hkv ${LLAMA_3_1_8B.numKvHeads}, D ${LLAMA_3_1_8B.headDim}, ${LLAMA_3_1_8B.numLayers} layers); the budget is that layer's, the model
needs ×layers the memory and gets ÷layers the tokens/s. K/V/q values are random.

Workload (one of):
  --regime short|long        the paper's regimes: short = ${REGIMES.short.description}, long = ${REGIMES.long.description}
                             (default ${DEFAULTS.regime}); fixed lengths
  --prompt-len DIST --output-len DIST
                             N | fixed:N | uniform:MIN-MAX | lognormal:MEDIAN,SIGMA[,MIN-MAX]
                             (either one alone replaces that length of the regime)
  --trace FILE               JSON lines {"prompt_len":N,"output_len":N,"arrival_step":N} or CSV
                             prompt_len,output_len[,arrival_step] (header optional)
  --scale X                  multiply prompt and output lengths by X (e.g. 0.0625 to fit a small
                             device; default 1; applies to regimes and distributions, not traces)
  --requests N               requests in a generated stream (default 2 × the largest cap)
  --arrival-rate R           Poisson arrivals, R requests per step (default: all at step 0)
  --seed N                   seed of lengths, arrivals and K/V/q values (default ${DEFAULTS.seed})

Memory and scheduling:
  --budget-mib N             KV-cache MiB of the simulated layer, K+V+scales (default ${DEFAULTS.budgetMib})
  --methods LIST             comma list of ${KV_METHODS.join(', ')} (default all)
  --max-concurrency LIST     comma list of concurrency caps (default ${DEFAULTS.caps.join(',')})
  --steps N                  steps per run; 0 = until every request finished (default ${DEFAULTS.steps})
  --chunk N                  prefill chunk: prompt tokens per sequence per step (default ${DEFAULTS.chunk})
  --prefill-tokens-per-step N  prompt tokens per step over all sequences (default: no limit)
  --reserve-pages N          free pages a new request must leave for the running ones (default 0)
  --page-size N              tokens per page (default ${DEFAULTS.pageSize})
  --hadamard-block B         Hadamard block of int4-hadamard (default ${DEFAULTS.hadamardBlock})

Model (one layer):
  --head-dim N --query-heads N --kv-heads N --layers N   (default ${LLAMA_3_1_8B.name})

Output:
  --json FILE                write the result, every step record included
  --timing auto|timestamp|wall-clock   GPU timing (default auto: timestamp-query when present)
  --quiet                    no progress lines on stderr

Exit codes: 0 done; 2 bad flags, trace or a budget that holds no page; 1 GPU failure.`;

/** A problem with the command line, reported with exit code 2. */
class SimulateUsageError extends Error {}

function positiveInt(flag: string, text: string | undefined, fallback: number, min = 1): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || !Number.isSafeInteger(value) || value < min) throw new SimulateUsageError(`${flag} ${JSON.stringify(text)}: expected an integer ≥ ${min}`);
  return value;
}

function positiveNumber(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value <= 0) throw new SimulateUsageError(`${flag} ${JSON.stringify(text)}: expected a positive number`);
  return value;
}

function intList(flag: string, text: string | undefined, fallback: number[]): number[] {
  if (text === undefined) return fallback;
  const values = text.split(',').map((t) => positiveInt(flag, t, 0));
  return [...new Set(values)].sort((a, b) => a - b);
}

function methodList(text: string | undefined): KvMethod[] {
  if (text === undefined) return [...KV_METHODS];
  const names = text.split(',').map((t) => t.trim());
  for (const name of names) if (!isKvMethod(name)) throw new SimulateUsageError(`--methods: unknown method '${name}'; expected a comma list of ${KV_METHODS.join(', ')}`);
  return [...new Set(names)] as KvMethod[];
}

export const simulateCommand: CliCommand = {
  summary: 'serving simulator: continuous batching over the paged cache; tokens/s vs concurrency per method',
  usage: SIMULATE_USAGE,
  async run(args, env) {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        regime: { type: 'string' },
        'prompt-len': { type: 'string' },
        'output-len': { type: 'string' },
        trace: { type: 'string' },
        scale: { type: 'string' },
        requests: { type: 'string' },
        'arrival-rate': { type: 'string' },
        seed: { type: 'string' },
        'budget-mib': { type: 'string' },
        methods: { type: 'string' },
        'max-concurrency': { type: 'string' },
        steps: { type: 'string' },
        chunk: { type: 'string' },
        'prefill-tokens-per-step': { type: 'string' },
        'reserve-pages': { type: 'string' },
        'page-size': { type: 'string' },
        'hadamard-block': { type: 'string' },
        'head-dim': { type: 'string' },
        'query-heads': { type: 'string' },
        'kv-heads': { type: 'string' },
        layers: { type: 'string' },
        json: { type: 'string' },
        timing: { type: 'string' },
        quiet: { type: 'boolean' },
      },
    });
    try {
      const caps = intList('--max-concurrency', values['max-concurrency'], DEFAULTS.caps);
      const methods = methodList(values.methods);
      const seed = positiveInt('--seed', values.seed, DEFAULTS.seed, 0);
      const scale = positiveNumber('--scale', values.scale, 1);
      const regimeName = values.regime ?? DEFAULTS.regime;
      if (!isRegimeName(regimeName)) throw new SimulateUsageError(`--regime ${JSON.stringify(regimeName)}: expected ${Object.keys(REGIMES).join(' or ')}`);
      if (values.trace !== undefined && (values.regime !== undefined || values['prompt-len'] !== undefined || values['output-len'] !== undefined || values.requests !== undefined || values['arrival-rate'] !== undefined)) {
        throw new SimulateUsageError('--trace gives the whole stream: leave out --regime, --prompt-len, --output-len, --requests and --arrival-rate');
      }
      const timing = values.timing ?? 'auto';
      if (timing !== 'auto' && timing !== 'timestamp' && timing !== 'wall-clock') throw new SimulateUsageError(`--timing ${JSON.stringify(timing)}: expected auto, timestamp or wall-clock`);
      const model: ModelShape = {
        name: LLAMA_3_1_8B.name,
        headDim: positiveInt('--head-dim', values['head-dim'], LLAMA_3_1_8B.headDim),
        numQueryHeads: positiveInt('--query-heads', values['query-heads'], LLAMA_3_1_8B.numQueryHeads),
        numKvHeads: positiveInt('--kv-heads', values['kv-heads'], LLAMA_3_1_8B.numKvHeads),
        numLayers: positiveInt('--layers', values.layers, LLAMA_3_1_8B.numLayers),
      };
      if (model.headDim !== LLAMA_3_1_8B.headDim || model.numQueryHeads !== LLAMA_3_1_8B.numQueryHeads || model.numKvHeads !== LLAMA_3_1_8B.numKvHeads || model.numLayers !== LLAMA_3_1_8B.numLayers) {
        model.name = `a model with Hq ${model.numQueryHeads}, Hkv ${model.numKvHeads}, D ${model.headDim}, ${model.numLayers} layers`;
      }

      let requests: ServingRequest[];
      let workload: string;
      if (values.trace !== undefined) {
        let text: string;
        try {
          text = readFileSync(values.trace, 'utf8');
        } catch (err) {
          throw new SimulateUsageError(`cannot read --trace ${values.trace}: ${(err as Error).message}`);
        }
        requests = parseTrace(text, values.trace);
        workload = `trace ${values.trace}`;
      } else {
        const count = positiveInt('--requests', values.requests, 2 * Math.max(...caps));
        const regime = scaledRegime(regimeName, scale);
        const scaleDist = (text: string, what: string) => {
          const d = parseLengthDistribution(text, what);
          if (scale === 1) return d;
          if (d.kind === 'fixed') return { ...d, value: d.value * scale };
          if (d.kind === 'uniform') return { ...d, min: d.min * scale, max: d.max * scale };
          return { ...d, median: d.median * scale, min: d.min === undefined ? undefined : d.min * scale, max: d.max === undefined ? undefined : d.max * scale };
        };
        const prompt = values['prompt-len'] !== undefined ? scaleDist(values['prompt-len'], '--prompt-len') : { kind: 'fixed' as const, value: regime.promptLen };
        const output = values['output-len'] !== undefined ? scaleDist(values['output-len'], '--output-len') : { kind: 'fixed' as const, value: regime.outputLen };
        const arrival: ArrivalProcess = values['arrival-rate'] !== undefined ? { kind: 'poisson', perStep: positiveNumber('--arrival-rate', values['arrival-rate'], 1) } : { kind: 'all-at-once' };
        requests = generateRequests({ count, prompt, output, arrival, seed });
        const r = REGIMES[regimeName];
        const lengths = values['prompt-len'] !== undefined || values['output-len'] !== undefined
          ? `prompt ${values['prompt-len'] ?? regime.promptLen}, output ${values['output-len'] ?? regime.outputLen}${scale !== 1 ? ` (×${scale})` : ''}`
          : `regime ${r.name} (${r.description})${scale !== 1 ? ` scaled ×${scale} → ${regime.promptLen} in / ${regime.outputLen} out` : ''}`;
        workload = lengths + (arrival.kind === 'poisson' ? `, Poisson arrivals ${arrival.perStep}/step` : '');
      }

      const pageSize = positiveInt('--page-size', values['page-size'], DEFAULTS.pageSize);
      const hadamardBlock = positiveInt('--hadamard-block', values['hadamard-block'], Math.min(DEFAULTS.hadamardBlock, model.headDim));
      const budgetBytes = Math.floor(positiveNumber('--budget-mib', values['budget-mib'], DEFAULTS.budgetMib) * 2 ** 20);
      const prefillTokensPerStep = values['prefill-tokens-per-step'] === undefined ? undefined : positiveInt('--prefill-tokens-per-step', values['prefill-tokens-per-step'], 0);
      const ctx = await env.gpu();
      const result = await runSimulateSweep(
        ctx,
        {
          model,
          methods,
          budgetBytes,
          caps,
          maxSteps: positiveInt('--steps', values.steps, DEFAULTS.steps, 0),
          requests,
          workload,
          pageSize,
          hadamardBlock,
          prefillChunkTokens: positiveInt('--chunk', values.chunk, DEFAULTS.chunk),
          ...(prefillTokensPerStep !== undefined ? { prefillTokensPerStep } : {}),
          reservePages: positiveInt('--reserve-pages', values['reserve-pages'], 0, 0),
          dataSeed: seed,
          timing,
        },
        values.quiet ? undefined : (line) => process.stderr.write(`simulate: ${line}\n`),
      );
      process.stdout.write(`${formatSimulateReport(result)}\n`);
      if (values.json !== undefined) {
        const temporary = `${values.json}.tmp-${process.pid}`;
        writeFileSync(temporary, simulateReportJson(result));
        renameSync(temporary, values.json);
        process.stderr.write(`simulate: wrote ${values.json}\n`);
      }
      return 0;
    } catch (err) {
      if (err instanceof SimulateUsageError || err instanceof RequestSpecError || err instanceof TraceParseError || err instanceof SchedulerError) {
        process.stderr.write(`simulate: ${err.message}\n${SIMULATE_USAGE.split('\n')[0]}\n(simulate --help describes its flags)\n`);
        return 2;
      }
      throw err;
    }
  },
};
