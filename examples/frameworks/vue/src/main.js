import { createApp } from 'vue';
import { createHead } from '@unhead/vue/client';
import App from './App.vue';
import router from './router.js';
import './components/kiln-badge.js';

createApp(App).use(router).use(createHead()).mount('#app');
