import React from 'react';
import { Link } from 'react-router-dom';
import Head from '../Head.jsx';
import { pageTitle } from '../shop.js';

// Loaded lazily (its own chunk in dist/assets/About-*.js).
export default function About() {
  return (
    <>
      <Head>
        <title>{pageTitle('About')}</title>
      </Head>
      <h1>About us</h1>
      <p>We are a small workshop selling handmade furniture and lamps.</p>
      <Link to="/">Back to the shop</Link>
    </>
  );
}
