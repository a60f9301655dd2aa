// The dashboard's build: a static single-page app (Preact, Pico CSS) that every node's admin
// gateway serves from ui/dist. No inline scripts or styles, so the gateway's Content Security
// Policy can forbid them.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

export default defineConfig({
  root: fileURLToPath(new URL('.', import.meta.url)),
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // Hashed names: the gateway caches /assets/* for a year and index.html never.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  logLevel: 'warn',
});
