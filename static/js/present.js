// Presenter mode (/builds/<id>/present): one build full screen for a projector. Big step rows that
// light up as the build runs (CACHED blue, BUILT green), a live count of cached steps and time saved, a
// timeline of step durations on one time axis, why a step missed the cache (steps[].miss_reason, when
// the server sends it), and an editor over the context's text files with one-click rebuild.
//
// It follows WS /ws/builds/<id> through live.js. A rebuild started here switches the page to the new
// build in place: the rows stay (reset to waiting) and light up again as the new build's steps arrive,
// and the address becomes the new build's present page (no reload).

import { csrfHeaders, flash, h, readApiError } from "./dom.js";
import { liveFeed } from "./live.js";
import { formatDuration, formatElapsed, secondsSince, toMillis } from "./time.js";

const $ = (id) => document.getElementById(id);

const FINAL = new Set(["succeeded", "failed", "cancelled", "interrupted", "timed_out"]);
const STATUS_LABELS = {
  queued: "Queued", running: "Running", succeeded: "Succeeded", failed: "Failed",
  cancelled: "Cancelled", interrupted: "Interrupted", timed_out: "Timed out",
};
const ERROR_FALLBACKS = {
  cancelled: "The build was cancelled.",
  timed_out: "The build ran past its time limit and was stopped.",
  interrupted: "Layerdeck restarted while this build was running.",
};

const root = $("present");
const canBuild = root.dataset.canBuild === "true";

// ---------------------------------------------------------------- why a step missed the cache

function joinNames(names, total) {
  const shown = names.slice(0, 2).join(", ");
  const more = total - Math.min(names.length, 2);
  return more > 0 ? `${shown} and ${more} more` : shown;
}

/** A short sentence for a step's miss_reason ({kind, text?, ...details}); "" when there is none. */
export function reasonText(reason) {
  if (!reason || typeof reason !== "object") return "";
  switch (reason.kind) {
    case "files_changed": {
      const counts = reason.counts || {};
      const lists = { modified: reason.modified || [], added: reason.added || [], removed: reason.removed || [] };
      const total = ["modified", "added", "removed"].reduce((n, k) => n + (counts[k] ?? lists[k].length), 0);
      const names = [...lists.modified, ...lists.added, ...lists.removed];
      if (!names.length) return reason.text || "Files it copies changed";
      const kinds = Object.keys(lists).filter((k) => (counts[k] ?? lists[k].length) > 0);
      const verb = kinds.length === 1 ? { modified: "changed", added: "added", removed: "removed" }[kinds[0]] : "changed";
      return `${joinNames(names, total)} ${verb}`;
    }
    case "instruction_changed":
      return "The instruction changed";
    case "first_build":
      return "First build: nothing cached yet";
    case "no_cache":
      return "Built without the cache, as asked";
    case "build_arg_changed": {
      const names = (reason.args || []).map((a) => (typeof a === "string" ? a : a.name)).filter(Boolean);
      if (!names.length) return "A build arg changed";
      return `Build arg${names.length > 1 ? "s" : ""} ${joinNames(names, names.length)} changed`;
    }
    case "base_image_changed":
      return reason.image ? `The base image ${reason.image} changed` : "The base image changed";
    case "parent_missed":
      return reason.step ? `Step ${reason.step} was rebuilt, so this one is too` : "An earlier step was rebuilt";
    default:
      return reason.text || "Not in the cache";
  }
}

// ---------------------------------------------------------------- state

let build = JSON.parse($("build-data").textContent);
const rows = new Map(); // step index -> {data, el, parts, seen}
const builtBefore = new Map(); // "index\0instruction" -> seconds it took when really built, on this page
let feed = null;
let editedNote = ""; // "Rebuilt after editing app/main.py", said over the build an edit started

const stepKey = (d) => `${d.index}\u0000${d.instruction}`;
const isFrom = (d) => /^\s*FROM\b/i.test(d.instruction || "");
const decided = (d) => d.cached === true || d.cached === false;

function kindOf(d) {
  if (d.status === "pending" || d.waiting) return "pending";
  if ((d.status === "built" || d.status === "cached") && !decided(d)) return "base";
  if (d.cached === true && (d.status === "built" || d.status === "cached")) return "cached";
  return d.status;
}

function badgeText(d) {
  const kind = kindOf(d);
  if (kind === "base") return isFrom(d) ? "Base" : "Done";
  if (kind === "pending") return "Waiting";
  return { running: "Running", cached: "Cached", built: "Built", failed: "Failed", cancelled: "Cancelled", skipped: "Skipped" }[kind] || kind;
}

// ---------------------------------------------------------------- rows

function createRow(d) {
  const num = h("span", { class: "pstep__num" }, String(d.index));
  const instr = h("span", { class: "pstep__instr" });
  const reason = h("span", { class: "pstep__reason", "data-testid": "present-reason", hidden: true });
  const badge = h("span", { class: "pstep__badge", "data-testid": "present-step-badge" });
  const bar = h("span", { class: "pstep__bar" });
  const track = h("span", { class: "pstep__track" }, bar);
  const dur = h("span", { class: "pstep__time mono-num" });
  const saved = h("span", { class: "pstep__saved mono-num", "data-testid": "present-step-saved", hidden: true });
  const el = h("li", { class: "pstep", "data-testid": "present-step" },
    num, h("span", { class: "pstep__what" }, instr, reason), badge, track, h("span", { class: "pstep__dur" }, dur, saved));
  return { data: d, el, instr, reason, badge, bar, dur, saved, instrText: null };
}

function placeRow(row) {
  const list = $("p-step-list");
  const after = [...rows.values()].filter((r) => r.data.index > row.data.index && r.el.isConnected)
    .sort((a, b) => a.data.index - b.data.index)[0];
  list.insertBefore(row.el, after ? after.el : null);
}

function upsertStep(d) {
  let row = rows.get(d.index);
  if (!row) {
    row = createRow(d);
    rows.set(d.index, row);
    placeRow(row);
  } else {
    row.data = { ...row.data, ...d, waiting: false };
  }
  row.seen = true;
  if (d.cached === false && FINAL_STEP.has(d.status) && d.duration_s) builtBefore.set(stepKey(d), d.duration_s);
  renderRow(row);
}

const FINAL_STEP = new Set(["built", "failed"]);

function renderRow(row) {
  const d = row.data;
  const kind = kindOf(d);
  const was = row.el.dataset.kind;
  row.el.className = `pstep pstep--${kind}`;
  if (was && was !== kind && (kind === "cached" || kind === "built")) {
    row.el.classList.add("is-lit"); // a short glow as the step lights up
    setTimeout(() => row.el.classList.remove("is-lit"), 900);
  }
  row.el.dataset.kind = kind;
  row.el.dataset.status = d.waiting ? "pending" : d.status;
  row.el.dataset.cached = decided(d) ? String(d.cached) : "null";
  row.el.dataset.index = String(d.index);
  row.badge.className = `pstep__badge pstep__badge--${kind}`;
  row.badge.textContent = badgeText(d);
  const text = d.instruction || `Step ${d.index}`;
  if (row.instrText !== text) {
    row.instrText = text;
    const m = /^(\s*)([A-Za-z]+)([\s\S]*)$/.exec(text);
    if (m) row.instr.replaceChildren(h("span", { class: "pstep__kw" }, m[2]), m[3]);
    else row.instr.textContent = text;
    row.instr.title = text;
  }
  const why = kind === "built" || kind === "failed" ? reasonText(d.miss_reason) : "";
  const error = kind === "failed" && d.error ? d.error : "";
  const said = error || why;
  row.reason.hidden = !said;
  row.reason.classList.toggle("is-error", Boolean(error));
  if (row.reason.textContent !== said) row.reason.textContent = said;
  if (d.miss_reason && d.miss_reason.kind) row.reason.dataset.kind = d.miss_reason.kind;
  else delete row.reason.dataset.kind;
  renderDuration(row);
}

function stepSeconds(d) {
  if (d.waiting) return null;
  if (d.status === "running" && d.started_at) return secondsSince(d.started_at);
  if (d.duration_s !== null && d.duration_s !== undefined) return d.duration_s;
  return null;
}

function renderDuration(row) {
  const d = row.data;
  const s = stepSeconds(d);
  const text = s === null ? "" : d.status === "running" ? formatElapsed(s) : formatDuration(s);
  if (row.dur.textContent !== text) row.dur.textContent = text;
  // A cached step: what it took when it was really built is what the cache saved.
  const before = kindOf(d) === "cached" ? builtBefore.get(stepKey(d)) : undefined;
  const savedText = before ? `saved ${formatDuration(before)}` : "";
  row.saved.hidden = !savedText;
  if (row.saved.textContent !== savedText) row.saved.textContent = savedText;
}

// ---------------------------------------------------------------- the timeline: one time axis for every row

function niceStep(span) {
  const rough = span / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * power >= rough) return m * power;
  return 10 * power;
}

function renderTimeline() {
  const live = !FINAL.has(build.status);
  const now = Date.now();
  const times = [];
  for (const row of rows.values()) {
    const d = row.data;
    if (d.waiting) continue;
    const t0 = toMillis(d.started_at);
    if (Number.isNaN(t0)) continue;
    let t1 = toMillis(d.finished_at);
    if (Number.isNaN(t1)) t1 = d.status === "running" && live ? now : t0 + (d.duration_s || 0) * 1000;
    times.push([row, t0, Math.max(t0, t1)]);
  }
  const start = times.length ? Math.min(...times.map((t) => t[1])) : 0;
  const end = times.length ? Math.max(...times.map((t) => t[2])) : 0;
  const span = Math.max((end - start) / 1000, 1);
  for (const row of rows.values()) {
    const t = times.find((x) => x[0] === row);
    if (!t) {
      row.bar.style.left = "0%";
      row.bar.style.width = "0%";
      row.bar.hidden = true;
      continue;
    }
    row.bar.hidden = false;
    row.bar.style.left = `${((t[1] - start) / 1000 / span) * 100}%`;
    row.bar.style.width = `${((t[2] - t[1]) / 1000 / span) * 100}%`;
  }
  // Axis: a few round ticks ("0 s", "2 s", "4 s"), and the same ticks as faint lines in every track.
  const axis = $("p-axis");
  const step = niceStep(span);
  $("p-steps").style.setProperty("--tick", `${(step / span) * 100}%`);
  const key = `${span.toFixed(1)}`;
  if (axis.dataset.key === key) return;
  axis.dataset.key = key;
  const ticks = [];
  for (let s = 0; s <= span + 1e-9; s += step) {
    const label = s >= 60 ? formatDuration(s) : `${Number(s.toFixed(2))} s`; // "0.25 s", "1 s", "1.5 s"
    ticks.push(h("span", { class: "paxis__tick", style: `left:${(s / span) * 100}%` }, label));
  }
  axis.replaceChildren(...ticks);
}

// ---------------------------------------------------------------- header, counters

function statusBadge(status) {
  return h("span", { class: `badge badge--${status}`, "data-status": status, "data-testid": "present-status" },
    h("span", { class: "badge__dot", "aria-hidden": "true" }),
    h("span", { class: "badge__label" }, STATUS_LABELS[status] || status));
}

function renderHeader() {
  root.dataset.status = build.status;
  root.dataset.buildId = String(build.id);
  $("p-num").textContent = `#${build.id}`;
  const tag = $("p-tag");
  tag.textContent = build.tag || "untagged";
  tag.classList.toggle("is-untagged", !build.tag);
  const current = document.querySelector("[data-testid=present-status]");
  if (!current || current.dataset.status !== build.status) $("p-status").replaceChildren(statusBadge(build.status));
  document.title = `Presenting #${build.id}${build.tag ? ` — ${build.tag}` : ""} · Layerdeck`;
  $("p-exit").href = build.url || `/builds/${build.id}`;

  const note = $("p-note");
  let noteText = editedNote;
  if (build.status === "queued") {
    noteText = build.queue_position ? `Queued — position ${build.queue_position}` : "Queued — waiting for a free builder";
  }
  note.hidden = !noteText;
  note.textContent = noteText;
  const errorText = FINAL.has(build.status) && build.status !== "succeeded" ? build.error || ERROR_FALLBACKS[build.status] || "" : "";
  $("p-error").hidden = !errorText;
  $("p-error").textContent = errorText;
}

function renderCounters() {
  const all = [...rows.values()].map((r) => r.data).filter((d) => d.status !== "skipped");
  // While a build runs, steps that have not reported yet still count: the Dockerfile is (nearly) the same.
  const deciding = all.filter((d) => !isFrom(d) && (d.waiting || decided(d) || d.status === "running" || d.status === "pending"));
  const hits = all.filter((d) => !d.waiting && d.cached === true).length;
  const box = $("p-cached");
  box.dataset.hits = String(hits);
  box.dataset.total = String(deciding.length);
  $("p-hits").textContent = String(hits);
  $("p-of").textContent = ` of ${deciding.length}`;

  // Time saved: the server's figure once the build has ended; until then an estimate from the steps this
  // page saw really built (the same place and instruction).
  const savedBox = $("p-saved");
  let saved = build.cache && build.cache.saved_s;
  let estimate = false;
  if (saved === null || saved === undefined) {
    saved = 0;
    for (const d of all) if (!d.waiting && d.cached === true) saved += builtBefore.get(stepKey(d)) || 0;
    estimate = !FINAL.has(build.status);
  }
  const text = hits === 0 && !saved ? "—" : `${estimate && saved ? "~" : ""}${formatDuration(saved)}`;
  $("p-saved-value").textContent = text;
  savedBox.dataset.seconds = String(saved || 0);
  savedBox.dataset.final = String(!estimate);
  savedBox.classList.toggle("is-zero", !saved);
}

function buildSeconds() {
  if (build.status === "running" && build.started_at) return secondsSince(build.started_at);
  if (build.duration_s !== null && build.duration_s !== undefined) return build.duration_s;
  return null;
}

function tick() {
  const s = buildSeconds();
  const el = $("p-time");
  const text = build.status === "running" ? formatElapsed(s) : formatDuration(s);
  if (el.textContent !== text) el.textContent = text;
  el.classList.toggle("is-live", build.status === "running");
  for (const row of rows.values()) if (row.data.status === "running") renderDuration(row);
  renderTimeline();
}

function renderAll() {
  renderHeader();
  renderCounters();
  renderTimeline();
  tick();
  const empty = $("p-empty");
  empty.hidden = rows.size > 0;
  empty.textContent = FINAL.has(build.status) ? "No step ran." : "Waiting for the first step…";
}

setInterval(() => {
  if (!FINAL.has(build.status)) tick();
}, 100);

// ---------------------------------------------------------------- following the build

function keepRunningStepInView() {
  const running = [...rows.values()].filter((r) => r.data.status === "running" && !r.data.waiting)
    .sort((a, b) => b.data.index - a.data.index)[0];
  if (running) running.el.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function applyBatch(batch) {
  for (const msg of batch) {
    if (msg.type === "step" && msg.step && msg.step.index !== undefined) {
      upsertStep(msg.step);
    } else if (msg.type === "status" && msg.build && !(msg.seq <= (build.rendered_seq || 0))) {
      // (a status at or below rendered_seq is older than what the page was drawn with)
      const { steps: _ignored, ...rest } = msg.build;
      Object.assign(build, rest);
    } else if (msg.type === "end") {
      if (msg.status) build.status = msg.status;
      finish();
    }
  }
  renderAll();
  keepRunningStepInView();
}

/** The build is over: rows the new build never reported (a step the edit removed) go. */
function finish() {
  for (const [index, row] of rows) {
    if (row.data.waiting) {
      row.el.remove();
      rows.delete(index);
    }
  }
  if (feed) feed.stop();
  if (build.duration_s === null || build.duration_s === undefined) {
    // The final status message carries the duration and time saved; fetch them if it has not come.
    fetch(`/api/v1/builds/${build.id}`, { headers: { Accept: "application/json" } })
      .then((res) => (res.ok ? res.json() : null))
      .then((fresh) => {
        if (fresh && fresh.id === build.id) {
          const { steps: _s, ...rest } = fresh;
          Object.assign(build, rest);
          renderAll();
        }
      })
      .catch(() => {});
  }
}

function follow() {
  feed = liveFeed(build.ws_url, {
    indicator: $("conn"),
    onBatch: applyBatch,
    isLive: () => !FINAL.has(build.status),
    fromStart: true,
  });
  feed.start();
}

/** Show another build (the one a rebuild just started) in place. */
async function switchTo(reply, note) {
  if (feed) feed.stop();
  for (const row of rows.values()) {
    row.data = { ...row.data, waiting: true, miss_reason: null, error: null, started_at: null, finished_at: null, duration_s: null };
    row.seen = false;
    renderRow(row);
  }
  editedNote = note;
  build = {
    id: reply.id, status: reply.status || "queued", tag: build.tag, url: reply.url, api_url: reply.api_url,
    ws_url: reply.ws_url, cache: { saved_s: null }, options: build.options, started_at: null, duration_s: null,
    error: null, queue_position: null,
  };
  history.replaceState(null, "", `/builds/${reply.id}/present`);
  editor.reset();
  renderAll();
  follow();
}

// ---------------------------------------------------------------- actions

function secretValues() {
  const values = {};
  for (const input of document.querySelectorAll("[data-secret-arg]")) values[input.dataset.secretArg] = input.value;
  return values;
}

function secretNames() {
  return (build.options && build.options.secret_build_args) || [];
}

async function startRebuild(url, body, note) {
  const names = secretNames();
  const payload = { ...body };
  if (names.length) payload.build_args = secretValues();
  const res = await fetch(url, {
    method: "POST",
    headers: csrfHeaders({ Accept: "application/json", "Content-Type": "application/json" }),
    body: JSON.stringify(payload),
  });
  if (res.status !== 202) {
    const err = await readApiError(res, {
      409: "This build's context is no longer stored, so it cannot be rebuilt.",
    });
    throw err;
  }
  const reply = await res.json();
  await switchTo(reply, note(reply));
  return reply;
}

const rebuildButton = $("p-rebuild");
if (rebuildButton) {
  rebuildButton.addEventListener("click", async () => {
    if (secretNames().length && !editor.secretsFilled()) {
      editor.open();
      editor.showError("This build had secret build args: enter their values below, then rebuild.");
      return;
    }
    rebuildButton.disabled = true;
    try {
      await startRebuild(`/api/v1/builds/${build.id}/rebuild`, {}, () => "Rebuilt with no changes");
    } catch (err) {
      flash(`Rebuild failed: ${err.message || "Layerdeck could not be reached."}`);
    }
    rebuildButton.disabled = false;
  });
}

// ---------------------------------------------------------------- the editor

const editor = (() => {
  const panel = $("editor");
  if (!panel) {
    return { reset() {}, open() {}, showError() {}, secretsFilled: () => true };
  }
  const list = $("editor-files");
  const text = $("editor-text");
  const go = $("editor-rebuild");
  const error = $("editor-error");
  let files = null; // [{path, size, text, editable}] of the build shown, loaded when the editor opens
  let filesOf = null;
  const original = new Map(); // path -> content as stored
  const edited = new Map(); // path -> content typed here
  let current = null;

  function dirty() {
    return [...edited].filter(([path, content]) => original.get(path) !== content);
  }

  function showError(message) {
    error.hidden = !message;
    error.textContent = message || "";
  }

  function renderSecrets() {
    const box = $("editor-secrets");
    const names = secretNames();
    box.hidden = !names.length;
    for (const name of names) {
      if (box.querySelector(`[data-secret-arg="${CSS.escape(name)}"]`)) continue;
      const id = `secret-${name}`;
      box.appendChild(h("div", { class: "editor__secret" },
        h("label", { for: id, class: "mono" }, name),
        h("input", { id, type: "password", class: "input", "data-secret-arg": name, autocomplete: "off" })));
    }
  }

  function secretsFilled() {
    return secretNames().every((name) => {
      const input = document.querySelector(`[data-secret-arg="${CSS.escape(name)}"]`);
      return input && input.value !== "";
    });
  }

  function renderFiles() {
    const changed = new Set(dirty().map(([p]) => p));
    const editable = (files || []).filter((f) => f.editable);
    list.replaceChildren(...editable.map((f) => h("button", {
      type: "button",
      class: `efile${f.path === current ? " is-current" : ""}${changed.has(f.path) ? " is-dirty" : ""}`,
      "data-testid": "editor-file",
      "data-path": f.path,
      "aria-pressed": String(f.path === current),
      title: f.path,
      onclick: () => choose(f.path),
    }, h("span", { class: "efile__name" }, f.path), h("span", { class: "efile__dot", "aria-hidden": "true" }))));
    const skipped = (files || []).length - editable.length;
    const note = $("editor-skipped");
    note.hidden = !skipped;
    note.textContent = skipped ? `${skipped} binary or large file${skipped === 1 ? "" : "s"} not shown` : "";
    const count = changed.size;
    go.disabled = count === 0;
    go.querySelector(".pbtn__label").textContent = count > 1 ? `Rebuild with ${count} changed files` : "Rebuild with changes";
  }

  async function load() {
    if (filesOf === build.id && files) return;
    filesOf = build.id;
    list.replaceChildren(h("span", { class: "editor__loading" }, "Reading the build context…"));
    const res = await fetch(`/api/v1/builds/${build.id}/files`, { headers: { Accept: "application/json" } });
    if (!res.ok) {
      files = [];
      renderFiles();
      showError((await readApiError(res)).message);
      return;
    }
    const body = await res.json();
    files = body.files;
    renderFiles();
    if (!current) {
      // Start where the demo starts: the app code (not the Dockerfile), else the first editable file.
      const editable = files.filter((f) => f.editable);
      const code = editable.find((f) => f.path !== body.dockerfile && !/requirements|package|lock|\.toml$|\.mod$/i.test(f.path));
      const first = code || editable[0];
      if (first) await choose(first.path);
    }
  }

  async function choose(path) {
    if (current && !text.disabled) edited.set(current, text.value);
    current = path;
    renderFiles();
    if (!original.has(path)) {
      text.disabled = true;
      text.value = "";
      text.placeholder = "Loading…";
      const res = await fetch(`/api/v1/builds/${build.id}/files/${path.split("/").map(encodeURIComponent).join("/")}`,
        { headers: { Accept: "application/json" } });
      if (!res.ok) {
        showError((await readApiError(res)).message);
        return;
      }
      original.set(path, (await res.json()).content);
    }
    if (current !== path) return; // another file was chosen meanwhile
    text.disabled = false;
    text.placeholder = "";
    text.value = edited.has(path) ? edited.get(path) : original.get(path);
    text.dataset.path = path;
    showError("");
    text.focus();
  }

  function open() {
    panel.hidden = false;
    root.classList.add("is-editing");
    $("p-edit").setAttribute("aria-expanded", "true");
    $("p-edit").classList.add("is-active");
    renderSecrets();
    load().catch(() => showError("Could not reach Layerdeck to read the build context."));
  }

  function close() {
    panel.hidden = true;
    root.classList.remove("is-editing");
    $("p-edit").setAttribute("aria-expanded", "false");
    $("p-edit").classList.remove("is-active");
  }

  async function rebuild() {
    if (current && !text.disabled) edited.set(current, text.value);
    const changes = Object.fromEntries(dirty());
    const paths = Object.keys(changes);
    if (!paths.length) return;
    if (!secretsFilled()) {
      showError("Enter the values of the secret build args first.");
      return;
    }
    go.disabled = true;
    go.classList.add("is-busy");
    go.querySelector(".pbtn__label").textContent = "Starting…";
    showError("");
    try {
      await startRebuild(`/api/v1/builds/${build.id}/edit`, { files: changes }, (reply) => {
        const names = reply.changed && reply.changed.length ? reply.changed : paths;
        return `Rebuilt after editing ${names.join(", ")}`;
      });
      close();
    } catch (err) {
      if (err.code === "secrets_needed") renderSecrets();
      showError(err.message || "Could not reach Layerdeck to start the rebuild.");
    }
    go.classList.remove("is-busy");
    renderFiles();
  }

  text.addEventListener("input", () => {
    if (!current) return;
    edited.set(current, text.value);
    renderFiles();
  });
  text.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      rebuild();
    } else if (e.key === "Tab" && !e.shiftKey) {
      // A tab key in code inserts spaces instead of leaving the editor.
      e.preventDefault();
      text.setRangeText("    ", text.selectionStart, text.selectionEnd, "end");
      text.dispatchEvent(new Event("input"));
    }
  });
  go.addEventListener("click", rebuild);
  $("editor-close").addEventListener("click", close);
  $("p-edit").addEventListener("click", () => (panel.hidden ? open() : close()));

  return {
    open,
    close,
    showError,
    secretsFilled,
    get isOpen() {
      return !panel.hidden;
    },
    /** A new build is shown: its context holds the edits, so they are the originals now. */
    reset() {
      files = null;
      filesOf = null;
      original.clear();
      edited.clear();
      text.value = "";
      text.disabled = true;
      const keep = current;
      current = null;
      if (!panel.hidden) load().then(() => keep && choose(keep)).catch(() => {});
      else current = keep;
    },
  };
})();

// ---------------------------------------------------------------- keyboard and full screen

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else document.documentElement.requestFullscreen().catch(() => flash("The browser refused full screen; try F11.", "info"));
}

$("p-fullscreen").addEventListener("click", toggleFullscreen);
document.addEventListener("keydown", (e) => {
  const typing = e.target instanceof HTMLElement && (e.target.matches("input, textarea, select") || e.target.isContentEditable);
  if (e.key === "Escape" && editor.isOpen) {
    editor.close();
    return;
  }
  if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.key === "f" || e.key === "F") toggleFullscreen();
  else if ((e.key === "e" || e.key === "E") && canBuild) {
    e.preventDefault();
    if (editor.isOpen) editor.close();
    else editor.open();
  }
});

/** What each step took when it was last really built, from the builds this one rebuilt (a few back). */
async function learnFromEarlierBuilds() {
  let id = build.rebuild_of;
  for (let hops = 0; id && hops < 5; hops += 1) {
    const res = await fetch(`/api/v1/builds/${id}`, { headers: { Accept: "application/json" } });
    if (!res.ok) return;
    const earlier = await res.json();
    for (const d of earlier.steps || []) {
      if (d.cached === false && FINAL_STEP.has(d.status) && d.duration_s && !builtBefore.has(stepKey(d))) {
        builtBefore.set(stepKey(d), d.duration_s);
      }
    }
    id = earlier.rebuild_of;
  }
}

// ---------------------------------------------------------------- start

for (const s of build.steps || []) upsertStep(s);
renderAll();
follow();
learnFromEarlierBuilds().then(() => {
  for (const row of rows.values()) renderDuration(row);
  renderCounters();
}).catch(() => {});

// For tests and the curious.
window.layerdeckPresent = {
  get build() {
    return build;
  },
  rows,
  reasonText,
  receive: (msg) => feed && feed.receive(msg),
  flush: () => feed && feed.flush(),
};
