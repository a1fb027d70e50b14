// Small DOM helpers shared by the page modules. Text is always set with textContent: nothing here
// ever parses a string as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * h("div", {class: "x", dataset: {index: 3}, onclick: fn}, child, "text", …) -> Element.
 * Strings become text nodes; null/false children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A small stroked icon from a list of SVG path strings (24×24 viewBox), built without innerHTML. */
export function icon(paths, cls = "icon") {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("class", cls);
  svg.setAttribute("aria-hidden", "true");
  for (const d of paths) {
    const p = document.createElementNS(SVG_NS, "path");
    p.setAttribute("d", d);
    svg.appendChild(p);
  }
  return svg;
}

/** Show a message in the page-wide #flash area (kind: "error" | "info" | "success"). */
export function flash(message, kind = "error", { timeout = kind === "error" ? 0 : 4000 } = {}) {
  const area = document.getElementById("flash");
  if (!area) return;
  const close = h("button", { type: "button", class: "flash__close", "aria-label": "Dismiss" }, "×");
  const item = h("div", { class: `flash__item flash__item--${kind}`, "data-testid": "flash" },
    h("span", { class: "flash__text" }, message), close);
  close.addEventListener("click", () => item.remove());
  area.appendChild(item);
  if (timeout) setTimeout(() => item.remove(), timeout);
}

/** Copy text to the clipboard; works on plain-HTTP LAN addresses too, where navigator.clipboard is absent. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection fallback
    }
  }
  const area = h("textarea", { class: "visually-hidden", readonly: true });
  area.value = text;
  document.body.appendChild(area);
  area.select();
  let ok = false;
  try {
    ok = document.execCommand("copy");
  } catch {
    ok = false;
  }
  area.remove();
  return ok;
}

/**
 * Read an error out of an API answer: {"error": {"code", "message"}}, or a sensible sentence when
 * the body is not our JSON (a proxy's 413 page, a 502, …). `detail` is the whole error object.
 */
export function parseApiError(status, bodyText, fallbacks = {}) {
  let code = `http_${status}`;
  let message = null;
  let detail = {};
  try {
    const body = JSON.parse(bodyText);
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || null;
      detail = body.error; // any further fields, e.g. port_taken's suggested_port
    }
  } catch {
    // not JSON
  }
  return { code, status, message: message || fallbacks[status] || defaultMessage(status), detail };
}

/** parseApiError for a fetch() Response. */
export async function readApiError(response, fallbacks = {}) {
  const text = await response.text().catch(() => "");
  return parseApiError(response.status, text, fallbacks);
}

/** Headers for a request that changes something: the page's CSRF token (from its meta tag) added. */
export function csrfHeaders(headers = {}) {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? { ...headers, "X-CSRF-Token": meta.content } : { ...headers };
}

export function defaultMessage(status) {
  if (status === 401) return "Your sign-in has ended. Reload the page to sign in again.";
  if (status === 403) return "Your account is not allowed to do that.";
  if (status === 413) return "The upload is too large for this server.";
  if (status === 503) return "The Docker engine is not answering, so builds cannot start right now.";
  if (status === 404) return "Not found.";
  if (status === 409) return "That action does not fit the build's current state.";
  if (status >= 500) return `The server had a problem (HTTP ${status}). Try again in a moment.`;
  return `The request was refused (HTTP ${status}).`;
}

const COPY_ICON = ["M9 9h11v11H9z", "M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"];
const CHECK_ICON = ["M5 12.5l4.5 4.5L19 7.5"];

/** A copy button for a long id: copies `source.dataset.full`, shows a tick for 1.5 s (or says why not). */
export function copyButton(button, source) {
  button.addEventListener("click", async () => {
    const ok = await copyText(source.dataset.full);
    button.replaceChildren(icon(ok ? CHECK_ICON : COPY_ICON));
    button.classList.toggle("is-done", ok);
    if (!ok) flash("Could not copy: select the id and copy it by hand.", "info");
    setTimeout(() => {
      button.replaceChildren(icon(COPY_ICON));
      button.classList.remove("is-done");
    }, 1500);
  });
}
