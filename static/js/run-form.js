// The build page's Run dialog: start a container from a succeeded build's image (POST /api/v1/runs,
// docs/API.md "Runs"). Ports are pre-filled from the image's EXPOSE (GET …/run-defaults), the command
// shows the image's CMD as its placeholder. On 201 the page goes to the new run.
//
// The Run button appears when the build has succeeded, also when that happens while the page is open:
// build.js keeps #build[data-status] current, and this module watches it.

import { h, icon, readApiError, csrfHeaders } from "./dom.js";

const $ = (id) => document.getElementById(id);

const ICONS = {
  remove: ["M6 6l12 12M18 6 6 18"],
  arrow: ["M5 12h14", "M13 6l6 6-6 6"],
};
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const ENV_NAME_RE = /^[^=\s]+$/;

const root = $("build");
const dialog = $("run-dialog");
const form = $("run-form");
const openButton = $("run-open");
const portRows = $("run-ports");
const envRows = $("run-env");
const commandInput = $("run-command");
const nameInput = $("run-name");

let defaultsLoaded = false;
let defaultsLoading = null;
let imageCmd = null; // the image's CMD, as a list, when known
let submitting = false;
let suggestion = null; // {port, input} after a 409 port_taken

// ---------------------------------------------------------------- the Run button follows the build

function syncButton() {
  const ok = root.dataset.status === "succeeded";
  openButton.hidden = !ok;
  // Once the image exists, running it is the next thing to do: Run leads, Rebuild steps back.
  const rebuild = $("rebuild");
  rebuild.classList.toggle("btn--primary", !ok);
  rebuild.classList.toggle("btn--secondary", ok);
  if (!ok && dialog.open) dialog.close();
}

new MutationObserver(syncButton).observe(root, { attributes: true, attributeFilter: ["data-status"] });
syncButton();

// ---------------------------------------------------------------- ports

function portInput(testid, label, value, placeholder) {
  const input = h("input", {
    type: "text", inputmode: "numeric", class: "input mono port-rows__input", "data-testid": testid,
    "aria-label": label, placeholder, autocomplete: "off", maxlength: "5",
  });
  input.value = value === null || value === undefined ? "" : String(value);
  return input;
}

function addPortRow({ container = "", protocol = "tcp", host = "", exposed = false } = {}, focus = false) {
  const hostInput = portInput("run-host-port", "Host port (empty: any free port)", host, "auto");
  const containerInput = portInput("run-container-port", "Container port", container, "8080");
  const proto = h("select", { class: "input port-rows__proto", "data-testid": "run-protocol", "aria-label": "Protocol" },
    h("option", { value: "tcp" }, "tcp"), h("option", { value: "udp" }, "udp"));
  proto.value = protocol === "udp" ? "udp" : "tcp";
  const remove = h("button", {
    type: "button", class: "btn btn--icon kv__remove", "aria-label": "Remove this port", title: "Remove",
    "data-testid": "run-remove-port",
  }, icon(ICONS.remove));
  const row = h("div", { class: `port-rows__row${exposed ? " is-exposed" : ""}`, "data-testid": "run-port-row", "data-exposed": String(exposed) },
    hostInput,
    h("span", { class: "port-rows__arrow", "aria-hidden": "true" }, icon(ICONS.arrow)),
    h("span", { class: "port-rows__container" }, containerInput,
      exposed ? h("span", { class: "port-rows__exposed", title: "Declared by the image's EXPOSE" }, "EXPOSE") : null),
    proto, remove);
  for (const el of [hostInput, containerInput]) {
    el.addEventListener("input", () => {
      el.classList.remove("is-invalid");
      el.removeAttribute("aria-invalid");
      summarise();
    });
  }
  proto.addEventListener("change", summarise);
  remove.addEventListener("click", () => {
    row.remove();
    summarise();
  });
  containerInput.addEventListener("keydown", onEnterAdd(() => addPortRow({}, true)));
  portRows.appendChild(row);
  if (focus) containerInput.focus();
  summarise();
  return row;
}

function onEnterAdd(add) {
  return (e) => {
    if (e.key === "Enter" && !e.ctrlKey && !e.metaKey) {
      e.preventDefault();
      add();
    }
  };
}

// ---------------------------------------------------------------- environment

function addEnvRow(key = "", value = "", focus = true) {
  const keyInput = h("input", {
    type: "text", class: "input mono kv__key", placeholder: "NAME", "aria-label": "Variable name",
    autocomplete: "off", autocapitalize: "off", spellcheck: "false", "data-testid": "run-env-key",
  });
  const valueInput = h("input", {
    type: "text", class: "input mono kv__value", placeholder: "value", "aria-label": "Variable value",
    autocomplete: "off", autocapitalize: "off", spellcheck: "false", "data-testid": "run-env-value",
  });
  keyInput.value = key;
  valueInput.value = value;
  const remove = h("button", {
    type: "button", class: "btn btn--icon kv__remove", "aria-label": "Remove this variable", title: "Remove",
    "data-testid": "run-remove-env",
  }, icon(ICONS.remove));
  const row = h("div", { class: "kv__row kv__row--env", "data-testid": "run-env-row" },
    keyInput, h("span", { class: "kv__eq", "aria-hidden": "true" }, "="), valueInput, remove);
  keyInput.addEventListener("input", () => {
    keyInput.classList.remove("is-invalid");
    summarise();
  });
  valueInput.addEventListener("input", summarise);
  valueInput.addEventListener("keydown", onEnterAdd(() => addEnvRow()));
  remove.addEventListener("click", () => {
    row.remove();
    summarise();
  });
  envRows.appendChild(row);
  if (focus) keyInput.focus();
  summarise();
}

// ---------------------------------------------------------------- command

/**
 * One line -> arguments: split on whitespace; '…' and "…" keep spaces together (as a shell would,
 * without expanding anything). Empty -> null: the image's own CMD.
 */
export function splitCommand(line) {
  const args = [];
  let current = "";
  let started = false;
  let quote = null;
  for (let i = 0; i < line.length; i += 1) {
    const c = line[i];
    if (quote) {
      if (c === quote) quote = null;
      else if (c === "\\" && quote === '"' && (line[i + 1] === '"' || line[i + 1] === "\\")) current += line[++i];
      else current += c;
    } else if (c === "'" || c === '"') {
      quote = c;
      started = true;
    } else if (/\s/.test(c)) {
      if (started) args.push(current);
      current = "";
      started = false;
    } else {
      current += c;
      started = true;
    }
  }
  if (quote) return { args: null, problem: `The command has an unclosed ${quote === '"' ? "double" : "single"} quote.` };
  if (started) args.push(current);
  return { args: args.length ? args : null, problem: null };
}

/** A list of arguments as one readable line: quoted only where needed. */
function joinCommand(list) {
  return list.map((a) => (a === "" || /[\s'"\\]/.test(a) ? `"${a.replace(/(["\\])/g, "\\$1")}"` : a)).join(" ");
}

function renderCommandPreview() {
  const hint = $("run-command-hint");
  const { args, problem } = splitCommand(commandInput.value);
  commandInput.classList.toggle("is-invalid", Boolean(problem));
  hint.classList.toggle("is-problem", Boolean(problem));
  if (problem) {
    hint.textContent = problem;
  } else if (args) {
    hint.replaceChildren("Runs ", h("code", { class: "run-command__json" }, JSON.stringify(args)), " instead of the image's command.");
  } else {
    hint.textContent = imageCmd
      ? "Empty: the image's own command (above, greyed) runs."
      : "Empty: the image's own command runs.";
  }
}

commandInput.addEventListener("input", () => {
  renderCommandPreview();
  summarise();
});

nameInput.addEventListener("input", () => nameInput.classList.remove("is-invalid"));

// ---------------------------------------------------------------- defaults from the image

async function loadDefaults() {
  if (defaultsLoaded) return;
  if (defaultsLoading) return defaultsLoading;
  const state = $("run-defaults-state");
  state.hidden = false;
  if (state.classList.contains("is-problem")) {
    state.classList.remove("is-problem");
    state.textContent = "Reading the image's EXPOSE and CMD…";
  }
  defaultsLoading = (async () => {
    let ports = [];
    try {
      const res = await fetch(form.dataset.defaultsUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!res.ok) {
        const err = await readApiError(res);
        throw new Error(err.message);
      }
      const body = await res.json();
      ports = Array.isArray(body.ports) ? body.ports : [];
      const cmd = body.cmd;
      imageCmd = Array.isArray(cmd) ? cmd.map(String) : typeof cmd === "string" && cmd ? [cmd] : null;
      if (imageCmd && imageCmd.length) commandInput.placeholder = joinCommand(imageCmd);
      defaultsLoaded = true;
      state.hidden = ports.length > 0;
      state.textContent = ports.length ? "" : "The image exposes no port. Add one if the container serves something.";
    } catch (e) {
      state.classList.add("is-problem");
      state.textContent = `Could not read the image's defaults (${e.message || "no answer"}). Add ports by hand.`;
    }
    // Exposed ports first, in their order; keep whatever the user already typed.
    if (!portRows.querySelector("[data-testid=run-port-row]")) {
      for (const p of ports) {
        if (p && p.container_port) addPortRow({ container: p.container_port, protocol: p.protocol || "tcp", exposed: true });
      }
    }
    renderCommandPreview();
    summarise();
    defaultsLoading = null;
  })();
  return defaultsLoading;
}

// ---------------------------------------------------------------- reading the form

/** The request body, or {problem, field} for what to fix first. */
function collect() {
  const body = { build_id: Number(form.dataset.buildId) };
  const name = nameInput.value.trim();
  if (name) {
    if (!NAME_RE.test(name)) {
      return { problem: `"${name}" is not a valid name: use letters, digits, _ . and -, starting with a letter or digit.`, field: nameInput };
    }
    body.name = name;
  }

  const ports = [];
  const seen = new Set();
  for (const row of portRows.querySelectorAll("[data-testid=run-port-row]")) {
    const cIn = row.querySelector("[data-testid=run-container-port]");
    const hIn = row.querySelector("[data-testid=run-host-port]");
    const protocol = row.querySelector("[data-testid=run-protocol]").value;
    const c = cIn.value.trim();
    const hp = hIn.value.trim();
    if (!c && !hp) continue; // an empty row is no port
    if (!/^\d+$/.test(c) || Number(c) < 1 || Number(c) > 65535) {
      return { problem: c ? `The container port "${c}" is not a port number (1–65535).` : "A port row has a host port but no container port.", field: cIn };
    }
    if (hp && (!/^\d+$/.test(hp) || Number(hp) < 1 || Number(hp) > 65535)) {
      return { problem: `The host port "${hp}" is not a port number. Leave it empty for any free port.`, field: hIn };
    }
    const key = `${c}/${protocol}`;
    if (seen.has(key)) return { problem: `Container port ${key} is listed twice.`, field: cIn };
    seen.add(key);
    ports.push({ container_port: Number(c), protocol, host_port: hp ? Number(hp) : null });
  }
  body.ports = ports;

  const env = {};
  for (const row of envRows.querySelectorAll("[data-testid=run-env-row]")) {
    const keyInput = row.querySelector("[data-testid=run-env-key]");
    const key = keyInput.value.trim();
    const value = row.querySelector("[data-testid=run-env-value]").value;
    if (!key && !value) continue;
    if (!key) return { problem: "A variable has a value but no name.", field: keyInput };
    if (!ENV_NAME_RE.test(key)) return { problem: `The variable name "${key}" cannot contain spaces or "=".`, field: keyInput };
    if (Object.prototype.hasOwnProperty.call(env, key)) return { problem: `The variable "${key}" is set twice.`, field: keyInput };
    env[key] = value;
  }
  body.env = env;

  const { args, problem } = splitCommand(commandInput.value);
  if (problem) return { problem, field: commandInput };
  body.command = args;
  return { body };
}

/** One line over the buttons: what will happen. */
function summarise() {
  const out = $("run-summary");
  const rows = [...portRows.querySelectorAll("[data-testid=run-port-row]")]
    .filter((r) => r.querySelector("[data-testid=run-container-port]").value.trim());
  const env = [...envRows.querySelectorAll("[data-testid=run-env-key]")].filter((i) => i.value.trim()).length;
  const parts = [];
  parts.push(rows.length ? `${rows.length} port${rows.length === 1 ? "" : "s"} published on the host` : "no published port");
  if (env) parts.push(`${env} variable${env === 1 ? "" : "s"}`);
  parts.push(commandInput.value.trim() ? "your command" : "the image's command");
  out.textContent = `Starts with ${parts.join(", ")}.`;
}

// ---------------------------------------------------------------- errors

const ERROR_TITLES = {
  port_taken: "That host port is taken",
  forbidden_field: "Not allowed here",
  not_found: "Image not found",
};

function hideError() {
  $("run-error").hidden = true;
  $("run-use-suggested").hidden = true;
  suggestion = null;
  for (const el of form.querySelectorAll(".is-invalid")) {
    el.classList.remove("is-invalid");
    el.removeAttribute("aria-invalid");
  }
}

function markInvalid(el) {
  if (!el) return;
  el.classList.add("is-invalid");
  el.setAttribute("aria-invalid", "true");
}

function showError(title, message, { field = null, code = "" } = {}) {
  $("run-error-title").textContent = title;
  $("run-error-message").textContent = message;
  const box = $("run-error");
  box.dataset.code = code;
  box.hidden = false;
  if (field) {
    markInvalid(field);
    field.focus();
  }
  box.scrollIntoView({ block: "nearest" });
}

/** The host port input a port_taken error is about: the one holding the port it names. */
function takenInput(detail, message) {
  const inputs = [...portRows.querySelectorAll("[data-testid=run-host-port]")];
  const named = [detail.port, detail.host_port].filter((p) => p !== undefined && p !== null).map(String);
  const numbers = (message.match(/\b\d{2,5}\b/g) || []);
  for (const input of inputs) {
    const v = input.value.trim();
    if (v && (named.includes(v) || numbers.includes(v))) return input;
  }
  return inputs.find((i) => i.value.trim()) || inputs[0] || null;
}

function showApiError(err) {
  const detail = err.detail || {};
  if (err.code === "port_taken") {
    const input = takenInput(detail, err.message);
    showError(ERROR_TITLES.port_taken, err.message, { field: input, code: err.code });
    const port = Number(detail.suggested_port);
    if (Number.isInteger(port) && port > 0 && input) {
      suggestion = { port, input };
      const button = $("run-use-suggested");
      button.replaceChildren(icon(["M5 12.5l4.5 4.5L19 7.5"]), `Use port ${port}`);
      button.hidden = false;
      button.focus();
    }
    return;
  }
  let field = null;
  if (/name/.test(err.code)) field = nameInput;
  else if (/command/.test(err.code)) field = commandInput;
  else if (/env/.test(err.code)) field = envRows.querySelector("[data-testid=run-env-key]");
  else if (/port/.test(err.code)) {
    const inputs = [...portRows.querySelectorAll("[data-testid=run-host-port]")];
    field = inputs.find((i) => i.value.trim() && err.message.includes(i.value.trim())) || null;
  }
  const title = ERROR_TITLES[err.code]
    || (err.status === 404 ? "Image not found"
      : err.status === 503 ? "The Docker engine is not answering"
        : err.status === 409 ? "This build cannot run"
          : "The container could not start");
  showError(title, err.message, { field, code: err.code });
}

$("run-use-suggested").addEventListener("click", () => {
  if (!suggestion) return;
  const { port, input } = suggestion;
  input.value = String(port);
  hideError();
  summarise();
  $("run-submit").focus();
});

// ---------------------------------------------------------------- submit

function setSubmitting(on) {
  submitting = on;
  $("run-fields").disabled = on;
  const button = $("run-submit");
  button.disabled = on;
  button.classList.toggle("is-busy", on);
  button.setAttribute("aria-busy", String(on));
  button.querySelector(".btn__label").textContent = on ? "Starting…" : "Start container";
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  if (submitting) return;
  hideError();
  const { body, problem, field } = collect();
  if (problem) {
    showError("Check the form", problem, { field });
    return;
  }
  setSubmitting(true);
  try {
    const res = await fetch("/api/v1/runs", {
      method: "POST",
      headers: csrfHeaders({ "Content-Type": "application/json", Accept: "application/json" }),
      body: JSON.stringify(body),
    });
    if (res.ok) {
      const run = await res.json().catch(() => null);
      if (run && run.url) {
        $("run-submit").querySelector(".btn__label").textContent = "Opening…";
        window.location.assign(run.url);
        return;
      }
      throw new Error("The server started the run but did not say where to find it.");
    }
    showApiError(await readApiError(res, {
      404: "This build's image is no longer on the engine. Rebuild it, then run it.",
      409: "Only a build that succeeded can be run.",
      503: "The Docker engine is not answering, so no container can start right now.",
    }));
  } catch (err) {
    showError("The container could not start", err instanceof TypeError ? "Could not reach Layerdeck." : err.message);
  }
  setSubmitting(false);
});

// ---------------------------------------------------------------- opening and closing

function refreshHeading() {
  const full = $("image-id")?.dataset.full || "";
  const short = full ? full.split(":").pop().slice(0, 12) : "";
  const slot = $("run-dialog-image");
  if (short && !slot.querySelector("code")) slot.replaceChildren(", ", h("code", {}, short));
}

function open() {
  if (root.dataset.status !== "succeeded") return;
  refreshHeading();
  if (!dialog.open) dialog.showModal();
  loadDefaults().then(() => {
    if (!dialog.open) return;
    const first = portRows.querySelector("[data-testid=run-host-port]");
    (first || $("run-submit")).focus();
  });
}

openButton.addEventListener("click", open);
for (const el of form.querySelectorAll("[data-close]")) {
  el.addEventListener("click", () => dialog.close());
}
dialog.addEventListener("close", () => {
  if (location.hash === "#run") history.replaceState(null, "", location.pathname + location.search);
  openButton.focus();
});
// A click on the backdrop (outside the form) does not close it: typed values would be lost too easily.

$("run-add-port").addEventListener("click", () => {
  $("run-defaults-state").hidden = true;
  addPortRow({}, true);
});
$("run-add-env").addEventListener("click", () => addEnvRow());

summarise();
// "Run again" on a run's page links here with #run.
if (location.hash === "#run") open();
