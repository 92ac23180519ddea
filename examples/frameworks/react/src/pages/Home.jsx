import React from 'react';
import { Link } from 'react-router-dom';
import Head from '../Head.jsx';
import { FRAMEWORK, pageTitle } from '../shop.js';

export default function Home() {
  return (
    <>
      <Head>
        <title>{pageTitle('Home')}</title>
      </Head>
      <h1>{`Kiln ${FRAMEWORK} demo`}</h1>
      <ul className="links">
        <li><Link to="/products/1">Walnut desk</Link></li>
        <li><Link to="/products/2">Oak chair</Link></li>
        <li><Link to="/products/3">Linen lamp</Link></li>
        <li><Link to="/about">About us</Link></li>
      </ul>
    </>
  );
}
