import { defineConfig } from 'vite';

// The built files are embedded in the gauntlet binary (server/build.rs) and served at /,
// the pages' paths and /assets/.
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
