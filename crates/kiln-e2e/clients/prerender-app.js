// A customer's Express server with prerender.io's own middleware (prerender-node) in front of its
// app, pointed at Kiln's render service instead of prerender.io's.
//   KILN_SERVICE_URL    the render service, e.g. http://localhost:8080/
//   KILN_SERVICE_TOKEN  a Kiln service token
//   KILN_APP_ORIGIN     where the app (the demo SPA) is served, e.g. http://127.0.0.1:5173
//   PORT                the port to listen on (default: a free one)
'use strict';

const express = require('express');
const prerender = require('prerender-node');
const { setting, proxyTo, listen } = require('./common');

const app = express();
app.use(
  prerender
    .set('prerenderServiceUrl', setting('KILN_SERVICE_URL'))
    .set('prerenderToken', setting('KILN_SERVICE_TOKEN')),
);
app.use(proxyTo(setting('KILN_APP_ORIGIN')));
listen(app);
