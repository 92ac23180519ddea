import { LitElement, css, html } from 'lit';

// A small Lit web component. Lit renders it into an open shadow root and gives that root its
// `static styles` as an adopted stylesheet (shadowRoot.adoptedStyleSheets), never as a <style>
// element: the rules live only in the CSSOM. The Vue app uses it as a plain custom element (see
// `isCustomElement` in vite.config.js).
export class KilnBadge extends LitElement {
  static properties = {
    label: { type: String },
    tone: { type: String, reflect: true },
  };

  static styles = css`
    :host {
      display: inline-block;
      margin: 8px 0;
    }
    .kiln-badge-pill {
      display: inline-block;
      padding: 6px 16px;
      border-radius: 999px;
      background-color: rgb(30, 120, 200);
      color: rgb(255, 255, 255);
      font-weight: 700;
      letter-spacing: 1px;
      text-transform: uppercase;
    }
    :host([tone='warm']) .kiln-badge-pill {
      background-color: rgb(200, 80, 30);
    }
  `;

  constructor() {
    super();
    this.label = '';
    this.tone = 'cool';
  }

  render() {
    return html`<span class="kiln-badge-pill">${this.label}</span>`;
  }
}

customElements.define('kiln-badge', KilnBadge);
