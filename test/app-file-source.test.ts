/** The page's K/V file limit (src/app/file-source.ts): refused by size before anything is read. */
import { describe, expect, it } from 'vitest';
import { MAX_KV_FILE_BYTES, refuseLarge } from '../src/app/kv-file-parse';
import { TensorFileError } from '../src/io/safetensors';

describe('page file size limit', () => {
  it('refuses files over the limit together, with the sizes and what to try', () => {
    expect(MAX_KV_FILE_BYTES).toBe(256 * 2 ** 20);
    expect(() => refuseLarge([{ name: 'k.npy', size: 600 }, { name: 'v.npy', size: 600 }], 1024)).toThrow(TensorFileError);
    expect(() => refuseLarge([{ name: 'k.npy', size: 600 }, { name: 'v.npy', size: 600 }], 1024)).toThrow(/k\.npy \+ v\.npy.*need 0\.0 MiB, the page reads at most 0\.0 MiB.*npm run cli -- accuracy --file/);
    expect(() => refuseLarge([{ name: 'big.safetensors', size: 300 * 2 ** 20 }])).toThrow(/need 300\.0 MiB, the page reads at most 256\.0 MiB/);
    expect(() => refuseLarge([{ name: 'ok.safetensors', size: 1024 }], 1024)).not.toThrow();
  });
});
