// What the console (console.js) and the fleet page (fleet.js) share: small
// DOM helpers, reading the API, the live stream and the debounced refresh,
// the colours of the three axes, the operator's name and token kept for the
// tab, sending a command with them, and the message line. Loaded first, as a
// classic script: its names are the pages' globals.
"use strict";

const $ = (id) => document.getElementById(id);

// ---------------------------------------------------------------------------
// Small helpers.

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-") || k.startsWith("aria-") || k === "title" || k === "href" || k === "role") node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

function utcTime(ms) {
  return ms ? new Date(ms).toISOString().slice(11, 23) : "";
}

function utcDateTime(ms) {
  return ms ? new Date(ms).toISOString().slice(0, 19).replace("T", " ") : "";
}

function duration(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h ${String(m % 60).padStart(2, "0")}m`;
}

function short(digest) {
  return digest ? digest.slice(0, 12) : "–";
}

async function getJson(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// ---------------------------------------------------------------------------
// The live stream: every message means something changed; the page asks
// again (debounced) rather than patching its copy. `live.take` sees each
// message first (the console shows progress from them), `live.wanted`
// says which ones call for a refresh (all, unless a page says otherwise).

const live = { source: null, retry: null, delay: 1000, take: null, wanted: () => true };

function setConnection(state) {
  const conn = $("conn");
  conn.dataset.state = state;
  conn.textContent = {
    connecting: "connecting…",
    connected: "● live",
    disconnected: "disconnected — reconnecting…",
  }[state];
}

function connect() {
  clearTimeout(live.retry);
  if (live.source) live.source.close();
  const source = new EventSource("/v1/events");
  live.source = source;
  source.onopen = () => {
    live.delay = 1000;
    setConnection("connected");
    refreshSoon(0);
  };
  source.onmessage = (e) => {
    let message;
    try {
      message = JSON.parse(e.data);
    } catch {
      return;
    }
    if (live.take) live.take(message);
    if (live.wanted(message)) refreshSoon();
  };
  source.onerror = () => {
    setConnection("disconnected");
    // The browser retries by itself while the stream is CONNECTING; once it
    // gives up (CLOSED), the page starts a new one.
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      live.retry = setTimeout(connect, live.delay);
      live.delay = Math.min(live.delay * 2, 10000);
    }
  };
}

// Fetching: one refresh at a time (`refresh.fetch`, the page's own);
// messages that arrive meanwhile ask for one more.

const refresh = { timer: null, running: false, again: false, fetch: null };

function refreshSoon(delay = 150) {
  if (refresh.timer !== null) return;
  refresh.timer = setTimeout(() => {
    refresh.timer = null;
    runRefresh();
  }, delay);
}

async function runRefresh() {
  if (refresh.running) {
    refresh.again = true;
    return;
  }
  refresh.running = true;
  try {
    await refresh.fetch();
  } catch (e) {
    // The agent is away: the live stream says so and reconnects.
  } finally {
    refresh.running = false;
    if (refresh.again) {
      refresh.again = false;
      refreshSoon();
    }
  }
}

// ---------------------------------------------------------------------------
// The colours of the axes (the console's status bar, the fleet's hosts).

const TONES = {
  state: (v) => (v === "Abort" ? "bad" : v === "Idle" ? "idle" : "info"),
  status: (v) => ({ Ready: "ok", Busy: "busy", Broken: "bad" })[v] || "idle",
  partner: (v) => ({ Up: "ok", Booting: "busy", Off: "busy", Hung: "bad", Crashed: "bad" })[v] || "idle",
};

// ---------------------------------------------------------------------------
// The operator's name and the API token, asked once per tab and kept for
// it only (the console and the fleet page share them).

const store = {
  get by() { return sessionStorage.getItem("duplex.by") || ""; },
  get token() { return sessionStorage.getItem("duplex.token") || ""; },
  set(by, token) {
    sessionStorage.setItem("duplex.by", by);
    sessionStorage.setItem("duplex.token", token);
  },
  forgetToken() { sessionStorage.removeItem("duplex.token"); },
  forget() {
    sessionStorage.removeItem("duplex.by");
    sessionStorage.removeItem("duplex.token");
  },
};

// Send a command with the tab's token: the server's answer, or its refusal
// as {error: {code, message}} (a refused token is forgotten, so the next
// command asks again).
async function postCommand(path, body) {
  let response;
  let answer = null;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${store.token}` },
      body: JSON.stringify(body),
    });
    answer = await response.json().catch(() => null);
  } catch (e) {
    return { ok: false, error: { code: "unreachable", message: `the agent did not answer: ${e.message}` } };
  }
  if (response.ok && answer) return { ok: true, answer };
  if (response.status === 401) store.forgetToken();
  return { ok: false, error: answer && answer.error ? answer.error : { code: `http ${response.status}`, message: response.statusText } };
}

function showMessage(kind, code, text) {
  const box = $("message");
  box.hidden = false;
  box.dataset.kind = kind;
  box.dataset.code = code;
  box.replaceChildren(el("span", { class: "code" }, code), el("span", { class: "text" }, text));
}
