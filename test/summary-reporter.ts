/**
 * Prints the tests that did not run, by name, then one closing line, `tests: N passed, N failed, N
 * skipped`, after Vitest's own summary, so any tool that reads the last line of a test run understands
 * the result.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>, unhandledErrors: ReadonlyArray<unknown>): void {
    let passed = 0;
    let failed = unhandledErrors.length;
    const skipped: string[] = [];
    for (const module of testModules) {
      if (module.state() === 'failed' && [...module.children.allTests()].length === 0) failed++;
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped.push(`${module.moduleId.split('/test/').pop()}: ${test.fullName}`);
      }
    }
    // what did not run is named (e.g. the tensor-core step on a machine without them), not only counted
    const named = skipped.map((name) => `  not run: ${name}\n`).join('');
    process.stdout.write(`\n${named}tests: ${passed} passed, ${failed} failed, ${skipped.length} skipped\n`);
  }
}
