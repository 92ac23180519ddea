// Serialises the document as it stands, for the snapshot bots get: open shadow roots included (as
// declarative `<template shadowrootmode>`), with its doctype. Scripts, `<base>` and meta tags are
// the business of output.rs, in Rust.
//
// With `faithful` (KILN_RENDER_FIDELITY, on by default), what the page holds only in the browser's
// memory is first written into the markup, so that a browser reading the snapshot without scripts
// lays out and shows what a person saw:
// - style sheets changed through the CSSOM (ready.js marks them: CSS-in-JS libraries insert their
//   rules with `insertRule` and leave the `<style>` text empty) get their rules as text;
// - adopted style sheets (`adoptedStyleSheets`, constructable sheets of web-component libraries)
//   become `<style>` elements after the scope's own styles: adopted sheets come last in the
//   cascade, in the document and in each shadow root;
// - form state set by script (values, checked boxes, selected options) becomes attributes, except
//   passwords' values, which are never written out.
// The live document is changed in place: it is serialised straight after, and the tab's next use
// navigates it away.
(faithful) => {
  const root = document.documentElement;
  if (!root) return null;
  const dt = document.doctype;
  let doctype = '';
  if (dt) {
    doctype = '<!DOCTYPE ' + dt.name
      + (dt.publicId ? ' PUBLIC "' + dt.publicId + '"' : (dt.systemId ? ' SYSTEM' : ''))
      + (dt.systemId ? ' "' + dt.systemId + '"' : '') + '>';
  }
  const shadowRoots = [];
  const collect = (scope) => {
    for (const el of scope.querySelectorAll('*')) {
      if (el.shadowRoot) { shadowRoots.push(el.shadowRoot); collect(el.shadowRoot); }
    }
  };
  collect(document);

  if (faithful) {
    const changed = typeof window.__kilnSheetChanged === 'function' ? window.__kilnSheetChanged : () => false;
    // A sheet's rules as text, or null when they cannot be read (a cross-origin sheet).
    const rulesOf = (sheet) => {
      try {
        return Array.from(sheet.cssRules, (rule) => rule.cssText).join('\n');
      } catch (_) {
        return null;
      }
    };
    const styleElement = (text, media, marker) => {
      const style = document.createElement('style');
      if (media) style.setAttribute('media', media);
      style.setAttribute(marker, '');
      style.textContent = text;
      return style;
    };
    for (const scope of [document, ...shadowRoots]) {
      for (const el of scope.querySelectorAll('style')) {
        const sheet = el.sheet;
        if (!sheet) continue;
        if (changed(sheet) || (sheet.cssRules.length > 0 && !el.textContent.trim())) {
          const text = rulesOf(sheet);
          if (text !== null) el.textContent = text;
        }
        // A sheet switched off by script (a theme switcher) stays off.
        if (sheet.disabled) el.setAttribute('media', 'not all');
      }
      for (const link of scope.querySelectorAll('link[rel~="stylesheet" i]')) {
        const sheet = link.sheet;
        if (!sheet) continue;
        if (sheet.disabled) {
          link.setAttribute('disabled', '');
        } else if (changed(sheet)) {
          const text = rulesOf(sheet);
          if (text !== null) link.replaceWith(styleElement(text, link.getAttribute('media'), 'data-kiln-cssom'));
        }
      }
      const adopted = Array.from(scope.adoptedStyleSheets || [])
        .filter((sheet) => !sheet.disabled)
        .map((sheet) => {
          const text = rulesOf(sheet) || '';
          const media = sheet.media && sheet.media.mediaText;
          return media ? '@media ' + media + ' {\n' + text + '\n}' : text;
        })
        .filter((text) => text.trim());
      if (adopted.length) {
        const host = scope === document ? (document.body || root) : scope;
        host.appendChild(styleElement(adopted.join('\n'), null, 'data-kiln-adopted'));
      }
      for (const input of scope.querySelectorAll('input')) {
        const type = (input.type || '').toLowerCase();
        if (type === 'checkbox' || type === 'radio') {
          input.toggleAttribute('checked', input.checked);
        } else if (type === 'password') {
          input.removeAttribute('value');
        } else if (type !== 'file' && input.value !== (input.getAttribute('value') || '')) {
          input.setAttribute('value', input.value);
        }
      }
      for (const area of scope.querySelectorAll('textarea')) {
        if (area.value !== area.textContent) area.textContent = area.value;
      }
      for (const option of scope.querySelectorAll('option')) {
        if (option.selected !== option.hasAttribute('selected')) {
          option.toggleAttribute('selected', option.selected);
        }
      }
    }
  }

  const escape = (v) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;');
  const attributes = Array.from(root.attributes, (a) => ' ' + a.name + '="' + escape(a.value) + '"').join('');
  const inner = typeof root.getHTML === 'function'
    ? root.getHTML({ serializableShadowRoots: true, shadowRoots })
    : root.innerHTML;
  const html = doctype + '<' + root.localName + attributes + '>' + inner + '</' + root.localName + '>';
  // The page is read: its frames go, so that a frame that never loaded (a lazy one below the fold,
  // one the egress proxy refused) no longer holds the tab's navigation open in chromiumoxide, which
  // lets a page navigate only once every frame of its last document has fired its load event. The
  // tab's next step, navigating to about:blank to be kept for the domain, would otherwise wait for it.
  for (const frame of document.querySelectorAll('iframe, frame, object, embed')) frame.remove();
  return { html, url: location.href };
}
