/**
 * The controls form: fills its option lists from the library's constants, shows the configuration,
 * reads it back on every change, keeps it in the URL (history.replaceState) and says what a run will do.
 * A field that cannot be used says why under it and is listed as a Problem (the page disables the runs
 * it blocks): nothing falls back silently to an earlier value. A loaded K/V file sets the head_dim of
 * the accuracy run, so the Hadamard blocks offered are the ones that divide it.
 */
import { MODEL_PRESETS, PRESET_NAMES, type PresetName } from '../bench/decode-step-bench';
import { WORKLOAD_KINDS, type WorkloadKind } from '../workloads/synthetic';
import {
  accuracyMethodIds, accuracySizeProblem, benchBatches, benchContexts, benchPoints, blocksForHeadDim, configToQuery, fitBlockToHeadDim,
  MAX_CONTEXT, MAX_SEED, MAX_SEQS, METHOD_CHOICES, PAGE_SIZES, parseIntegerField, type AppConfig, type MethodChoice,
} from './config';
import { byId, el, emptyReason, plural } from './dom';
import { noPlanText, showFieldProblem, type Problem } from './validation';

/** The workload select's value when a loaded file is used. */
export const FILE_WORKLOAD = 'file';

/** The loaded file, as far as the form needs it. */
export interface LoadedFile {
  name: string;
  numQueryHeads: number;
  numKvHeads: number;
  headDim: number;
}

const input = (id: string) => byId<HTMLInputElement>(id);
const select = (id: string) => byId<HTMLSelectElement>(id);

/** The whole-number fields: id, config key, label in messages, bounds. */
const NUMBER_FIELDS = [
  { id: 'seqs', key: 'seqs', label: 'Concurrency', min: 1, max: MAX_SEQS },
  { id: 'context', key: 'context', label: 'Context length', min: 1, max: MAX_CONTEXT },
  { id: 'seed', key: 'seed', label: 'Seed', min: 0, max: MAX_SEED },
] as const;

function shapeText(hq: number, hkv: number, d: number): string {
  return `${plural(hq, 'query head')}, ${plural(hkv, 'kv head')} (GQA ${hq / hkv}), head_dim ${d}`;
}

function presetText(name: PresetName): string {
  const p = MODEL_PRESETS[name];
  return shapeText(p.numQueryHeads, p.numKvHeads, p.headDim);
}

function fillSelect(target: HTMLSelectElement, options: { value: string; text: string }[]): void {
  target.replaceChildren(...options.map((o) => el('option', { value: o.value }, o.text)));
}

export class Controls {
  private current: AppConfig;
  private file: LoadedFile | null = null;
  private problemList: Problem[] = [];
  /** head_dim the block options were made for. */
  private blocksHeadDim = 0;
  /**
   * The Hadamard block last asked for (the URL's, then the user's pick): the one shown is this one fitted
   * to the head_dim in use, so a shape whose head_dim it does not divide lowers it only while chosen.
   */
  private wantedBlock: number;

  /**
   * @param onChange called after every change of the form (valid or not: the page re-checks what may run)
   * @param extraQuery more keys for the URL ('&…': the serving and model sections'), written with this form's
   */
  constructor(initial: AppConfig, private readonly onChange: (config: AppConfig) => void, private readonly extraQuery: () => string = () => '') {
    this.current = { ...initial, methods: [...initial.methods] };
    this.wantedBlock = initial.block;
    fillSelect(select('preset'), PRESET_NAMES.map((n) => ({ value: n, text: MODEL_PRESETS[n].name })));
    fillSelect(select('workload'), [
      ...WORKLOAD_KINDS.map((k) => ({ value: k.id, text: k.title })),
      { value: FILE_WORKLOAD, text: 'Your K/V file (pick or drop it below)' },
    ]);
    fillSelect(select('page-size'), PAGE_SIZES.map((p) => ({ value: String(p), text: `${p} tokens` })));
    input('seqs').max = String(MAX_SEQS);
    input('context').max = String(MAX_CONTEXT);
    input('seed').max = String(MAX_SEED);
    this.show();
    const form = byId<HTMLFormElement>('controls');
    form.addEventListener('change', (e) => {
      if ((e.target as HTMLElement).id !== 'file-input' && (e.target as HTMLElement).id !== 'file-layout') this.read();
    });
    form.addEventListener('input', (e) => {
      if ((e.target as HTMLElement).matches('input[type=number]')) this.read();
    });
    form.addEventListener('submit', (e) => e.preventDefault());
  }

  get config(): AppConfig {
    return { ...this.current, methods: [...this.current.methods] };
  }

  /** Whether the accuracy run uses the loaded file. */
  get useFile(): boolean {
    return select('workload').value === FILE_WORKLOAD && this.file !== null;
  }

  /** head_dim of the data the accuracy run uses: the file's when it is used, else the preset's. */
  get accuracyHeadDim(): number {
    return this.useFile ? this.file!.headDim : MODEL_PRESETS[this.current.preset].headDim;
  }

  /** What keeps runs from starting now (empty: everything may run). */
  get problems(): Problem[] {
    return [...this.problemList];
  }

  /**
   * A file was loaded (selected as the workload; its head_dim sets the blocks), or there is none now:
   * `removed` (the user took it away) goes back to the synthetic workload; otherwise a chosen file
   * option stays chosen and says that no file is loaded.
   */
  setFile(file: LoadedFile | null, removed = false): void {
    this.file = file;
    const option = select('workload').querySelector<HTMLOptionElement>(`option[value="${FILE_WORKLOAD}"]`)!;
    option.textContent = file ? `Your file: ${file.name}` : 'Your K/V file (pick or drop it below)';
    if (file) select('workload').value = FILE_WORKLOAD;
    else if (removed && select('workload').value === FILE_WORKLOAD) select('workload').value = this.current.workload;
    this.read();
  }

  /** Puts the whole configuration in the address bar (on every change of either form, and when a run starts). */
  writeUrl(): void {
    history.replaceState(history.state, '', `${configToQuery(this.current)}${this.extraQuery()}${location.hash}`);
  }

  /** Disables every control during a run. */
  setDisabled(disabled: boolean): void {
    byId<HTMLFieldSetElement>('controls-fieldset').disabled = disabled;
    byId<HTMLFieldSetElement>('advanced-fieldset').disabled = disabled;
  }

  private show(): void {
    const c = this.current;
    select('preset').value = c.preset;
    select('workload').value = c.workload;
    input('seqs').value = String(c.seqs);
    input('context').value = String(c.context);
    select('page-size').value = String(c.pageSize);
    this.fillBlocks();
    input('rotate-v').checked = c.rotateV;
    for (const m of METHOD_CHOICES) input(`method-${m}`).checked = c.methods.includes(m);
    input('seed').value = String(c.seed);
    input('quick').checked = c.quick;
    this.validate();
    this.describe();
  }

  /** Block options: the Hadamard blocks dividing the accuracy run's head_dim (the chosen one fitted to it). */
  private fillBlocks(): void {
    const d = this.accuracyHeadDim;
    this.current.block = fitBlockToHeadDim(d, this.wantedBlock);
    if (d !== this.blocksHeadDim) {
      fillSelect(select('block'), blocksForHeadDim(d).map((b) => ({ value: String(b), text: `B = ${b}` })));
      this.blocksHeadDim = d;
    }
    select('block').value = String(this.current.block);
    byId('block-hint').textContent = this.useFile
      ? `Blocks that divide your file's head_dim ${d}.`
      : `Blocks that divide head_dim ${d}.`;
  }

  /** Reads the form; an invalid number is reported (and blocks the runs) and leaves the configuration as it was. */
  private read(): void {
    const next: AppConfig = { ...this.current };
    next.preset = select('preset').value as PresetName;
    const workload = select('workload').value;
    if (workload !== FILE_WORKLOAD) next.workload = workload as WorkloadKind;
    for (const f of NUMBER_FIELDS) {
      const parsed = parseIntegerField(input(f.id).value, f.label, f.min, f.max, emptyReason(input(f.id)));
      if ('value' in parsed) next[f.key] = parsed.value;
    }
    next.pageSize = Number(select('page-size').value);
    next.block = Number(select('block').value);
    if (next.block !== this.current.block) this.wantedBlock = next.block;  // picked in the select
    next.rotateV = input('rotate-v').checked;
    next.methods = METHOD_CHOICES.filter((m: MethodChoice) => input(`method-${m}`).checked);
    next.quick = input('quick').checked;
    this.current = next;
    this.fillBlocks();
    this.validate();
    this.writeUrl();
    this.describe();
    this.onChange(this.config);
  }

  /** Every field's problem, shown under it and kept for the run buttons. */
  private validate(): void {
    const problems: Problem[] = [];
    for (const f of NUMBER_FIELDS) {
      const parsed = parseIntegerField(input(f.id).value, f.label, f.min, f.max, emptyReason(input(f.id)));
      const message = 'problem' in parsed ? parsed.problem : null;
      showFieldProblem(f.id, message);
      if (message) problems.push({ field: f.id, message, blocks: 'main' });
    }
    const fileMissing = select('workload').value === FILE_WORKLOAD && this.file === null;
    const fileMessage = fileMissing ? 'No K/V file is loaded: pick or drop one below, or choose a synthetic workload.' : null;
    showFieldProblem('workload', fileMessage);
    if (fileMessage) problems.push({ field: 'workload', message: fileMessage, blocks: 'accuracy' });
    const size = this.useFile || problems.some((p) => p.blocks === 'main') ? null : accuracySizeProblem(this.current);
    if (size) problems.push({ field: 'context', message: size, blocks: 'accuracy' });
    this.problemList = problems;
  }

  /** Hints next to the controls and the plan of a run. */
  private describe(): void {
    const c = this.current;
    const f = this.file;
    byId('preset-hint').textContent = this.useFile && f
      ? `${presetText(c.preset)} for throughput; accuracy uses your file: ${shapeText(f.numQueryHeads, f.numKvHeads, f.headDim)}.`
      : presetText(c.preset);
    const kind = WORKLOAD_KINDS.find((k) => k.id === c.workload);
    byId('workload-hint').textContent = this.useFile
      ? 'The accuracy run uses your file (its own shape); the throughput run times the preset with random data.'
      : (kind?.description ?? '');
    const invalid = this.problemList.filter((p) => p.blocks === 'main');
    if (invalid.length) {
      byId('run-plan').textContent = noPlanText(invalid.length);
      return;
    }
    const methods = accuracyMethodIds(c, this.accuracyHeadDim);
    const points = benchPoints(c);
    const what = this.useFile ? `your file ${f!.name}` : `${c.seqs} × ${c.context} tokens of ${c.workload}`;
    byId('run-plan').textContent =
      `Accuracy: ${methods.length} methods (${methods.join(', ')}) on ${what}. ` +
      `Throughput: ${points.length} timed points, concurrency ${benchBatches(c).join(', ')} at context ${c.context}` +
      ` and context ${benchContexts(c).join(', ')} at concurrency ${c.seqs}` +
      `${c.quick ? ' (quick timing)' : ' (full timing: about a second per point)'}.`;
  }
}
