/**
 * The model's weights against the device's limits (src/model/gpu-model.ts checks each buffer before
 * it makes it), on the real device, through a GpuContext whose limits are lowered as a small GPU's are:
 *   - the trained model (model/run) where at most 2 MiB binds: refused at its first and largest buffer,
 *     the embeddings, by name, size, limit and the share that fits, before anything is made;
 *   - the random-weight model (model/make_random_run.py), whose embeddings are smaller than a layer's
 *     fused q/k/v, under a maxBufferSize between the two: refused at layer 0's q/k/v after three
 *     buffers were made, and the device says each of those is destroyed;
 *   - with the device's own limits both upload, every buffer live until destroy() (so the check that a
 *     buffer is destroyed is not vacuous).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GpuError, type GpuContext, type RaisedLimit } from '../src/gpu/gpu-context';
import { GpuModel } from '../src/model/gpu-model';
import { parseModelConfig } from '../src/model/model-config';
import { readModelRun } from '../src/model/model-files';
import { loadModelWeights, type ModelWeights } from '../src/model/model-weights';
import { testGpu } from './gpu-harness';

const ROOT = resolve(__dirname, '..');
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * `ctx` with `limits` lowered, and every buffer its device makes recorded (the real device makes
 * them: the proxy only forwards and records).
 */
function smallGpu(ctx: GpuContext, limits: Partial<Record<RaisedLimit, number>>): { ctx: GpuContext; made: GPUBuffer[] } {
  const made: GPUBuffer[] = [];
  const device = new Proxy(ctx.device, {
    get(target, key) {
      if (key === 'createBuffer') {
        return (descriptor: GPUBufferDescriptor) => {
          const buffer = target.createBuffer(descriptor);
          made.push(buffer);
          return buffer;
        };
      }
      const value: unknown = Reflect.get(target, key);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
  return { ctx: { ...ctx, device, limits: { ...ctx.limits, ...limits } }, made };
}

/** Labels of the buffers among `buffers` the device refuses to write as destroyed (every model buffer has COPY_DST). */
async function destroyedLabels(device: GPUDevice, buffers: readonly GPUBuffer[]): Promise<string[]> {
  const labels: string[] = [];
  for (const buffer of buffers) {
    device.pushErrorScope('validation');
    device.queue.writeBuffer(buffer, 0, new Uint32Array(1));
    const error = await device.popErrorScope();
    if (error) {
      expect(error.message).toMatch(/destroyed/);
      labels.push(buffer.label);
    }
  }
  return labels;
}

/** What GpuModel.create rejects with (fails the test if it resolves). */
async function refusal(ctx: GpuContext, weights: ModelWeights): Promise<GpuError> {
  const error = await GpuModel.create(ctx, weights).then(
    (model) => {
      model.destroy();
      return null;
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(GpuError);
  return error as GpuError;
}

describe('model weights over the GPU limits: refused before they are made, nothing left behind', () => {
  let gpu: GpuContext;
  let trained: ModelWeights;
  let random: ModelWeights;
  let dir = '';

  beforeAll(async () => {
    gpu = await testGpu();
    trained = readModelRun(join(ROOT, 'model'), join(ROOT, 'model/run')).weights;
    dir = mkdtempSync(join(tmpdir(), 'gpu-model-test-'));
    const r = spawnSync('/usr/bin/python3', [join(ROOT, 'model/make_random_run.py'), dir], { encoding: 'utf8', timeout: 120_000 });
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`model/make_random_run.py failed (numpy needed: python3-numpy):\n${r.stdout}\n${r.stderr}`);
    const { config } = JSON.parse(readFileSync(join(dir, 'random-reference.json'), 'utf8')) as { config: Record<string, unknown> };
    random = loadModelWeights(parseModelConfig(config, 'random-reference.json'), [{ name: 'model.safetensors', bytes: new Uint8Array(readFileSync(join(dir, 'model.safetensors'))) }]);
  });

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the trained model where 2 MiB binds: its 3 MiB embeddings are named with their size, the limit and what fits; no buffer is made', async () => {
    expect([trained.config.vocabSize, trained.config.dModel]).toEqual([4096, 384]); // embeddings: 4096 × 384 f16 = 3 MiB, the largest buffer
    const small = smallGpu(gpu, { maxStorageBufferBindingSize: 2 * MiB });
    const error = await refusal(small.ctx, trained);
    expect(error.message).toBe("model.embed_tokens needs 3.00 MiB, more than this device's maxStorageBufferBindingSize of 2.00 MiB; at most 66.7% of this size would fit");
    expect(error.kind).toBe('out-of-memory');
    expect(error.beforeWork).toBe(true); // a size to change, not a GPU fault: the page says "Too big for this GPU", the CLI exits 2
    expect(small.made).toEqual([]);
  });

  it('the random model under a 64 KiB maxBufferSize: refused at layer 0\'s q/k/v, the three buffers made before it destroyed', async () => {
    const c = random.config;
    const embedBytes = c.vocabSize * c.dModel * 2;
    const qkvBytes = (c.nHeads + 2 * c.nKvHeads) * c.headDim * c.dModel * 2;
    expect([embedBytes, qkvBytes]).toEqual([60 * KiB, 96 * KiB]); // 320 × 96 and (4 + 2·2)·64 × 96 f16
    const small = smallGpu(gpu, { maxBufferSize: 64 * KiB });
    const error = await refusal(small.ctx, random);
    expect(error.message).toBe("model.layers.0.self_attn.qkv needs 96.0 KiB, more than this device's maxBufferSize of 64.0 KiB; at most 66.7% of this size would fit");
    expect(error).toMatchObject({ kind: 'out-of-memory', beforeWork: true });
    expect(small.made.map((b) => b.label)).toEqual(['model.embed_tokens', 'model.norm', 'model.layers.0.input_layernorm']);
    expect(await destroyedLabels(gpu.device, small.made)).toEqual(small.made.map((b) => b.label));
  });

  it('with the device\'s own limits both models upload, every buffer live until destroy()', async () => {
    for (const weights of [trained, random]) {
      const recorded = smallGpu(gpu, {});
      const model = await GpuModel.create(recorded.ctx, weights);
      expect(recorded.made).toHaveLength(2 + 6 * weights.config.nLayers + 2); // embeddings, norm, 6 per layer, RoPE cos and sin
      expect(await destroyedLabels(gpu.device, recorded.made)).toEqual([]);
      model.destroy();
      expect(await destroyedLabels(gpu.device, recorded.made)).toEqual(recorded.made.map((b) => b.label));
    }
  });
});
