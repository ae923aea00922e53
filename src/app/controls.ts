/**
 * The controls form: fills its option lists from the library's constants, shows the configuration,
 * reads it back on every change, keeps it in the URL (history.replaceState) and says what a run will do.
 */
import { MODEL_PRESETS, PRESET_NAMES, type PresetName } from '../bench/decode-step-bench';
import { WORKLOAD_KINDS, type WorkloadKind } from '../workloads/synthetic';
import {
  accuracyMethodIds, benchBatches, benchContexts, benchPoints, blocksFor, configToQuery, fitBlock, MAX_CONTEXT, MAX_SEQS,
  METHOD_CHOICES, PAGE_SIZES, type AppConfig, type MethodChoice,
} from './config';
import { byId, el } from './dom';

/** The workload select's value when a loaded file is used. */
export const FILE_WORKLOAD = 'file';

const input = (id: string) => byId<HTMLInputElement>(id);
const select = (id: string) => byId<HTMLSelectElement>(id);

function presetText(name: PresetName): string {
  const p = MODEL_PRESETS[name];
  return `${p.numQueryHeads} query heads, ${p.numKvHeads} kv heads (GQA ${p.numQueryHeads / p.numKvHeads}), head_dim ${p.headDim}`;
}

function fillSelect(target: HTMLSelectElement, options: { value: string; text: string }[]): void {
  target.replaceChildren(...options.map((o) => el('option', { value: o.value }, o.text)));
}

export class Controls {
  private current: AppConfig;
  private fileName: string | null = null;

  /** `extraQuery`: more keys for the URL ('&…': the serving section's), written with this form's. */
  constructor(initial: AppConfig, private readonly onChange: (config: AppConfig) => void, private readonly extraQuery: () => string = () => '') {
    this.current = { ...initial, methods: [...initial.methods] };
    fillSelect(select('preset'), PRESET_NAMES.map((n) => ({ value: n, text: MODEL_PRESETS[n].name })));
    fillSelect(select('workload'), [
      ...WORKLOAD_KINDS.map((k) => ({ value: k.id, text: k.title })),
      { value: FILE_WORKLOAD, text: 'Your K/V file (pick or drop it below)' },
    ]);
    fillSelect(select('page-size'), PAGE_SIZES.map((p) => ({ value: String(p), text: `${p} tokens` })));
    input('seqs').max = String(MAX_SEQS);
    input('context').max = String(MAX_CONTEXT);
    this.show();
    const form = byId<HTMLFormElement>('controls');
    form.addEventListener('change', () => this.read());
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
    return select('workload').value === FILE_WORKLOAD && this.fileName !== null;
  }

  /** Enables the file entry of the workload select (and selects it), or disables it. */
  setFile(name: string | null): void {
    this.fileName = name;
    const option = select('workload').querySelector<HTMLOptionElement>(`option[value="${FILE_WORKLOAD}"]`)!;
    option.textContent = name ? `Your file: ${name}` : 'Your K/V file (pick or drop it below)';
    if (name) select('workload').value = FILE_WORKLOAD;
    else if (select('workload').value === FILE_WORKLOAD) select('workload').value = this.current.workload;
    this.describe();
  }

  /** Puts the whole configuration in the address bar (on every change of either form, and when a run starts). */
  writeUrl(): void {
    history.replaceState(history.state, '', `${configToQuery(this.current)}${this.extraQuery()}${location.hash}`);
  }

  /** Disables every control during a run. */
  setDisabled(disabled: boolean): void {
    byId<HTMLFieldSetElement>('controls-fieldset').disabled = disabled;
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
    this.describe();
  }

  private fillBlocks(): void {
    fillSelect(select('block'), blocksFor(this.current.preset).map((b) => ({ value: String(b), text: `B = ${b}` })));
    select('block').value = String(this.current.block);
  }

  /** Reads the form; an invalid number is marked and leaves the configuration as it was. */
  private read(): void {
    const next: AppConfig = { ...this.current };
    next.preset = select('preset').value as PresetName;
    const workload = select('workload').value;
    if (workload !== FILE_WORKLOAD) next.workload = workload as WorkloadKind;
    for (const [id, key, max] of [['seqs', 'seqs', MAX_SEQS], ['context', 'context', MAX_CONTEXT], ['seed', 'seed', 2 ** 32 - 1]] as const) {
      const field = input(id);
      const value = Number(field.value);
      const ok = /^\d+$/.test(field.value.trim()) && value >= (id === 'seed' ? 0 : 1) && value <= max;
      field.setAttribute('aria-invalid', ok ? 'false' : 'true');
      if (ok) next[key] = value;
    }
    next.pageSize = Number(select('page-size').value);
    next.block = fitBlock(next.preset, Number(select('block').value));
    next.rotateV = input('rotate-v').checked;
    next.methods = METHOD_CHOICES.filter((m: MethodChoice) => input(`method-${m}`).checked);
    next.quick = input('quick').checked;
    const presetChanged = next.preset !== this.current.preset;
    this.current = next;
    if (presetChanged) this.fillBlocks();
    this.writeUrl();
    this.describe();
    this.onChange(this.config);
  }

  /** Hints next to the controls and the plan of a run. */
  private describe(): void {
    const c = this.current;
    byId('preset-hint').textContent = presetText(c.preset);
    const kind = WORKLOAD_KINDS.find((k) => k.id === c.workload);
    byId('workload-hint').textContent = this.useFile
      ? 'The accuracy run uses your file (its own shape); the throughput run times the preset with random data.'
      : (kind?.description ?? '');
    const methods = accuracyMethodIds(c);
    const points = benchPoints(c);
    const what = this.useFile ? `your file ${this.fileName}` : `${c.seqs} × ${c.context} tokens of ${c.workload}`;
    byId('run-plan').textContent =
      `Accuracy: ${methods.length} methods (${methods.join(', ')}) on ${what}. ` +
      `Throughput: ${points.length} timed points, concurrency ${benchBatches(c).join(', ')} at context ${c.context}` +
      ` and context ${benchContexts(c).join(', ')} at concurrency ${c.seqs}` +
      `${c.quick ? ' (quick timing)' : ' (full timing: about a second per point)'}.`;
  }
}
