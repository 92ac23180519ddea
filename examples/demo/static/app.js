// Kiln Pottery Supply — demo single-page app for the Kiln dynamic-rendering platform.
//
// No build step, no dependencies. The server sends an empty shell (index.html);
// everything a visitor (or a crawler) sees is created here, after JavaScript ran
// and fetched the data from the JSON API.

const SITE = 'Kiln Pottery Supply';
const SITE_DESCRIPTION =
  'Clay, glazes, tools and kiln furniture for potters — hand-picked by Kiln Pottery Supply.';
const DEFAULT_IMAGE = '/static/favicon.svg';
// Artificial pause before every data fetch, so the content only exists after
// the script has run *and* waited — a realistic SPA for the renderer to test.
const FETCH_DELAY_MS = 100;

// Prerender convention: tell a headless renderer when the page is complete.
window.prerenderReady = false;

const app = document.getElementById('app');
let currentNavigation = null; // AbortController of the navigation in progress

// ---------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const priceFormat = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD' });
const formatPrice = (cents) => priceFormat.format(cents / 100); // 1234 -> "$12.34"

const absoluteUrl = (pathOrUrl) => new URL(pathOrUrl, location.origin).href;

/** Create an element: h('a', { href: '/', dataset: { link: '' } }, 'Home'). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'class') el.className = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An in-app link that the router handles without a full page load. */
const link = (href, attrs, ...children) =>
  h('a', { href, ...attrs, dataset: { link: '', ...(attrs && attrs.dataset) } }, ...children);

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
  }
}

async function fetchJson(url, signal) {
  await sleep(FETCH_DELAY_MS);
  signal.throwIfAborted();
  const res = await fetch(url, { signal, headers: { Accept: 'application/json' } });
  if (!res.ok) throw new HttpError(res.status, `${url} answered ${res.status} ${res.statusText}`.trim());
  return res.json();
}

// ---------------------------------------------------------------------------
// <head> management: title, description, Open Graph, Twitter, canonical,
// JSON-LD and the prerender status code.
// ---------------------------------------------------------------------------

function upsertMeta(attr, key, content) {
  let el = document.head.querySelector(`meta[${attr}="${key}"]`);
  if (content === undefined || content === null) {
    el?.remove();
    return;
  }
  if (!el) {
    el = document.createElement('meta');
    el.setAttribute(attr, key);
    document.head.append(el);
  }
  el.setAttribute('content', content);
}

function upsertLink(rel, href) {
  let el = document.head.querySelector(`link[rel="${rel}"]`);
  if (!el) {
    el = document.createElement('link');
    el.setAttribute('rel', rel);
    document.head.append(el);
  }
  el.setAttribute('href', href);
}

function setJsonLd(data) {
  let el = document.head.querySelector('script[type="application/ld+json"]');
  if (!data) {
    el?.remove();
    return;
  }
  if (!el) {
    el = document.createElement('script');
    el.type = 'application/ld+json';
    document.head.append(el);
  }
  // Escape "<" so the serialized HTML can never contain "</script>".
  el.textContent = JSON.stringify(data, null, 2).replace(/</g, '\\u003c');
}

/**
 * Describe the current view in <head>.
 * @param {object} o
 * @param {string} [o.title]       page title without the site name (omit for the home page)
 * @param {string} o.description
 * @param {string} o.path          canonical path of this view
 * @param {string} [o.type]        og:type, "website" by default
 * @param {string} [o.image]       path or URL of the share image
 * @param {number} [o.status]      HTTP status a renderer should answer with (404, 503, …)
 * @param {string} [o.location]    where a redirect status sends the renderer's client
 * @param {string} [o.price]       product price in dollars, e.g. "12.34" (product pages)
 * @param {object} [o.jsonLd]      schema.org data
 */
function setHead({ title, description, path, type = 'website', image = DEFAULT_IMAGE, status, location: to, price, jsonLd }) {
  const fullTitle = title ? `${title} — ${SITE}` : SITE;
  const url = location.origin + path;
  document.title = fullTitle;
  upsertMeta('name', 'description', description);
  upsertMeta('property', 'og:site_name', SITE);
  upsertMeta('property', 'og:title', fullTitle);
  upsertMeta('property', 'og:description', description);
  upsertMeta('property', 'og:type', type);
  upsertMeta('property', 'og:url', url);
  upsertMeta('property', 'og:image', absoluteUrl(image));
  upsertMeta('name', 'twitter:card', 'summary_large_image');
  upsertMeta('name', 'twitter:title', fullTitle);
  upsertMeta('name', 'twitter:description', description);
  upsertLink('canonical', url);
  upsertMeta('property', 'product:price:amount', price ?? null);
  upsertMeta('property', 'product:price:currency', price ? 'USD' : null);
  upsertMeta('name', 'prerender-status-code', status ? String(status) : null);
  upsertMeta('name', 'prerender-header', to ? `Location: ${absoluteUrl(to)}` : null);
  setJsonLd(jsonLd);
}

// ---------------------------------------------------------------------------
// Layout and views
// ---------------------------------------------------------------------------

function layout(path, ...content) {
  const navLink = (href, label) =>
    link(href, { 'aria-current': path === href ? 'page' : null }, label);
  return [
    h('header', { class: 'site-header' },
      h('div', { class: 'wrap' },
        link('/', { class: 'brand' },
          h('img', { src: '/static/favicon.svg', alt: '', width: 28, height: 28 }),
          SITE),
        h('nav', { 'aria-label': 'Main' }, navLink('/', 'Products'), navLink('/about', 'About')))),
    h('main', { class: 'wrap', id: 'content', tabindex: '-1' }, ...content),
    h('footer', { class: 'site-footer' },
      h('div', { class: 'wrap' }, `© ${SITE} — a demo shop for the Kiln rendering platform.`)),
  ];
}

function show(path, ...content) {
  app.replaceChildren(...layout(path, ...content));
}

function showLoading(path) {
  app.setAttribute('aria-busy', 'true');
  show(path, h('p', { class: 'status loading', role: 'status' }, 'Loading…'));
}

function showError(path, error) {
  setHead({
    title: 'Something went wrong',
    description: 'The page could not be loaded. Please try again.',
    path,
    status: 503,
  });
  show(path,
    h('div', { class: 'status error', role: 'alert' },
      h('h1', {}, 'Something went wrong'),
      h('p', {}, 'We could not load this page: ', h('code', {}, error.message || String(error))),
      h('p', {},
        h('a', { href: path, class: 'button', id: 'retry' }, 'Try again'),
        ' ',
        link('/', {}, 'Back to all products'))));
  app.querySelector('#retry').addEventListener('click', (event) => {
    event.preventDefault();
    render(path);
  });
}

function notFound(path) {
  setHead({
    title: 'Not found',
    description: 'Sorry, there is nothing at this address.',
    path,
    status: 404,
  });
  show(path,
    h('section', { class: 'not-found' },
      h('h1', {}, 'Not found'),
      h('p', {}, 'Sorry, we could not find ', h('code', {}, path), '.'),
      h('p', {}, link('/', { class: 'button' }, '← Back to all products'))));
}

async function homeView({ path, signal }) {
  showLoading(path);
  const products = await fetchJson('/api/products', signal);
  setHead({ description: SITE_DESCRIPTION, path });
  show(path,
    h('section', { class: 'hero' },
      h('h1', {}, 'Supplies for the studio potter'),
      h('p', {}, SITE_DESCRIPTION)),
    h('ul', { class: 'product-grid' },
      products.map((p) =>
        h('li', { class: 'card' },
          link(`/products/${p.id}`, { class: 'card-link' },
            h('img', { src: p.image, alt: '', width: 320, height: 240, loading: 'lazy' }),
            h('h2', {}, p.name)),
          h('p', { class: 'summary' }, p.summary),
          h('p', { class: 'price' }, formatPrice(p.price_cents))))));
}

async function productView({ path, params, signal }) {
  showLoading(path);
  let product;
  try {
    product = await fetchJson(`/api/products/${encodeURIComponent(params.id)}`, signal);
  } catch (error) {
    if (error instanceof HttpError && error.status === 404) return notFound(path);
    throw error;
  }
  const url = location.origin + path;
  const price = (product.price_cents / 100).toFixed(2);
  setHead({
    title: product.name,
    description: product.summary,
    path,
    type: 'product',
    image: product.image,
    price,
    jsonLd: {
      '@context': 'https://schema.org',
      '@type': 'Product',
      sku: String(product.id),
      name: product.name,
      description: product.description,
      image: absoluteUrl(product.image),
      url,
      brand: { '@type': 'Brand', name: SITE },
      offers: {
        '@type': 'Offer',
        price,
        priceCurrency: 'USD',
        availability: 'https://schema.org/InStock',
        url,
      },
    },
  });
  show(path,
    h('p', { class: 'back' }, link('/', {}, '← All products')),
    h('article', { class: 'product' },
      h('img', { src: product.image, alt: product.name, width: 480, height: 360 }),
      h('div', { class: 'product-info' },
        h('h1', {}, product.name),
        h('p', { class: 'price' }, formatPrice(product.price_cents)),
        h('p', { class: 'summary' }, product.summary),
        h('p', { class: 'description' }, product.description),
        h('button', { type: 'button', class: 'button', disabled: true }, 'Add to cart (demo)'))));
}

// An old address, kept for links out there: a renderer answers it with a redirect to the home page.
function movedView({ path }) {
  setHead({
    title: 'Moved',
    description: 'The catalogue is now on the home page.',
    path,
    status: 301,
    location: '/',
  });
  show(path,
    h('section', { class: 'moved' },
      h('h1', {}, 'The catalogue has moved'),
      h('p', {}, link('/', { class: 'button' }, 'See all products →'))));
}

function aboutView({ path }) {
  setHead({
    title: 'About',
    description: 'Kiln Pottery Supply is a fictional shop used to demonstrate dynamic rendering with Kiln.',
    path,
  });
  show(path,
    h('article', { class: 'prose' },
      h('h1', {}, 'About Kiln Pottery Supply'),
      h('p', {},
        'Kiln Pottery Supply is a fictional shop. It is a small single-page application: ',
        'the server sends an empty HTML shell and this page is built in your browser by JavaScript.'),
      h('p', {},
        'Without help, a crawler that does not run JavaScript sees only the empty shell. ',
        'Kiln renders the page in a headless browser and serves the finished HTML — ',
        'titles, descriptions, Open Graph tags and structured data included.'),
      h('p', {}, link('/', {}, 'Browse the products →'))));
}

// ---------------------------------------------------------------------------
// Router
// ---------------------------------------------------------------------------

const routes = [
  { pattern: /^\/$/, view: homeView },
  { pattern: /^\/products\/(?<id>\d+)$/, view: productView },
  { pattern: /^\/about$/, view: aboutView },
  { pattern: /^\/catalogue$/, view: movedView },
];

function normalizePath(pathname) {
  return pathname.length > 1 ? pathname.replace(/\/+$/, '') || '/' : pathname;
}

function match(path) {
  for (const route of routes) {
    const m = route.pattern.exec(path);
    if (m) return { view: route.view, params: m.groups ?? {} };
  }
  return { view: ({ path: p }) => notFound(p), params: {} };
}

async function render(pathname = location.pathname) {
  const path = normalizePath(pathname);
  currentNavigation?.abort();
  const controller = new AbortController();
  currentNavigation = controller;
  window.prerenderReady = false;

  const { view, params } = match(path);
  try {
    await view({ path, params, signal: controller.signal });
  } catch (error) {
    if (controller.signal.aborted) return; // superseded by a newer navigation
    console.error(error);
    showError(path, error);
  }
  if (currentNavigation !== controller) return;
  app.removeAttribute('aria-busy');
  window.prerenderReady = true;
  document.dispatchEvent(new CustomEvent('app:rendered', { detail: { path } }));
}

export function navigate(url, { replace = false } = {}) {
  const target = new URL(url, location.href);
  if (target.pathname + target.search === location.pathname + location.search && !target.hash) {
    replace = true;
  }
  history[replace ? 'replaceState' : 'pushState']({}, '', target.pathname + target.search + target.hash);
  return render(target.pathname).then(() => {
    if (target.hash) document.getElementById(target.hash.slice(1))?.scrollIntoView();
    else window.scrollTo(0, 0);
    // Move focus to the new content for keyboard and screen-reader users.
    document.getElementById('content')?.focus({ preventScroll: true });
  });
}

document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest('a[data-link]');
  if (!a || a.hasAttribute('download')) return;
  if (a.target && a.target !== '_self') return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  event.preventDefault();
  navigate(url);
});

window.addEventListener('popstate', () => render(location.pathname));

render(location.pathname);
