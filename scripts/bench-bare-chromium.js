// "Chromium alone": the render-cost benchmark's floor (scripts/bench-render-cost.sh starts it). About
// the least any renderer on this machine can do a page with: one Chromium, a pool of tabs made up
// front, a raw CDP client and a simple "the page is done" rule. No isolation between renders, no
// queue beyond waiting for a free tab, no render cache, no limits, no safety: not a product, only a
// floor.
//
//   GET /render?url=<URL>   200 text/html: the page's DOM, serialised once it is done
//
// Environment: PORT (where it listens, on 127.0.0.1), BARE_CHROME (the browser; Kiln's worker's
// default), BARE_TABS (the pool: the benchmark's highest level of renders at once). `ws` comes from
// NODE_PATH (installed from npm by the benchmark).
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');

const CHROME = process.env.BARE_CHROME || '/usr/lib/chromium/chromium-headless-shell';
const PORT = Number(process.env.PORT);
const TABS = Number(process.env.BARE_TABS || 8);
// Done when the DOM and the network have been quiet this long (Kiln's worker's default too).
const QUIET_MS = 50;
const POLL_MS = 10;
const TIMEOUT_MS = 30000;

// Runs in every document before the page's own scripts: when the DOM last changed, and the short
// timers pending. The timers are needed too: the React app waits 50 ms in a timer before it fetches,
// so that the DOM and the network are quiet for as long as the quiet window while the page is not
// done (Kiln's worker counts them the same way). A timer that fires counts as a change, so that the
// fetch it starts has the time to show up in the network events.
const TRACKER = `(() => {
  window.__bareChanged = performance.now();
  new MutationObserver(() => { window.__bareChanged = performance.now(); })
    .observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
  const timers = new Set(), setTimeout_ = window.setTimeout, clearTimeout_ = window.clearTimeout;
  window.__bareTimers = timers;
  window.setTimeout = function (callback, ms, ...args) {
    // Longer ones (carousels, session pings) are not what a render waits for.
    if (typeof callback !== 'function' || Number(ms) > 1000) return setTimeout_.apply(window, arguments);
    const id = setTimeout_(() => {
      timers.delete(id);
      window.__bareChanged = performance.now();
      callback.apply(window, args);
    }, ms);
    timers.add(id);
    return id;
  };
  window.clearTimeout = (id) => { timers.delete(id); clearTimeout_(id); };
})();`;
// Milliseconds since the DOM last changed, or -1 while the page is not loaded, still says
// prerenderReady = false or has a short timer pending. The about:blank check: the tab's previous
// document is not the page.
const SINCE_CHANGE = `(() => location.href !== 'about:blank' && document.readyState === 'complete'
  && (!('prerenderReady' in window) || window.prerenderReady === true) && window.__bareTimers.size === 0
  ? performance.now() - window.__bareChanged : -1)()`;
const SERIALISE = `(document.doctype ? new XMLSerializer().serializeToString(document.doctype) + '\\n' : '')
  + document.documentElement.outerHTML`;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// --- the browser -----------------------------------------------------------------------------
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-bare-chromium-'));
const chrome = spawn(CHROME, [
  '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--hide-scrollbars',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
  '--remote-debugging-port=0', `--user-data-dir=${profile}`, 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe'] });
// However this process ends, the browser and its profile go with it.
process.on('exit', () => {
  chrome.kill('SIGKILL');
  fs.rmSync(profile, { recursive: true, force: true });
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
chrome.on('exit', (code, signal) => {
  console.error(`Chromium exited (${signal || code})`);
  process.exit(1);
});

// Chromium prints its DevTools address on stderr; the rest of stderr goes to our log, read to the
// end so that a full pipe never blocks the browser.
function devtoolsUrl() {
  return new Promise((resolve) => {
    let seen = '';
    chrome.stderr.on('data', (chunk) => {
      process.stderr.write(chunk);
      if (seen === null) return;
      seen += chunk;
      const found = seen.match(/DevTools listening on (ws:\/\/\S+)/);
      if (found) {
        seen = null;
        resolve(found[1]);
      }
    });
  });
}

// --- CDP: one WebSocket, commands by id, events by session to their tab ----------------------
let ws;
let lastId = 0;
const replies = new Map(); // id -> { resolve, reject, method }
const tabsBySession = new Map();
function send(method, params = {}, sessionId) {
  return new Promise((resolve, reject) => {
    const id = ++lastId;
    replies.set(id, { resolve, reject, method });
    ws.send(JSON.stringify({ id, method, params, sessionId }));
  });
}
function onMessage(data) {
  const message = JSON.parse(data);
  if (message.id) {
    const reply = replies.get(message.id);
    replies.delete(message.id);
    if (message.error) reply.reject(new Error(`${reply.method}: ${message.error.message}`));
    else reply.resolve(message.result);
    return;
  }
  const tab = tabsBySession.get(message.sessionId);
  if (!tab) return;
  // A tab's requests in flight, and when its network was last active.
  const { method, params } = message;
  if (method === 'Network.requestWillBeSent') tab.inFlight.add(params.requestId);
  else if (method === 'Network.loadingFinished' || method === 'Network.loadingFailed') tab.inFlight.delete(params.requestId);
  else return;
  tab.networkAt = Date.now();
}

// A tab in a browser context of its own, with the tracker and the network events on.
async function newTab() {
  const { browserContextId } = await send('Target.createBrowserContext');
  const { targetId } = await send('Target.createTarget', { url: 'about:blank', browserContextId });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const tab = { sessionId, inFlight: new Set(), networkAt: 0 };
  tabsBySession.set(sessionId, tab);
  await send('Page.enable', {}, sessionId);
  await send('Network.enable', {}, sessionId);
  await send('Page.addScriptToEvaluateOnNewDocument', { source: TRACKER }, sessionId);
  return tab;
}

// --- the pool: a request waits for a free tab ------------------------------------------------
const free = [];
const waiting = [];
const takeTab = () => (free.length ? Promise.resolve(free.pop()) : new Promise((resolve) => waiting.push(resolve)));
const giveTab = (tab) => (waiting.length ? waiting.shift()(tab) : free.push(tab));

async function render(tab, url) {
  tab.inFlight.clear();
  tab.networkAt = Date.now();
  const navigation = await send('Page.navigate', { url }, tab.sessionId);
  if (navigation.errorText) throw Object.assign(new Error(navigation.errorText), { status: 502 });
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    // Fails while a document is being replaced: not done yet.
    const look = await send('Runtime.evaluate', { expression: SINCE_CHANGE, returnByValue: true }, tab.sessionId)
      .catch(() => null);
    const sinceChange = look && look.result ? look.result.value : -1;
    if (sinceChange >= QUIET_MS && tab.inFlight.size === 0 && Date.now() - tab.networkAt >= QUIET_MS) break;
    if (Date.now() > deadline) throw Object.assign(new Error('not done in time'), { status: 504 });
    await sleep(POLL_MS);
  }
  const { result } = await send('Runtime.evaluate', { expression: SERIALISE, returnByValue: true }, tab.sessionId);
  return result.value;
}

async function serve(request, response) {
  const asked = new URL(request.url, 'http://localhost');
  const url = asked.searchParams.get('url');
  if (request.method !== 'GET' || asked.pathname !== '/render' || !url) {
    response.writeHead(404).end();
    return;
  }
  const tab = await takeTab();
  try {
    const body = await render(tab, url);
    response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(body);
  } catch (error) {
    response.writeHead(error.status || 500, { 'Content-Type': 'text/plain' }).end(`${error.message}\n`);
  } finally {
    // Back to the pool only once the page is gone, so that it does no work for the next render.
    await send('Page.navigate', { url: 'about:blank' }, tab.sessionId).catch(() => {});
    giveTab(tab);
  }
}

(async () => {
  ws = new WebSocket(await devtoolsUrl(), { perMessageDeflate: false, maxPayload: 256 * 1024 * 1024 });
  ws.on('message', onMessage);
  ws.on('close', () => {
    console.error('the DevTools connection closed');
    process.exit(1);
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  for (let i = 0; i < TABS; i++) free.push(await newTab());
  // Listening only now, so that an open port means ready.
  http.createServer(serve).listen(PORT, '127.0.0.1', () => console.error(`ready: ${TABS} tabs on :${PORT}`));
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
