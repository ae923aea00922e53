/**
 * Real K/V data for the accuracy run: a .safetensors file or .npy files (k.npy, v.npy, optional
 * q.npy, context_lens.npy), picked with the file input or dropped on the drop zone, parsed by the
 * library's kv-file loader (src/accuracy/kv-file.ts) in a worker (src/app/kv-file-parse.ts). Files stay in
 * the browser. A head_dim the kernels cannot take is refused at load, rather than when a run starts.
 */
import type { KvData, KvFileLayout } from '../accuracy/kv-file';
import { TensorFileError } from '../io/safetensors';
import { byId } from './dom';
import { parseKvFiles } from './kv-file-parse';
import modelKvLayer0 from '../../model/run/kv-layer0.safetensors?url';
import modelKvLayer1 from '../../model/run/kv-layer1.safetensors?url';
import modelKvLayer2 from '../../model/run/kv-layer2.safetensors?url';
import modelKvLayer3 from '../../model/run/kv-layer3.safetensors?url';

export { MAX_KV_FILE_BYTES, refuseLarge } from './kv-file-parse';

/** The K/V the model trained here (model/run) wrote on held-out text, one file per layer (assets of the build). */
const MODEL_KV_URLS = [modelKvLayer0, modelKvLayer1, modelKvLayer2, modelKvLayer3];

/** What the worker answers: the parsed data, or the error's parts (classes do not cross threads). */
export type ParseReply = { ok: true; data: KvData; name: string } | { ok: false; error: { name: string; message: string; part?: string; source?: string } };

/**
 * Parses the files in a worker, so that a large file does not freeze the page; where workers are
 * missing, on this thread. A TensorFileError comes back as one.
 */
async function parseOffThread(files: readonly File[], layout: KvFileLayout | undefined, querySeed: number): Promise<{ data: KvData; name: string }> {
  if (typeof Worker === 'undefined') return parseKvFiles(files, layout, querySeed);
  const worker = new Worker(new URL('./kv-file-worker.ts', import.meta.url), { type: 'module' });
  try {
    const reply = await new Promise<ParseReply>((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<ParseReply>) => resolve(e.data);
      worker.onerror = (e) => reject(new Error(`the file reader stopped: ${e.message}`));
      worker.postMessage({ files: [...files], layout, querySeed });
    });
    if (reply.ok) return { data: reply.data, name: reply.name };
    const { error } = reply;
    if (error.name === 'TensorFileError') {
      const e = new TensorFileError(error.part ?? '', '', error.source ?? '');
      Object.defineProperty(e, 'message', { value: error.message });
      throw e;
    }
    throw new Error(error.message);
  } finally {
    worker.terminate();
  }
}

export interface FileSourceEvents {
  /** A file parsed, or none is loaded now: `removed` by the user, or its load `failed`. */
  onData(data: KvData | null, name: string | null, how: 'loaded' | 'removed' | 'failed'): void;
  onError(error: unknown): void;
}

/** Wires #file-input, #drop-zone, #file-layout and #file-clear; keeps the last files to re-parse on a layout change. */
export class FileSource {
  private files: File[] = [];

  constructor(private readonly events: FileSourceEvents, private readonly querySeed: () => number) {
    const fileInput = byId<HTMLInputElement>('file-input');
    fileInput.addEventListener('change', () => void this.load([...(fileInput.files ?? [])]));
    const zone = byId('drop-zone');
    zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      zone.classList.add('dragging');
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('dragging'));
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      zone.classList.remove('dragging');
      void this.load([...(e.dataTransfer?.files ?? [])]);
    });
    byId<HTMLSelectElement>('file-layout').addEventListener('change', () => {
      if (this.files.length) void this.load(this.files);
    });
    byId('model-kv-load').addEventListener('click', () => void this.loadModelLayer(Number(byId<HTMLSelectElement>('model-kv-layer').value)));
    byId('file-clear').addEventListener('click', () => {
      this.files = [];
      fileInput.value = '';
      this.status('No file loaded.');
      byId('file-clear').hidden = true;
      this.events.onData(null, null, 'removed');
    });
  }

  private status(text: string): void {
    byId('file-status').textContent = text;
  }

  /** Loads the trained model's K/V of `layer` as if its file had been picked. */
  async loadModelLayer(layer: number): Promise<void> {
    this.status(`Fetching the trained model's layer ${layer}…`);
    try {
      const response = await fetch(MODEL_KV_URLS[layer]);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      await this.load([new File([await response.arrayBuffer()], `model-kv-layer${layer}.safetensors`)]);
    } catch (e) {
      this.status('No file loaded: the model\'s K/V could not be fetched.');
      this.events.onError(new Error(`the trained model's layer ${layer} could not be fetched: ${(e as Error).message}`));
    }
  }

  async load(files: File[]): Promise<void> {
    if (files.length === 0) return;
    this.files = files;
    const layoutChoice = byId<HTMLSelectElement>('file-layout').value;
    const layout = layoutChoice === 'auto' ? undefined : (layoutChoice as KvFileLayout);
    this.status(`Reading ${files.map((f) => f.name).join(', ')}…`);
    try {
      const { data, name } = await parseOffThread(files, layout, this.querySeed());
      this.status(`Loaded ${data.description}`);
      byId('file-clear').hidden = false;
      this.events.onData(data, name, 'loaded');
    } catch (e) {
      // The files are kept: a change of the axis order re-reads them.
      // said here too, where the eye is: the error panel with its advice sits at the top of the page
      this.status(`No file loaded: ${e instanceof Error ? e.message : String(e)} (the panel at the top of the page says more).`);
      byId('file-clear').hidden = true;
      this.events.onData(null, null, 'failed');
      this.events.onError(e);
    }
  }
}
