import React, { useEffect, useState } from 'react';
import styled from '@emotion/styled';
import { Link, useParams } from 'react-router-dom';
import Head from '../Head.jsx';
import { SITE, loadProduct, pageTitle, productJsonLd } from '../shop.js';
import NotFound from './NotFound.jsx';

// The product card, styled with emotion (see Layout.jsx); it keeps its plain "product" class too.
const Card = styled.article`
  margin: 16px 0;
  padding: 24px;
  border: 4px solid rgb(190, 120, 40);
  border-radius: 12px;
  background-color: rgb(255, 248, 235);
  .price {
    font-size: 28px;
    color: rgb(190, 120, 40);
  }
`;

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
      <Card className="product">
        <h1>{p.name}</h1>
        <p className="price">{`${p.price} ${p.currency}`}</p>
        <p className="description">{p.description}</p>
      </Card>
      <Link to="/">Back to the shop</Link>
    </>
  );
}
