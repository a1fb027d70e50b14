// A run's page: renders the embedded run, follows WS /ws/runs/<id>/logs (docs/API.md) through live.js
// (which skips repeated seqs, reconnects with ?after=<last seq> and keeps the connection indicator),
// and drives stop, restart and remove through the API, redrawing from the run object each answer
// returns. Log text only reaches the DOM as text nodes (renderAnsi builds spans and text nodes, never
// markup).

import { renderAnsi, stripAnsi } from "./ansi.js";
import { copyButton, flash, h, readApiError, csrfHeaders } from "./dom.js";
import { liveFeed } from "./live.js";
import { formatAbsolute, formatClock, formatUptime, hydrateTimes, liveUptime, plural } from "./time.js";
import { badgeKey, portsKey, portsList, runBadge, runIsBad, runLabel, runSeconds, setUptime } from "./run-ui.js";

const $ = (id) => document.getElementById(id);

const NOTICES = {
  gone: "The container was removed outside Layerdeck (for example with docker rm). Its log up to then is kept below.",
  removed: "The container was removed from Layerdeck. Its log and this record are kept.",
  stopped: "Stopped from Layerdeck. Restart brings it back with the same ports, environment and command.",
};
const RESTARTABLE = new Set(["running", "exited", "stopped"]);
const TAIL_LINES = 6; // shown in the exit box
const MAX_LINES = 5000; // kept in the page; older ones are dropped from the view (not from the server)
const STORED_REPLAY = 1000; // a fresh socket replays at most this many stored lines

// ---------------------------------------------------------------- state

const run = JSON.parse($("run-data").textContent);
const logEl = $("run-log");
let firstSeq = null; // seq of the first message this page saw
let lineCount = 0; // log lines received
let shownLines = 0; // log lines in the DOM
let unseen = 0; // lines that arrived while the reader was scrolled up
let trimmedNote = null;
const tail = []; // the last few lines, for the exit box
let lastStatus = run.status;
let busy = null; // "stop" | "restart" | "remove" while a request is out
// A fresh page gets the last stored lines; a reconnect resumes after the last message seen. A container
// that is not running has nothing more to say: a clean close after its replay is the end.
const feed = liveFeed(run.ws_url, {
  indicator: $("conn"),
  onBatch: applyBatch,
  isLive: () => run.status === "running",
  isFinal: () => run.status !== "running",
  onFinal: render,
});

// ---------------------------------------------------------------- header and boxes

function setTime(slot, iso) {
  if (!iso) {
    slot.replaceChildren(h("span", { class: "muted" }, "—"));
    return;
  }
  const current = slot.querySelector("time");
  if (current && current.getAttribute("datetime") === iso) return;
  slot.replaceChildren(h("time", { datetime: iso, "data-relative": true, title: formatAbsolute(iso) }, iso));
  hydrateTimes(slot);
}

function render() {
  const root = $("run");
  root.dataset.status = run.status;
  const running = run.status === "running";

  const current = document.querySelector("[data-testid=run-status]");
  const key = badgeKey(run);
  if (!current || `${current.dataset.status}|${current.dataset.exitCode ?? ""}` !== key) {
    $("run-status-slot").replaceChildren(runBadge(run, "run-status"));
  }
  const name = $("run").querySelector("[data-testid=run-display-name]").textContent.trim();
  document.title = `Run #${run.id} ${runLabel(run).toLowerCase()} — ${name} · Layerdeck`;

  // Buttons: what fits the run's state (and nothing while a request is out).
  $("stop").hidden = !running && busy !== "stop";
  $("restart").hidden = !RESTARTABLE.has(run.status) && busy !== "restart";
  const removable = !["removed", "gone"].includes(run.status);
  $("remove").hidden = !removable && busy !== "remove";
  if (!removable) closeConfirm();
  const again = $("run-again");
  if (again) again.hidden = !["removed", "gone", "failed"].includes(run.status);

  // Times
  $("meta-started").hidden = !run.started_at;
  setTime($("started-at"), run.started_at);
  $("meta-finished").hidden = !run.finished_at || running;
  if (!running) setTime($("finished-at"), run.finished_at);

  renderExit();

  const notice = $("run-notice");
  const text = NOTICES[run.status] || "";
  notice.hidden = !text;
  notice.dataset.status = run.status;
  if ($("run-notice-text").textContent !== text) $("run-notice-text").textContent = text;

  // Uptime and ports
  setUptime($("uptime"), run);
  $("uptime-label").textContent = running || !run.started_at ? "Uptime" : "Ran for";
  const ports = $("ports");
  const pk = portsKey(run);
  if (ports.dataset.key !== pk) {
    ports.dataset.key = pk;
    ports.replaceChildren(portsList(run, true));
  }

  const full = run.container_id || "";
  const cid = $("container-id");
  if (cid.dataset.full !== full) {
    cid.dataset.full = full;
    cid.title = full;
    cid.textContent = full ? full.slice(0, 12) : "none";
    cid.classList.toggle("is-empty", !full);
    $("copy-container").hidden = !full;
  }

  const empty = $("log-empty");
  if (empty) empty.textContent = running ? "Waiting for output…" : feed.ended ? "No output." : "Loading the log…";
}

function renderExit() {
  const box = $("run-exit");
  const show = run.status === "exited" || run.status === "failed";
  box.hidden = !show;
  if (!show) return;
  box.dataset.status = run.status;
  box.dataset.bad = String(runIsBad(run));
  box.setAttribute("role", runIsBad(run) ? "alert" : "status");
  const title = $("run-exit-title");
  const code = run.exit_code;
  const known = code !== null && code !== undefined;
  if (run.status === "failed") {
    title.textContent = "The container could not start";
  } else if (title.dataset.code !== String(code)) {
    title.replaceChildren("Exited with code ", h("span", { class: "mono-num", "data-testid": "run-exit-code" }, known ? String(code) : "?"));
  }
  title.dataset.code = String(code);
  let why = run.exit_meaning || "";
  if (run.status === "exited" && run.uptime_s !== null && run.uptime_s !== undefined) {
    why = `${why} It ran for ${formatUptime(runSeconds(run))}.`.trim();
  }
  $("run-exit-why").textContent = why;
  $("run-exit-why").hidden = !why;
  const err = $("run-exit-error");
  err.hidden = !run.error;
  err.textContent = run.error || "";
  renderTail();
}

function renderTail() {
  const box = $("run-exit-tail-box");
  if ($("run-exit").hidden) return;
  box.hidden = tail.length === 0;
  const lines = tail.map((l) => h("div", { class: `run-exit__line run-exit__line--${l.stream}` }, l.text || "\u00a0"));
  $("run-exit-tail").replaceChildren(...lines);
  const jump = $("run-exit-jump");
  jump.hidden = lineCount === 0;
  jump.textContent = lineCount > tail.length ? `The whole log (${plural(lineCount, "line")}) is below ↓` : "In the log below ↓";
}

// ---------------------------------------------------------------- log

function isAtBottom() {
  return logEl.scrollHeight - logEl.scrollTop - logEl.clientHeight < 32;
}

function lineElement(msg) {
  const stream = msg.stream === "stderr" ? "stderr" : "stdout";
  const clock = formatClock(msg.time);
  return h("div", { class: `log__line log__line--${stream}`, "data-stream": stream },
    h("time", { class: "log__time", datetime: msg.time || null, "aria-hidden": "true" }, clock),
    h("span", { class: "log__text" }, renderAnsi(msg.text)));
}

function divider(text) {
  return h("div", { class: "log__divider", role: "separator", "data-testid": "run-log-divider" }, h("span", {}, text));
}

function dropEmpty() {
  const empty = $("log-empty");
  if (empty) empty.remove();
}

function trimLog() {
  while (shownLines > MAX_LINES) {
    const first = logEl.querySelector(".log__line");
    if (!first) break;
    first.remove();
    shownLines -= 1;
  }
  if (!trimmedNote) {
    trimmedNote = h("p", { class: "log__note", "data-testid": "run-log-trimmed" });
    logEl.insertBefore(trimmedNote, logEl.firstChild);
  }
  trimmedNote.textContent = `Older lines are not shown here: this view keeps the last ${MAX_LINES.toLocaleString()}.`;
}

function noteEarlier() {
  if (trimmedNote || firstSeq === null || firstSeq <= 1 || lineCount < STORED_REPLAY) return;
  trimmedNote = h("p", { class: "log__note", "data-testid": "run-log-trimmed" },
    `Showing the last ${STORED_REPLAY.toLocaleString()} lines the container printed before this page opened, then everything new.`);
  logEl.insertBefore(trimmedNote, logEl.firstChild);
}

function renderCount() {
  $("log-count").textContent = lineCount ? plural(lineCount, "line") : "";
}

function renderLatest() {
  const button = $("log-latest");
  button.hidden = unseen === 0;
  $("log-latest-text").textContent = `${plural(unseen, "new line")}`;
}

logEl.addEventListener("scroll", () => {
  if (unseen && isAtBottom()) {
    unseen = 0;
    renderLatest();
  }
}, { passive: true });

$("log-latest").addEventListener("click", () => {
  logEl.scrollTop = logEl.scrollHeight;
  unseen = 0;
  renderLatest();
});

// ---------------------------------------------------------------- applying messages

/** One frame's messages (live.js batches them). */
function applyBatch(batch) {
  if (firstSeq === null) firstSeq = batch.find((msg) => typeof msg.seq === "number")?.seq ?? null;
  const stick = isAtBottom(); // measured once, before writing
  const frag = document.createDocumentFragment();
  let added = 0;
  let changed = false;
  let finishing = false;
  for (const msg of batch) {
    if (msg.type === "log") {
      frag.appendChild(lineElement(msg));
      added += 1;
      tail.push({ stream: msg.stream === "stderr" ? "stderr" : "stdout", text: stripAnsi(msg.text) });
      if (tail.length > TAIL_LINES) tail.shift();
    } else if (msg.type === "status" && msg.run) {
      Object.assign(run, msg.run);
      if (run.status === "running" && lastStatus !== "running" && lineCount + added > 0) {
        frag.appendChild(divider(`Started again ${formatClock(run.started_at || new Date().toISOString())}`));
      }
      lastStatus = run.status;
      changed = true;
    } else if (msg.type === "end") {
      if (msg.status) run.status = msg.status;
      if (Object.prototype.hasOwnProperty.call(msg, "exit_code")) run.exit_code = msg.exit_code;
      lastStatus = run.status;
      changed = true;
      finishing = true;
    }
  }
  if (added) {
    dropEmpty();
    logEl.appendChild(frag);
    lineCount += added;
    shownLines += added;
    if (shownLines > MAX_LINES) trimLog();
    noteEarlier();
    renderCount();
    if (stick) logEl.scrollTop = logEl.scrollHeight;
    else {
      unseen += added;
      renderLatest();
    }
  } else if (frag.childNodes.length) {
    logEl.appendChild(frag);
  }
  if (finishing) finish();
  if (changed) {
    render();
    fitLog();
  } else if (added) render();
}

/** The container stopped: freeze the uptime, close the socket, and read the run's final state. */
function finish() {
  const up = $("uptime");
  if (run.status !== "running" && up.dataset.uptimeSince !== undefined) {
    run.uptime_s = liveUptime(up);
    if (!run.finished_at) run.finished_at = new Date().toISOString();
  }
  feed.stop();
  refresh();
}

async function refresh() {
  try {
    const res = await fetch(run.api_url, { headers: { Accept: "application/json" }, cache: "no-store" });
    if (!res.ok) return;
    const body = await res.json();
    if (body && body.id === run.id) {
      Object.assign(run, body);
      lastStatus = run.status;
      render();
      // An `end` from the old container can cross a restart's answer: follow the new one.
      if (run.status === "running" && feed.ended) feed.resume();
    }
  } catch {
    // keep what the socket said
  }
}

// ---------------------------------------------------------------- actions

function setBusy(button, label) {
  button.disabled = Boolean(label);
  button.classList.toggle("is-busy", Boolean(label));
  button.setAttribute("aria-busy", String(Boolean(label)));
  button.querySelector(".btn__label").textContent = label || button.dataset.label;
}

for (const id of ["stop", "restart", "remove", "remove-confirm-btn"]) {
  const b = $(id);
  b.dataset.label = b.querySelector(".btn__label").textContent;
}

/** One action: a request to the API, then the page redrawn from the run it answers with. */
async function act(kind, button, { method, url, busyLabel, fallbacks, done }) {
  if (busy) return;
  busy = kind;
  setBusy(button, busyLabel);
  for (const other of [$("stop"), $("restart"), $("remove")]) if (other !== button) other.disabled = true;
  try {
    const res = await fetch(url, { method, headers: csrfHeaders({ Accept: "application/json" }) });
    if (res.ok) {
      const body = await res.json().catch(() => null);
      const before = run.status;
      if (body && body.id === run.id) Object.assign(run, body);
      lastStatus = run.status;
      if (done) done(before);
    } else {
      const err = await readApiError(res, fallbacks);
      flash(`${button.dataset.label} failed: ${err.message}`, "error");
      if (res.status === 404 || res.status === 409) refresh();
    }
  } catch (e) {
    flash(e instanceof TypeError
      ? `Could not reach Layerdeck to ${button.dataset.label.toLowerCase()} the container.`
      : `${button.dataset.label} failed: ${e.message}`);
  }
  busy = null;
  setBusy(button, null);
  for (const other of [$("stop"), $("restart"), $("remove")]) other.disabled = false;
  render();
  fitLog();
}

$("stop").addEventListener("click", () => act("stop", $("stop"), {
  method: "POST",
  url: $("stop").dataset.url,
  busyLabel: "Stopping…",
  fallbacks: { 409: "The container is not running, so there is nothing to stop." },
}));

$("restart").addEventListener("click", () => act("restart", $("restart"), {
  method: "POST",
  url: $("restart").dataset.url,
  busyLabel: "Restarting…",
  fallbacks: { 409: "This run's container no longer exists, so it cannot be restarted." },
  done: (before) => {
    if (run.status === "running") {
      if (lineCount) {
        dropEmpty();
        const stick = isAtBottom();
        logEl.appendChild(divider(`${before === "running" ? "Restarted" : "Started again"} ${formatClock(run.started_at || new Date().toISOString())}`));
        if (stick) logEl.scrollTop = logEl.scrollHeight;
      }
      feed.resume();
    }
  },
}));

// Remove asks first, in the page (no browser dialog): the container goes, the record and log stay.
function openConfirm() {
  const box = $("remove-confirm");
  box.hidden = false;
  $("remove").setAttribute("aria-expanded", "true");
  $("remove-cancel").focus();
  fitLog();
}

function closeConfirm() {
  const box = $("remove-confirm");
  if (box.hidden) return;
  box.hidden = true;
  $("remove").setAttribute("aria-expanded", "false");
  fitLog();
}

$("remove").addEventListener("click", () => {
  if ($("remove-confirm").hidden) openConfirm();
  else closeConfirm();
});
$("remove-cancel").addEventListener("click", () => {
  closeConfirm();
  $("remove").focus();
});
$("remove-confirm").addEventListener("keydown", (e) => {
  if (e.key === "Escape") {
    closeConfirm();
    $("remove").focus();
  }
});
$("remove-confirm-btn").addEventListener("click", async () => {
  const confirmBtn = $("remove-confirm-btn");
  setBusy(confirmBtn, "Removing…");
  await act("remove", $("remove"), {
    method: "DELETE",
    url: $("remove").dataset.url,
    busyLabel: "Removing…",
    fallbacks: { 409: "The container cannot be removed right now." },
    done: () => {
      if (run.status === "removed") {
        closeConfirm();
        flash("Container removed. Its log and history are kept.", "success");
      }
    },
  });
  setBusy(confirmBtn, null);
});

copyButton($("copy-container"), $("container-id"));

// ---------------------------------------------------------------- fitting the log to the screen
// The log is the page's main content: it takes the height left under the header, so its newest lines
// are on screen without scrolling the page (on a projector nobody scrolls). Never below 18rem.

function fitLog() {
  const doc = document.scrollingElement || document.documentElement;
  const top = logEl.getBoundingClientRect().top + doc.scrollTop;
  const floor = 18 * parseFloat(getComputedStyle(document.documentElement).fontSize);
  const room = Math.max(floor, window.innerHeight - top - 28);
  const stick = isAtBottom();
  logEl.style.maxHeight = `${Math.round(room)}px`;
  if (stick) logEl.scrollTop = logEl.scrollHeight;
}

let fitTimer = null;
window.addEventListener("resize", () => {
  clearTimeout(fitTimer);
  fitTimer = setTimeout(fitLog, 100);
});

// ---------------------------------------------------------------- start

$("ports").dataset.key = portsKey(run);
render();
fitLog();
feed.start();

// For tests and the curious: the page's live state.
window.layerdeck = {
  run,
  receive: feed.receive,
  flush: feed.flush,
  get lastSeq() {
    return feed.lastSeq;
  },
};
