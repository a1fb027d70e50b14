// The runs list: keeps each row's status, ports and uptime true to the engine by re-reading this page's
// runs from GET /api/v1/runs now and then (the server checks every run against the engine when read).
// Uptimes tick through time.js (common.js starts the clock).

import { badgeKey, portsKey, portsList, runBadge, setUptime } from "./run-ui.js";

const POLL_LIVE_MS = 5000; // something is running: it may exit at any moment
const POLL_IDLE_MS = 20000;

const rows = new Map();
for (const tr of document.querySelectorAll("[data-testid=run-row]")) {
  rows.set(Number(tr.dataset.id), { tr, badge: "", ports: "" });
}

function update(run) {
  const row = rows.get(run.id);
  if (!row) return;
  const { tr } = row;
  if (tr.dataset.status !== run.status) {
    tr.dataset.status = run.status;
    tr.className = `builds__row runs__row runs__row--${run.status}`;
  }
  const bk = badgeKey(run);
  if (row.badge !== bk) {
    row.badge = bk;
    tr.querySelector(".runs__status").replaceChildren(runBadge(run));
  }
  const pk = portsKey(run);
  if (row.ports !== pk) {
    row.ports = pk;
    tr.querySelector(".runs__ports").replaceChildren(portsList(run));
  }
  setUptime(tr.querySelector(".runs__uptime .uptime"), run);
}

function anyRunning() {
  return [...rows.values()].some((r) => r.tr.dataset.status === "running");
}

async function poll() {
  if (!document.hidden && rows.size) {
    const newest = Math.max(...rows.keys());
    try {
      const res = await fetch(`/api/v1/runs?limit=${rows.size}&before=${newest + 1}`, {
        headers: { Accept: "application/json" }, cache: "no-store",
      });
      if (res.ok) {
        const body = await res.json();
        for (const run of body.runs || []) update(run);
      }
    } catch {
      // Layerdeck is restarting or the network dropped: keep what is shown and try again later.
    }
  }
  setTimeout(poll, anyRunning() ? POLL_LIVE_MS : POLL_IDLE_MS);
}

// Record what the server rendered, then read the runs at once: the rows follow the engine from here.
for (const row of rows.values()) {
  row.badge = `${row.tr.dataset.status}|${row.tr.querySelector(".run-badge")?.dataset.exitCode ?? ""}`;
}
poll();
