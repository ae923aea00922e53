/**
 * The page's K/V file parser, off the main thread (started by src/app/file-source.ts): one message in
 * ({ files, layout, querySeed }), one ParseReply out, the K/V arrays transferred rather than copied.
 */
import type { KvFileLayout } from '../accuracy/kv-file';
import { TensorFileError } from '../io/safetensors';
import type { ParseReply } from './file-source';
import { parseKvFiles } from './kv-file-parse';

self.onmessage = async (e: MessageEvent<{ files: File[]; layout: KvFileLayout | undefined; querySeed: number }>) => {
  const post = (reply: ParseReply, transfer: Transferable[] = []) => (self as unknown as Worker).postMessage(reply, transfer);
  try {
    const { data, name } = await parseKvFiles(e.data.files, e.data.layout, e.data.querySeed);
    post({ ok: true, data, name }, [data.k.buffer, data.v.buffer, data.q.buffer].filter((b, i, all) => all.indexOf(b) === i) as Transferable[]);
  } catch (err) {
    const error = err instanceof Error ? err : new Error(String(err));
    post({ ok: false, error: { name: error.name, message: error.message, ...(error instanceof TensorFileError ? { part: error.part, source: error.source } : {}) } });
  }
};
