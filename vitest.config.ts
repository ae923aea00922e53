import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', ...(process.env.SCRATCH ? ['scratch/**/*.test.ts'] : [])],
    // GPU suites share one Dawn device per worker; SwiftShader is slow, so allow generous timeouts.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
