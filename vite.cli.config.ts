import { defineConfig } from 'vite';

// The headless CLI, bundled into one Node ES module whose only bare import is `webgpu` (Dawn),
// so the same file runs here and on a GPU server (see docs/benchmarks.md).
export default defineConfig({
  build: {
    ssr: 'src/cli/cli.ts',
    outDir: 'dist-cli',
    target: 'node20',
    emptyOutDir: true,
    rollupOptions: { output: { entryFileNames: 'cli.mjs', format: 'es' } },
  },
  ssr: { noExternal: true, external: ['webgpu'] },
});
