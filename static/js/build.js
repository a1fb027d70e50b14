// The build page: renders the embedded build, then follows WS /ws/builds/<id> (docs/API.md).
//
// Messages carry a growing `seq`; one whose seq is not above the last applied one is ignored, so a
// reconnect with ?after=<last seq> can never duplicate a line. Log text only ever reaches the DOM as
// text nodes (renderAnsi builds spans and text nodes, never markup).

import { renderAnsi } from "./ansi.js";
import { copyText, flash, h, icon, readApiError } from "./dom.js";
import { formatBytes, formatDuration, formatElapsed, plural, secondsSince } from "./time.js";

const $ = (id) => document.getElementById(id);

const STATUS_LABELS = {
  queued: "Queued",
  running: "Running",
  succeeded: "Succeeded",
  failed: "Failed",
  cancelled: "Cancelled",
  interrupted: "Interrupted",
  timed_out: "Timed out",
};
const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted", "timed_out"]);
const STEP_LABELS = {
  pending: "Pending",
  running: "Running",
  cached: "Cached",
  built: "Built",
  failed: "Failed",
  cancelled: "Cancelled",
};
const STEP_DONE = new Set(["cached", "built", "failed"]);
const STEP_FINISHED = new Set(["cached", "built", "failed", "cancelled"]);
const ERROR_TITLES = {
  failed: "Build failed",
  cancelled: "Build cancelled",
  interrupted: "Build interrupted",
  timed_out: "Build timed out",
};
const ICONS = {
  chevron: ["M9 6l6 6-6 6"],
  check: ["M5 12.5l4.5 4.5L19 7.5"],
  terminal: ["M5 17l5-5-5-5", "M12 19h7"],
  copy: ["M9 9h11v11H9z", "M5 15H4a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1h10a1 1 0 0 1 1 1v1"],
};

// ---------------------------------------------------------------- state

const build = JSON.parse($("build-data").textContent);
const steps = new Map(); // index -> {data, el, parts…, lines, userToggled}
const stages = new Map(); // stage name -> {el, list, head, count}
let prep = null; // the "Preparation" block for lines with step null
let lastSeq = 0;
let ended = false; // even a finished build replays its log over the socket: wait for `end`
let socket = null;
let attempts = 0;
let reconnectTimer = null;

// ---------------------------------------------------------------- header

function statusBadge(status, testid) {
  return h("span", { class: `badge badge--${status}`, "data-status": status, "data-testid": testid },
    h("span", { class: "badge__dot", "aria-hidden": "true" }),
    h("span", { class: "badge__label" }, STATUS_LABELS[status] || status));
}

function renderHeader() {
  const root = $("build");
  root.dataset.status = build.status;
  document.body.dataset.buildStatus = build.status;

  const current = document.querySelector("[data-testid=build-status]");
  if (!current || current.dataset.status !== build.status) {
    $("build-status-slot").replaceChildren(statusBadge(build.status, "build-status"));
    $("summary-status").replaceChildren(statusBadge(build.status, null));
  }

  const label = (STATUS_LABELS[build.status] || build.status).toLowerCase();
  document.title = `#${build.id} ${label}${build.tag ? ` — ${build.tag}` : ""} · Layerdeck`;

  // Queue position
  const queued = build.status === "queued";
  $("queue-notice").hidden = !queued;
  $("queue-text").textContent = queued && build.queue_position
    ? `Queued — position ${build.queue_position}`
    : "Queued — waiting for a free builder";

  // Error
  const errorBox = $("build-error");
  errorBox.hidden = !build.error;
  if (build.error) {
    $("build-error-title").textContent = ERROR_TITLES[build.status] || "Build error";
    $("build-error-text").textContent = build.error;
    errorBox.dataset.status = build.status;
  }

  const failed = [...steps.values()].find((st) => st.data.status === "failed");
  const jump = $("build-error-jump");
  jump.hidden = !(build.error && failed);
  if (failed) {
    jump.href = `#step-${failed.data.index}`;
    jump.textContent = `Go to step ${failed.data.index} →`;
  }

  // Image id
  const full = build.image_id || "";
  const imageEl = $("image-id");
  imageEl.textContent = full ? full.split(":").pop().slice(0, 12) : "—";
  imageEl.title = full;
  imageEl.dataset.full = full;
  imageEl.classList.toggle("is-empty", !full);
  $("copy-image").hidden = !full;

  // Context size, formatted once on the client with the shared helper.
  for (const el of document.querySelectorAll("[data-bytes]")) el.textContent = formatBytes(Number(el.dataset.bytes));

  tick();
}

function buildSeconds() {
  if (build.status === "running" && build.started_at) return secondsSince(build.started_at);
  if (build.duration_s !== null && build.duration_s !== undefined) return build.duration_s;
  if (build.started_at && build.finished_at) {
    return (Date.parse(build.finished_at) - Date.parse(build.started_at)) / 1000;
  }
  return null;
}

// ---------------------------------------------------------------- summary: progress and cache

function renderSummary() {
  const all = [...steps.values()].map((s) => s.data).sort((a, b) => a.index - b.index);
  const done = all.filter((s) => STEP_DONE.has(s.status)).length;
  const decided = all.filter((s) => s.cached !== null && s.cached !== undefined);
  const hits = decided.filter((s) => s.cached === true).length;

  $("steps-done").replaceChildren(
    all.length ? h("span", {}, h("strong", {}, String(done)), h("span", { class: "stat__of" }, ` / ${all.length}`)) : h("span", { class: "muted" }, "—"),
  );

  const cache = $("cache-summary");
  cache.dataset.hits = String(hits);
  cache.dataset.total = String(decided.length);
  if (decided.length) {
    cache.replaceChildren(
      h("strong", { class: "cache-hits" }, String(hits)),
      ` of ${decided.length} ${decided.length === 1 ? "step" : "steps"} cached`,
    );
  } else {
    cache.replaceChildren(h("span", { class: "muted" }, all.length ? "no cache decisions yet" : "—"));
  }

  const bar = $("step-progress");
  bar.setAttribute("aria-valuemax", String(all.length));
  bar.setAttribute("aria-valuenow", String(done));
  bar.setAttribute("aria-valuetext", `${done} of ${all.length} steps done, ${hits} cached`);
  bar.dataset.done = String(done);
  bar.dataset.total = String(all.length);
  const track = $("progress-track");
  const segs = track.children;
  all.forEach((s, i) => {
    let seg = segs[i];
    if (!seg) {
      seg = h("span", { class: "progress__seg" });
      track.appendChild(seg);
    }
    const kind = segmentKind(s);
    if (seg.dataset.kind !== kind) {
      seg.className = `progress__seg progress__seg--${kind}`;
      seg.dataset.kind = kind;
    }
    seg.title = `${s.index}. ${s.instruction} — ${badgeLabel(s)}`;
  });
  while (segs.length > all.length) track.lastChild.remove();

  for (const stage of stages.values()) {
    const own = all.filter((s) => String(s.stage ?? "0") === stage.key && s.cached !== null && s.cached !== undefined);
    const ownHits = own.filter((s) => s.cached === true).length;
    stage.count.textContent = own.length ? `${ownHits}/${own.length} cached` : "";
  }
}

function segmentKind(step) {
  if ((step.status === "built" || step.status === "cached") && (step.cached === null || step.cached === undefined)) {
    return "base";
  }
  return step.status;
}

// ---------------------------------------------------------------- steps

function badgeLabel(step) {
  // FROM (and anything the engine makes no cache decision about) is neither CACHED nor BUILT.
  if ((step.status === "built" || step.status === "cached") && (step.cached === null || step.cached === undefined)) {
    return /^\s*FROM\b/i.test(step.instruction || "") ? "Base" : "Done";
  }
  if (step.status === "built" && step.cached === true) return STEP_LABELS.cached;
  return STEP_LABELS[step.status] || step.status;
}

function badgeKind(step) {
  const kind = segmentKind(step);
  if (kind === "built" && step.cached === true) return "cached";
  return kind;
}

function stageTitle(stage) {
  const name = String(stage ?? "0");
  return /^\d+$/.test(name) ? `Stage ${name}` : name;
}

function ensureStage(stageName, index) {
  const key = String(stageName ?? "0");
  let stage = stages.get(key);
  if (stage) return stage;
  const count = h("span", { class: "stage__count" });
  const numbered = /^\d+$/.test(key);
  const head = h("h2", { class: "stage__head" },
    h("span", { class: "stage__kicker" }, "Stage"),
    h("span", { class: numbered ? "stage__name" : "stage__name mono" }, key),
    count);
  const list = h("ol", { class: "stage__steps" });
  const el = h("section", { class: "stage", "data-stage": key, "data-testid": "stage", "aria-label": stageTitle(key) },
    head, list);
  stage = { key, el, list, count, first: index };
  stages.set(key, stage);
  // Stages appear in Dockerfile order: place this one before the first stage that starts later.
  const container = $("steps");
  const later = [...stages.values()].filter((s) => s !== stage && s.first > index).sort((a, b) => a.first - b.first)[0];
  container.insertBefore(el, later ? later.el : null);
  container.classList.toggle("steps--multi", stages.size > 1);
  return stage;
}

function createStep(data) {
  const idx = data.index;
  const num = h("span", { class: "step__num", "aria-label": `Step ${idx}` }, String(idx));
  const badge = h("span", { class: "step-badge", "data-testid": "step-badge" });
  const instr = h("span", { class: "step__instr", "data-testid": "step-instruction" });
  const lines = h("span", { class: "step__lines", "data-testid": "step-lines" });
  const dur = h("span", { class: "step__dur", "data-testid": "step-duration" });
  const chevron = h("span", { class: "step__chevron", "aria-hidden": "true" }, icon(ICONS.chevron));
  const logId = `step-${idx}-log`;
  const head = h("button", { type: "button", class: "step__head", "aria-expanded": "false", "aria-controls": logId },
    num, badge, instr, lines, dur, chevron);
  const error = h("pre", { class: "step__error", "data-testid": "step-error", hidden: true });
  const log = h("div", { class: "log", id: logId, "data-testid": "step-log", role: "log", hidden: true });
  const empty = h("p", { class: "log__empty" }, "No output.");
  log.appendChild(empty);
  const el = h("li", { class: "step", id: `step-${idx}`, "data-testid": "step", "data-index": String(idx) },
    head, error, log);
  const step = { data, el, head, badge, instr, lines, dur, error, log, empty, count: 0, open: false, userToggled: false };
  head.addEventListener("click", () => {
    step.userToggled = true;
    setOpen(step, !step.open);
  });
  return step;
}

function placeStep(step) {
  const stage = ensureStage(step.data.stage, step.data.index);
  if (step.el.parentElement === stage.list) return;
  const later = [...stage.list.children].find((li) => Number(li.dataset.index) > step.data.index);
  stage.list.insertBefore(step.el, later || null);
  stage.first = Math.min(stage.first, step.data.index);
}

function setOpen(step, open) {
  step.open = open;
  step.el.classList.toggle("is-open", open);
  step.head.setAttribute("aria-expanded", String(open));
  step.log.hidden = !open;
  if (open) step.log.scrollTop = step.log.scrollHeight;
}

function upsertStep(data) {
  let step = steps.get(data.index);
  const prevStage = step ? String(step.data.stage ?? "0") : null;
  if (!step) {
    step = createStep(data);
    steps.set(data.index, step);
  } else {
    step.data = { ...step.data, ...data };
  }
  if (prevStage !== null && prevStage !== String(step.data.stage ?? "0")) {
    step.el.remove();
    const left = stages.get(prevStage);
    if (left && !left.list.children.length) {
      left.el.remove();
      stages.delete(prevStage);
      $("steps").classList.toggle("steps--multi", stages.size > 1);
    }
  }
  placeStep(step);
  renderStep(step);
  $("steps-empty").hidden = true;
  return step;
}

function renderStep(step) {
  const d = step.data;
  const kind = badgeKind(d);
  step.el.dataset.status = d.status;
  step.el.dataset.cached = d.cached === null || d.cached === undefined ? "null" : String(d.cached);
  step.el.className = `step step--${kind}${step.open ? " is-open" : ""}`;
  step.badge.className = `step-badge step-badge--${kind}`;
  step.badge.dataset.status = d.status;
  step.badge.textContent = badgeLabel(d);
  const text = d.instruction || `Step ${d.index}`;
  if (step.instrText !== text) {
    step.instrText = text;
    // The instruction keyword (FROM, RUN, COPY…) stands out; the rest stays plain text.
    const m = /^(\s*)([A-Za-z]+)([\s\S]*)$/.exec(text);
    if (m && d.instruction) step.instr.replaceChildren(m[1], h("span", { class: "step__kw" }, m[2]), m[3]);
    else step.instr.textContent = text;
    step.instr.title = d.instruction || "";
  }
  step.error.hidden = !d.error;
  step.error.textContent = d.error || "";
  renderStepDuration(step);
  renderLineCount(step);
  if (!step.userToggled) {
    if (d.status === "running" || d.status === "failed") setOpen(step, true);
    else if (STEP_FINISHED.has(d.status)) setOpen(step, false);
  }
}

function renderStepDuration(step) {
  const d = step.data;
  let text = "";
  if (d.status === "running" && d.started_at) text = formatElapsed(secondsSince(d.started_at));
  else if (d.duration_s !== null && d.duration_s !== undefined) text = formatDuration(d.duration_s);
  if (step.dur.textContent !== text) step.dur.textContent = text;
}

function renderLineCount(step) {
  step.lines.textContent = step.count ? plural(step.count, "line") : "";
}

/** A log line for a step we have not heard of yet: make a placeholder the next `step` fills in. */
function placeholderStep(index) {
  const before = [...steps.values()].filter((s) => s.data.index < index).sort((a, b) => b.data.index - a.data.index)[0];
  return upsertStep({
    index, stage: before ? before.data.stage : "0", instruction: `Step ${index}`, status: "running",
    cached: null, started_at: null, finished_at: null, duration_s: null, error: null,
  });
}

// ---------------------------------------------------------------- preparation block (step null)

function ensurePrep() {
  if (prep) return prep;
  const logId = "prep-log";
  const lines = h("span", { class: "step__lines" });
  const head = h("button", { type: "button", class: "step__head", "aria-expanded": "false", "aria-controls": logId },
    h("span", { class: "step__num step__num--prep", "aria-hidden": "true" }, icon(ICONS.terminal)),
    h("span", { class: "step__instr step__instr--prep" }, "Preparation"),
    lines,
    h("span", { class: "step__chevron", "aria-hidden": "true" }, icon(ICONS.chevron)));
  const log = h("div", { class: "log", id: logId, "data-testid": "preparation-log", role: "log", hidden: true });
  const el = h("div", { class: "step step--prep", "data-testid": "preparation" }, head, log);
  prep = { el, head, log, lines, count: 0, open: false, userToggled: false, data: { status: "prep" } };
  head.addEventListener("click", () => {
    prep.userToggled = true;
    setOpen(prep, !prep.open);
  });
  const container = $("steps");
  container.insertBefore(el, container.firstChild);
  if (!prep.userToggled) setOpen(prep, steps.size === 0);
  return prep;
}

// ---------------------------------------------------------------- log lines

function appendLine(target, stream, text) {
  if (target.empty) {
    target.empty.remove();
    target.empty = null;
  }
  target.count += 1;
  const kind = stream === "stderr" || stream === "system" ? stream : "stdout";
  const line = h("div", { class: `log__line log__line--${kind}` });
  line.appendChild(renderAnsi(text)); // text nodes and spans only: never markup
  target.log.appendChild(line);
  target.lines.textContent = plural(target.count, "line");
}

function isAtBottom(el) {
  return el.hidden || el.scrollHeight - el.scrollTop - el.clientHeight < 32;
}

// ---------------------------------------------------------------- applying messages

let queue = [];
let flushScheduled = false;

function enqueue(msg) {
  queue.push(msg);
  if (flushScheduled) return;
  flushScheduled = true;
  if (document.hidden) setTimeout(flush, 50);
  else requestAnimationFrame(flush);
}

function flush() {
  flushScheduled = false;
  const batch = queue;
  queue = [];
  if (!batch.length) return;

  // Measure before writing (one layout pass): which open logs sit at their bottom and should stay there.
  const stick = new Map();
  for (const msg of batch) {
    if (msg.type !== "log") continue;
    const target = msg.step === null || msg.step === undefined ? prep : steps.get(msg.step);
    if (target && !stick.has(target)) stick.set(target, isAtBottom(target.log));
  }

  let stepsChanged = false;
  let headerChanged = false;
  for (const msg of batch) {
    const r = applyMessage(msg);
    stepsChanged = stepsChanged || r === "steps";
    headerChanged = headerChanged || r === "header";
  }
  if (stepsChanged) renderSummary();
  if (headerChanged || stepsChanged) renderHeader();

  for (const [target, atBottom] of stick) {
    if (atBottom && target.open) target.log.scrollTop = target.log.scrollHeight;
  }
  if (follow) followActiveStep();
}

// ---------------------------------------------------------------- following the running step
// While a build runs, the page keeps the running (or failed) step in view, so a projector shows
// the action without anyone touching the mouse. Scrolling up stops that; back at the bottom resumes.

let follow = !FINAL.has(build.status);

function nearPageBottom() {
  const doc = document.scrollingElement || document.documentElement;
  return doc.scrollHeight - doc.scrollTop - window.innerHeight < 48;
}

window.addEventListener("wheel", (e) => {
  if (e.deltaY < 0) follow = false;
}, { passive: true });
window.addEventListener("touchmove", () => {
  follow = false;
}, { passive: true });
window.addEventListener("keydown", (e) => {
  if (["PageUp", "ArrowUp", "Home"].includes(e.key)) follow = false;
});
window.addEventListener("scroll", () => {
  if (!follow && nearPageBottom() && !FINAL.has(build.status)) follow = true;
}, { passive: true });

function followActiveStep() {
  const active = [...steps.values()]
    .filter((s) => s.data.status === "running" || s.data.status === "failed")
    .sort((a, b) => b.data.index - a.data.index)[0];
  if (!active) return;
  const r = active.el.getBoundingClientRect();
  // The visible area starts under the top bar, or under the summary while it sticks there.
  const summary = $("summary");
  const top = Math.max(
    document.querySelector(".topbar")?.getBoundingClientRect().bottom ?? 0,
    summary.classList.contains("is-stuck") ? summary.getBoundingClientRect().bottom : 0,
  );
  if (r.bottom > window.innerHeight - 16) {
    window.scrollBy(0, Math.min(r.bottom - window.innerHeight + 24, r.top - top - 16));
  } else if (r.top < top) {
    window.scrollBy(0, r.top - top - 16);
  }
}

/** Apply one websocket message; returns what needs re-rendering ("steps", "header" or null). */
function applyMessage(msg) {
  switch (msg.type) {
    case "step": {
      if (!msg.step || msg.step.index === undefined) return null;
      upsertStep(msg.step);
      if (prep && !prep.userToggled && prep.open) setOpen(prep, false);
      return "steps";
    }
    case "log": {
      let target;
      if (msg.step === null || msg.step === undefined) target = ensurePrep();
      else target = steps.get(msg.step) || placeholderStep(msg.step);
      appendLine(target, msg.stream, msg.text);
      return target === prep ? null : "steps";
    }
    case "status": {
      if (!msg.build) return null;
      const { steps: _ignored, ...rest } = msg.build;
      Object.assign(build, rest);
      return "header";
    }
    case "end": {
      if (msg.status) build.status = msg.status;
      // No final `status` with the duration? Freeze the clock where the build ended.
      if ((build.duration_s === null || build.duration_s === undefined) && build.started_at) {
        build.duration_s = secondsSince(build.started_at);
      }
      finish();
      return "header";
    }
    default:
      return null;
  }
}

function finish() {
  ended = true;
  if (build.status !== "failed") follow = false;
  setConnection("ended");
  if (socket) {
    try {
      socket.close(1000);
    } catch {
      // already closing
    }
  }
}

// ---------------------------------------------------------------- websocket

function setConnection(state) {
  const conn = $("conn");
  conn.dataset.state = state;
  const text = {
    connecting: FINAL.has(build.status) ? "Loading log…" : "Connecting…",
    live: FINAL.has(build.status) ? "Loading log…" : "Live",
    reconnecting: "Reconnecting…",
    ended: "",
  }[state];
  conn.querySelector(".conn__text").textContent = text;
  conn.hidden = state === "ended";
}

/** Take one message in seq order: anything at or below the last applied seq is a repeat. */
function receive(msg) {
  if (typeof msg.seq === "number") {
    if (msg.seq <= lastSeq) return false;
    lastSeq = msg.seq;
  }
  // Known at once, not at the next frame: the server closes right after `end`, and that close
  // must not look like a dropped connection.
  if (msg.type === "end") ended = true;
  enqueue(msg);
  return true;
}

function connect() {
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (ended) return;
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const url = `${scheme}${location.host}${build.ws_url}?after=${lastSeq}`;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch {
    scheduleReconnect();
    return;
  }
  socket = ws;
  if (attempts === 0) setConnection("connecting");
  ws.addEventListener("open", () => {
    if (socket === ws) setConnection("live");
  });
  ws.addEventListener("message", (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    attempts = 0;
    receive(msg);
  });
  ws.addEventListener("close", () => {
    if (socket !== ws) return;
    socket = null;
    if (!ended) scheduleReconnect();
  });
}

function scheduleReconnect() {
  if (ended || reconnectTimer) return;
  setConnection("reconnecting");
  const delay = Math.min(10000, 500 * 2 ** attempts) + Math.random() * 250;
  attempts += 1;
  reconnectTimer = setTimeout(connect, delay);
}

window.addEventListener("online", () => {
  if (!ended && !socket) {
    attempts = 0;
    connect();
  }
});

// ---------------------------------------------------------------- timers

let ticker = null;

function tick() {
  const seconds = buildSeconds();
  const durEl = $("build-duration");
  let text;
  if (build.status === "queued") text = "—";
  else if (build.status === "running") text = formatElapsed(seconds);
  else text = formatDuration(seconds);
  if (durEl.textContent !== text) durEl.textContent = text;
  durEl.classList.toggle("is-empty", text === "—");
  durEl.classList.toggle("is-live", build.status === "running");
  for (const step of steps.values()) {
    if (step.data.status === "running") renderStepDuration(step);
  }
  const live = !FINAL.has(build.status) && !ended;
  if (live && !ticker) ticker = setInterval(tick, 100);
  if (!live && ticker) {
    clearInterval(ticker);
    ticker = null;
  }
}

// ---------------------------------------------------------------- actions

$("rebuild").addEventListener("click", async () => {
  const button = $("rebuild");
  button.disabled = true;
  button.classList.add("is-busy");
  button.querySelector(".btn__label").textContent = "Starting…";
  try {
    const res = await fetch(button.dataset.url, { method: "POST", headers: { Accept: "application/json" } });
    if (res.status === 202 || res.ok) {
      const body = await res.json();
      if (body && body.url) {
        window.location.assign(body.url);
        return;
      }
      throw new Error("The server accepted the rebuild but did not say where to find it.");
    }
    const err = await readApiError(res, {
      409: "This build's context is no longer stored, so it cannot be rebuilt. Start a new build instead.",
    });
    flash(`Rebuild failed: ${err.message}`, "error");
  } catch (e) {
    flash(e instanceof TypeError ? "Could not reach Layerdeck to start the rebuild." : `Rebuild failed: ${e.message}`);
  }
  button.disabled = false;
  button.classList.remove("is-busy");
  button.querySelector(".btn__label").textContent = "Rebuild";
});

$("copy-image").addEventListener("click", async () => {
  const button = $("copy-image");
  const ok = await copyText($("image-id").dataset.full);
  button.replaceChildren(icon(ok ? ICONS.check : ICONS.copy));
  button.classList.toggle("is-done", ok);
  if (!ok) flash("Could not copy: select the id and copy it by hand.", "info");
  setTimeout(() => {
    button.replaceChildren(icon(ICONS.copy));
    button.classList.remove("is-done");
  }, 1500);
});

$("build-error-jump").addEventListener("click", () => {
  const failed = [...steps.values()].find((st) => st.data.status === "failed");
  if (failed && !failed.open) setOpen(failed, true);
});

// ---------------------------------------------------------------- sticky summary

if ("IntersectionObserver" in window) {
  const summary = $("summary");
  const topbarHeight = Math.round(document.querySelector(".topbar")?.getBoundingClientRect().height ?? 64);
  new IntersectionObserver(([entry]) => {
    summary.classList.toggle("is-stuck", !entry.isIntersecting && entry.boundingClientRect.top < topbarHeight);
  }, { rootMargin: `-${topbarHeight + 1}px 0px 0px 0px`, threshold: 0 }).observe($("summary-sentinel"));
}

// ---------------------------------------------------------------- start

for (const s of build.steps || []) upsertStep(s);
renderSummary();
renderHeader();
connect();

// For tests and the curious: the page's live state.
window.layerdeck = {
  build,
  steps,
  receive,
  flush,
  get lastSeq() {
    return lastSeq;
  },
};
