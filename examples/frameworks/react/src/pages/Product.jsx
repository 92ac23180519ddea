import React, { useEffect, useState } from 'react';
import { Link, useParams } from 'react-router-dom';
import Head from '../Head.jsx';
import { SITE, loadProduct, pageTitle, productJsonLd } from '../shop.js';
import NotFound from './NotFound.jsx';

export default function Product() {
  const { id } = useParams();
  const [state, setState] = useState({ status: 'loading' });

  useEffect(() => {
    let live = true;
    setState({ status: 'loading' });
    loadProduct(id).then((result) => {
      if (live) setState(result);
    });
    return () => {
      live = false;
    };
  }, [id]);

  if (state.status === 'loading') {
    return (
      <>
        <Head>
          <title>{pageTitle('Loading')}</title>
        </Head>
        <p className="loading">Loading…</p>
      </>
    );
  }
  if (state.status === 'missing') return <NotFound what="Product" />;
  if (state.status === 'error') {
    return (
      <>
        <Head>
          <title>{pageTitle('Error')}</title>
          <meta name="prerender-status-code" content="503" />
        </Head>
        <h1>Could not load the product</h1>
      </>
    );
  }

  const p = state.product;
  return (
    <>
      <Head>
        <title>{pageTitle(p.name)}</title>
        <meta name="description" content={p.description} />
        <meta property="og:title" content={p.name} />
        <meta property="og:type" content="product" />
        <meta name="twitter:card" content="summary" />
        <link rel="canonical" href={`${SITE}/products/${p.id}`} />
        <script type="application/ld+json">{JSON.stringify(productJsonLd(p))}</script>
      </Head>
      <article className="product">
        <h1>{p.name}</h1>
        <p className="price">{`${p.price} ${p.currency}`}</p>
        <p className="description">{p.description}</p>
      </article>
      <Link to="/">Back to the shop</Link>
    </>
  );
}
