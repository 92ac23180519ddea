import React from 'react';
import { Helmet } from 'react-helmet-async';

// Helmet defers head updates to a requestAnimationFrame by default; under headless Chromium's
// virtual time that frame sometimes never comes before the DOM is read, leaving the previous
// title in place. defer={false} writes the head in the same commit as the page body, so the
// fixture's head and body are always in step.
export default function Head({ children }) {
  return <Helmet defer={false}>{children}</Helmet>;
}
