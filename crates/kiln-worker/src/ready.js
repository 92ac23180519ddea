// Kiln's in-page readiness tracker, injected with Page.addScriptToEvaluateOnNewDocument so that it
// runs before any of the page's own scripts. The worker reads `window.__kilnState()` and treats the
// page as ready once no short timers and no fetch/XHR calls are pending, the DOM has been quiet for a
// while and the page has not asked to be waited for (`window.prerenderReady === false`). A page
// that said it was not ready and then that it is (`prerenderReady` false, then true) is ready as
// soon as nothing is pending, without the quiet window: it has told us.
//
// The worker does not poll while the page is busy: the tracker calls the `__kilnSignal` binding
// (Runtime.addBinding) when the page may have become ready (the last pending timer, request or
// frame settled, `prerenderReady` turned true, the load event ended), and the worker looks then.
// Without the binding (a page that replaced it) the worker's slow fallback look still finds it.
//
// Requests (and the reading of their bodies) are counted here as well as from the browser's network
// events, and a counted timer that just fired counts as activity for the quiet window: otherwise a
// timer callback that starts a request would leave a moment in which the timer is gone but the
// request's network event has not reached the worker yet.
(() => {
  'use strict';
  if (Object.prototype.hasOwnProperty.call(window, '__kilnState')) {
    return;
  }

  // Timers longer than this are not something a render should wait for (carousels, session pings).
  const MAX_COUNTED_DELAY_MS = 1000;
  // Timers created from timer callbacks nested deeper than this are polling loops: counting them
  // would keep the page from ever becoming ready.
  const MAX_COUNTED_DEPTH = 3;

  // The worker's binding, taken off the window so that the page neither sees nor replaces it.
  const SIGNAL = '__kilnSignal';
  let signalBinding = null;
  function takeBinding() {
    if (!signalBinding && typeof window[SIGNAL] === 'function') {
      signalBinding = window[SIGNAL];
      try {
        delete window[SIGNAL];
      } catch (_) {
        // Not deletable: it stays visible, and still works.
      }
    }
    return signalBinding;
  }
  takeBinding();

  const nativeSetTimeout = window.setTimeout;
  const nativeClearTimeout = window.clearTimeout;
  const nativeSetInterval = window.setInterval;
  const nativeClearInterval = window.clearInterval;
  const now = () => performance.now();

  // fetch/XHR calls older than this are long-polls: readiness does not wait for them (the worker
  // applies the same limit to the network events it sees).
  const LONG_REQUEST_MS = 2000;

  // Ids of the pending timers that readiness waits for.
  const pending = new Set();
  // Start times of the fetch/XHR calls in flight, by an id of our own.
  const requests = new Map();
  let nextRequest = 1;
  // The nesting depth of the timer callback running right now (0 outside any timer callback).
  const timerChain = { depth: 0 };
  let lastMutation = now();
  // When a counted timer's callback last finished (long ago to begin with; finite, so that the
  // state survives JSON).
  let lastTimer = -1e9;
  // When the last fetch/XHR call (or the reading of its body) finished.
  let lastRequestEnd = 0;

  // Tells the worker to look, once the microtasks of what just settled have run, if nothing the
  // page started is pending any more (one call per burst of settling).
  let signalQueued = false;
  function settled() {
    if (signalQueued) {
      return;
    }
    signalQueued = true;
    queueMicrotask(() => {
      signalQueued = false;
      const state = window.__kilnState();
      const binding = takeBinding();
      if (binding && state.timers === 0 && state.requests === 0 && state.prerenderReady) {
        try {
          binding('');
        } catch (_) {
          // A binding gone with its context: the worker's fallback look covers it.
        }
      }
    });
  }

  // Schedules `callback` with `schedule` (which is given the wrapped callback and returns an id) as
  // one link of `chain`: readiness waits for it (`pending` holds its id until it runs) if
  // `waitable` and the chain is not nested too deep; the callbacks it schedules in turn are one
  // level deeper.
  function scheduleInChain(chain, pending, waitable, schedule, callback) {
    const ownDepth = chain.depth + 1;
    const counted = waitable && ownDepth <= MAX_COUNTED_DEPTH;
    let id;
    id = schedule(function (...runArgs) {
      pending.delete(id);
      const outer = chain.depth;
      chain.depth = ownDepth;
      try {
        return callback.apply(this, runArgs);
      } finally {
        chain.depth = outer;
        if (counted) {
          lastTimer = now();
          settled();
        }
      }
    });
    if (counted) {
      pending.add(id);
    }
    return id;
  }

  function setTimeout(handler, delay, ...args) {
    if (typeof handler !== 'function') {
      // String handlers are rare and evaluated by the browser itself; they are not tracked.
      return nativeSetTimeout.call(window, handler, delay, ...args);
    }
    return scheduleInChain(
      timerChain,
      pending,
      (Number(delay) || 0) <= MAX_COUNTED_DELAY_MS,
      (run) => nativeSetTimeout.call(window, run, delay),
      function () {
        return handler.apply(this, args);
      },
    );
  }

  function clearTimeout(id) {
    pending.delete(id);
    return nativeClearTimeout.call(window, id);
  }

  // Intervals are never waited for, and timers they create count as deeply nested: an interval is a
  // polling loop by nature.
  function setInterval(handler, delay, ...args) {
    if (typeof handler !== 'function') {
      return nativeSetInterval.call(window, handler, delay, ...args);
    }
    const run = function () {
      const outer = timerChain.depth;
      timerChain.depth = MAX_COUNTED_DEPTH;
      try {
        return handler.apply(this, args);
      } finally {
        timerChain.depth = outer;
      }
    };
    return nativeSetInterval.call(window, run, delay);
  }

  function clearInterval(id) {
    // Timeout and interval ids share one namespace, and either function clears either kind.
    pending.delete(id);
    return nativeClearInterval.call(window, id);
  }

  // Returns the function that marks the request finished.
  function trackRequest() {
    const id = nextRequest++;
    requests.set(id, now());
    return () => {
      if (requests.delete(id)) {
        lastRequestEnd = now();
        settled();
      }
    };
  }

  // Calls `native`, counting the call as a request until the promise it returns settles.
  function trackedCall(native, self, args) {
    const done = trackRequest();
    let result;
    try {
      result = native.apply(self, args);
    } catch (error) {
      done();
      throw error;
    }
    Promise.resolve(result).then(done, done);
    return result;
  }

  const nativeFetch = window.fetch;
  if (typeof nativeFetch === 'function') {
    window.fetch = function fetch(...args) {
      return trackedCall(nativeFetch, this, args);
    };
  }

  // Reading a response's body is part of the request: the page usually acts on the body.
  const ResponseProto = window.Response && window.Response.prototype;
  if (ResponseProto) {
    for (const name of ['json', 'text', 'arrayBuffer', 'blob', 'formData']) {
      const native = ResponseProto[name];
      if (typeof native !== 'function') {
        continue;
      }
      ResponseProto[name] = function (...args) {
        return trackedCall(native, this, args);
      };
    }
  }

  const XHR = window.XMLHttpRequest;
  if (typeof XHR === 'function') {
    const nativeSend = XHR.prototype.send;
    XHR.prototype.send = function send(...args) {
      const done = trackRequest();
      this.addEventListener('loadend', done, { once: true });
      try {
        return nativeSend.apply(this, args);
      } catch (error) {
        done();
        throw error;
      }
    };
  }

  // Animation frames scheduled from outside an animation frame (or a few frames deep) are waited
  // for like short timers: libraries defer DOM and head updates to the next frame. Deeper chains are
  // animations that never end.
  const nativeRequestAnimationFrame = window.requestAnimationFrame;
  const nativeCancelAnimationFrame = window.cancelAnimationFrame;
  const pendingFrames = new Set();
  const frameChain = { depth: 0 };
  if (typeof nativeRequestAnimationFrame === 'function') {
    window.requestAnimationFrame = function requestAnimationFrame(callback) {
      if (typeof callback !== 'function') {
        return nativeRequestAnimationFrame.call(window, callback);
      }
      return scheduleInChain(
        frameChain,
        pendingFrames,
        true,
        (run) => nativeRequestAnimationFrame.call(window, run),
        callback,
      );
    };
    window.cancelAnimationFrame = function cancelAnimationFrame(id) {
      pendingFrames.delete(id);
      return nativeCancelAnimationFrame.call(window, id);
    };
  }

  // Schedulers (React's among them) run their work in slices posted through a MessageChannel: a
  // posted message counts as a pending timer until a handler receives it (or it is a second old:
  // a port nobody listens to must not hold the page forever).
  const MAX_MESSAGE_WAIT_MS = 1000;
  const postedMessages = [];
  const deliveredEvents = new WeakSet();
  const PortProto = window.MessagePort && window.MessagePort.prototype;
  if (PortProto && typeof PortProto.postMessage === 'function') {
    const delivered = (event) => {
      if (event && typeof event === 'object' && !deliveredEvents.has(event)) {
        deliveredEvents.add(event);
        postedMessages.shift();
      }
    };
    const wrapHandler = (handler) => function (event) {
      delivered(event);
      try {
        return handler.apply(this, arguments);
      } finally {
        lastTimer = now();
        settled();
      }
    };
    const nativePost = PortProto.postMessage;
    PortProto.postMessage = function postMessage(...args) {
      postedMessages.push(now());
      lastTimer = now();
      return nativePost.apply(this, args);
    };
    const onmessage = Object.getOwnPropertyDescriptor(PortProto, 'onmessage');
    if (onmessage && onmessage.set && onmessage.get) {
      const wrapped = new WeakMap();
      Object.defineProperty(PortProto, 'onmessage', {
        configurable: true,
        enumerable: onmessage.enumerable,
        get() {
          const current = onmessage.get.call(this);
          return (current && wrapped.get(current)) || current;
        },
        set(handler) {
          if (typeof handler === 'function') {
            const inner = wrapHandler(handler);
            wrapped.set(inner, handler);
            onmessage.set.call(this, inner);
          } else {
            onmessage.set.call(this, handler);
          }
        },
      });
    }
    const nativeAdd = PortProto.addEventListener;
    const nativeRemove = PortProto.removeEventListener;
    if (typeof nativeAdd === 'function' && typeof nativeRemove === 'function') {
      // One wrapper per listener, so that removing the listener removes its wrapper.
      const wrappers = new WeakMap();
      PortProto.addEventListener = function addEventListener(type, listener, options) {
        if (type === 'message' && typeof listener === 'function') {
          let inner = wrappers.get(listener);
          if (!inner) {
            inner = wrapHandler(listener);
            wrappers.set(listener, inner);
          }
          return nativeAdd.call(this, type, inner, options);
        }
        return nativeAdd.call(this, type, listener, options);
      };
      PortProto.removeEventListener = function removeEventListener(type, listener, options) {
        const inner = type === 'message' && listener && wrappers.get(listener);
        return nativeRemove.call(this, type, inner || listener, options);
      };
    }
  }
  function pendingMessages(at) {
    while (postedMessages.length && at - postedMessages[0] >= MAX_MESSAGE_WAIT_MS) {
      postedMessages.shift();
    }
    return postedMessages.length;
  }

  // `prerenderReady`, watched: turning it true after it was false is the page saying it is
  // complete. A page that defines the property itself replaces the watch; then only its value is
  // read.
  let prerenderValue = window.prerenderReady;
  let saidNotReady = prerenderValue === false;
  try {
    Object.defineProperty(window, 'prerenderReady', {
      configurable: true,
      enumerable: true,
      get() {
        return prerenderValue;
      },
      set(value) {
        prerenderValue = value;
        if (value === false) {
          saidNotReady = true;
        } else {
          settled();
        }
      },
    });
  } catch (_) {
    // A non-configurable property (a page cannot make one before this runs): read it as it is.
  }
  window.addEventListener('load', () => nativeSetTimeout.call(window, settled, 0));

  // Style sheets changed through the CSSOM (CSS-in-JS libraries insert their rules with
  // `insertRule`, leaving the `<style>` element's text empty): the snapshot writes their rules out
  // as text (see snapshot.js). Grouping rules (`@media`, `@supports`…) mark the sheet they are in.
  const changedSheets = new WeakSet();
  const markChanged = (sheet) => {
    if (sheet) {
      changedSheets.add(sheet);
    }
  };
  const watchMethods = (proto, names, sheetOf) => {
    if (!proto) {
      return;
    }
    for (const name of names) {
      const native = proto[name];
      if (typeof native !== 'function') {
        continue;
      }
      proto[name] = function (...args) {
        markChanged(sheetOf(this));
        return native.apply(this, args);
      };
    }
  };
  watchMethods(
    window.CSSStyleSheet && window.CSSStyleSheet.prototype,
    ['insertRule', 'deleteRule', 'addRule', 'removeRule', 'replace', 'replaceSync'],
    (sheet) => sheet,
  );
  for (const ruleType of ['CSSGroupingRule', 'CSSKeyframesRule']) {
    watchMethods(
      window[ruleType] && window[ruleType].prototype,
      ['insertRule', 'deleteRule', 'appendRule'],
      (rule) => rule.parentStyleSheet,
    );
  }
  Object.defineProperty(window, '__kilnSheetChanged', {
    value: (sheet) => changedSheets.has(sheet),
    enumerable: false,
    configurable: false,
    writable: false,
  });

  // Content a person reaches by scrolling. Google's renderer lays pages out in a very tall viewport
  // (about 9,300 px on desktop, 12,100 px on mobile), so sections loaded on intersection appear to
  // it; Kiln keeps the page's own viewport (a taller one would make `100vh` sections, and the
  // heights scripts derive from `innerHeight`, that tall in the snapshot) and instead extends the
  // bottom margin of every observer of the viewport to that height: what a person would scroll
  // into view within it counts as in view, and the readiness rules wait for what that starts.
  const TALL_VIEW = /*KILN:TALL_VIEW*/ { desktop: 9300, mobile: 12100 };
  // Phones are told apart by their width (renders emulate a 412-px-wide phone).
  const tallView = () => (window.innerWidth > 0 && window.innerWidth < 768 ? TALL_VIEW.mobile : TALL_VIEW.desktop);
  const NativeObserver = window.IntersectionObserver;
  if (TALL_VIEW && typeof NativeObserver === 'function') {
    const MARGIN = /^(-?[0-9.]+)(px|%)$/;
    const ofViewport = (options) => {
      const root = options && options.root;
      // An observer of a scrolling box (a carousel, say) sees what the box shows.
      return !root || root === document;
    };
    const extended = (options) => {
      const view = window.innerHeight || 0;
      const extra = Math.max(0, tallView() - view);
      const parts = String((options && options.rootMargin) || '0px').trim().split(/\s+/);
      const [top, right = top, bottom = top, left = right] = parts;
      const match = MARGIN.exec(bottom);
      if (!match || parts.length > 4) {
        return options;
      }
      const bottomPx = match[2] === '%' ? (Number(match[1]) * view) / 100 : Number(match[1]);
      return Object.assign({}, options, { rootMargin: `${top} ${right} ${bottomPx + extra}px ${left}` });
    };
    // The tall view is the top of the page, wherever it is scrolled to (the worker may scroll it,
    // see `__kilnScroll`): what comes into view below it is not reported.
    const withinView = (callback) => function (entries, observer) {
      const bound = tallView();
      const scrolled = window.scrollY || 0;
      const kept = entries.filter((entry) => !entry.isIntersecting || entry.boundingClientRect.top + scrolled < bound);
      if (kept.length > 0) {
        return callback.call(this, kept, observer);
      }
      return undefined;
    };
    const Observer = class IntersectionObserver extends NativeObserver {
      constructor(callback, options) {
        if (ofViewport(options) && typeof callback === 'function') {
          super(withinView(callback), extended(options));
        } else {
          super(callback, options);
        }
      }
    };
    try {
      Object.defineProperty(window, 'IntersectionObserver', {
        value: Observer,
        configurable: true,
        enumerable: false,
        writable: true,
      });
    } catch (_) {
      // Not replaceable: the page's observers see the page's own viewport.
    }
  }

  // Pages that act on scrolling itself (scroll-event lazy loaders, virtualised lists of the
  // window) see nothing of a tall view: the worker scrolls them through it once, a screen a frame,
  // and back to the top (`__kilnScroll`). Only pages that listen to the window's scrolling are
  // scrolled: for the others it would cost frames and change nothing.
  let scrollListeners = 0;
  const scrollTargets = () => [window, document, document.documentElement, document.body];
  const EventTargetProto = window.EventTarget && window.EventTarget.prototype;
  if (TALL_VIEW && EventTargetProto && typeof EventTargetProto.addEventListener === 'function') {
    const nativeAddListener = EventTargetProto.addEventListener;
    EventTargetProto.addEventListener = function addEventListener(type, ...rest) {
      if (type === 'scroll' && scrollTargets().includes(this)) {
        scrollListeners += 1;
      }
      return nativeAddListener.call(this, type, ...rest);
    };
  }
  const scrollsWithListeners = () => {
    if (scrollListeners === 0 && typeof window.onscroll !== 'function' && typeof document.onscroll !== 'function') {
      return false;
    }
    const scroller = document.scrollingElement || document.documentElement;
    return Boolean(scroller) && scroller.scrollHeight > window.innerHeight + 1;
  };
  const nextFrame = () => new Promise((resolve) => {
    if (typeof nativeRequestAnimationFrame === 'function') {
      nativeRequestAnimationFrame.call(window, () => resolve());
    }
    // A page that is not being drawn gets no frames.
    nativeSetTimeout.call(window, resolve, 100);
  });
  Object.defineProperty(window, '__kilnScroll', {
    value: async function __kilnScroll() {
      const scroller = document.scrollingElement || document.documentElement;
      const view = window.innerHeight;
      if (!TALL_VIEW || !scroller || view <= 0) {
        return 0;
      }
      const tall = tallView();
      let steps = 0;
      let y = window.scrollY;
      // Forty screens at most, whatever the page does while it is scrolled.
      while (steps < 40) {
        const bottom = Math.min(scroller.scrollHeight, tall);
        if (y + view >= bottom) {
          break;
        }
        y = Math.min(y + view, bottom - view);
        window.scrollTo(0, y);
        steps += 1;
        await nextFrame();
      }
      if (steps > 0) {
        window.scrollTo(0, 0);
        await nextFrame();
      }
      return steps;
    },
    enumerable: false,
    configurable: false,
    writable: false,
  });

  window.setTimeout = setTimeout;
  window.clearTimeout = clearTimeout;
  window.setInterval = setInterval;
  window.clearInterval = clearInterval;

  // Any change to the document's structure or text counts; style and class changes alone do not,
  // since animations and carousels make them forever.
  const observer = new MutationObserver((records) => {
    for (const record of records) {
      if (record.type !== 'attributes' || (record.attributeName !== 'style' && record.attributeName !== 'class')) {
        lastMutation = now();
        return;
      }
    }
  });
  observer.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });

  Object.defineProperty(window, '__kilnState', {
    value: function __kilnState() {
      const at = now();
      let young = 0;
      for (const started of requests.values()) {
        if (at - started < LONG_REQUEST_MS) {
          young += 1;
        }
      }
      return {
        timers: pending.size + pendingFrames.size + pendingMessages(at),
        requests: young,
        sinceMutationMs: at - lastMutation,
        sinceTimerMs: at - lastTimer,
        // When the page last changed its content, by its own clock (for Kiln's overhead figures).
        contentAtMs: Math.max(lastMutation, lastRequestEnd),
        prerenderReady: window.prerenderReady !== false,
        // The page acts on scrolling and is taller than its viewport: worth a scroll through.
        wantsScroll: Boolean(TALL_VIEW) && scrollsWithListeners(),
        // The page said it was not ready and now says it is.
        declaredReady: saidNotReady && window.prerenderReady !== false && window.prerenderReady !== undefined,
      };
    },
    enumerable: false,
    configurable: false,
    writable: false,
  });
})();
