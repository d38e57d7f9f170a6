// The Duplex web console. It shows what the agent's API says and sends
// the operator's commands; it holds no copy of the state model. What may be
// done next (`status.session.next`), what a command would do
// (`consequences`), the path through the model (`/v1/plan`) and the
// activity tree (`/v1/sessions/{id}/activity`) all come from the server.
"use strict";

// Everything the page knows, as last fetched.
const page = {
  report: null,        // GET /v1/status: {agent, status}
  plan: null,          // GET /v1/plan (null: none yet, or the policy does not load)
  sessions: [],        // GET /v1/sessions
  activity: null,      // GET /v1/sessions/{id}/activity
  pinned: null,        // a past session opened from the history; null: follow the current one
  expanded: new Map(), // tree node key -> expanded, as the operator toggled it
  selected: null,      // tree node key shown in the detail pane
  progress: new Map(), // label -> {percent, message, done}
  progressState: null, // the state the progress bars belong to
};

// The session in flight, else the last one, as /v1/status reports it.
function currentSession() {
  return page.report && page.report.status ? page.report.status.session : null;
}

function viewedSessionId() {
  if (page.pinned) return page.pinned;
  const s = currentSession();
  return s ? s.id : null;
}

// ---------------------------------------------------------------------------
// What the live stream says before the page asks again (shared.js's
// `connect`): the axes and progress bars move at once.

function takeLive(message) {
  const current = currentSession();
  switch (message.kind) {
    case "record":
      // A notice (waiting for an approval, stopping) holds until the
      // session moves on.
      $("notice").hidden = true;
      if (message.state !== page.progressState) {
        page.progress.clear();
        page.progressState = message.state;
      }
      if (message.status !== "Busy") {
        for (const bar of page.progress.values()) bar.done = true;
      }
      if (!current || current.id === message.session) {
        showAxes(message.state, message.status, message.partner);
      }
      renderProgress();
      break;
    case "progress":
      page.progress.set(message.label, { percent: message.percent, message: message.message, done: false });
      renderProgress();
      break;
    case "notice":
      $("notice").hidden = false;
      $("notice").textContent = message.text;
      break;
  }
}

// ---------------------------------------------------------------------------
// Fetching (shared.js's `refreshSoon` runs it, one at a time).

async function fetchAll() {
  const [report, sessions] = await Promise.all([getJson("/v1/status"), getJson("/v1/sessions")]);
  page.report = report;
  page.sessions = sessions.sessions || [];
  const desired = report.agent && report.agent.desired ? report.agent.desired.digest : null;
  if (!desired) {
    page.plan = null;
  } else if (!page.plan || page.plan.digest !== desired) {
    page.plan = await getJson("/v1/plan").catch(() => null);
  }
  const id = viewedSessionId();
  const activity = id ? await getJson(`/v1/sessions/${encodeURIComponent(id)}/activity`).catch(() => null) : null;
  // The tree is rebuilt only when it changed: a rebuild loses the hover
  // and any click in progress.
  const treeChanged = JSON.stringify(activity) !== JSON.stringify(page.activity);
  page.activity = activity;
  render(treeChanged);
}

// ---------------------------------------------------------------------------
// Rendering.

function render(treeChanged) {
  renderStatusBar();
  renderPath();
  renderActions();
  if (treeChanged) renderTree();
  renderHistory();
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

function setAxis(id, tone, value) {
  const axis = $(id);
  axis.dataset.value = value || "";
  axis.dataset.tone = value ? tone(value) : "idle";
  axis.querySelector(".value").textContent = value || "–";
}

function showAxes(state, status, partner) {
  setAxis("axis-state", TONES.state, state);
  setAxis("axis-status", TONES.status, status);
  setAxis("axis-partner", TONES.partner, partner);
}

function statusOf(config) {
  const phase = config.request ? config.request.phase : null;
  return { pending: "Ready", done: "Ready", running: "Busy", failed: "Broken" }[phase] || "";
}

function renderStatusBar() {
  const s = currentSession();
  const agent = page.report.agent || {};
  $("fleet-link").hidden = !page.report.fleet;
  $("fleet-link").title = page.report.fleet ? `the fleet of host ${page.report.fleet.host}` : "";
  const runner = page.report.status.runner;
  $("runner").dataset.pid = runner ? String(runner.pid) : "";
  $("runner").textContent = runner ? `pid ${runner.pid}` : "none";
  if (!s) {
    showAxes("Idle", "", "");
    $("session-id").textContent = "none yet";
    $("request").textContent = "–";
    $("request").dataset.phase = "";
  } else {
    const summary = s.session;
    const config = summary.config;
    showAxes(config.state, statusOf(config), config.partner);
    $("session-id").textContent = s.id;
    $("session-id").dataset.session = s.id;
    const outcome = summary.ended || "";
    $("outcome").dataset.value = outcome;
    $("outcome").textContent = outcome ? `${outcome}${summary.abortedFrom ? ` from ${summary.abortedFrom}` : ""}` : s.finished ? "" : "in flight";
    const phase = config.request ? config.request.phase : "";
    // A failed request carries its reason beside its phase.
    const failure = phase === "failed" && config.request.reason ? `: ${config.request.reason}` : "";
    $("request").dataset.phase = phase;
    $("request").textContent = summary.request
      ? `${summary.request} · attempt ${config.attempt} · ${phase}${failure}`
      : s.finished ? "–" : `none · ${phase}`;
    const waiting = s.waitingFor;
    $("waiting").hidden = !waiting;
    $("waiting").dataset.point = waiting ? waiting.point : "";
    if (waiting) {
      const who = waiting.approvers.length ? waiting.approvers.join(", ") : "anyone";
      $("waiting").textContent = `waiting for an approval before ${waiting.point} (${who})`;
    }
    $("held").hidden = !summary.held;
    $("held").textContent = summary.held ? `HELD: ${summary.held}` : "";
  }
  const policy = s ? s.session : null;
  $("policy-name").textContent = policy ? policy.policy : (page.plan ? page.plan.plan.policy : "–");
  const digest = policy ? policy.policyDigest : agent.desired ? agent.desired.digest : "";
  $("policy-digest").textContent = short(digest);
  $("policy-digest").title = digest || "";
  const origin = policy && policy.origin ? policy.origin : agent.desired;
  $("policy-revision").textContent = origin && origin.revision ? origin.revision.slice(0, 12) : "–";
  $("policy-revision").title = origin ? `${origin.source || ""} ${origin.revision || ""}` : "";
  $("desired").textContent = agent.desired ? `${short(agent.desired.digest)} @ ${(agent.desired.revision || "").slice(0, 8)}` : "–";
  $("desired").title = agent.desired ? agent.desired.source : "";
  $("achieved").textContent = agent.achieved ? `${short(agent.achieved.digest)} @ ${(agent.achieved.revision || "").slice(0, 8)}` : "–";
  const notes = [];
  if (agent.fetchError) notes.push(`fetch failed: ${agent.fetchError}`);
  if (agent.invalid && agent.invalid.length) notes.push(`the desired policy does not load: ${agent.invalid.join("; ")}`);
  if (agent.drift) notes.push(`drift: ${agent.drift}`);
  if (agent.idleBecause) notes.push(`idle: ${agent.idleBecause}`);
  $("agent-note").hidden = notes.length === 0;
  $("agent-note").textContent = notes.join(" · ");
}

function renderPath() {
  const path = $("path");
  const abortPath = $("abort-path");
  path.replaceChildren();
  abortPath.replaceChildren();
  if (!page.plan) {
    $("plan-note").textContent = "(no loadable desired policy yet)";
    $("abort-from").textContent = "";
    return;
  }
  const plan = page.plan.plan;
  const s = currentSession();
  const inFlight = s && !s.finished;
  const state = inFlight ? s.session.config.state : null;
  const aborting = inFlight && (state === "Abort" || s.session.abortedFrom);
  const waiting = inFlight && s.waitingFor ? s.waitingFor.point : null;
  let note = `of ${plan.policy} (sha256 ${short(page.plan.digest)})`;
  if (inFlight && s.session.policyDigest !== page.plan.digest) {
    note += `; the session runs sha256 ${short(s.session.policyDigest)}`;
  }
  $("plan-note").textContent = note;

  const step = (st, index, row, current) => {
    const approval = st.approval
      ? el("span", { class: "approval", "data-before": st.approval.before },
        `approval before ${st.approval.before}: ${st.approval.approvers.length ? st.approval.approvers.join(", ") : "anyone"}`)
      : null;
    return el("li", {
      "data-state": st.state,
      "data-index": String(index),
      "data-current": current ? "true" : null,
      "data-approval": st.approval ? st.approval.before : null,
      "data-waiting": current && approval && waiting === st.approval.before ? "true" : null,
      "data-abortable": row === "forward" && plan.abortFrom.includes(st.state) ? "true" : null,
      title: st.work.join("\n") + (st.retries ? `\nretries: ${st.retries}` : ""),
    }, el("span", { class: "name" }, st.state), approval);
  };
  // The current step: the first with the session's state (Finish and Idle
  // appear twice: on the abort path when the session aborted), else the
  // first Idle when nothing is in flight.
  const forwardCurrent = aborting ? -1 : inFlight ? plan.steps.findIndex((st) => st.state === state) : 0;
  plan.steps.forEach((st, i) => {
    const li = step(st, i, "forward", i === forwardCurrent);
    if (forwardCurrent > 0 && i < forwardCurrent) li.dataset.passed = "true";
    path.append(li);
  });
  const abortCurrent = aborting ? plan.abortPath.findIndex((st) => st.state === state) : -1;
  plan.abortPath.forEach((st, i) => abortPath.append(step(st, i, "abort", i === abortCurrent)));
  $("abort-from").textContent = `abort from ${plan.abortFrom.join(", ")}:`;
}

function renderProgress() {
  const box = $("progress");
  box.replaceChildren();
  for (const [label, bar] of page.progress) {
    // A step that ended is full, whatever it last reported.
    box.append(el("div", { class: "progress", "data-label": label, "data-done": bar.done ? "true" : null },
      el("span", { class: "label" }, label),
      el("progress", { max: 100, value: bar.done ? 100 : bar.percent }),
      el("span", {}, bar.done ? `done (last: ${bar.message})` : `${bar.percent}% ${bar.message}`)));
  }
}

// ---------------------------------------------------------------------------
// Actions: enabled when the server lists them as next; confirmed with the
// server's words for what they do; sent with the tab's name and token.

function renderActions() {
  const s = currentSession();
  const next = s ? s.next : [];
  for (const button of document.querySelectorAll("#actions button[data-command]")) {
    button.disabled = !next.includes(button.dataset.command);
  }
  $("operator").hidden = !store.by;
  $("operator-name").textContent = store.by ? `operator: ${store.by}` : "";
}

let pendingCommand = null;

function askToConfirm(command) {
  const s = currentSession();
  if (!s) return;
  const consequence = (s.consequences || []).find((c) => c.command === command);
  pendingCommand = command;
  $("confirm").dataset.command = command;
  $("confirm-title").textContent = `${command[0].toUpperCase()}${command.slice(1)} session ${s.id}?`;
  $("confirm-text").textContent = consequence ? consequence.text : `The server lists no consequence for ${command} now; it will refuse or explain.`;
  const approvers = command === "approve" && s.waitingFor ? s.waitingFor.approvers : [];
  $("confirm-approvers").hidden = approvers.length === 0;
  $("confirm-approvers").textContent = `The policy lets ${approvers.join(", ")} approve before ${s.waitingFor ? s.waitingFor.point : ""}.`;
  $("confirm-reason").value = "";
  $("confirm-reason").required = command === "hold";
  $("confirm-reason-label").firstChild.textContent = command === "hold" ? "Reason (required) " : "Reason (optional) ";
  const known = store.by && store.token;
  $("identity").hidden = known;
  $("confirm-by").required = !known;
  $("confirm-token").required = !known;
  $("confirm-by").value = store.by;
  $("confirm-token").value = "";
  $("confirm-problem").hidden = true;
  $("confirm").showModal();
  (known ? $("confirm-reason") : $("confirm-by")).focus();
}

async function send(command, by, reason) {
  const body = { by };
  if (reason) body.reason = reason;
  const sent = await postCommand(`/v1/commands/${command}`, body);
  if (sent.ok && sent.answer.accepted) {
    const a = sent.answer.accepted;
    showMessage("ok", "accepted", `${a.verb} accepted for session ${a.session} at ${a.at}; it takes effect at the run's next safe point.`);
  } else {
    const error = sent.error || { code: "unexpected", message: JSON.stringify(sent.answer) };
    showMessage("error", error.code, error.message);
  }
  refreshSoon(0);
}

// ---------------------------------------------------------------------------
// The activity tree.

function nodeKey(path) {
  return path.join(".");
}

// Open by default: the last state and its last attempt (where things
// happen now); everything else as the operator left it.
function isExpanded(key, node, lastOfItsKind) {
  if (page.expanded.has(key)) return page.expanded.get(key);
  return lastOfItsKind && (node.kind === "state" || node.kind === "attempt");
}

function findNode(nodes, key) {
  let list = nodes;
  let node = null;
  for (const part of key.split(".")) {
    node = list ? list[Number(part)] : null;
    if (!node) return null;
    list = node.children;
  }
  return node;
}

function renderTree() {
  const tree = $("tree");
  const scroll = tree.scrollTop;
  tree.replaceChildren();
  const id = viewedSessionId();
  $("viewing").textContent = id ? `session ${id}${page.pinned ? " (opened from history)" : ""}` : "";
  $("viewing").dataset.session = id || "";
  $("follow").hidden = !page.pinned;
  const nodes = page.activity && page.activity.activity ? page.activity.activity.nodes : [];
  const build = (list, parent, path) => {
    const kinds = list.map((node) => node.kind);
    list.forEach((node, i) => {
      const p = path.concat(i);
      const key = nodeKey(p);
      const hasChildren = node.children.length > 0;
      const expanded = hasChildren && isExpanded(key, node, kinds.lastIndexOf(node.kind) === i);
      const row = el("div", { class: "row", "data-key": key },
        el("span", { class: "toggle" }, hasChildren ? (expanded ? "▾" : "▸") : ""),
        el("span", { class: "mark", "data-outcome": node.outcome, title: node.outcome }),
        el("span", { class: "time" }, utcTime(node.tsMs)),
        el("span", { class: "title" }, node.title),
        node.durationMs !== null && node.durationMs !== undefined ? el("span", { class: "dur" }, duration(node.durationMs)) : null);
      const li = el("li", {
        role: "treeitem",
        "data-key": key,
        "data-kind": node.kind,
        "data-seq": String(node.seq),
        "data-outcome": node.outcome,
        "aria-expanded": hasChildren ? String(expanded) : null,
        "aria-selected": page.selected === key ? "true" : null,
      }, row);
      if (hasChildren) {
        const ul = el("ul", { role: "group" });
        build(node.children, ul, p);
        li.append(ul);
      }
      parent.append(li);
    });
  };
  build(nodes, tree, []);
  tree.scrollTop = scroll;
  renderDetail();
}

function renderDetail() {
  const nodes = page.activity && page.activity.activity ? page.activity.activity.nodes : [];
  const node = page.selected ? findNode(nodes, page.selected) : null;
  $("detail-hint").hidden = Boolean(node);
  $("detail").dataset.key = node ? page.selected : "";
  const fields = $("detail-fields");
  fields.replaceChildren();
  $("detail-json").textContent = "";
  if (!node) return;
  const rows = [
    ["what", node.title],
    ["kind", node.kind],
    ["outcome", node.outcome],
    ["record", `#${node.seq}`],
    ["at (UTC)", `${utcDateTime(node.tsMs)}${utcTime(node.tsMs).slice(8)}`],
    ["took", duration(node.durationMs)],
    ["by", node.by],
  ];
  for (const [name, value] of rows) {
    if (value === null || value === undefined || value === "") continue;
    fields.append(el("dt", {}, name), el("dd", { "data-field": name }, value));
  }
  $("detail-json").textContent = JSON.stringify(node.detail !== undefined ? node.detail : { log: node.title }, null, 2);
}

function onTreeClick(e) {
  const row = e.target.closest(".row");
  if (!row) return;
  const key = row.dataset.key;
  const li = row.parentElement;
  if (e.target.classList.contains("toggle") || page.selected === key) {
    if (li.hasAttribute("aria-expanded")) {
      page.expanded.set(key, li.getAttribute("aria-expanded") !== "true");
    }
  }
  page.selected = key;
  renderTree();
}

function setAllExpanded(value) {
  const nodes = page.activity && page.activity.activity ? page.activity.activity.nodes : [];
  const walk = (list, path) => list.forEach((node, i) => {
    const p = path.concat(i);
    if (node.children.length) {
      page.expanded.set(nodeKey(p), value);
      walk(node.children, p);
    }
  });
  walk(nodes, []);
  renderTree();
}

const MARKS = { ok: "✓", failed: "✗", running: "▶", person: "●", info: "·" };

// The activity as text: one line per node, children indented under their
// parent, as the tree shows it fully expanded.
function activityText(activity) {
  const lines = [`activity of session ${activity.session}`];
  const walk = (list, depth) => {
    for (const node of list) {
      const took = node.durationMs !== null && node.durationMs !== undefined ? ` (${duration(node.durationMs)})` : "";
      lines.push(`${utcTime(node.tsMs)} ${MARKS[node.outcome] || "·"} ${"  ".repeat(depth)}${node.title}${took}`);
      walk(node.children, depth + 1);
    }
  };
  walk(activity.activity.nodes, 0);
  return lines.join("\n") + "\n";
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// ---------------------------------------------------------------------------
// History.

function renderHistory() {
  const body = $("history").tBodies[0];
  body.replaceChildren();
  const viewing = viewedSessionId();
  // Newest first.
  for (const h of [...page.sessions].reverse()) {
    const outcome = h.outcome
      ? `${h.outcome}${h.abortedFrom ? ` from ${h.abortedFrom}` : ""}`
      : h.problem ? `unreadable: ${h.problem}` : `in flight: ${h.state || "?"}${h.held ? " (held)" : ""}`;
    body.append(el("tr", { "data-session": h.session, "data-viewing": h.session === viewing ? "true" : null },
      el("td", {}, el("code", {}, h.session)),
      el("td", {}, h.policy || "–"),
      el("td", {}, utcDateTime(h.startedMs)),
      el("td", {}, duration(h.durationMs)),
      el("td", { "data-outcome": h.outcome || (h.finished ? "" : "inFlight") }, outcome),
      el("td", {}, el("a", { href: `#session=${h.session}`, "data-open-session": h.session }, "activity"))));
  }
}

function openFromHash() {
  const match = /^#session=(.+)$/.exec(location.hash);
  const id = match ? decodeURIComponent(match[1]) : null;
  const current = currentSession();
  page.pinned = id && (!current || current.id !== id) ? id : null;
  page.selected = null;
  page.expanded.clear();
  refreshSoon(0);
}

// ---------------------------------------------------------------------------
// Wiring.

function start() {
  $("tree").addEventListener("click", onTreeClick);
  $("expand-all").addEventListener("click", () => setAllExpanded(true));
  $("collapse-all").addEventListener("click", () => setAllExpanded(false));
  $("follow").addEventListener("click", () => {
    history.replaceState(null, "", location.pathname);
    openFromHash();
  });
  window.addEventListener("hashchange", openFromHash);
  $("save-json").addEventListener("click", () => {
    if (page.activity) download(`${page.activity.session}-activity.json`, "application/json", JSON.stringify(page.activity, null, 2) + "\n");
  });
  $("save-text").addEventListener("click", () => {
    if (page.activity) download(`${page.activity.session}-activity.txt`, "text/plain", activityText(page.activity));
  });
  for (const button of document.querySelectorAll("#actions button[data-command]")) {
    button.addEventListener("click", () => askToConfirm(button.dataset.command));
  }
  $("confirm-cancel").addEventListener("click", () => $("confirm").close());
  $("confirm-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!$("identity").hidden) {
      store.set($("confirm-by").value.trim(), $("confirm-token").value.trim());
    }
    const command = pendingCommand;
    $("confirm").close();
    renderActions();
    send(command, store.by, $("confirm-reason").value.trim());
  });
  $("forget").addEventListener("click", () => {
    store.forget();
    renderActions();
  });
  refresh.fetch = fetchAll;
  live.take = takeLive;
  // The fleet's changes are the fleet page's (fleet.js).
  live.wanted = (message) => message.kind !== "fleet";
  openFromHash();
  connect();
}

start();
