// Loaded on every page: relative times, and an engine status pill that follows /api/v1/health.
// Pages listen for the "layerdeck:engine" event (detail: {ok, version, error}) to react.

import { startClock } from "./time.js";

startClock(document);

const pill = document.querySelector("[data-testid=engine-status]");
const POLL_DOWN_MS = 5000; // the engine may be starting: notice quickly when it answers
const POLL_UP_MS = 30000;

function showEngine(docker) {
  if (!pill) return;
  const ok = Boolean(docker.ok);
  pill.classList.toggle("engine-pill--ok", ok);
  pill.classList.toggle("engine-pill--down", !ok);
  pill.dataset.ok = String(ok);
  const version = (docker.version || "").split("+")[0];
  pill.querySelector(".engine-pill__text").textContent = ok ? `Engine ${version}`.trim() : "Engine unreachable";
  pill.title = ok
    ? `Docker Engine ${docker.version || ""} is answering`
    : docker.error || "The Docker engine does not answer";
  document.dispatchEvent(new CustomEvent("layerdeck:engine", { detail: { ...docker, ok } }));
}

async function poll() {
  let next = pill && pill.dataset.ok === "true" ? POLL_UP_MS : POLL_DOWN_MS;
  if (!document.hidden) {
    try {
      const res = await fetch("/api/v1/health", { headers: { Accept: "application/json" }, cache: "no-store" });
      if (res.ok) {
        const body = await res.json();
        if (body && body.docker) {
          showEngine(body.docker);
          next = body.docker.ok ? POLL_UP_MS : POLL_DOWN_MS;
        }
      }
    } catch {
      // Layerdeck itself is unreachable (restarting?): keep the last known state and try again.
    }
  }
  setTimeout(poll, next);
}

if (pill) setTimeout(poll, pill.dataset.ok === "true" ? POLL_UP_MS : POLL_DOWN_MS);
