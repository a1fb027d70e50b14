// Following a websocket of seq-numbered messages: WS /ws/builds/<id> and WS /ws/runs/<id>/logs
// (docs/API.md). Shared by the build page (build.js) and the run page (run.js).
//
// Messages carry a growing `seq`; one whose seq is not above the last applied one is ignored, so a
// reconnect with ?after=<last seq> never repeats a line. A socket that closes before `end` is opened
// again with backoff. The connection indicator ([data-testid=connection]) shows the socket's state
// in data-state: connecting, live, reconnecting or ended (then hidden).
//
// Accepted messages are handed over in batches, one per animation frame (every 50 ms in a hidden tab),
// so a burst of log lines costs one layout pass.

/**
 * Follow the socket at `path` (a ws_url) on this page's host. Nothing is opened until start().
 *
 * - indicator: the connection element (its .conn__text says what the socket is doing).
 * - onBatch(messages): the new messages since the last batch, in seq order; never empty.
 * - isLive(): the thing still runs, so the indicator says "Live" (otherwise "Loading log…": a replay).
 * - isFinal(): asked when an opened socket closes before `end`; true means nothing more will come, so
 *   the feed ends (and calls onFinal) instead of reconnecting. By default it waits for `end`.
 * - fromStart: send ?after=0 on the first connect too. Without it a fresh socket omits ?after and
 *   gets the server's own starting point (a run's last stored lines); a reconnect always resumes.
 */
export function liveFeed(path, { indicator, onBatch, isLive, isFinal = () => false, onFinal = () => {}, fromStart = false }) {
  let lastSeq = 0;
  let ended = false;
  let socket = null;
  let opened = false;
  let attempts = 0;
  let reconnectTimer = null;
  let queue = [];
  let flushScheduled = false;

  function setState(state) {
    indicator.dataset.state = state;
    const live = isLive();
    indicator.querySelector(".conn__text").textContent = {
      connecting: live ? "Connecting…" : "Loading log…",
      live: live ? "Live" : "Loading log…",
      reconnecting: "Reconnecting…",
      ended: "",
    }[state];
    indicator.hidden = state === "ended";
  }

  function flush() {
    flushScheduled = false;
    const batch = queue;
    queue = [];
    if (batch.length) onBatch(batch);
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
    queue.push(msg);
    if (!flushScheduled) {
      flushScheduled = true;
      if (document.hidden) setTimeout(flush, 50);
      else requestAnimationFrame(flush);
    }
    return true;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ended) return;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const after = lastSeq > 0 || fromStart ? `?after=${lastSeq}` : "";
    let ws;
    try {
      ws = new WebSocket(`${scheme}${location.host}${path}${after}`);
    } catch {
      scheduleReconnect();
      return;
    }
    socket = ws;
    opened = false;
    if (attempts === 0) setState("connecting");
    ws.addEventListener("open", () => {
      if (socket !== ws) return;
      opened = true;
      setState("live");
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
      if (ended) return;
      if (opened && isFinal()) {
        ended = true;
        setState("ended");
        onFinal();
        return;
      }
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (ended || reconnectTimer) return;
    setState("reconnecting");
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

  return {
    receive,
    flush,
    /** Open the socket. */
    start: connect,
    /** Nothing more will come: hide the indicator and close the socket. */
    stop() {
      ended = true;
      setState("ended");
      if (socket) {
        try {
          socket.close(1000);
        } catch {
          // already closing
        }
      }
    },
    /** Follow again after an end (a restarted container goes on). */
    resume() {
      if (!ended && socket) return;
      ended = false;
      attempts = 0;
      connect();
    },
    get ended() {
      return ended;
    },
    get lastSeq() {
      return lastSeq;
    },
  };
}
