// Pieces shared by the run pages (the runs list and a run's page): the status badge, ports and uptime,
// rendered exactly as templates/_macros.html renders them for the first paint. Text only, never markup.

import { h, icon } from "./dom.js";
import { formatUptime, liveUptime } from "./time.js";

export const RUN_LABELS = {
  running: "Running",
  exited: "Exited",
  stopped: "Stopped",
  removed: "Removed",
  gone: "Gone",
  failed: "Failed",
  created: "Created",
};

const RUN_TITLES = {
  running: "The container is running",
  stopped: "Stopped from Layerdeck",
  removed: "Removed from Layerdeck; its log and history are kept",
  gone: "The container was removed outside Layerdeck",
  failed: "The container never started",
  created: "Created, not started yet",
};

export const EXTERNAL_ICON = ["M14 4h6v6", "M20 4 11 13", "M19 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1h5"];

const hasCode = (run) => run.exit_code !== null && run.exit_code !== undefined;

/** "Exit 137", "Running", "Gone"… */
export function runLabel(run) {
  if (run.status === "exited") return `Exit ${hasCode(run) ? run.exit_code : "?"}`;
  return RUN_LABELS[run.status] || String(run.status || "unknown").replace(/_/g, " ");
}

/** A run ended badly: it never started, or exited with a code other than 0. */
export function runIsBad(run) {
  return run.status === "failed" || (run.status === "exited" && hasCode(run) && run.exit_code !== 0);
}

/** A key that changes whenever the badge would look different. */
export function badgeKey(run) {
  return `${run.status}|${hasCode(run) ? run.exit_code : ""}`;
}

export function runBadge(run, testid = null, id = null) {
  const status = run.status || "unknown";
  const title = status === "exited"
    ? `The container exited with code ${hasCode(run) ? run.exit_code : "unknown"}`
    : RUN_TITLES[status] || "";
  return h("span", {
    class: `badge run-badge run-badge--${status}${runIsBad(run) ? " is-bad" : ""}`,
    "data-status": status,
    "data-exit-code": hasCode(run) ? String(run.exit_code) : null,
    "data-testid": testid,
    id,
    title,
  }, h("span", { class: "badge__dot", "aria-hidden": "true" }), h("span", { class: "badge__label" }, runLabel(run)));
}

/** Seconds the run has been (or was) up, from the run object alone. */
export function runSeconds(run) {
  if (run.uptime_s !== null && run.uptime_s !== undefined && Number.isFinite(run.uptime_s)) return run.uptime_s;
  const t0 = Date.parse(run.started_at);
  if (Number.isNaN(t0)) return null;
  const t1 = run.status === "running" ? Date.now() : Date.parse(run.finished_at);
  return Number.isNaN(t1) ? null : Math.max(0, (t1 - t0) / 1000);
}

/**
 * Point an uptime element at a run: ticking (via time.js startClock) while it runs, fixed otherwise.
 * The server's uptime_s is the base, so a browser clock that differs from the engine's does not matter.
 */
export function setUptime(el, run) {
  const running = run.status === "running";
  el.classList.toggle("is-live", running);
  if (running) {
    // Re-based only when the server says something new (a poll, a restart), not on every redraw.
    const source = `${run.started_at}|${run.uptime_s}`;
    if (el.dataset.uptimeSource !== source) {
      el.dataset.uptimeSource = source;
      el.dataset.uptimeSince = run.started_at || "";
      if (run.uptime_s !== null && run.uptime_s !== undefined) {
        el.dataset.uptimeS = String(run.uptime_s);
        el.dataset.uptimeAt = String(Date.now());
      } else {
        delete el.dataset.uptimeS;
        delete el.dataset.uptimeAt;
      }
    }
    el.classList.remove("muted");
    el.title = "Up since it last started";
    el.textContent = formatUptime(liveUptime(el));
    return;
  }
  for (const key of ["uptimeSource", "uptimeSince", "uptimeS", "uptimeAt"]) delete el.dataset[key];
  const seconds = runSeconds(run);
  el.classList.toggle("muted", seconds === null);
  el.title = seconds === null ? "" : "How long it ran";
  const text = formatUptime(seconds);
  if (el.textContent !== text) el.textContent = text;
}

const WILDCARD = new Set(["0.0.0.0", "::", "[::]", ""]);

/** The host a port is reached on: its address, or this page's host when it was published on every address. */
function portHost(port) {
  return WILDCARD.has(port.host_ip || "") ? location.hostname : port.host_ip || "127.0.0.1";
}

/** The link a port opens: the server's url, with the page's own host when it was published on every address. */
export function portHref(port) {
  if (!port.url) return null;
  if (WILDCARD.has(port.host_ip || "")) return `http://${portHost(port)}:${port.host_port}`;
  return port.url;
}

/** The ports of a run as a list: links while it runs (big: the full url), the mapping as text otherwise. */
export function portsList(run, big = false) {
  const ports = run.ports || [];
  if (!ports.length) return h("span", { class: "muted", "data-testid": "run-ports-none" }, "none");
  const list = h("ul", { class: `ports${big ? " ports--big" : ""}`, "data-testid": "run-ports" });
  for (const p of ports) {
    const proto = p.protocol || "tcp";
    const addr = `${portHost(p)}:${p.host_port}`;
    const href = portHref(p);
    let link;
    if (!p.host_port) {
      link = h("span", { class: "port-link is-down", "data-testid": "run-port-link", "data-live": "false", title: "No host port was published" },
        "not published");
    } else if (run.status === "running" && href) {
      link = h("a", {
        class: "port-link", href, target: "_blank", rel: "noopener", "data-testid": "run-port-link", "data-live": "true",
        title: `Open ${href} in a new tab`,
      }, h("span", { class: "port-link__text" }, big ? href : addr), icon(EXTERNAL_ICON, "icon port-link__icon"));
    } else if (run.status === "running") {
      link = h("span", {
        class: "port-link is-plain", "data-testid": "run-port-link", "data-live": "true",
        title: `${proto.toUpperCase()}: nothing a browser can open`,
      }, addr);
    } else {
      link = h("span", {
        class: "port-link is-down", "data-testid": "run-port-link", "data-live": "false",
        title: "Not listening: the container is not running",
      }, addr);
    }
    const map = h("span", { class: "ports__map", title: "Container port" },
      `→ ${p.container_port}${proto !== "tcp" || big ? `/${proto}` : ""}`);
    list.appendChild(h("li", { class: "ports__item" }, link, map));
  }
  return list;
}

/** A key that changes whenever the ports would render differently. */
export function portsKey(run) {
  return JSON.stringify([run.status === "running", (run.ports || []).map((p) => [p.container_port, p.protocol, p.host_ip, p.host_port, p.url])]);
}
