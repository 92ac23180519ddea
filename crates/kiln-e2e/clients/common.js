// What both customer apps share: their settings from the environment, "the app" itself (every
// request the middleware lets through is proxied to the demo SPA's origin, so people get its bytes
// exactly), and listening on a free loopback port, announced on stdout for the test to read.
'use strict';

const http = require('http');

/** The environment variable `name`; the app stops with a message when it is not set. */
function setting(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
}

/** An Express handler that passes each request on to `origin` (http://host:port) unchanged. */
function proxyTo(origin) {
  const target = new URL(origin);
  return (req, res) => {
    const upstream = http.request(
      {
        host: target.hostname,
        port: target.port,
        method: req.method,
        path: req.originalUrl,
        headers: { ...req.headers, host: target.host },
      },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', (error) => {
      res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`the app's origin could not be reached: ${error.message}\n`);
    });
    req.pipe(upstream);
  };
}

/** Listens on 127.0.0.1 (PORT, or a free port) and prints `listening on <port>`. */
function listen(app) {
  const server = app.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    console.log(`listening on ${server.address().port}`);
  });
}

module.exports = { setting, proxyTo, listen };
