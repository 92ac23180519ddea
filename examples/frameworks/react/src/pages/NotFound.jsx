import React from 'react';
import { Link } from 'react-router-dom';
import Head from '../Head.jsx';
import { pageTitle } from '../shop.js';

export default function NotFound({ what = 'Page' }) {
  return (
    <>
      <Head>
        <title>{pageTitle(`${what} not found`)}</title>
        <meta name="prerender-status-code" content="404" />
      </Head>
      <h1>{`${what} not found`}</h1>
      <Link to="/">Back to the shop</Link>
    </>
  );
}
