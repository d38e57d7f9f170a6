// The Duplex fleet page: every host of the fleet and every rollout, as the
// agent reads them from etcd (`GET /v1/fleet`), and the operator's commands
// on rollouts and slots. It decides nothing: what `resume` would do, why the
// next host waits and whether the error budget is spent come from the
// server (the fleet's own decisions); a command the fleet refuses shows the
// server's message.
"use strict";

const fleetPage = {
  fleet: null,   // GET /v1/fleet
  error: null,   // why it could not be read (etcd unreachable, not a fleet)
};

// Which commands the fleet records a reason for (it refuses them without
// one: the server says so too).
const NEEDS_REASON = { pause: true, abort: true, release: true, resume: false };

// ---------------------------------------------------------------------------
// Fetching: on the live stream's `fleet` messages (the agent watches the
// fleet's keys in etcd), and every 10 s in case one was missed (the stream
// drops what a slow reader misses, and a watch is re-established after an
// etcd member dies); the 10 s also moves the slots' "held for" times.

async function fetchFleet() {
  try {
    fleetPage.fleet = await getJson("/v1/fleet");
    fleetPage.error = null;
  } catch (e) {
    fleetPage.error = e.message;
  }
  render();
}

const SAFETY_REFRESH_MS = 10000;

// ---------------------------------------------------------------------------
// Rendering.

function render() {
  const f = fleetPage.fleet;
  $("fleet-error").hidden = !fleetPage.error;
  $("fleet-error").textContent = fleetPage.error ? `cannot read the fleet: ${fleetPage.error}` : "";
  if (f) {
    $("this-host").textContent = f.host;
    $("prefix").textContent = f.prefix;
    const alive = f.hosts.filter((h) => h.alive).length;
    $("host-count").textContent = `${f.hosts.length} (${alive} alive)`;
    $("rollout-count").textContent = String(f.rollouts.length);
    $("read-at").textContent = `read ${utcDateTime(f.nowMs)} UTC`;
    renderHosts(f);
    renderRollouts(f);
  }
  renderOperator();
  document.body.dataset.rendered = String(Number(document.body.dataset.rendered || 0) + 1);
}

function cell(value, tone) {
  return el("td", { "data-tone": value && tone ? tone(value) : null }, value || "–");
}

function renderHosts(f) {
  const body = $("hosts").tBodies[0];
  body.replaceChildren();
  for (const h of f.hosts) {
    const r = h.record;
    body.append(el("tr", { "data-host": r.name, "data-alive": String(h.alive), title: `duplex ${r.version}; record written ${utcDateTime(r.updatedMs)} UTC` },
      el("td", {}, el("strong", {}, r.name), r.name === f.host ? el("span", { class: "label" }, " (this agent)") : null),
      el("td", { class: "alive", "data-tone": h.alive ? "ok" : "bad" }, h.alive ? "yes" : "no"),
      cell(r.state, TONES.state),
      cell(r.status, TONES.status),
      cell(r.partner, TONES.partner),
      el("td", {}, r.rollout || "–"),
      el("td", {}, h.waveName !== null && h.waveName !== undefined ? `${r.wave} ${h.waveName}` : "–"),
      el("td", { class: "slot", "data-tone": h.slot ? "busy" : null }, h.slot || "–"),
      el("td", { class: "last-event" }, r.lastEvent || "–")));
  }
}

function phaseOf(r) {
  const s = r.state;
  if (s.aborted) return "aborted";
  if (s.halted) return "halted";
  if (r.finished) return "completed";
  if (s.paused) return "paused";
  return "in progress";
}

// The Resume button says what the server says resume would do.
function resumeLabel(r) {
  if (!r.resume) return "Resume";
  if (r.resume.approve !== null && r.resume.approve !== undefined) {
    return r.resume.unpause ? `Resume and approve wave ${r.resume.approve}` : `Approve wave ${r.resume.approve}`;
  }
  return "Resume";
}

function banner(kind, text) {
  return el("div", { class: "banner", "data-kind": kind }, text);
}

function meter(label, value, max, text, kind) {
  return el("div", { class: "meter", "data-meter": kind },
    el("span", { class: "label" }, label),
    el("progress", { max: Math.max(max, 1), value: Math.min(value, Math.max(max, 1)) }),
    el("span", { class: "value" }, text));
}

function renderRollouts(f) {
  const box = $("rollouts");
  box.replaceChildren();
  $("no-rollouts").hidden = f.rollouts.length > 0;
  for (const r of f.rollouts) box.append(rolloutPanel(r, f.nowMs));
}

function rolloutPanel(r, now) {
  const s = r.state;
  const plan = r.plan;
  const phase = phaseOf(r);
  const awaiting = r.resume && r.resume.approve !== null && r.resume.approve !== undefined ? r.resume.approve : null;
  const panel = el("section", { class: "rollout", "data-rollout": r.name, "data-phase": phase, "aria-label": `rollout ${r.name}` });
  panel.append(el("h2", {}, `Rollout ${r.name} `,
    el("span", { class: "phase", "data-phase": phase }, phase),
    el("small", {}, ` policy ${plan.policy.path} (sha256 ${short(plan.policy.digest)}) · ${plan.hosts} hosts in ${plan.waves.length} waves · rollout sha256 ${short(plan.digest)}`)));

  if (s.aborted) panel.append(banner("aborted", `Aborted by ${s.aborted.by} at ${utcDateTime(s.aborted.atMs)} UTC: ${s.aborted.reason}. No host starts any more; sessions in flight are asked to abort.`));
  if (s.halted) panel.append(banner("halted", `Halted: ${s.halted}. No host starts any more.`));
  else if (r.budgetExhausted) panel.append(banner("halted", `Nobody starts: ${r.budgetExhausted}.`));
  if (s.paused) panel.append(banner("paused", `Paused by ${s.paused.by} at ${utcDateTime(s.paused.atMs)} UTC: ${s.paused.reason}. No host starts until it is resumed; hosts in flight go on.`));
  if (awaiting !== null) panel.append(banner("approval", `Wave ${awaiting} (${plan.waves[awaiting].name}) waits for an operator's approval.`));
  if (r.finished) panel.append(banner("completed", "Every host of the rollout has ended."));

  panel.append(el("div", { class: "meters" },
    meter("slots in use", s.holders ? Object.keys(s.holders).length : 0, plan.maxUnavailable,
      `${Object.keys(s.holders || {}).length} of ${plan.maxUnavailable} (maxUnavailable)`, "slots"),
    meter("error budget spent", r.budgetSpent, plan.errorBudget,
      `${r.budgetSpent} of ${plan.errorBudget} (aborted ${s.abortedCount}, released ${(s.releases || []).length}, held ${Object.values(s.holders || {}).filter((h) => h.held).length})`, "budget")));

  const waves = el("ol", { class: "waves" });
  plan.waves.forEach((w, i) => {
    const done = w.ended >= w.total;
    const needs = i > 0 && plan.betweenWaves.approval;
    const approval = !needs ? null
      : w.approved ? el("span", { class: "approval", "data-approval": "approved" }, "approved")
        : awaiting === i ? el("span", { class: "approval", "data-approval": "waiting" }, "waits for approval")
          : el("span", { class: "approval", "data-approval": "needed" }, "approval needed");
    waves.append(el("li", { "data-wave": String(i), "data-done": done ? "true" : null, "data-awaiting": awaiting === i ? "true" : null },
      el("span", { class: "name" }, `${i} ${w.name}`),
      el("progress", { max: Math.max(w.total, 1), value: w.ended }),
      el("span", { class: "count" }, `${w.ended}/${w.total} ended`),
      approval,
      el("span", { class: "hosts" }, ...w.hosts.map((h) => {
        const result = r.results[h];
        const holds = s.holders && s.holders[h];
        return el("span", { class: "host", "data-host": h, "data-result": result ? result.outcome : holds ? "holding" : null,
          title: result ? `${result.outcome}${result.session ? ` (session ${result.session})` : ""}` : holds ? "holds a slot" : "not started" }, h);
      }))));
  });
  panel.append(waves);
  if (plan.betweenWaves.pause) panel.append(el("p", { class: "hint" }, `between waves: a pause of ${duration(plan.betweenWaves.pause)}`));
  if (r.next && r.next.waits) panel.append(el("p", { class: "next" }, `Next to start: ${r.next.host} — ${r.next.waits}`));

  const holders = Object.entries(s.holders || {});
  if (holders.length) {
    const table = el("table", { class: "slots" },
      el("thead", {}, el("tr", {}, ...["slot held by", "wave", "for", "session", "held", ""].map((t) => el("th", {}, t)))));
    const body = el("tbody");
    for (const [host, h] of holders) {
      body.append(el("tr", { "data-host": host, "data-held": h.held ? "true" : null },
        el("td", {}, host),
        el("td", {}, `${h.wave} ${plan.waves[h.wave] ? plan.waves[h.wave].name : ""}`),
        el("td", { title: `since ${utcDateTime(h.sinceMs)} UTC` }, duration(Math.max(0, now - h.sinceMs))),
        el("td", {}, h.session ? el("code", {}, h.session) : "–"),
        el("td", {}, h.held || "–"),
        el("td", {}, el("button", { type: "button", class: "danger", "data-command": "release", "data-host": host }, "Release"))));
    }
    table.append(body);
    panel.append(table);
  }

  if ((s.releases || []).length) {
    panel.append(el("h3", {}, "Released by an operator"));
    panel.append(el("ul", { class: "releases" }, ...s.releases.map((x) =>
      el("li", { "data-host": x.host },
        el("strong", {}, x.host), ` by ${x.by} at ${utcDateTime(x.atMs)} UTC: `,
        el("span", { class: "reason" }, x.reason),
        el("span", { class: "label" }, ` (held wave ${x.wasHolder.wave} for ${duration(Math.max(0, x.atMs - x.wasHolder.sinceMs))}${x.wasHolder.session ? `, session ${x.wasHolder.session}` : ""})`)))));
  }

  const counts = {};
  for (const result of Object.values(r.results)) counts[result.outcome] = (counts[result.outcome] || 0) + 1;
  panel.append(el("p", { class: "results" }, `Results: ${Object.keys(r.results).length} of ${plan.hosts} hosts ended` +
    (Object.keys(counts).length ? ` (${Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")})` : "")));

  const over = Boolean(s.aborted || r.finished);
  panel.append(el("div", { class: "actions" },
    el("button", { type: "button", "data-command": "pause", disabled: over || Boolean(s.paused) || Boolean(s.halted) }, "Pause"),
    el("button", { type: "button", "data-command": "resume", disabled: !r.resume, "data-approve": awaiting !== null ? String(awaiting) : null }, resumeLabel(r)),
    el("button", { type: "button", class: "danger", "data-command": "abort", disabled: over }, "Abort")));
  return panel;
}

function renderOperator() {
  $("operator").hidden = !store.by;
  $("operator-name").textContent = store.by ? `operator: ${store.by}` : "";
}

// ---------------------------------------------------------------------------
// Commands: confirmed in a dialog (a reason where the fleet records one),
// sent with the tab's name and token (shared.js).

let pending = null;

function askToConfirm(command, rollout, host, label) {
  pending = { command, rollout, host };
  const r = fleetPage.fleet ? fleetPage.fleet.rollouts.find((x) => x.name === rollout) : null;
  $("confirm").dataset.command = command;
  const texts = {
    pause: [`Pause rollout ${rollout}?`, "No host starts until the rollout is resumed; hosts in flight go on to their end."],
    resume: [`${label} in rollout ${rollout}?`, r && r.resume && r.resume.approve !== null && r.resume.approve !== undefined
      ? `Hosts of wave ${r.resume.approve} (${r.plan.waves[r.resume.approve].name}) may then start, at most ${r.plan.maxUnavailable} at once.`
      : "Hosts may start again."],
    abort: [`Abort rollout ${rollout}?`, "This is final: no host starts any more, and sessions in flight are asked to abort (their state model decides whether they still can)."],
    release: [`Release ${host}'s slot?`, `Only when ${host} will not end its upgrade by itself (its agent is gone). Nobody knows how its upgrade ended: the release is recorded with your reason and counted against the error budget. If it comes back, its own session goes on.`],
  };
  const [title, text] = texts[command];
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  const needs = NEEDS_REASON[command];
  $("confirm-reason-label").hidden = !needs;
  $("confirm-reason").required = needs;
  $("confirm-reason").value = "";
  $("confirm-reason-label").firstChild.textContent = "Reason (required, recorded) ";
  const known = store.by && store.token;
  $("identity").hidden = known;
  $("confirm-by").required = !known;
  $("confirm-token").required = !known;
  $("confirm-by").value = store.by;
  $("confirm-token").value = "";
  $("confirm").showModal();
  (known ? (needs ? $("confirm-reason") : $("confirm-ok")) : $("confirm-by")).focus();
}

async function sendFleet(p, reason) {
  const body = { by: store.by };
  if (reason) body.reason = reason;
  const path = p.command === "release"
    ? `/v1/fleet/hosts/${encodeURIComponent(p.host)}/release`
    : `/v1/fleet/rollouts/${encodeURIComponent(p.rollout)}/${p.command}`;
  const sent = await postCommand(path, body);
  if (sent.ok) {
    showMessage("ok", p.command, sent.answer.message);
  } else {
    showMessage("error", sent.error.code, sent.error.message);
  }
  refreshSoon(0);
}

function onPanelClick(e) {
  const button = e.target.closest("button[data-command]");
  if (!button || button.disabled) return;
  const panel = button.closest(".rollout");
  askToConfirm(button.dataset.command, panel ? panel.dataset.rollout : null, button.dataset.host || null, button.textContent);
}

// ---------------------------------------------------------------------------
// Wiring.

function start() {
  refresh.fetch = fetchFleet;
  live.wanted = (message) => message.kind === "fleet" || message.kind === "agent";
  $("rollouts").addEventListener("click", onPanelClick);
  $("confirm-cancel").addEventListener("click", () => $("confirm").close());
  $("confirm-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (!$("identity").hidden) {
      store.set($("confirm-by").value.trim(), $("confirm-token").value.trim());
    }
    const p = pending;
    $("confirm").close();
    renderOperator();
    sendFleet(p, $("confirm-reason").value.trim());
  });
  $("forget").addEventListener("click", () => {
    store.forget();
    renderOperator();
  });
  setInterval(() => refreshSoon(0), SAFETY_REFRESH_MS);
  connect();
}

start();
