/**
 * The GPU test suites as one Node file for a GPU machine without node_modules (the lent H200 through
 * the device kit): `npm run device-suites` bundles this file with `vitest` resolved to
 * test/device/vitest-shim.ts, then `node dist-device/suites.mjs [--grep RE] [--skip RE]` runs the
 * suites below on the machine's default adapter, one test at a time, and prints one line per test
 * and the counts (`tests: N passed, N failed, N skipped, N filtered out`; exit status 1 on any failure).
 *
 * `--skip` takes tests out by full name, e.g. `--skip 'SwiftShader|lavapipe'` for the software
 * grids that the CI machine runs anyway.
 */
import '../paged-decode.test';
import '../decode-step.test';
import '../split-merge.test';
import '../paged-decode-matrix.test';
import '../cache-write.test';
import '../attention-workspace.test';
import '../kv-cache-errors.test';
import '../serving-pools.test';
import { testGpu } from '../gpu-harness';
import { runSuite, takeFileSuite, type Outcome } from './vitest-shim';

function option(name: string): RegExp | undefined {
  const i = process.argv.indexOf(name);
  if (i < 0) return undefined;
  const value = process.argv[i + 1];
  if (value === undefined) throw new Error(`${name} needs a regular expression`);
  return new RegExp(value);
}

const grep = option('--grep');
const skip = option('--skip');
const ctx = await testGpu();
const features = Object.entries(ctx.features).filter(([, on]) => on).map(([name]) => name);
console.log(`adapter: ${ctx.adapterInfo.vendor} ${ctx.adapterInfo.description}; features: ${features.join(', ')}`);

const counts = { passed: 0, failed: 0, skipped: 0, filtered: 0 };
const report = (o: Outcome) => {
  counts[o.state]++;
  if (o.state === 'filtered') return;
  const tag = o.state === 'passed' ? 'ok  ' : o.state === 'failed' ? 'FAIL' : 'not run:';
  console.log(`${tag} ${o.name}${o.state === 'passed' ? ` (${(o.ms / 1000).toFixed(1)} s)` : ''}`);
  if (o.message) console.log(`     ${o.message.split('\n').join('\n     ')}`);
};
await runSuite(takeFileSuite('suites'), (name) => (!grep || grep.test(name)) && !(skip && skip.test(name)), report);
console.log(`tests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped, ${counts.filtered} filtered out by --grep / --skip`);
process.exit(counts.failed > 0 ? 1 : 0);
