// The build page: renders the embedded build, then follows WS /ws/builds/<id> (docs/API.md) through
// live.js, which skips repeated seqs, reconnects with ?after=<last seq> and keeps the connection
// indicator. Log text only ever reaches the DOM as text nodes (renderAnsi builds spans and text nodes,
// never markup).

import { renderAnsi } from "./ansi.js";
import { copyButton, flash, h, icon, readApiError, csrfHeaders } from "./dom.js";
import { liveFeed } from "./live.js";
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
  skipped: "Skipped",
};
const STEP_DONE = new Set(["cached", "built", "failed"]);
const STEP_FINISHED = new Set(["cached", "built", "failed", "cancelled", "skipped"]);
const ERROR_TITLES = {
  failed: "Build failed",
  cancelled: "Build cancelled",
  interrupted: "Build interrupted",
  timed_out: "Build timed out",
};
// Said when a build ended without an error of its own (templates/build.html has the same sentences).
const ERROR_FALLBACKS = {
  cancelled: "The build was cancelled.",
  timed_out: "The build ran past its time limit and was stopped.",
  interrupted: "Layerdeck restarted while this build was queued or running; its log so far is kept.",
};
const BUILDER_LABELS = { buildkit: "BuildKit", classic: "Classic" };
const CIRCLE = "M21 12a9 9 0 1 1-18 0 9 9 0 0 1 18 0Z";
const ICONS = {
  chevron: ["M9 6l6 6-6 6"],
  terminal: ["M5 17l5-5-5-5", "M12 19h7"],
  alert: [CIRCLE, "M12 8v4M12 16h.01"],
  stop: [CIRCLE, "M9.5 9.5h5v5h-5Z"],
  clock: [CIRCLE, "M12 7v5l3 2"],
  parallel: ["M4 7h11", "M4 17h11", "M15 4l3 3-3 3", "M15 14l3 3-3 3"],
};
const ERROR_ICONS = { cancelled: ICONS.stop, timed_out: ICONS.clock };
// Stages side by side (see stageTiming): a stage that only found its layers in the cache within
// TRIVIAL_STAGE_S did not really run; two stages ran together when they shared at least OVERLAP_MIN_S
// and OVERLAP_SHARE of the shorter one's running time.
const TRIVIAL_STAGE_S = 0.05;
const OVERLAP_MIN_S = 0.25;
const OVERLAP_SHARE = 0.25;
const MAX_LANES = 3;

// ---------------------------------------------------------------- state

const build = JSON.parse($("build-data").textContent);
const steps = new Map(); // index -> {data, el, parts…, lines, userToggled}
const stages = new Map(); // stage name -> {key, el, list, count, dur, skipped, first}
const lanes = new Map(); // "deps\u0000assets" -> the element laying those stages out side by side
let stagesDirty = false; // a step message came: regroup the stages (never on log lines)
let prep = null; // the "Preparation" block for lines with step null
let cancelling = false; // the cancel was accepted; waiting for the status or end message
// Even a finished build replays its log over the socket: feed.ended waits for `end`.
const feed = liveFeed(build.ws_url, {
  indicator: $("conn"),
  onBatch: applyBatch,
  isLive: () => !FINAL.has(build.status),
  fromStart: true,
});

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

  // Error: the engine's words, or a sentence saying how the build ended.
  const errorBox = $("build-error");
  const errorText = build.error || ERROR_FALLBACKS[build.status] || "";
  errorBox.hidden = !errorText;
  if (errorText) {
    $("build-error-title").textContent = ERROR_TITLES[build.status] || "Build error";
    $("build-error-text").textContent = errorText;
    if (errorBox.dataset.status !== build.status) {
      $("build-error-icon").replaceChildren(icon(ERROR_ICONS[build.status] || ICONS.alert));
      errorBox.dataset.status = build.status;
    }
  }

  // Builder (a status message may say which one ran)
  const chip = $("builder-chip");
  const builder = build.builder || "classic";
  if (chip && chip.dataset.builder !== builder) {
    chip.dataset.builder = builder;
    chip.className = `chip chip--builder chip--${builder}`;
    chip.textContent = BUILDER_LABELS[builder] || builder;
  }

  renderCancel();

  // No steps at all: say why once the build is over (cancelled in the queue, failed before a step…).
  const empty = $("steps-empty");
  let emptyText = "Waiting for the first step…";
  if (FINAL.has(build.status)) {
    emptyText = build.status === "cancelled" && !build.started_at ? "Cancelled before it started: no step ran." : "No step ran.";
  }
  if (empty.textContent !== emptyText) empty.textContent = emptyText;

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

  // The build this one's cache misses were explained against: compare the two side by side.
  const compareLink = $("compare-link");
  const against = build.cache && build.cache.compared_with;
  compareLink.hidden = !against;
  if (against) {
    compareLink.href = `/builds/${against}/compare/${build.id}`;
    compareLink.querySelector(".btn__label").textContent = `Compare with #${against}`;
  }

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
  // Skipped steps (stages the chosen target does not need) are not work to do: they count nowhere.
  // Indexes may have gaps (BuildKit makes no step of ARG, ENV, LABEL…): count the steps present.
  const all = [...steps.values()].map((s) => s.data).filter((s) => s.status !== "skipped")
    .sort((a, b) => a.index - b.index);
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
    // Time saved: each cached step credited with its duration when it was last really built (server-side).
    const saved = build.cache && build.cache.saved_s;
    cache.replaceChildren(
      h("strong", { class: "cache-hits" }, String(hits)),
      ` of ${decided.length} ${decided.length === 1 ? "step" : "steps"} cached`,
      ...(saved > 0 ? [h("span", { class: "cache-saved", "data-testid": "cache-saved" }, `${formatDuration(saved)} saved`)] : []),
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
  $("legend-cancelled").hidden = !all.some((s) => s.status === "cancelled");
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
  if (step.status === "skipped") return "skipped";
  const kind = segmentKind(step);
  if (kind === "built" && step.cached === true) return "cached";
  return kind;
}

function stageKey(stage) {
  return stage === null || stage === undefined ? "0" : String(stage);
}

function stageTitle(key) {
  if (key === "") return "Global build args";
  return /^\d+$/.test(key) ? `Stage ${key}` : key;
}

/** The steps' container: stages (and groups of stages side by side) live here, after the Preparation block. */
function stageRoot() {
  let root = $("stages");
  if (!root) {
    root = h("div", { class: "stages", id: "stages" });
    $("steps").appendChild(root);
  }
  return root;
}

function ensureStage(stageName, index) {
  const key = stageKey(stageName);
  let stage = stages.get(key);
  if (stage) return stage;
  const count = h("span", { class: "stage__count", "data-testid": "stage-count" });
  const dur = h("span", { class: "stage__dur", "data-testid": "stage-duration" });
  const skipped = h("span", { class: "stage__skipped", "data-testid": "stage-skipped", hidden: true }, "Skipped");
  const numbered = /^\d+$/.test(key);
  // Global ARGs before the first FROM (stage "") are no stage of their own: no "Stage" kicker.
  const head = h("h2", { class: "stage__head" },
    key === "" ? null : h("span", { class: "stage__kicker" }, "Stage"),
    h("span", { class: numbered || key === "" ? "stage__name" : "stage__name mono" }, key === "" ? stageTitle(key) : key),
    skipped,
    h("span", { class: "stage__meta" }, count, dur));
  const list = h("ol", { class: "stage__steps" });
  const el = h("section", { class: "stage", "data-stage": key, "data-testid": "stage", "aria-label": stageTitle(key) },
    head, list);
  stage = { key, el, list, count, dur, skipped, first: index, span: null };
  stages.set(key, stage);
  // Placed for now at the end; layoutStages() puts it in Dockerfile order, maybe beside another stage.
  stageRoot().appendChild(el);
  $("steps").classList.toggle("steps--multi", stages.size > 1);
  stagesDirty = true;
  return stage;
}

// ---------------------------------------------------------------- stages side by side
// BuildKit runs independent stages at the same time. Consecutive stages (in Dockerfile order) that ran
// at the same time form a "lane group" laid out as columns. Decided from the steps' own times on every
// step message (never on log lines), so the layout follows the build as it runs.
//
// Comparing whole ranges [first start, last end] would put nearly every stage beside every other:
// BuildKit resolves each stage's base image, and runs a stage's first steps (WORKDIR, a cached COPY…),
// as the build starts, long before that stage's COPY --from waits for the others. So a stage's time is
// the union of its steps' own [started_at, finished_at or now] (FROM and steps without times left out),
// and two stages overlap when both are running a RUN step right now, or when they were both running
// steps for at least OVERLAP_MIN_S and OVERLAP_SHARE of the shorter one's time. A stage that only
// found its layers in the cache, within TRIVIAL_STAGE_S, never overlaps.

const isFrom = (d) => /^\s*FROM\b/i.test(d.instruction || "");
const isRun = (d) => /^\s*RUN\b/i.test(d.instruction || "");

/** {busy: merged [t0, t1] intervals in ms, total, running} of a stage's own work, or null. */
function stageTiming(own) {
  const live = !FINAL.has(build.status) && !feed.ended;
  const finalEnd = build.finished_at ? Date.parse(build.finished_at) : NaN;
  const now = live || Number.isNaN(finalEnd) ? Date.now() : finalEnd;
  const spans = [];
  let runningRun = false;
  let cachedOnly = true;
  for (const d of own) {
    if (isFrom(d)) continue;
    const t0 = Date.parse(d.started_at);
    if (Number.isNaN(t0)) continue; // no times (pending, skipped): ignored
    let t1 = Date.parse(d.finished_at);
    if (Number.isNaN(t1)) {
      if (d.status === "running") t1 = now;
      else if (d.duration_s !== null && d.duration_s !== undefined) t1 = t0 + d.duration_s * 1000;
      else t1 = t0;
    }
    if (d.status === "running" && live && isRun(d)) runningRun = true;
    if (!(d.status === "cached" || d.cached === true)) cachedOnly = false;
    spans.push([t0, Math.max(t0, t1)]);
  }
  if (!spans.length) return null;
  spans.sort((a, b) => a[0] - b[0]);
  const busy = [];
  for (const [t0, t1] of spans) {
    const last = busy[busy.length - 1];
    if (last && t0 <= last[1]) last[1] = Math.max(last[1], t1);
    else busy.push([t0, t1]);
  }
  const total = busy.reduce((sum, [t0, t1]) => sum + (t1 - t0), 0);
  if (cachedOnly && total < TRIVIAL_STAGE_S * 1000) return null;
  return { busy, total, running: runningRun };
}

/** Milliseconds during which both stages were running steps. */
function sharedBusy(a, b) {
  let shared = 0;
  let i = 0;
  let j = 0;
  while (i < a.busy.length && j < b.busy.length) {
    const lo = Math.max(a.busy[i][0], b.busy[j][0]);
    const hi = Math.min(a.busy[i][1], b.busy[j][1]);
    if (hi > lo) shared += hi - lo;
    if (a.busy[i][1] < b.busy[j][1]) i += 1;
    else j += 1;
  }
  return shared;
}

function overlaps(a, b) {
  if (!a || !b) return false;
  if (a.running && b.running) return true;
  const shared = sharedBusy(a, b);
  return shared >= OVERLAP_MIN_S * 1000 && shared >= OVERLAP_SHARE * Math.min(a.total, b.total);
}

/** Stages in Dockerfile order, cut into groups: consecutive stages that ran at the same time. */
function stageGroups() {
  const byStage = new Map();
  for (const st of steps.values()) {
    const key = stageKey(st.data.stage);
    if (!byStage.has(key)) byStage.set(key, []);
    byStage.get(key).push(st.data);
  }
  const ordered = [...stages.values()].sort((a, b) => a.first - b.first);
  const groups = [];
  for (const stage of ordered) {
    stage.own = byStage.get(stage.key) || [];
    stage.span = stageTiming(stage.own);
    const current = groups[groups.length - 1];
    if (current && stage.span && current.some((other) => overlaps(other.span, stage.span))) current.push(stage);
    else groups.push([stage]);
  }
  return groups;
}

/** Make parent's element children (from `from` on) exactly `wanted`, moving only what is out of place. */
function reconcile(parent, wanted, from = 0) {
  wanted.forEach((node, i) => {
    const at = parent.children[from + i];
    if (at !== node) parent.insertBefore(node, at || null);
  });
  while (parent.children.length > from + wanted.length) parent.lastElementChild.remove();
}

function laneElement(group) {
  const id = group.map((s) => s.key).join("\u0000");
  let lane = lanes.get(id);
  if (!lane) {
    lane = h("div", { class: "lanes", "data-testid": "stage-lanes", role: "group" },
      h("p", { class: "lanes__caption", "data-testid": "lanes-caption" },
        icon(ICONS.parallel),
        h("span", {}, `${group.length} stages in parallel`)));
    lane.dataset.stages = group.map((s) => s.key).join(" ");
    lane.setAttribute("aria-label", `Stages ${group.map((s) => stageTitle(s.key)).join(", ")}, side by side`);
    lanes.set(id, lane);
  }
  lane.dataset.columns = String(Math.min(group.length, MAX_LANES));
  return lane;
}

function layoutStages() {
  stagesDirty = false;
  const groups = stageGroups();
  const root = stageRoot();
  const plan = groups.map((group) => (group.length === 1
    ? { node: group[0].el, inner: null }
    : { node: laneElement(group), inner: group.map((s) => s.el) }));
  const inPlace = plan.length === root.children.length && plan.every(({ node, inner }, i) => root.children[i] === node
    && (!inner || (node.children.length === inner.length + 1 && inner.every((el, j) => node.children[j + 1] === el))));
  if (!inPlace) {
    // Moving an element resets its scroll: logs that were open at their bottom (a running step) stay there.
    const stick = [...steps.values()].filter((st) => st.open && isAtBottom(st.log));
    for (const { node, inner } of plan) if (inner) reconcile(node, inner, 1); // after the caption
    reconcile(root, plan.map((p) => p.node));
    const used = new Set(plan.map((p) => p.node));
    for (const [id, lane] of lanes) if (!used.has(lane)) lanes.delete(id);
    for (const st of stick) st.log.scrollTop = st.log.scrollHeight;
  }
  renderStages();
}

/** Each stage heading: "3 steps · 2 cached", how long it ran, SKIPPED when the target does not need it. */
function renderStages() {
  for (const stage of stages.values()) {
    const own = stage.own || [];
    const decided = own.filter((d) => d.cached !== null && d.cached !== undefined);
    const hits = decided.filter((d) => d.cached === true).length;
    const allSkipped = own.length > 0 && own.every((d) => d.status === "skipped");
    const text = `${plural(own.length, "step")}${decided.length ? ` · ${hits} cached` : ""}`;
    if (stage.count.textContent !== text) stage.count.textContent = text;
    stage.skipped.hidden = !allSkipped;
    let state = "pending";
    if (allSkipped) state = "skipped";
    else if (own.some((d) => d.status === "failed")) state = "failed";
    else if (own.some((d) => d.status === "running")) state = "running";
    else if (own.some((d) => d.status === "cancelled")) state = "cancelled";
    else if (own.every((d) => STEP_FINISHED.has(d.status))) state = "done";
    else if (own.some((d) => STEP_FINISHED.has(d.status))) state = "waiting"; // e.g. a COPY --from for another stage
    stage.el.dataset.state = state;
    renderStageDuration(stage);
  }
}

function renderStageDuration(stage) {
  // Time the stage spent running steps (FROM included), not the wall time since its first step:
  // under BuildKit a stage's FROM runs as the build starts, long before its COPY --from can.
  const live = !FINAL.has(build.status) && !feed.ended;
  const spans = [];
  let ticking = false;
  for (const d of stage.own || []) {
    const t0 = Date.parse(d.started_at);
    if (Number.isNaN(t0)) continue;
    let t1 = Date.parse(d.finished_at);
    if (Number.isNaN(t1) && d.status === "running" && live) {
      t1 = Date.now();
      ticking = true;
    } else if (Number.isNaN(t1)) {
      t1 = d.duration_s !== null && d.duration_s !== undefined ? t0 + d.duration_s * 1000 : t0;
    }
    spans.push([t0, Math.max(t0, t1)]);
  }
  spans.sort((a, b) => a[0] - b[0]);
  let total = 0;
  let reach = -Infinity;
  for (const [t0, t1] of spans) {
    if (t1 <= reach) continue;
    total += t1 - Math.max(t0, reach);
    reach = t1;
  }
  let text = "";
  if (spans.length) text = ticking ? formatElapsed(total / 1000) : formatDuration(total / 1000);
  if (stage.dur.textContent !== text) stage.dur.textContent = text;
  stage.dur.title = spans.length ? "Time this stage spent running its steps" : "";
  stage.dur.classList.toggle("is-live", ticking);
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
  const why = h("div", { class: "why", "data-testid": "miss-reason", hidden: true });
  const error = h("pre", { class: "step__error", "data-testid": "step-error", hidden: true });
  const log = h("div", { class: "log", id: logId, "data-testid": "step-log", role: "log", hidden: true });
  const empty = h("p", { class: "log__empty" }, "No output.");
  log.appendChild(empty);
  const el = h("li", { class: "step", id: `step-${idx}`, "data-testid": "step", "data-index": String(idx) },
    head, why, error, log);
  const step = { data, el, head, badge, instr, lines, dur, why, error, log, empty, count: 0, open: false, userToggled: false };
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
  const prevStage = step ? stageKey(step.data.stage) : null;
  if (!step) {
    step = createStep(data);
    steps.set(data.index, step);
  } else {
    step.data = { ...step.data, ...data };
  }
  if (prevStage !== null && prevStage !== stageKey(step.data.stage)) {
    step.el.remove();
    const left = stages.get(prevStage);
    if (left && !left.list.children.length) {
      left.el.remove();
      stages.delete(prevStage);
      $("steps").classList.toggle("steps--multi", stages.size > 1);
    }
  }
  stagesDirty = true;
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
  const unstarted = d.status === "cancelled" && !d.started_at;
  step.el.className = `step step--${kind}${unstarted ? " is-unstarted" : ""}${step.open ? " is-open" : ""}`;
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
  renderWhy(step);
  renderStepDuration(step);
  renderLineCount(step);
  if (!step.userToggled) {
    if (d.status === "running" || d.status === "failed") setOpen(step, true);
    else if (STEP_FINISHED.has(d.status)) setOpen(step, false);
  }
}

// Why a step missed the cache (docs/API.md, miss_reason); templates/_macros.html has the same labels.
const WHY_LABELS = {
  first_build: "First build",
  no_cache: "No cache asked",
  instruction_changed: "Instruction changed",
  files_changed: "Files changed",
  build_arg_changed: "Build arg changed",
  base_image_changed: "Base image changed",
  parent_missed: "Earlier step missed",
  unknown: "Not in cache",
};
const WHY_FILES_SHOWN = 8;

function whyDetails(r) {
  if (r.kind === "instruction_changed" && r.old) {
    return [h("code", { class: "why__line why__line--old" }, `− ${r.old}`),
      h("code", { class: "why__line why__line--new" }, `+ ${r.new}`)];
  }
  if (r.kind === "build_arg_changed") {
    const shown = (v) => (v === null || v === undefined ? "unset" : v);
    return [h("ul", { class: "why__args" },
      (r.args || []).map((a) => h("li", { class: "mono" }, `${a.name}: ${shown(a.old)} → ${shown(a.new)}`)))];
  }
  if (r.kind === "files_changed") {
    const files = [...(r.modified || []).map((f) => ["M", "modified", f]), ...(r.added || []).map((f) => ["A", "added", f]),
      ...(r.removed || []).map((f) => ["D", "removed", f])];
    const counts = r.counts || {};
    const total = (counts.added || 0) + (counts.removed || 0) + (counts.modified || 0);
    const items = files.slice(0, WHY_FILES_SHOWN).map(([mark, kind, f]) => h("li", { class: `file file--${kind}` },
      h("span", { class: "file__mark", title: kind }, mark), " ", h("span", { class: "mono" }, f)));
    if (total > items.length) items.push(h("li", { class: "file file--more" }, `and ${total - items.length} more`));
    return [h("ul", { class: "why__files", "data-testid": "miss-files" }, items)];
  }
  return [];
}

function renderWhy(step) {
  const r = step.data.miss_reason;
  const key = r ? JSON.stringify(r) : "";
  if (step.whyKey === key) return;
  step.whyKey = key;
  step.why.hidden = !r;
  if (!r) {
    step.why.replaceChildren();
    return;
  }
  step.why.dataset.kind = r.kind;
  step.why.className = `why why--${r.kind}`;
  let text = r.text;
  if (r.kind === "files_changed") {
    // The list below names them: say only how many.
    const c = r.counts || {};
    text = plural((c.added || 0) + (c.removed || 0) + (c.modified || 0), "file") + " it copies changed:";
  }
  step.why.replaceChildren(
    h("span", { class: "why__kind" }, WHY_LABELS[r.kind] || r.kind),
    h("span", { class: "why__text" }, text || ""),
    ...whyDetails(r),
  );
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
  // Collapsed, the block still says what the builder last did ("exporting to image — 0.12 s").
  const latest = h("span", { class: "prep__latest", "data-testid": "preparation-latest" });
  const head = h("button", { type: "button", class: "step__head", "aria-expanded": "false", "aria-controls": logId },
    h("span", { class: "step__num step__num--prep", "aria-hidden": "true" }, icon(ICONS.terminal)),
    h("span", { class: "step__instr step__instr--prep" }, "Preparation"),
    latest,
    lines,
    h("span", { class: "step__chevron", "aria-hidden": "true" }, icon(ICONS.chevron)));
  const log = h("div", { class: "log", id: logId, "data-testid": "preparation-log", role: "log", hidden: true });
  const el = h("div", { class: "step step--prep", "data-testid": "preparation" }, head, log);
  prep = { el, head, log, lines, latest, count: 0, open: false, userToggled: false, data: { status: "prep" } };
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

// "[internal] load remote build context — 6.2 MB in 0.08 s": what BuildKit did, then its figures.
const PREP_DETAIL = /^(.*\S) — (\S.*)$/;
// eslint-disable-next-line no-control-regex
const ANSI_CODES = /\x1b\[[0-9;?]*[ -\/]*[@-~]/g;

function appendLine(target, stream, text) {
  if (target.empty) {
    target.empty.remove();
    target.empty = null;
  }
  target.count += 1;
  const kind = stream === "stderr" || stream === "system" ? stream : "stdout";
  const line = h("div", { class: `log__line log__line--${kind}` });
  const timed = target === prep && kind === "system" ? PREP_DETAIL.exec(text) : null;
  if (timed && /^ERROR\b/.test(timed[2])) {
    line.classList.add("log__line--error");
    line.appendChild(renderAnsi(text));
  } else if (timed && timed[2].length <= 40) {
    // BuildKit's own work with its size and time: the figures line up on the right.
    line.classList.add("log__line--timed");
    line.append(h("span", { class: "log__what" }, renderAnsi(timed[1])),
      h("span", { class: "log__detail" }, h("span", { class: "log__sep" }, " — "), timed[2]));
  } else {
    line.appendChild(renderAnsi(text)); // text nodes and spans only: never markup
  }
  target.log.appendChild(line);
  target.lines.textContent = plural(target.count, "line");
  if (target.latest) {
    target.latest.textContent = text.replace(ANSI_CODES, "");
    target.latest.title = target.latest.textContent;
  }
}

function isAtBottom(el) {
  return el.hidden || el.scrollHeight - el.scrollTop - el.clientHeight < 32;
}

// ---------------------------------------------------------------- applying messages

/** One frame's messages (live.js batches them). */
function applyBatch(batch) {
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
  if (stagesDirty) layoutStages();
  if (stepsChanged || headerChanged) renderSummary();
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
      // The page was drawn with this message or a later one already (the replay starts from seq 1).
      if (!msg.build || msg.seq <= (build.rendered_seq || 0)) return null;
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
  if (build.status !== "failed") follow = false;
  feed.stop();
}

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
  for (const stage of stages.values()) {
    if (stage.el.dataset.state === "running" || stage.dur.classList.contains("is-live")) renderStageDuration(stage);
  }
  const live = !FINAL.has(build.status) && !feed.ended;
  if (live && !ticker) ticker = setInterval(tick, 100);
  if (!live && ticker) {
    clearInterval(ticker);
    ticker = null;
  }
}

// ---------------------------------------------------------------- actions

/** Secret build args are never stored: a rebuild asks for their values again (a small dialog). */
function askSecrets(names) {
  return new Promise((resolve) => {
    const inputs = names.map((name) => h("input", { class: "input mono", type: "password", autocomplete: "off",
      "data-secret-arg": name, "data-testid": "rebuild-secret", "aria-label": `Value of ${name}` }));
    const dialog = h("dialog", { class: "secrets-dialog card", "data-testid": "rebuild-secrets" },
      h("form", { method: "dialog", class: "secrets-dialog__form" },
        h("h2", {}, "Secret build args"),
        h("p", { class: "hint" }, "Layerdeck never keeps the values of secret-looking build args. Enter them again "
          + "for this rebuild; they are masked in its log and pages."),
        ...names.map((name, i) => h("label", { class: "field" }, h("span", { class: "label mono" }, name), inputs[i])),
        h("div", { class: "secrets-dialog__actions" },
          h("button", { class: "btn btn--ghost", value: "cancel", type: "submit" }, "Cancel"),
          h("button", { class: "btn btn--primary", value: "ok", type: "submit", "data-testid": "rebuild-secrets-ok" },
            "Rebuild"))));
    dialog.addEventListener("close", () => {
      const values = Object.fromEntries(inputs.map((input) => [input.dataset.secretArg, input.value]));
      dialog.remove();
      resolve(dialog.returnValue === "ok" ? values : null);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    inputs[0].focus();
  });
}

$("rebuild").addEventListener("click", async () => {
  const button = $("rebuild");
  const secretNames = (build.options && build.options.secret_build_args) || [];
  let secrets = null;
  if (secretNames.length) {
    secrets = await askSecrets(secretNames);
    if (!secrets) return;
  }
  button.disabled = true;
  button.classList.add("is-busy");
  button.querySelector(".btn__label").textContent = "Starting…";
  try {
    const res = await fetch(button.dataset.url, {
      method: "POST",
      headers: csrfHeaders({ Accept: "application/json", ...(secrets ? { "Content-Type": "application/json" } : {}) }),
      body: secrets ? JSON.stringify({ build_args: secrets }) : undefined,
    });
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

/** Cancel: shown while the build is queued or running, until its `end` message. */
function renderCancel() {
  const button = $("cancel");
  const live = (build.status === "queued" || build.status === "running") && !feed.ended;
  if (!live) cancelling = false;
  button.hidden = !live;
  button.disabled = cancelling;
  button.classList.toggle("is-busy", cancelling);
  button.setAttribute("aria-busy", String(cancelling));
  const label = cancelling ? "Cancelling…" : "Cancel";
  const labelEl = button.querySelector(".btn__label");
  if (labelEl.textContent !== label) labelEl.textContent = label;
}

$("cancel").addEventListener("click", async () => {
  if (cancelling) return;
  cancelling = true;
  renderCancel();
  try {
    const res = await fetch($("cancel").dataset.url, { method: "POST", headers: csrfHeaders({ Accept: "application/json" }) });
    if (res.status === 202 || res.ok) return; // "Cancelling…" until the status and end messages say how it ended
    const err = await readApiError(res, {
      409: "This build has already ended, so there is nothing to cancel.",
    });
    flash(`Cancel failed: ${err.message}`, "error");
  } catch (e) {
    flash(e instanceof TypeError ? "Could not reach Layerdeck to cancel the build." : `Cancel failed: ${e.message}`);
  }
  cancelling = false;
  renderCancel();
});

copyButton($("copy-image"), $("image-id"));

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
layoutStages();
renderSummary();
renderHeader();
feed.start();

// For tests and the curious: the page's live state.
window.layerdeck = {
  build,
  steps,
  receive: feed.receive,
  flush: feed.flush,
  get lastSeq() {
    return feed.lastSeq;
  },
};
