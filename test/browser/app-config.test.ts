/**
 * The page's configuration and error explanations, without a browser: the URL form round-trips,
 * bad parameters fall back with a warning (a long one quoted in part, with its length), every derived
 * method id and bench point is one the library accepts, and each library error gets its own explanation.
 */
import { describe, expect, it } from 'vitest';
import { resolveMethods } from '../../src/accuracy/methods';
import { resolvePoint } from '../../src/bench/decode-step-bench';
import { KvCacheFullError } from '../../src/cache/page-allocator';
import { KvConfigError } from '../../src/cache/paged-kv-cache';
import { GpuError, type GpuContext } from '../../src/gpu/gpu-context';
import { TensorFileError } from '../../src/io/safetensors';
import {
  accuracyMethodIds, accuracySizeProblem, benchBatches, benchContexts, benchMethods, benchPoints, blocksForHeadDim, configFromQuery, configToQuery,
  DEFAULT_CONFIG, headDimProblem, parseIntegerField, quoteQueryValue, sweepValues, type AppConfig,
} from '../../src/app/config';
import { explainError, fieldsForError, isAbort, throwIfAborted } from '../../src/app/errors';
import {
  DEFAULT_SERVING_CONFIG, servingConfigFromQuery, servingConfigToQuery, servingFits, servingSweepOptions, type ServingConfig,
} from '../../src/app/serving-config';
import {
  DEFAULT_MODEL_SETTINGS, MAX_PROMPT_CHARS, MAX_URL_PROMPT_BYTES, modelSettingsFromQuery, modelSettingsToQuery, promptFault, promptUrlBytes, promptUrlNote,
  type ModelSettings,
} from '../../src/app/model-settings';
import { checkSweepOptions } from '../../src/serving/simulate-sweep';
import { RequestSpecError } from '../../src/serving/requests';

const custom: AppConfig = {
  preset: 'tiny-d64', workload: 'attention-sink', seqs: 3, context: 777, pageSize: 32, block: 32, rotateV: true,
  methods: ['hadamard', 'signs'], seed: 42, quick: false,
};

describe('configuration in the URL', () => {
  it('round-trips the defaults and a custom configuration', () => {
    expect(configFromQuery(configToQuery(DEFAULT_CONFIG))).toEqual({ config: DEFAULT_CONFIG, warnings: [] });
    expect(configFromQuery(configToQuery(custom))).toEqual({ config: custom, warnings: [] });
    expect(configToQuery(custom)).toBe('?preset=tiny-d64&workload=attention-sink&seqs=3&ctx=777&page=32&block=32&rotv=1&methods=hadamard,signs&seed=42&quick=0');
  });

  it('an empty query gives the defaults; no method but FP16 is allowed', () => {
    expect(configFromQuery('')).toEqual({ config: DEFAULT_CONFIG, warnings: [] });
    expect(configFromQuery('?methods=').config.methods).toEqual([]);
  });

  it('bad values fall back to the defaults, one warning each', () => {
    const { config, warnings } = configFromQuery('?preset=gpt-9&seqs=0&ctx=12abc&page=12&block=48&rotv=yes&methods=int4,magic&seed=-1');
    expect(config).toEqual(DEFAULT_CONFIG);
    expect(warnings).toHaveLength(8);
    expect(warnings[0]).toMatch(/preset="gpt-9".*llama-3\.1-8b/);
  });

  it('a block that does not divide head_dim is replaced, with a warning only when the URL asked for it', () => {
    expect(configFromQuery('?preset=tiny-d64')).toMatchObject({ config: { block: 64 }, warnings: [] });
    const asked = configFromQuery('?preset=tiny-d64&block=128');
    expect(asked.config.block).toBe(64);
    expect(asked.warnings[0]).toMatch(/block 128 does not divide head_dim 64/);
  });
});

describe('the model section in the URL', () => {
  const typed: ModelSettings = { prompt: '=item B<foo>\n\tmy $x = "100% ü €";  # & = ? + 😀', tokens: 7 };

  it('round-trips the defaults and a prompt with spaces, newlines, tabs, reserved and non-ASCII characters, next to the other keys', () => {
    expect(modelSettingsFromQuery(modelSettingsToQuery(DEFAULT_MODEL_SETTINGS))).toEqual({ settings: DEFAULT_MODEL_SETTINGS, warnings: [] });
    expect(modelSettingsFromQuery(modelSettingsToQuery(typed))).toEqual({ settings: typed, warnings: [] });
    expect(modelSettingsToQuery(DEFAULT_MODEL_SETTINGS)).toBe('&model-prompt=NAME%0A%0A&model-tokens=32');
    const all = `${configToQuery(DEFAULT_CONFIG)}${servingConfigToQuery(DEFAULT_SERVING_CONFIG)}${modelSettingsToQuery(typed)}`;
    expect(modelSettingsFromQuery(all).settings).toEqual(typed);
    expect(configFromQuery(all)).toEqual({ config: DEFAULT_CONFIG, warnings: [] });
    expect(servingConfigFromQuery(all)).toEqual({ config: DEFAULT_SERVING_CONFIG, warnings: [] });
    // an empty prompt is a prompt (<bos> alone); a lone % that encodes nothing stays as typed
    expect(modelSettingsFromQuery('?model-prompt=').settings.prompt).toBe('');
    expect(modelSettingsFromQuery('?model-prompt=50%+off').settings.prompt).toBe('50% off');
  });

  it('a prompt too long, with a control character or with bytes that are not UTF-8 falls back to the default, saying why', () => {
    const long = modelSettingsFromQuery(`?model-prompt=${'a'.repeat(100_000)}`);
    expect(long.settings).toEqual(DEFAULT_MODEL_SETTINGS);
    expect(long.warnings).toEqual([`Ignored model-prompt="${'a'.repeat(40)}"… (100,000 characters): the prompt must be at most 4,000 characters (it has 100,000).`]);
    expect(modelSettingsFromQuery(`?model-prompt=${'b'.repeat(MAX_PROMPT_CHARS)}`)).toEqual({ settings: { ...DEFAULT_MODEL_SETTINGS, prompt: 'b'.repeat(MAX_PROMPT_CHARS) }, warnings: [] });
    for (const [query, quoted, why] of [
      ['?model-prompt=ab%07c', String.raw`"ab\u0007c"`, 'U+0007, a control character (tab and newline are the only ones allowed): it has one at character 3'],
      ['?model-prompt=a%0D%0Ab', String.raw`"a\r\nb"`, 'U+000D, a control character'],
      ['?model-prompt=x%00', String.raw`"x\u0000"`, 'U+0000, a control character'],
      ['?model-prompt=%C2%85', String.raw`"\u0085"`, 'U+0085, a control character'],
      ['?model-prompt=caf%C3', '"caf�"', 'U+FFFD, the mark of bytes that were not UTF-8 (in a link: a percent-encoding cut short): it has one at character 4'],
      ['?model-prompt=%FF%FE', '"��"', 'U+FFFD'],
      ['?model-prompt=%ED%A0%80', '"���"', 'U+FFFD'], // an encoded surrogate is not UTF-8 either
    ] as const) {
      const { settings, warnings } = modelSettingsFromQuery(query);
      expect(settings, query).toEqual(DEFAULT_MODEL_SETTINGS);
      expect(warnings, query).toHaveLength(1);
      expect(warnings[0].startsWith(`Ignored model-prompt=${quoted}: the prompt must not contain ${why}`), `${query}: ${warnings[0]}`).toBe(true);
    }
  });

  it('writes the prompt only while its encoded value is at most MAX_URL_PROMPT_BYTES, counting encoded bytes; reads any length', () => {
    const written = (prompt: string) => new URLSearchParams(modelSettingsToQuery({ prompt, tokens: 7 }));
    expect(MAX_URL_PROMPT_BYTES).toBe(2000);
    // one byte a character for letters and spaces ('+'), 3 for '=', 6 for 'é', 9 for '中', 12 for '😀'
    expect(['a b', '=', 'é', '中', '😀'].map(promptUrlBytes)).toEqual([3, 3, 6, 9, 12]);
    const atLimit = ['a'.repeat(MAX_URL_PROMPT_BYTES), ' '.repeat(MAX_URL_PROMPT_BYTES), `${'中'.repeat(222)}aa`, `${'é'.repeat(333)}ab`];
    for (const prompt of atLimit) {
      expect(promptUrlBytes(prompt), prompt.slice(0, 9)).toBe(MAX_URL_PROMPT_BYTES);
      expect(written(prompt).get('model-prompt')).toBe(prompt);
      expect(promptUrlNote(prompt)).toBeNull();
      expect(modelSettingsFromQuery(modelSettingsToQuery({ prompt, tokens: 7 }))).toEqual({ settings: { prompt, tokens: 7 }, warnings: [] });
    }
    // one byte over: 2,001 letters, or 223 CJK characters (2,007 bytes, far under MAX_PROMPT_CHARS)
    for (const prompt of ['a'.repeat(MAX_URL_PROMPT_BYTES + 1), `${'中'.repeat(222)}aaa`, '中'.repeat(223)]) {
      expect(promptUrlBytes(prompt)).toBeGreaterThan(MAX_URL_PROMPT_BYTES);
      expect(modelSettingsToQuery({ prompt, tokens: 7 })).toBe('&model-tokens=7');
      expect(modelSettingsFromQuery(modelSettingsToQuery({ prompt, tokens: 7 }))).toEqual({ settings: { ...DEFAULT_MODEL_SETTINGS, tokens: 7 }, warnings: [] });
    }
    const cjk = '中'.repeat(MAX_PROMPT_CHARS);
    expect(promptUrlNote(cjk)).toBe("This prompt is too long to keep in the page's link (36,000 bytes encoded, at most 2,000); the link opens with the default prompt.");
    // a link typed by hand is read at any length the form accepts
    expect(modelSettingsFromQuery(`?model-prompt=${encodeURIComponent(cjk)}`)).toEqual({ settings: { ...DEFAULT_MODEL_SETTINGS, prompt: cjk }, warnings: [] });
  });

  it('the form refuses what the URL refuses, so every prompt the page writes reads back', () => {
    expect(promptFault('=head1 NAME\n\n\tindented')).toBeNull();
    expect(promptFault('a'.repeat(MAX_PROMPT_CHARS + 1))).toBe('must be at most 4,000 characters (it has 4,001)');
    expect(promptFault('x\u001by')).toMatch(/^must not contain U\+001B, a control character .*: it has one at character 2$/);
    expect(promptFault('ok \ud83d')).toBe('must not contain U+D83D, half of a surrogate pair: it has one at character 4');
    expect(promptFault('😀')).toBeNull();
  });

  it('a token count that is not a whole number from 1 to 256 falls back to the default, one warning each key', () => {
    for (const bad of ['0', '257', '-1', '1e2', '7.5', ' 7', '', 'x'.repeat(500)]) {
      const { settings, warnings } = modelSettingsFromQuery(`?model-tokens=${encodeURIComponent(bad)}`);
      expect(settings, bad).toEqual(DEFAULT_MODEL_SETTINGS);
      expect(warnings, bad).toEqual([`Ignored model-tokens=${quoteQueryValue(bad)}: expected an integer in [1, 256].`]);
    }
    expect(modelSettingsFromQuery('?model-tokens=256&model-prompt=%07').settings).toEqual({ ...DEFAULT_MODEL_SETTINGS, tokens: 256 });
    expect(quoteQueryValue('x'.repeat(500))).toBe(`"${'x'.repeat(40)}"… (500 characters)`);
    expect(quoteQueryValue('a\u202eb\u007f\u{e0001}')).toBe(String.raw`"a\u202eb\u007f\udb40\udc01"`); // shown, not obeyed
    // the other sections quote a long bad value the same way
    expect(configFromQuery(`?ctx=${'9'.repeat(5000)}`).warnings).toEqual([`Ignored ctx="${'9'.repeat(40)}"… (5,000 characters): expected an integer in [1, 65536].`]);
  });
});

describe('what a configuration runs', () => {
  it('accuracy method ids: FP16 first, no duplicates, all known to the method zoo', () => {
    expect(accuracyMethodIds(DEFAULT_CONFIG)).toEqual(['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b32', 'int4-hadamard-b64', 'int4-hadamard-b128']);
    expect(accuracyMethodIds({ ...DEFAULT_CONFIG, methods: ['hadamard'] })).toEqual(['fp16', 'int4-hadamard-b128']);
    expect(accuracyMethodIds(custom)).toEqual(['fp16', 'int4-hadamard-b32-kv', 'int4-hadamard-b32-kv-signs']);
    for (const c of [DEFAULT_CONFIG, custom]) expect(resolveMethods(accuracyMethodIds(c)).map((s) => s.id)).toEqual(accuracyMethodIds(c));
  });

  it("a file's head_dim sets the blocks: only those that divide it, the chosen one fitted", () => {
    expect(blocksForHeadDim(64)).toEqual([16, 32, 64]);
    expect(blocksForHeadDim(96)).toEqual([16, 32]);
    expect(accuracyMethodIds(DEFAULT_CONFIG, 64)).toEqual(['fp16', 'int4', 'int4-hadamard-b16', 'int4-hadamard-b32', 'int4-hadamard-b64']);
    expect(accuracyMethodIds({ ...DEFAULT_CONFIG, methods: ['hadamard', 'signs'] }, 96)).toEqual(['fp16', 'int4-hadamard-b32', 'int4-hadamard-b32-signs']);
    for (const d of [32, 64, 96, 160, 256]) expect(headDimProblem(d), String(d)).toBeNull();
    for (const d of [48, 16, 288, 100]) expect(headDimProblem(d)).toMatch(new RegExp(`head_dim ${d} is not supported: .*multiple of 32, from 32 to 256`));
  });

  it('a field that cannot be used says why, with its bounds and what was typed', () => {
    expect(parseIntegerField(' 12 ', 'Context length', 1, 65536)).toEqual({ value: 12 });
    expect(parseIntegerField('-5', 'Context length', 1, 65536)).toEqual({ problem: 'Context length must be a whole number from 1 to 65,536 (got "-5").' });
    expect(parseIntegerField('1e9', 'Concurrency', 1, 256)).toMatchObject({ problem: expect.stringContaining('(got "1e9")') });
    expect(parseIntegerField('', 'Seed', 0, 9)).toMatchObject({ problem: expect.stringContaining('(it is empty)') });
    expect(accuracySizeProblem(DEFAULT_CONFIG)).toBeNull();
    expect(accuracySizeProblem({ ...DEFAULT_CONFIG, seqs: 256, context: 65536 })).toMatch(/float64 on the CPU.*Lower the concurrency or the context/);
  });

  it('sweeps: ×4 steps down from the chosen value, at most 3', () => {
    expect(sweepValues(1, 1)).toEqual([1]);
    expect(sweepValues(2, 1)).toEqual([1, 2]);
    expect(sweepValues(16, 1)).toEqual([1, 4, 16]);
    expect(sweepValues(256, 1)).toEqual([16, 64, 256]);
    expect(benchBatches(DEFAULT_CONFIG)).toEqual([1, 4]);
    expect(benchContexts(DEFAULT_CONFIG)).toEqual([32, 128, 512]);
    expect(benchContexts({ ...DEFAULT_CONFIG, context: 20 })).toEqual([20]);
  });

  it('bench points: every method over both sweeps, the shared shape once, each valid for the bench', () => {
    expect(benchMethods(DEFAULT_CONFIG)).toEqual(['fp16', 'int4', 'int4-hadamard']);
    expect(benchMethods(custom)).toEqual(['fp16', 'int4-hadamard-kv']);
    const points = benchPoints(DEFAULT_CONFIG);
    expect(points).toHaveLength((2 + 3 - 1) * 3);
    const shapes = new Set(points.map((p) => `${p.batch}x${p.context}`));
    expect([...shapes]).toEqual(['1x512', '4x512', '4x32', '4x128']);
    for (const p of benchPoints(custom)) {
      const r = resolvePoint(p);
      expect(r.pageSize).toBe(32);
      if (r.method === 'int4-hadamard') expect([r.hadamardBlock, r.rotateV]).toEqual([32, true]);
    }
  });
});

describe('the serving section: URL and what it runs', () => {
  const serving: ServingConfig = { regime: 'long', scale: 1 / 128, budgetMib: 2.5, caps: [1, 4, 16], steps: 0, repeats: 5, methods: ['fp16', 'int4-hadamard'] };

  it('round-trips the defaults and a custom configuration, next to the run section\'s keys', () => {
    expect(servingConfigFromQuery(servingConfigToQuery(DEFAULT_SERVING_CONFIG))).toEqual({ config: DEFAULT_SERVING_CONFIG, warnings: [] });
    expect(servingConfigFromQuery(servingConfigToQuery(serving))).toEqual({ config: serving, warnings: [] });
    expect(servingConfigToQuery(serving)).toBe('&sim-regime=long&sim-scale=1/128&sim-budget=2.5&sim-caps=1,4,16&sim-steps=0&sim-repeats=5&sim-methods=fp16,int4-hadamard');
    const both = `${configToQuery(custom)}${servingConfigToQuery(serving)}`;
    expect(configFromQuery(both)).toEqual({ config: custom, warnings: [] });
    expect(servingConfigFromQuery(both).config).toEqual(serving);
    expect(servingConfigFromQuery('?sim-scale=0.5&sim-caps=8, 2,2').config).toMatchObject({ scale: 0.5, caps: [2, 8] });
  });

  it('bad values fall back to the defaults, one warning each', () => {
    const { config, warnings } = servingConfigFromQuery('?sim-regime=medium&sim-scale=1/3&sim-budget=0&sim-caps=0,2&sim-steps=-1&sim-repeats=0&sim-methods=');
    expect(config).toEqual(DEFAULT_SERVING_CONFIG);
    expect(warnings).toHaveLength(7);
    expect(warnings.find((w) => w.includes('sim-repeats'))).toMatch(/sim-repeats="0": expected an integer in \[1, 20\]/);
    expect(warnings[0]).toMatch(/sim-regime="medium".*short or long/);
  });

  it('the sweep is what `simulate` would run, and INT4 fits more requests than FP16 in the default budget', () => {
    const options = servingSweepOptions(DEFAULT_CONFIG, DEFAULT_SERVING_CONFIG);
    expect(() => checkSweepOptions(options)).not.toThrow();
    expect(options).toMatchObject({ model: { name: 'Llama-3.1-8B', numLayers: 32 }, budgetBytes: 2 ** 18, caps: [1, 2, 4, 8], maxSteps: 20, repeats: 3, pageSize: 16, hadamardBlock: 128 });
    expect(options.requests).toHaveLength(16);
    expect(options.requests.every((r) => r.promptLen === 4 && r.outputLen === 16 && r.arrivalStep === 0)).toBe(true);
    expect(servingSweepOptions({ ...DEFAULT_CONFIG, preset: 'tiny-d64' }, serving)).toMatchObject({ hadamardBlock: 64, methods: ['fp16', 'int4-hadamard'], maxSteps: 0, repeats: 5 });
    const fits = Object.fromEntries(servingFits(DEFAULT_CONFIG, DEFAULT_SERVING_CONFIG).map((f) => [f.method, f.fits]));
    expect(fits.int4).toBeGreaterThan(fits.fp16);
    expect(fits['int4-hadamard']).toBe(fits.int4);
    expect(fits.fp16).toBeGreaterThanOrEqual(1);
  });
});

describe('errors explained', () => {
  const lostCtx = { lostReason: 'GPU device lost (unknown): gone' } as GpuContext;

  it('one explanation per library error', () => {
    expect(explainError(new GpuError('no navigator.gpu', 'no-webgpu'), null)).toMatchObject({ title: 'WebGPU is not available in this browser', recover: false });
    expect(explainError(new GpuError('no navigator.gpu', 'no-webgpu'), null).help.join(' ')).toMatch(/Chrome or Edge 113\+.*Safari 26\+.*Firefox 141\+/);
    const limit = explainError(new GpuError('K pool needs 2.00 GiB, more than maxStorageBufferBindingSize of 128.00 MiB; at most 6.3% of this size would fit', 'out-of-memory'), null);
    expect(limit.title).toBe('Too big for this GPU');
    expect(limit.message).toContain('would fit');
    expect(explainError(new Error('anything'), lostCtx)).toMatchObject({ title: 'The GPU device was lost', message: lostCtx.lostReason, recover: true });
    expect(explainError(new GpuError('lost', 'device-lost'), null).recover).toBe(true);
    const full = explainError(new KvCacheFullError(3, 100, 7, 2, 32), null);
    expect(full.title).toBe('Out of KV-cache pages');
    expect(full.help[0]).toContain('At most 32 tokens');
    expect(explainError(new TensorFileError("tensor 'k' shape", 'is [3]; expected [T, Hkv, D]', 'a.safetensors'), null)).toMatchObject({ title: 'This file cannot be used', message: "a.safetensors: tensor 'k' shape: is [3]; expected [T, Hkv, D]" });
    expect(explainError(new KvConfigError('headDim 40 must be a multiple of 32'), null).title).toBe('This configuration is not supported');
    expect(explainError(new RequestSpecError('regime scale must be a positive number, got 0'), null).title).toBe('This configuration is not supported');
    expect(explainError('weird', null).title).toBe('Something went wrong');
  });

  it('the settings an error names, for the page to highlight', () => {
    expect(fieldsForError(new TensorFileError("tensor 'k'", 'head_dim 48 is not supported', 'a.safetensors'), 'run')).toEqual(['file-input']);
    expect(fieldsForError(new KvConfigError('method int4-hadamard-b128 needs its Hadamard block 128 to divide head_dim 64'), 'run')).toEqual(['block']);
    expect(fieldsForError(new RangeError('lower the concurrency or the context'), 'run')).toEqual(['seqs', 'context']);
    expect(fieldsForError(new KvConfigError('a KV budget of 10 bytes holds no fp16 page; raise the budget'), 'serving')).toEqual(['sim-budget']);
    expect(fieldsForError(new KvCacheFullError(3, 100, 7, 2, 32), 'run').length).toBeGreaterThan(0);
    expect(fieldsForError(new GpuError('lost', 'device-lost'), 'run')).toEqual([]);
    expect(fieldsForError(new Error('a bug'), 'run')).toEqual([]);
  });

  it('cancellation is an AbortError, not a failure', () => {
    const controller = new AbortController();
    expect(() => throwIfAborted(controller.signal)).not.toThrow();
    controller.abort();
    let caught: unknown;
    try {
      throwIfAborted(controller.signal);
    } catch (e) {
      caught = e;
    }
    expect(isAbort(caught)).toBe(true);
    expect(isAbort(new Error('x'))).toBe(false);
  });
});
