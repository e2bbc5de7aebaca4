import { defineConfig } from 'vite';

// The built files are embedded in the gauntlet binary (server/build.rs) and served at /,
// the pages' paths and /assets/.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    assetsDir: 'assets',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 2048,
  },
});
