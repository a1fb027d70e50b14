// ANSI SGR colours -> DOM, without ever treating the text as HTML.
//
// renderAnsi(text) splits a log line on escape sequences. SGR sequences (ESC [ … m) switch bold and
// the 16 foreground colours on and off; every other escape sequence (cursor moves, erase line, OSC
// titles, …) is dropped. The visible parts become text nodes, wrapped in <span class="ansi-…">
// when a style is active. Nothing is ever parsed as markup: "<img src=x onerror=…>" stays characters.

// CSI (ESC [ params intermediates final), OSC (ESC ] … BEL or ESC \), other two-byte escapes,
// and 8-bit CSI (0x9b). Grouped so the SGR parameters of "ESC [ … m" are captured.
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-?]*)([ -/]*)([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|\x9b[0-?]*[ -/]*[@-~]|\x1b/g;

// Other C0 control characters (not tab) would render as boxes or nothing useful.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f]/g;

const COLOURS = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];

function applySgr(state, params) {
  const codes = params === "" ? [0] : params.split(";").map((p) => (p === "" ? 0 : Number(p)));
  for (let i = 0; i < codes.length; i += 1) {
    const c = codes[i];
    if (c === 0) {
      state.bold = false;
      state.dim = false;
      state.italic = false;
      state.underline = false;
      state.fg = null;
    } else if (c === 1) state.bold = true;
    else if (c === 2) state.dim = true;
    else if (c === 3) state.italic = true;
    else if (c === 4) state.underline = true;
    else if (c === 22) {
      state.bold = false;
      state.dim = false;
    } else if (c === 23) state.italic = false;
    else if (c === 24) state.underline = false;
    else if (c >= 30 && c <= 37) state.fg = COLOURS[c - 30];
    else if (c >= 90 && c <= 97) state.fg = `bright-${COLOURS[c - 90]}`;
    else if (c === 39) state.fg = null;
    else if (c === 38 || c === 48) {
      // 256-colour / true-colour forms: skip their arguments, keep the default colour.
      if (codes[i + 1] === 5) i += 2;
      else if (codes[i + 1] === 2) i += 4;
    }
    // Background colours and anything else: ignored on purpose (readability on a projector).
  }
}

function classesFor(state) {
  const cls = [];
  if (state.bold) cls.push("ansi-bold");
  if (state.dim) cls.push("ansi-dim");
  if (state.italic) cls.push("ansi-italic");
  if (state.underline) cls.push("ansi-underline");
  if (state.fg) cls.push(`ansi-${state.fg}`);
  return cls;
}

function appendPart(frag, text, state) {
  const clean = text.replace(CONTROLS, "");
  if (!clean) return;
  const cls = classesFor(state);
  if (cls.length === 0) {
    frag.appendChild(document.createTextNode(clean));
    return;
  }
  const span = document.createElement("span");
  span.className = cls.join(" ");
  span.textContent = clean;
  frag.appendChild(span);
}

/** Render one line of (possibly ANSI-coloured) text into a DocumentFragment of text nodes and spans. */
export function renderAnsi(text) {
  const frag = document.createDocumentFragment();
  const source = String(text ?? "");
  const state = { bold: false, dim: false, italic: false, underline: false, fg: null };
  let last = 0;
  // A carriage return redraws the line in a terminal (progress bars): show only what was drawn
  // last, but keep the styles switched on before it.
  const cr = source.replace(/\r+$/, "").lastIndexOf("\r");
  if (cr !== -1) {
    ESCAPES.lastIndex = 0;
    for (let m = ESCAPES.exec(source); m !== null && m.index < cr; m = ESCAPES.exec(source)) {
      if (m[3] === "m" && m[2] === "" && m[0].startsWith("\x1b[")) applySgr(state, m[1]);
    }
    last = cr + 1;
  }
  ESCAPES.lastIndex = last;
  for (let m = ESCAPES.exec(source); m !== null; m = ESCAPES.exec(source)) {
    appendPart(frag, source.slice(last, m.index), state);
    last = ESCAPES.lastIndex;
    if (m[3] === "m" && m[2] === "" && m[0].startsWith("\x1b[")) applySgr(state, m[1]);
  }
  appendPart(frag, source.slice(last), state);
  return frag;
}

/** The same line with every escape sequence removed: for copying and searching. */
export function stripAnsi(text) {
  return String(text ?? "").replace(ESCAPES, "").replace(CONTROLS, "");
}
