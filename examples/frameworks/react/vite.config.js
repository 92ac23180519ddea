import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// Built output (dist/) is committed: keep it small and free of sourcemaps.
export default defineConfig({
  base: '/',
  plugins: [react()],
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    minify: true,
    reportCompressedSize: false,
  },
});
