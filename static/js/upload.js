// The "New build" form: pick or drop a build context (archive, folder, or pasted Dockerfile), set the
// options, and POST it to /api/v1/builds with an upload progress bar. See docs/API.md.

import { h, icon, parseApiError, csrfHeaders } from "./dom.js";
import { formatBytes, formatMB, plural } from "./time.js";
import { folderToTar, stripSharedTop } from "./tar.js";

const MiB = 1024 * 1024;
const ARCHIVE_NAME = /\.(tar|tar\.gz|tgz|zip)$/i;
const SECRET_KEY = /PASS|SECRET|TOKEN|KEY|CRED|AUTH/i;

const ICONS = {
  folder: ["M3 7a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v8a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2Z"],
  archive: ["M21 8v12a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V8", "M1 3h22v5H1zM10 12h4"],
  file: ["M14 3H7a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V8Z", "M14 3v5h5"],
  remove: ["M18 6 6 18M6 6l12 12"],
  lock: ["M6 11h12v10H6z", "M8 11V7a4 4 0 0 1 8 0v4"],
};

const form = document.getElementById("build-form");
const $ = (id) => document.getElementById(id);

const limits = {
  uploadBytes: Number(form.dataset.maxUploadMb || 0) * MiB,
  unpackedBytes: Number(form.dataset.maxUnpackedMb || 0) * MiB,
  files: Number(form.dataset.maxFiles || 0),
};

const state = {
  mode: "upload", // "upload" | "paste"
  selection: null, // {kind: "archive", file} | {kind: "folder", name, entries: [{file, path}]}
  problem: null, // a sentence when the selection cannot be sent (over a limit)
  reading: false,
  xhr: null,
};

// ---------------------------------------------------------------- tabs (upload | paste)

const tabs = [...form.querySelectorAll("[role=tab]")];

function setMode(mode, { focus = false } = {}) {
  state.mode = mode;
  for (const tab of tabs) {
    const active = tab.dataset.mode === mode;
    tab.classList.toggle("is-active", active);
    tab.setAttribute("aria-selected", String(active));
    tab.tabIndex = active ? 0 : -1;
    $(tab.getAttribute("aria-controls")).hidden = !active;
    if (active && focus) tab.focus();
  }
  // A pasted Dockerfile is the whole context: its path inside it is not the user's to choose.
  $("dockerfile").disabled = mode === "paste";
  $("dockerfile-field").classList.toggle("is-disabled", mode === "paste");
  if (mode === "paste") $("dockerfile-text").focus({ preventScroll: true });
  clearError();
  updateSummary();
}

for (const tab of tabs) {
  tab.addEventListener("click", () => setMode(tab.dataset.mode));
  tab.addEventListener("keydown", (e) => {
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    e.preventDefault();
    const i = tabs.indexOf(tab);
    const next = tabs[(i + (e.key === "ArrowRight" ? 1 : tabs.length - 1)) % tabs.length];
    setMode(next.dataset.mode, { focus: true });
  });
}

// ---------------------------------------------------------------- choosing a context

const archiveInput = $("archive-input");
const folderInput = $("folder-input");
const dropzone = $("dropzone");

$("choose-folder").addEventListener("click", () => folderInput.click());
$("choose-archive").addEventListener("click", () => archiveInput.click());

archiveInput.addEventListener("change", () => {
  const file = archiveInput.files && archiveInput.files[0];
  if (file) chooseFiles([{ file, path: file.name }], null);
  archiveInput.value = "";
});

folderInput.addEventListener("change", () => {
  const files = [...(folderInput.files || [])];
  if (files.length) {
    const entries = files.map((file) => ({ file, path: file.webkitRelativePath || file.name }));
    chooseFiles(entries, entries[0].path.split("/")[0] || "folder", { forceFolder: true });
  } else {
    showProblem("That folder is empty.");
  }
  folderInput.value = "";
});

/**
 * Decide what the user picked: one archive, or a folder (a set of files with relative paths).
 * A single dropped file that is not an archive (a lone Dockerfile) becomes a one-file folder.
 */
function chooseFiles(entries, folderName, { forceFolder = false } = {}) {
  clearError();
  if (!forceFolder && entries.length === 1 && ARCHIVE_NAME.test(entries[0].file.name)) {
    setSelection({ kind: "archive", file: entries[0].file });
    return;
  }
  if (entries.length === 0) {
    showProblem("That folder is empty: there is nothing to build.");
    return;
  }
  if (entries.length === 1 && !forceFolder) {
    const only = entries[0];
    const dockerfileInput = $("dockerfile");
    // "Build.dockerfile" dropped alone: point the Dockerfile path at it.
    const looksLikeDockerfile = /dockerfile/i.test(only.path) && !/^dockerfile$/i.test(only.path);
    if (looksLikeDockerfile && !dockerfileInput.value) dockerfileInput.value = only.path;
  }
  const name = folderName || (entries.length === 1 ? entries[0].path : `${entries.length} dropped items`);
  setSelection({ kind: "folder", name, entries });
}

function setSelection(selection) {
  state.selection = selection;
  state.problem = null;
  const box = $("selection");
  if (!selection) {
    box.hidden = true;
    dropzone.classList.remove("has-selection");
    updateSummary();
    scheduleAdvice();
    return;
  }
  let name;
  let meta;
  let kindIcon;
  if (selection.kind === "archive") {
    const { file } = selection;
    name = file.name;
    meta = `Archive · ${formatBytes(file.size)}`;
    kindIcon = ICONS.archive;
    if (limits.uploadBytes && file.size > limits.uploadBytes) {
      state.problem = `This archive is ${formatMB(file.size)}; the upload limit is ${form.dataset.maxUploadMb} MB.`;
    }
  } else {
    const total = selection.entries.reduce((sum, e) => sum + e.file.size, 0);
    const count = selection.entries.length;
    name = selection.name;
    meta = `Folder · ${plural(count, "file")} · ${formatBytes(total)}`;
    kindIcon = count === 1 ? ICONS.file : ICONS.folder;
    if (limits.files && count > limits.files) {
      state.problem = `This folder has ${count.toLocaleString()} files; the limit is ${limits.files.toLocaleString()}. Add a .dockerignore or choose a smaller folder.`;
    } else if (limits.unpackedBytes && total > limits.unpackedBytes) {
      state.problem = `This folder holds ${formatMB(total)}; the limit is ${form.dataset.maxUnpackedMb} MB.`;
    } else if (limits.uploadBytes && total > limits.uploadBytes) {
      state.problem = `This folder is ${formatMB(total)} to upload; the limit is ${form.dataset.maxUploadMb} MB.`;
    }
  }
  $("selection-name").textContent = name;
  $("selection-name").title = name;
  $("selection-meta").textContent = meta;
  $("selection-icon").replaceChildren(icon(kindIcon));
  box.hidden = false;
  box.classList.toggle("is-invalid", Boolean(state.problem));
  dropzone.classList.add("has-selection");
  if (state.problem) showError("Too large to upload", state.problem);
  updateSummary();
  scheduleAdvice();
}

$("selection-clear").addEventListener("click", () => {
  setSelection(null);
  clearError();
});

// ---------------------------------------------------------------- drag and drop

let dragDepth = 0;

function isFileDrag(e) {
  return e.dataTransfer && [...e.dataTransfer.types].includes("Files");
}

dropzone.addEventListener("dragenter", (e) => {
  if (!isFileDrag(e)) return;
  e.preventDefault();
  dragDepth += 1;
  dropzone.classList.add("is-dragging");
});
dropzone.addEventListener("dragover", (e) => {
  if (!isFileDrag(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = "copy";
});
dropzone.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) dropzone.classList.remove("is-dragging");
});
dropzone.addEventListener("drop", (e) => {
  e.preventDefault();
  dragDepth = 0;
  dropzone.classList.remove("is-dragging");
  if (state.xhr) return;
  // DataTransfer items are only readable during the event: take entries and files synchronously.
  const items = [...(e.dataTransfer.items || [])].filter((it) => it.kind === "file");
  const picked = items.map((it) => ({
    entry: typeof it.webkitGetAsEntry === "function" ? it.webkitGetAsEntry() : null,
    file: it.getAsFile(),
  }));
  if (picked.length === 0 && e.dataTransfer.files.length) {
    for (const file of e.dataTransfer.files) picked.push({ entry: null, file });
  }
  handleDrop(picked);
});

// A file dropped just outside the zone must not make the browser navigate away from a filled form.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (e) => {
    if (isFileDrag(e) && !dropzone.contains(e.target)) e.preventDefault();
  });
}

async function handleDrop(picked) {
  if (picked.length === 0) return;
  const onlyFiles = picked.every((p) => !p.entry || p.entry.isFile);
  if (onlyFiles) {
    chooseFiles(picked.filter((p) => p.file).map((p) => ({ file: p.file, path: p.file.name })), null);
    return;
  }
  setReading(true);
  try {
    const entries = [];
    for (const p of picked) {
      if (p.entry && p.entry.isDirectory) await walk(p.entry, entries);
      else if (p.file) entries.push({ file: p.file, path: p.file.name });
    }
    const dirs = picked.filter((p) => p.entry && p.entry.isDirectory);
    const name = picked.length === 1 ? dirs[0].entry.name : null;
    chooseFiles(entries, name, { forceFolder: true });
  } catch (err) {
    showError("Could not read that folder", `The browser could not read a file in it (${err && err.message ? err.message : err}).`);
  } finally {
    setReading(false);
  }
}

function readBatch(reader) {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function entryFile(entry) {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

/** Walk a dropped directory; paths keep the folder's own name first, as <input webkitdirectory> does. */
async function walk(dirEntry, out) {
  const reader = dirEntry.createReader();
  // readEntries answers in batches (100 in Chromium) until it answers an empty list.
  for (let batch = await readBatch(reader); batch.length; batch = await readBatch(reader)) {
    for (const entry of batch) {
      if (entry.isDirectory) {
        await walk(entry, out);
      } else if (entry.isFile) {
        const file = await entryFile(entry);
        out.push({ file, path: entry.fullPath.replace(/^\/+/, "") });
        if (out.length % 250 === 0) $("submit-summary").textContent = `Reading folder… ${plural(out.length, "file")}`;
      }
    }
  }
}

function setReading(reading) {
  state.reading = reading;
  dropzone.classList.toggle("is-reading", reading);
  if (reading) $("submit-summary").textContent = "Reading folder…";
  else updateSummary();
}

// ---------------------------------------------------------------- build args editor

const argRows = $("build-args-rows");

function addArgRow(key = "", value = "", focus = true) {
  const keyInput = h("input", {
    type: "text", class: "input mono kv__key", placeholder: "NAME", "aria-label": "Build arg name",
    autocomplete: "off", autocapitalize: "off", spellcheck: "false", "data-testid": "build-arg-key",
  });
  const valueInput = h("input", {
    type: "text", class: "input mono kv__value", placeholder: "value", "aria-label": "Build arg value",
    autocomplete: "off", autocapitalize: "off", spellcheck: "false", "data-testid": "build-arg-value",
  });
  keyInput.value = key;
  valueInput.value = value;
  const secretMark = h("span", { class: "kv__secret", title: "Looks like a secret: build args are visible in the image history" },
    icon(ICONS.lock));
  const remove = h("button", {
    type: "button", class: "btn btn--icon kv__remove", "aria-label": "Remove this build arg", title: "Remove",
  }, icon(ICONS.remove));
  const row = h("div", { class: "kv__row", "data-testid": "build-arg-row" },
    keyInput, h("span", { class: "kv__eq", "aria-hidden": "true" }, "="), valueInput, secretMark, remove);
  const sync = () => {
    row.classList.toggle("is-secret", SECRET_KEY.test(keyInput.value));
    serialiseArgs();
  };
  keyInput.addEventListener("input", sync);
  valueInput.addEventListener("input", sync);
  valueInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      addArgRow();
    }
  });
  remove.addEventListener("click", () => {
    row.remove();
    serialiseArgs();
  });
  argRows.appendChild(row);
  sync();
  if (focus) keyInput.focus();
}

/** Rows -> the JSON object in the hidden build_args field. Returns a problem sentence or null. */
function serialiseArgs() {
  const args = {};
  let problem = null;
  for (const row of argRows.querySelectorAll(".kv__row")) {
    const keyInput = row.querySelector(".kv__key");
    const key = keyInput.value.trim();
    const value = row.querySelector(".kv__value").value;
    keyInput.classList.remove("is-invalid");
    if (!key && !value) continue;
    if (!key) {
      problem = problem || "A build arg has a value but no name.";
      keyInput.classList.add("is-invalid");
    } else if (/[\s=]/.test(key)) {
      problem = problem || `The build arg name "${key}" cannot contain spaces or "=".`;
      keyInput.classList.add("is-invalid");
    } else if (Object.prototype.hasOwnProperty.call(args, key)) {
      problem = problem || `The build arg "${key}" is set twice.`;
      keyInput.classList.add("is-invalid");
    } else {
      args[key] = value;
    }
  }
  $("build-args-json").value = JSON.stringify(args);
  return problem;
}

$("add-arg").addEventListener("click", () => addArgRow());

// ---------------------------------------------------------------- messages

const FIELD_FOR_CODE = [
  [/tag|reference|image_name/, "tag"],
  [/build_arg/, "build-args"],
  [/target|stage/, "target"],
  [/dockerfile_text|empty_dockerfile/, "dockerfile-text"],
  [/dockerfile/, "dockerfile"],
  [/builder/, "builder"],
];

function markField(code) {
  for (const [pattern, id] of FIELD_FOR_CODE) {
    if (pattern.test(code)) {
      const el = $(id);
      if (el && !el.disabled) {
        el.classList.add("is-invalid");
        el.setAttribute("aria-invalid", "true");
        el.setAttribute("aria-describedby", "form-error-message");
      }
      return;
    }
  }
}

function showError(title, message, code = null) {
  $("form-error-title").textContent = title;
  $("form-error-message").textContent = message;
  const box = $("form-error");
  box.dataset.code = code || "";
  box.hidden = false;
  if (code) markField(code);
  const reduce = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  box.scrollIntoView({ block: "nearest", behavior: reduce ? "auto" : "smooth" });
}

function showProblem(message) {
  showError("Nothing to build", message);
}

function clearError() {
  $("form-error").hidden = true;
  for (const el of form.querySelectorAll("[aria-invalid=true]")) {
    el.classList.remove("is-invalid");
    el.removeAttribute("aria-invalid");
    el.removeAttribute("aria-describedby");
  }
}

for (const id of ["tag", "dockerfile", "target", "dockerfile-text", "builder"]) {
  $(id).addEventListener("input", () => {
    const el = $(id);
    if (el.getAttribute("aria-invalid")) {
      el.classList.remove("is-invalid");
      el.removeAttribute("aria-invalid");
    }
  });
}

function updateSummary() {
  if (state.reading || state.xhr) return;
  const summary = $("submit-summary");
  if (state.mode === "paste") {
    const lines = $("dockerfile-text").value.split("\n").filter((l) => l.trim()).length;
    summary.textContent = lines ? `Pasted Dockerfile · ${plural(lines, "line")}` : "Paste a Dockerfile to build.";
  } else if (state.selection) {
    const s = state.selection;
    summary.textContent = s.kind === "archive" ? `Ready: ${s.file.name}` : `Ready: ${s.name} (${plural(s.entries.length, "file")})`;
  } else {
    summary.textContent = "Choose a folder or an archive to build.";
  }
}

$("dockerfile-text").addEventListener("input", updateSummary);

// ---------------------------------------------------------------- submit

/**
 * What to send. A pasted Dockerfile goes as a small form; an archive or a folder goes as the request body
 * itself with the options in the query string (docs/API.md), which the server streams to disk without
 * multipart parsing. A folder becomes one tar built in the page (tar.js); the server checks it like any
 * archive.
 */
function buildRequest() {
  const options = new URLSearchParams();
  const text = (id) => $(id).value.trim();
  if (text("tag")) options.append("tag", text("tag"));
  if (state.mode === "upload" && text("dockerfile")) options.append("dockerfile", text("dockerfile"));
  if (text("target")) options.append("target", text("target"));
  options.append("build_args", $("build-args-json").value || "{}");
  options.append("no_cache", $("no-cache").checked ? "true" : "false");
  options.append("pull", $("pull").checked ? "true" : "false");
  if ($("builder").value) options.append("builder", $("builder").value);
  const action = form.getAttribute("action");

  if (state.mode === "paste") {
    const data = new FormData();
    for (const [key, value] of options) data.append(key, value);
    data.append("dockerfile_text", $("dockerfile-text").value);
    return { url: action, body: data, contentType: null };
  }
  if (state.selection.kind === "archive") {
    return { url: `${action}?${options}`, body: state.selection.file, contentType: "application/octet-stream" };
  }
  options.append("context_source", "folder");
  return { url: `${action}?${options}`, body: folderToTar(state.selection.entries), contentType: "application/x-tar" };
}

function validate() {
  if (state.mode === "paste") {
    if (!$("dockerfile-text").value.trim()) {
      $("dockerfile-text").focus();
      return ["Nothing to build", "Paste a Dockerfile first.", "empty_dockerfile_text"];
    }
  } else {
    if (state.reading) return ["Still reading", "The folder is still being read; try again in a moment.", null];
    if (!state.selection) return ["Nothing to build", "Drop a folder or an archive, or choose one with the buttons.", null];
    if (state.problem) return ["Too large to upload", state.problem, null];
  }
  const argsProblem = serialiseArgs();
  if (argsProblem) return ["Check the build args", argsProblem, "build_args"];
  return null;
}

function setBusy(busy) {
  form.classList.toggle("is-busy", busy);
  $("form-fields").disabled = busy;
  $("submit").disabled = busy;
  $("cancel-upload").hidden = !busy;
  $("upload-progress").hidden = !busy;
  $("submit-label").textContent = busy ? "Uploading…" : "Start build";
  if (!busy) updateSummary();
}

function setProgress(loaded, total) {
  const pct = total ? Math.min(100, Math.floor((loaded / total) * 100)) : 0;
  $("upload-progress-fill").style.width = `${pct}%`;
  $("upload-progress-bar").setAttribute("aria-valuenow", String(pct));
  $("upload-progress-pct").textContent = `${pct}%`;
  const done = total && loaded >= total;
  $("upload-progress").classList.toggle("is-waiting", Boolean(done));
  let text = "Uploading…";
  if (done) text = "Uploaded — starting the build…";
  else if (total) text = `Uploading ${formatMB(loaded)} of ${formatMB(total)}`;
  $("upload-progress-text").textContent = text;
  $("submit-summary").textContent = "";
}

function submit() {
  if (state.xhr) return;
  clearError();
  const problem = validate();
  if (problem) {
    showError(...problem);
    return;
  }
  const xhr = new XMLHttpRequest();
  state.xhr = xhr;
  const request = buildRequest();
  xhr.open("POST", request.url);
  for (const [name, value] of Object.entries(csrfHeaders({ Accept: "application/json" }))) xhr.setRequestHeader(name, value);
  if (request.contentType) xhr.setRequestHeader("Content-Type", request.contentType);
  xhr.upload.addEventListener("progress", (e) => setProgress(e.loaded, e.lengthComputable ? e.total : 0));
  xhr.upload.addEventListener("load", () => setProgress(1, 1));
  xhr.addEventListener("load", () => {
    state.xhr = null;
    if (xhr.status === 202 || xhr.status === 201 || xhr.status === 200) {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (body && body.url) {
        $("upload-progress-text").textContent = `Build #${body.id} queued — opening it…`;
        window.location.assign(body.url);
        return;
      }
      setBusy(false);
      showError("Unexpected answer", "The server accepted the build but did not say where to find it. Check History.");
      return;
    }
    setBusy(false);
    const err = parseApiError(xhr.status, xhr.responseText, {
      413: limits.uploadBytes
        ? `The upload is larger than this server accepts (${form.dataset.maxUploadMb} MB).`
        : "The upload is larger than this server accepts.",
    });
    const titles = {
      400: "The build was refused",
      404: "Not found",
      409: "The build cannot start",
      413: "Too large",
      503: "The Docker engine is not answering",
    };
    showError(titles[xhr.status] || "The build could not start", err.message, err.code);
  });
  xhr.addEventListener("error", () => {
    state.xhr = null;
    setBusy(false);
    showError("Could not reach Layerdeck", "The upload did not get through: the server is unreachable or closed the connection. Check that Layerdeck is running and try again.", "network_error");
  });
  xhr.addEventListener("abort", () => {
    state.xhr = null;
    setBusy(false);
    showError("Upload cancelled", "Nothing was sent to the engine. Your choices are still here.", "aborted");
  });
  setBusy(true);
  setProgress(0, 0);
  xhr.send(request.body);
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  submit();
});
$("cancel-upload").addEventListener("click", () => state.xhr && state.xhr.abort());
form.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
    e.preventDefault();
    submit();
  }
});

// The engine came back (or went away) while the page was open: follow the banner.
document.addEventListener("layerdeck:engine", (e) => {
  const banner = $("engine-banner");
  if (banner) banner.hidden = Boolean(e.detail.ok);
});

setMode("upload");

// ---------------------------------------------------------------- advice before building

let adviceTimer = null;
let adviceAsked = 0;

/** What the server needs to advise on what is about to be built, or null when the page cannot know it. */
async function adviceRequest() {
  if (state.mode === "paste") {
    const text = $("dockerfile-text").value;
    return text.trim() ? { dockerfile: text } : null;
  }
  const selection = state.selection;
  if (!selection || selection.kind !== "folder") return null; // an archive is read on the server only
  const paths = stripSharedTop(selection.entries.map((e) => e.path));
  const wanted = ($("dockerfile").value || "").trim() || "Dockerfile";
  const at = (name) => selection.entries[paths.indexOf(name)];
  const dockerfile = at(wanted);
  if (!dockerfile || dockerfile.file.size > 1024 * 1024) return null;
  const ignore = at(".dockerignore");
  return {
    dockerfile: await dockerfile.file.text(),
    dockerfile_path: wanted,
    dockerignore: ignore && ignore.file.size < 1024 * 1024 ? await ignore.file.text() : null,
    paths,
    bytes: selection.entries.reduce((sum, e) => sum + e.file.size, 0),
  };
}

function renderAdvice(items) {
  const panel = $("advice-preview");
  if (!panel) return;
  panel.hidden = items.length === 0;
  $("advice-preview-list").replaceChildren(...items.map((item) => h("li",
    { class: "advice__item", "data-testid": "advice-item", "data-rule": item.rule },
    h("div", { class: "advice__where" }, h("span", { class: "advice__line" }, `line ${item.line}`), " ",
      h("span", { class: "advice__rule mono" }, item.rule)),
    h("p", { class: "advice__message" }, item.message),
    item.suggestion ? h("pre", { class: "advice__suggestion mono" }, item.suggestion) : null)));
}

async function refreshAdvice() {
  const asked = ++adviceAsked;
  let body;
  try {
    body = await adviceRequest();
  } catch {
    body = null; // a file the browser could not read: no advice, the build still works
  }
  if (asked !== adviceAsked) return;
  if (!body) {
    renderAdvice([]);
    return;
  }
  try {
    const res = await fetch("/api/v1/advice", {
      method: "POST",
      headers: csrfHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
      body: JSON.stringify(body),
    });
    if (asked !== adviceAsked) return;
    renderAdvice(res.ok ? (await res.json()).advice : []);
  } catch {
    if (asked === adviceAsked) renderAdvice([]);
  }
}

/** Ask again a moment after the last change (typing in the Dockerfile box, choosing a folder). */
export function scheduleAdvice() {
  window.clearTimeout(adviceTimer);
  adviceTimer = window.setTimeout(refreshAdvice, 350);
}

$("dockerfile-text").addEventListener("input", scheduleAdvice);
$("dockerfile").addEventListener("input", scheduleAdvice);
for (const tab of tabs) tab.addEventListener("click", scheduleAdvice);
