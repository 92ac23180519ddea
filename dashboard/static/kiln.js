// Kiln dashboard: small progressive enhancements. Every page works without this file.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Copy buttons: data-copy names the element whose text is copied.
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const label = button.textContent;
      try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
      } catch {
        // No clipboard access (http, old browser): select the text so Ctrl+C works.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = label; }, 2000);
    });
  }

  // Forms that ask first (revoking a key).
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // Buttons that say what is happening while a slow request runs (a render takes seconds).
  for (const button of document.querySelectorAll("button[data-busy]")) {
    button.form?.addEventListener("submit", () => {
      button.textContent = button.dataset.busy;
      setTimeout(() => { button.disabled = true; }, 0);
    });
  }

  // Warm progress: poll the job until it is done.
  const warm = document.getElementById("warm");
  if (warm) followWarm(warm);

  // A parity check being checked: poll it, and show the page again once it is done or failed.
  const parity = document.getElementById("parity-check");
  if (parity) followParity(parity);
});

function followParity(section) {
  const pending = (state) => state === "queued" || state === "running";
  if (!pending(section.dataset.state)) return;
  const url = section.dataset.statusUrl;
  const label = document.getElementById("parity-state");
  let delay = 2000;
  const tick = async () => {
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      // Gone (it expired, or the session did): the page itself says what happened.
      if (response.status === 404 || response.status === 401) { window.location.reload(); return; }
      if (!response.ok) throw new Error(String(response.status));
      const check = await response.json();
      if (!pending(check.state)) { window.location.reload(); return; }
      if (label) label.textContent = check.state;
      delay = 2000;
    } catch {
      delay = Math.min(delay * 2, 30000);
    }
    setTimeout(tick, delay);
  };
  setTimeout(tick, delay);
}

function followWarm(section) {
  const url = section.dataset.statusUrl;
  const progress = document.getElementById("warm-progress");
  const set = (id, value) => { const el = document.getElementById(id); if (el) el.textContent = value; };
  let delay = 1000;
  const tick = async () => {
    let job;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      job = await response.json();
      delay = 1000;
    } catch {
      delay = Math.min(delay * 2, 15000);
      setTimeout(tick, delay);
      return;
    }
    const finished = job.done + job.failed;
    const percent = job.total > 0 ? Math.floor((finished * 100) / job.total) : (job.state === "done" ? 100 : 0);
    if (job.state === "collecting") progress.removeAttribute("value"); else progress.value = percent;
    progress.textContent = percent + " %";
    set("warm-percent", percent + " %");
    set("warm-state", job.state);
    set("warm-done", job.done);
    set("warm-failed", job.failed);
    set("warm-queued", job.queued);
    set("warm-total", job.total);
    section.dataset.state = job.state;
    if (job.state === "done" || job.state === "failed") {
      document.getElementById("warm-finished").hidden = false;
      if (job.state === "failed" && job.error) set("warm-state", "failed: " + job.error);
      return;
    }
    setTimeout(tick, delay);
  };
  if (section.dataset.state !== "done" && section.dataset.state !== "failed") setTimeout(tick, 500);
}
