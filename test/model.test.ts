/**
 * The model folder's own tests (model/test_model.py, numpy + stdlib): corpus, tokenizer round trip,
 * the safetensors writer, the training script's checks without torch, and the committed run
 * (model/run: its weights' float64 numpy forward pass against reference.json; MODEL_TEST_RUN=DIR checks
 * another run folder).
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(__dirname, '..');

describe('model/ (python3 -m unittest)', () => {
  it('passes', () => {
    const r = spawnSync('/usr/bin/python3', ['-m', 'unittest', 'discover', '-s', 'model', '-p', 'test_*.py'], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.error) throw r.error;
    expect(r.status, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stderr).toMatch(/^OK/m);
  }, 300_000);
});
