/**
 * `generate`: greedy continuation of a prompt by the model trained here, through the WGSL forward
 * pass and the paged KV cache of each KV method (every token through append + attention), side by
 * side: the continuation, tokens/s and the first generated token where a method leaves FP16 KV's
 * continuation. Registered in src/cli/commands.ts as `generate: generateCommand`.
 *
 *   generate --prompt 'my $x =' --tokens 48 --methods fp16,int4,int4-hadamard
 */
import { parseArgs } from 'node:util';
import { describeGpu } from '../gpu/gpu-context';
import { GpuModel } from '../model/gpu-model';
import { firstDivergence, generateGreedy, type GenerationResult } from '../model/model-generate';
import type { CliCommand } from './commands';
import { checkMethodsFit, formatTable, loadModelRun, METHODS_USAGE, MODEL_FLAG_OPTIONS, MODEL_FLAGS_USAGE, PAGE_SIZE_USAGE, pageSizeFlag, parseMethods, positiveIntFlag } from './model-inputs';
import { checkOutputFile, CliInputError, writeFileAtomic } from './output-file';

const DEFAULT_METHODS = 'fp16,int4,int4-hadamard';
const DEFAULT_TOKENS = 32;

export const GENERATE_USAGE = `Usage: generate --prompt TEXT [--tokens N] [--methods LIST] [--json OUT.json] [--page-size P]
                [--model DIR] [--run DIR]

Greedy continuation of TEXT (after <bos>, as the model's documents start) by the trained model, through
the WGSL forward pass and the paged KV cache of each KV method: every prompt and generated token goes
through append + attention of every layer.

  --prompt TEXT     the prompt (required)
  --tokens N        tokens to generate (default ${DEFAULT_TOKENS}); prompt + N − 1 ≤ the context length
${METHODS_USAGE(DEFAULT_METHODS)}
  --json OUT.json   also write the prompt ids and, per method, the ids, text, timings and divergence
${PAGE_SIZE_USAGE}
${MODEL_FLAGS_USAGE}
Prints a table (method, decode tokens/s, prefill tokens/s, first token index that differs from fp16)
and each method's continuation.
Exit codes: 0 done; 2 bad flags, prompt or model files; 1 GPU failure.`;

export const generateCommand: CliCommand = {
  summary: 'greedy continuation of a prompt by the model trained here, per KV method, side by side',
  usage: GENERATE_USAGE,
  async run(args, env) {
    const { values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        prompt: { type: 'string' },
        tokens: { type: 'string' },
        methods: { type: 'string', multiple: true },
        json: { type: 'string' },
        'page-size': { type: 'string' },
        ...MODEL_FLAG_OPTIONS,
      },
    });
    if (values.prompt === undefined) throw new CliInputError('--prompt TEXT is required');
    const numTokens = positiveIntFlag('tokens', values.tokens, DEFAULT_TOKENS);
    const pageSize = pageSizeFlag(values['page-size']);
    if (values.json !== undefined) checkOutputFile('--json', values.json);
    const specs = parseMethods(values.methods, DEFAULT_METHODS);
    const run = loadModelRun(values.model, values.run);
    checkMethodsFit(specs, run.config.headDim);
    const tok = run.tokenizer;
    const promptIds = [tok.bosId, ...tok.encode(values.prompt)];
    const context = run.config.contextLength;
    if (promptIds.length + numTokens - 1 > context) {
      throw new CliInputError(`--prompt has ${promptIds.length} tokens (with <bos>) and --tokens ${numTokens}: together more than the model's context of ${context}; at most ${Math.max(0, context - promptIds.length + 1)} tokens after this prompt`);
    }

    const ctx = await env.gpu();
    const model = await GpuModel.create(ctx, run.weights);
    process.stderr.write(`generate: ${promptIds.length} prompt tokens, ${numTokens} to generate, ${specs.length} methods\n`);
    const results: GenerationResult[] = [];
    try {
      for (const spec of specs) results.push(await generateGreedy(model, promptIds, numTokens, spec, { pageSize }));
    } finally {
      model.destroy();
    }
    const base = results[0].tokens;
    const divergence = results.map((r) => firstDivergence(base, r.tokens));
    const rows = results.map((r, i) => [
      r.method,
      r.tokensPerSecond.toFixed(1),
      r.prefillTokensPerSecond.toFixed(1),
      i === 0 ? '–' : divergence[i] === null ? 'never' : String(divergence[i]),
    ]);
    process.stdout.write(`prompt (${promptIds.length} tokens with <bos>): ${JSON.stringify(values.prompt)}\n`);
    process.stdout.write(`${formatTable(['method', 'tokens/s', 'prefill tokens/s', 'first token ≠ fp16'], rows)}\n`);
    for (const [i, r] of results.entries()) {
      const note = i === 0 ? 'the baseline' : divergence[i] === null ? `identical to fp16` : `differs from fp16 from generated token ${divergence[i]}`;
      process.stdout.write(`\n== ${r.method} (${specs[i].displayName}; ${note})\n${values.prompt}${tok.decode(r.tokens)}\n`);
    }
    if (values.json !== undefined) {
      const report = {
        prompt: values.prompt,
        promptIds,
        tokens: numTokens,
        methods: Object.fromEntries(results.map((r, i) => [r.method, {
          displayName: specs[i].displayName,
          ids: r.tokens,
          text: tok.decode(r.tokens),
          firstDivergenceFromFp16: i === 0 ? null : divergence[i],
          tokensPerSecond: r.tokensPerSecond,
          prefillTokensPerSecond: r.prefillTokensPerSecond,
          prefillSeconds: r.prefillSeconds,
          decodeSeconds: r.decodeSeconds,
        }])),
        settings: { pageSize },
        gpu: describeGpu(ctx),
        date: new Date().toISOString(),
      };
      writeFileAtomic(values.json, `${JSON.stringify(report, null, 2)}\n`);
      process.stderr.write(`generate: wrote ${values.json}\n`);
    }
    return 0;
  },
};
