// A customer's Express server with Rendertron's own middleware (rendertron-middleware) in front of
// its app, pointed at Kiln's render service; the token goes in the proxy URL's path, the only place
// that middleware can carry one.
//   KILN_SERVICE_URL    the render service, e.g. http://localhost:8080/
//   KILN_SERVICE_TOKEN  a Kiln service token
//   KILN_APP_ORIGIN     where the app (the demo SPA) is served, e.g. http://127.0.0.1:5173
//   PORT                the port to listen on (default: a free one)
'use strict';

const express = require('express');
const rendertron = require('rendertron-middleware');
const { setting, proxyTo, listen } = require('./common');

const service = setting('KILN_SERVICE_URL').replace(/\/*$/, '/');
const app = express();
app.use(
  rendertron.makeMiddleware({
    proxyUrl: `${service}render/${setting('KILN_SERVICE_TOKEN')}/`,
  }),
);
app.use(proxyTo(setting('KILN_APP_ORIGIN')));
listen(app);
