import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

// Built output (dist/) is committed: keep it small and free of sourcemaps.
export default defineConfig({
  base: '/',
  // <kiln-badge> is a Lit web component (src/components/kiln-badge.js), not a Vue component.
  plugins: [vue({ template: { compilerOptions: { isCustomElement: (tag) => tag.startsWith('kiln-') } } })],
  define: {
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    minify: true,
    reportCompressedSize: false,
  },
});
