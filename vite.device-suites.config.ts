import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

// The GPU test suites bundled into one Node ES module (test/device/run-suites.ts), `vitest` replaced
// by a small runner, so that they run on a GPU machine through the device kit (docs/benchmarks.md).
export default defineConfig({
  resolve: { alias: { vitest: fileURLToPath(new URL('test/device/vitest-shim.ts', import.meta.url)) } },
  build: {
    ssr: 'test/device/run-suites.ts',
    outDir: 'dist-device',
    target: 'node20',
    emptyOutDir: true,
    rollupOptions: { output: { entryFileNames: 'suites.mjs', format: 'es' } },
  },
  ssr: { noExternal: true, external: ['webgpu'] },
});
