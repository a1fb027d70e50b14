// Shared formatting helpers: durations, relative and absolute times, byte sizes.
// Every page formats numbers through this module so they read the same everywhere
// (templates/_macros.html mirrors formatDuration for the server-rendered first paint).

/** Seconds -> "0.42 s", "12.3 s", "1 m 03 s", "2 h 05 m"; null/undefined -> "—". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  // Compare after rounding, so 9.999 reads "10.0 s" and 59.96 reads "1 m 00 s", never "10.00 s" or "60.0 s".
  if (Math.round(s * 100) < 1000) return `${s.toFixed(2)} s`;
  if (Math.round(s * 10) < 600) return `${s.toFixed(1)} s`;
  if (Math.round(s) < 3600) {
    const t = Math.round(s);
    return `${Math.floor(t / 60)} m ${String(t % 60).padStart(2, "0")} s`;
  }
  const t = Math.floor(s);
  return `${Math.floor(t / 3600)} h ${String(Math.floor((t % 3600) / 60)).padStart(2, "0")} m`;
}

/** A live counter: like formatDuration but with one decimal under a minute, so it ticks calmly. */
export function formatElapsed(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (Math.round(s * 10) < 600) return `${s.toFixed(1)} s`;
  return formatDuration(s);
}

const LOADED_AT = Date.now();

/** ISO string (or Date/number) -> milliseconds since the epoch, or NaN. */
export function toMillis(value) {
  if (value === null || value === undefined || value === "") return NaN;
  if (value instanceof Date) return value.getTime();
  if (typeof value === "number") return value;
  // The engine's timestamps carry nanoseconds ("…14.123456789Z"): keep milliseconds, which every parser reads.
  return Date.parse(String(value).replace(/(\.\d{3})\d+/, "$1"));
}

/** Seconds elapsed since an ISO time, never negative (clocks may differ a little). */
export function secondsSince(iso, now = Date.now()) {
  const t = toMillis(iso);
  return Number.isNaN(t) ? null : Math.max(0, (now - t) / 1000);
}

/** "just now", "42 s ago", "5 min ago", "3 h ago", "yesterday", "4 days ago", then a date. */
export function formatRelative(iso, now = Date.now()) {
  const t = toMillis(iso);
  if (Number.isNaN(t)) return "—";
  const diff = Math.round((now - t) / 1000);
  if (diff < 0) return diff > -60 ? "just now" : "in the future";
  if (diff < 10) return "just now";
  if (diff < 60) return `${diff} s ago`;
  if (diff < 3600) return `${Math.floor(diff / 60)} min ago`;
  if (diff < 86400) return `${Math.floor(diff / 3600)} h ago`;
  const days = Math.floor(diff / 86400);
  if (days === 1) return "yesterday";
  if (days < 7) return `${days} days ago`;
  return new Date(t).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

/** A full local date and time for tooltips: "28 Nov 2026, 03:15:14". */
export function formatAbsolute(iso) {
  const t = toMillis(iso);
  if (Number.isNaN(t)) return "";
  return new Date(t).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

/**
 * How long a container has been up, floored: "0.84 s", "4.2 s", "42 s", "3 m 12 s", "2 h 05 m", "3 d 04 h".
 * templates/_macros.html `uptime` mirrors it for the first paint.
 */
export function formatUptime(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "—";
  const s = Math.max(0, seconds);
  // A container that exited at once ran for "0.84 s", not "0 s".
  if (s < 1) return `${(Math.floor(s * 100) / 100).toFixed(2)} s`;
  if (s < 10) return `${(Math.floor(s * 10) / 10).toFixed(1)} s`;
  const t = Math.floor(s);
  const pad = (n) => String(n).padStart(2, "0");
  if (t < 60) return `${t} s`;
  if (t < 3600) return `${Math.floor(t / 60)} m ${pad(t % 60)} s`;
  if (t < 86400) return `${Math.floor(t / 3600)} h ${pad(Math.floor((t % 3600) / 60))} m`;
  return `${Math.floor(t / 86400)} d ${pad(Math.floor((t % 86400) / 3600))} h`;
}

/** A log line's time of day, local: "14:03:27" ("" when there is none). */
export function formatClock(iso) {
  const t = toMillis(iso);
  if (Number.isNaN(t)) return "";
  const d = new Date(t);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/**
 * Seconds a container has been up for a [data-uptime-since] element. The server's own figure
 * (data-uptime-s, taken at data-uptime-at ms or at page load) wins over the browser's clock, which
 * may differ from the engine's; without it, the time since data-uptime-since.
 */
export function liveUptime(el, now = Date.now()) {
  const base = Number.parseFloat(el.dataset.uptimeS);
  if (Number.isFinite(base)) {
    const at = Number(el.dataset.uptimeAt) || LOADED_AT;
    return base + Math.max(0, now - at) / 1000;
  }
  return secondsSince(el.dataset.uptimeSince, now);
}

/** Bytes -> "812 B", "40.0 KB", "12.3 MB", "1.20 GB" (binary multiples, as the upload limits are). */
export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "—";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Megabytes with a fixed decimal, for upload progress: "12.3 MB". */
export function formatMB(bytes) {
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/** "1 file", "12,345 files". */
export function plural(n, one, many = `${one}s`) {
  return `${n.toLocaleString()} ${n === 1 ? one : many}`;
}

/**
 * Fill every <time data-relative datetime="…"> under root with a relative time (absolute on hover),
 * every [data-live-since="iso"] with a ticking elapsed duration, and every [data-uptime-since] with
 * a container's uptime (see liveUptime).
 */
export function hydrateTimes(root = document, now = Date.now()) {
  for (const el of root.querySelectorAll("time[data-relative]")) {
    const iso = el.getAttribute("datetime");
    el.textContent = formatRelative(iso, now);
    el.title = formatAbsolute(iso);
  }
  tickLive(root, now);
}

function tickLive(root, now = Date.now()) {
  for (const el of root.querySelectorAll("[data-live-since]")) {
    el.textContent = formatElapsed(secondsSince(el.dataset.liveSince, now));
  }
  for (const el of root.querySelectorAll("[data-uptime-since]")) {
    const text = formatUptime(liveUptime(el, now));
    if (el.textContent !== text) el.textContent = text;
  }
}

/** Keep relative times and live durations fresh; returns a function that stops the clock. */
export function startClock(root = document) {
  hydrateTimes(root);
  const fast = setInterval(() => tickLive(root), 500);
  const slow = setInterval(() => hydrateTimes(root), 15000);
  return () => {
    clearInterval(fast);
    clearInterval(slow);
  };
}
