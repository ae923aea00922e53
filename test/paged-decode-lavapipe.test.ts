/**
 * The subgroup decode kernel on lavapipe (Mesa's CPU Vulkan driver: subgroups of 8), where a token
 * gets up to 8 lanes; SwiftShader's subgroups of 4 cap it at 4, so the other suites never run the
 * lane counts real GPUs use (8 with a GQA group at head_dim 128, 4 with one head per workgroup). Cases: the shapes whose lane count used to go wrong (head_dim 96 with a
 * GQA group of 4 once got 6 lanes per token: its slots and shuffles crossed tokens, outputs 260 %
 * off), Llama-style GQA with every option, FP16, the int8 query and the fused step; each against the
 * float64 references (test/decode-checks.ts). Skipped, and named, where lavapipe is not installed.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LAVAPIPE_ICD_CANDIDATES } from '../src/gpu/node-gpu';
import { expectDecodeMatchesReferences } from './decode-checks';
import { testGpu } from './gpu-harness';
import { runKernelCase, type KernelCase } from './kernel-case';

const CASES: (KernelCase & { lanes: number })[] = [
  { config: { method: 'int4', headDim: 96, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: Array.from({ length: 64 }, (_, i) => 1 + ((i * 7) % 40)), seed: 71, lanes: 2 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 32, numKvHeads: 8, pageSize: 16, rotateV: true, hadamardSignSeed: 3 }, contextLens: Array.from({ length: 16 }, (_, i) => 1 + ((i * 37) % 300)), seed: 72, lanes: 8 },
  { config: { method: 'fp16', headDim: 128, numQueryHeads: 8, numKvHeads: 2, pageSize: 16 }, contextLens: [17, 130, 64, 1], seed: 73, numSplits: 2, lanes: 8 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 16, numKvHeads: 4, pageSize: 16, queryInt8: true }, contextLens: Array.from({ length: 16 }, (_, i) => 2 + i * 5), seed: 74, integerQueries: true, lanes: 8 },
  { config: { method: 'int4-hadamard', headDim: 128, numQueryHeads: 4, numKvHeads: 1, pageSize: 16 }, contextLens: [33, 300], seed: 75, decodeStep: 'fused', lanes: 4 },
];

const label = (c: KernelCase) =>
  `${c.config.method}${c.config.queryInt8 ? '-q8' : ''}${c.config.rotateV ? '-KV' : ''}${c.config.hadamardSignSeed !== undefined ? '-signs' : ''} D=${c.config.headDim} Hq/Hkv=${c.config.numQueryHeads}/${c.config.numKvHeads} ${c.contextLens.length} seqs${c.decodeStep ? ` ${c.decodeStep} step` : ''}`;

if (LAVAPIPE_ICD_CANDIDATES.some((path) => existsSync(path))) {
  describe('subgroup decode kernel on lavapipe (subgroups of 8) vs float64 references', () => {
    for (const c of CASES) {
      it(label(c), async () => {
        const ctx = await testGpu({ adapter: 'lavapipe' });
        const run = await runKernelCase(ctx, c);
        try {
          const plan = run.cache.planAttention(run.seqIds, { numSplits: c.numSplits });
          expect(plan.kernel).toBe('subgroup');
          expect(plan.variant.key).toContain(`/l${c.lanes}t`);
          expectDecodeMatchesReferences(run, c);
        } finally {
          run.cache.destroy();
        }
      });
    }
  });
} else {
  describe('subgroup decode kernel on lavapipe', () => {
    it.skip('not run: lavapipe (Mesa ≥ 25) is not installed; scripts/install-debian-deps.sh installs it', () => {});
  });
}
