/**
 * `perplexity`: teacher-forced perplexity of the held-out text through the WGSL forward pass of the
 * model trained here (src/model/), every token through the paged KV cache's append and attention,
 * once per KV method, beside PyTorch's fp32 perplexity from the run's reference.json. Registered in
 * src/cli/commands.ts as `perplexity: perplexityCommand`.
 *
 *   perplexity --quick --methods paper --json ppl.json
 */
import { parseArgs } from 'node:util';
import { bitsPerElement } from '../accuracy/methods';
import { describeGpu } from '../gpu/gpu-context';
import { configJson } from '../model/model-config';
import { readHeldoutStream } from '../model/model-files';
import { GpuModel } from '../model/gpu-model';
import { DEFAULT_PERPLEXITY_BATCH, evalWindows, runPerplexity, type PerplexityResult, type PerplexityWindow } from '../model/model-perplexity';
import type { CliCommand } from './commands';
import { checkMethodsFit, loadModelRun, METHODS_USAGE, MODEL_FLAG_OPTIONS, MODEL_FLAGS_USAGE, PAGE_SIZE_USAGE, pageSizeFlag, parseMethods, percent, positiveIntFlag, formatTable } from './model-inputs';
import { checkOutputFile, CliInputError, writeFileAtomic } from './output-file';

const DEFAULT_METHODS = 'fp16,int4,int4-hadamard';

export const PERPLEXITY_USAGE = `Usage: perplexity [--quick] [--methods LIST] [--json OUT.json] [--batch N] [--page-size P]
                  [--model DIR] [--run DIR]

Teacher-forced perplexity of the held-out text (the token stream and windows model/train.py scores)
through the WGSL forward pass of the trained model, every token through the paged KV cache (fused
append, paged decode attention) of each KV method; PyTorch's fp32 perplexity from reference.json
beside it.

  --quick           the 256-token slice of train.py's quick perplexity (inputs stream[0:256], one
                    sequence); default: the whole held-out stream in windows of the context length
${METHODS_USAGE(DEFAULT_METHODS)}
  --json OUT.json   also write {"tokens", "referencePerplexity", "methods": {"<id>": {"perplexity", …}}, …}
  --batch N         windows decoded together, one sequence each (default ${DEFAULT_PERPLEXITY_BATCH})
${PAGE_SIZE_USAGE}
${MODEL_FLAGS_USAGE}
Prints one row per method: perplexity, change vs FP16 KV and vs PyTorch, loss, tokens/s.
Exit codes: 0 done; 2 bad flags or model files; 1 GPU failure.`;

export const perplexityCommand: CliCommand = {
  summary: 'held-out perplexity of the model trained here through the paged KV cache, per KV method',
  usage: PERPLEXITY_USAGE,
  async run(args, env) {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        quick: { type: 'boolean' },
        methods: { type: 'string', multiple: true },
        json: { type: 'string' },
        batch: { type: 'string' },
        'page-size': { type: 'string' },
        ...MODEL_FLAG_OPTIONS,
      },
    });
    const batch = positiveIntFlag('batch', values.batch, DEFAULT_PERPLEXITY_BATCH, 65535);
    const pageSize = pageSizeFlag(values['page-size']);
    if (values.json !== undefined) checkOutputFile('--json', values.json);
    const specs = parseMethods(values.methods, DEFAULT_METHODS);
    const run = loadModelRun(values.model, values.run);
    checkMethodsFit(specs, run.config.headDim);
    const stream = readHeldoutStream(run.tokenizer, values.model);
    const ref = run.reference;
    const quick = Boolean(values.quick);
    if (quick && ref.quick.targets !== run.quickTokens) throw new CliInputError(`reference.json's quick slice has ${ref.quick.targets} targets; model/config.json says ${run.quickTokens}`);
    if (stream.length !== ref.heldout.tokens) {
      throw new CliInputError(`the held-out stream has ${stream.length} tokens here but ${ref.heldout.tokens} in reference.json: the corpus or tokenizer differs from the run's`);
    }
    const windows: PerplexityWindow[] = quick ? [{ start: 0, length: run.quickTokens }] : evalWindows(stream.length, ref.heldout.windowTokens);
    const targets = windows.reduce((n, w) => n + w.length, 0);
    const referencePerplexity = quick ? ref.quick.perplexity : ref.heldout.perplexity;

    const ctx = await env.gpu();
    const model = await GpuModel.create(ctx, run.weights);
    process.stderr.write(`perplexity: ${quick ? 'quick slice' : 'held-out'}: ${targets} targets in ${windows.length} window${windows.length === 1 ? '' : 's'}; ${specs.length} methods; PyTorch fp32 perplexity ${referencePerplexity.toFixed(4)}\n`);
    const results: PerplexityResult[] = [];
    try {
      for (const [i, spec] of specs.entries()) {
        const r = await runPerplexity(model, stream, windows, spec, {
          batch,
          pageSize,
          onProgress: (done, total) => {
            if (windows.length > 1) process.stderr.write(`  ${spec.id}: ${done}/${total} targets\r`);
          },
        });
        results.push(r);
        process.stderr.write(`  [${i + 1}/${specs.length}] ${spec.id}: perplexity ${r.perplexity.toFixed(4)} (${r.seconds.toFixed(1)} s, ${r.tokensPerSecond.toFixed(0)} tokens/s)\n`);
      }
    } finally {
      model.destroy();
    }
    const fp16 = results[0].perplexity;
    const rows = results.map((r, i) => [
      r.method,
      r.perplexity.toFixed(4),
      i === 0 ? '–' : percent(100 * (r.perplexity / fp16 - 1)),
      percent(100 * (r.perplexity / referencePerplexity - 1)),
      r.loss.toFixed(5),
      bitsPerElement(specs[i], run.config.headDim).toFixed(2),
      r.tokensPerSecond.toFixed(1),
    ]);
    process.stdout.write(`${quick ? 'quick slice' : 'held-out'}: ${targets} targets; PyTorch fp32 (exact K/V) perplexity ${referencePerplexity.toFixed(4)}\n`);
    process.stdout.write(`${formatTable(['method', 'perplexity', 'vs FP16 KV', 'vs PyTorch', 'loss', 'bits/el', 'tokens/s'], rows)}\n`);
    if (values.json !== undefined) {
      const report = {
        slice: quick ? 'quick' : 'heldout',
        tokens: targets,
        windows: windows.length,
        windowTokens: quick ? run.quickTokens : ref.heldout.windowTokens,
        referencePerplexity,
        referenceNllSum: quick ? ref.quick.nllSum : ref.heldout.nllSum,
        methods: Object.fromEntries(results.map((r, i) => [r.method, {
          displayName: specs[i].displayName,
          perplexity: r.perplexity,
          loss: r.loss,
          nllSum: r.nllSum,
          targets: r.targets,
          vsFp16Percent: i === 0 ? 0 : 100 * (r.perplexity / fp16 - 1),
          vsReferencePercent: 100 * (r.perplexity / referencePerplexity - 1),
          bitsPerElement: bitsPerElement(specs[i], run.config.headDim),
          seconds: r.seconds,
          tokensPerSecond: r.tokensPerSecond,
        }])),
        settings: { batch, pageSize },
        model: configJson(run.config),
        gpu: describeGpu(ctx),
        date: new Date().toISOString(),
      };
      writeFileAtomic(values.json, `${JSON.stringify(report, null, 2)}\n`);
      process.stderr.write(`perplexity: wrote ${values.json}\n`);
    }
    return 0;
  },
};
