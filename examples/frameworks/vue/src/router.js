import { createRouter, createWebHistory } from 'vue-router';
import Home from './pages/Home.vue';
import Product from './pages/Product.vue';
import NotFound from './pages/NotFound.vue';

export default createRouter({
  history: createWebHistory('/'),
  routes: [
    { path: '/', component: Home },
    { path: '/products/:id', component: Product, props: true },
    // Code-split: /about loads a second script chunk after the main bundle has run.
    { path: '/about', component: () => import('./pages/About.vue') },
    { path: '/:pathMatch(.*)*', component: NotFound },
  ],
});
