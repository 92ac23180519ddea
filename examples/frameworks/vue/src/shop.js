// What the React and Vue fixtures share (the React app has the same file with FRAMEWORK = 'React').
export const FRAMEWORK = 'Vue';
export const SITE = 'https://shop.example';

export const pageTitle = (name) => `${name} · ${FRAMEWORK} shop`;

// Fetches /api/products/<id>.json after 50 ms of simulated latency.
// Resolves to { status: 'ok', product } | { status: 'missing' } | { status: 'error' }.
// A 404, a non-numeric id, or a body that is not JSON (a server whose SPA fallback answers
// index.html) all count as a missing product.
export async function loadProduct(id) {
  if (!/^[0-9]+$/.test(id)) return { status: 'missing' };
  await new Promise((resolve) => setTimeout(resolve, 50));
  let res;
  try {
    res = await fetch(`/api/products/${id}.json`, { headers: { accept: 'application/json' } });
  } catch {
    return { status: 'error' };
  }
  if (res.status === 404) return { status: 'missing' };
  if (!res.ok) return { status: 'error' };
  try {
    return { status: 'ok', product: await res.json() };
  } catch {
    return { status: 'missing' };
  }
}

// schema.org Product for the page's application/ld+json script.
export function productJsonLd(product) {
  return {
    '@context': 'https://schema.org',
    '@type': 'Product',
    name: product.name,
    description: product.description,
    url: `${SITE}/products/${product.id}`,
    offers: {
      '@type': 'Offer',
      price: product.price,
      priceCurrency: product.currency,
      availability: 'https://schema.org/InStock',
    },
  };
}
