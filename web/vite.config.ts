import { defineConfig } from 'vite';

// The built files are embedded in the gauntlet binary and served at /, the pages' paths and
// /assets/. server/build.rs builds into cargo's OUT_DIR (`vite build --outDir …`); `dist` is
// only where a build by hand (`npm run build`) goes.
export default defineConfig({
  base: '/',
  // `npm run dev` serves the pages itself and passes API calls to a local gauntlet.
  server: {
    proxy: { '/api/': 'http://localhost:10902' },
  },
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2048,
  },
});
