import { defineConfig } from 'vite';

// The demo page. WGSL files are imported as text (`?raw`) by the page, the CLI and the tests alike.
export default defineConfig({
  base: './',
  build: { target: 'es2022', outDir: 'dist', chunkSizeWarningLimit: 1024 },
  server: { host: '127.0.0.1' },
});
