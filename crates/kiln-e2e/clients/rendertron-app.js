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
    // The middleware gives up after 11 s by default (Rendertron's own render limit is 10 s) and
    // serves the app's shell; Kiln waits up to a domain's bot_wait_ms (20 s by default) for a
    // render before answering with the site's own page. Give Kiln that long, as its users should.
    timeout: 30000,
  }),
);
app.use(proxyTo(setting('KILN_APP_ORIGIN')));
listen(app);
