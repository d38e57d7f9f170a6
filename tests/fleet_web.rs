//! The web console's fleet page in headless Chromium (through chromedriver)
//! against a real fleet: a 3-member etcd on loopback and four `duplex agent
//! --fleet` hosts on sim targets, one of them serving the page. A rollout
//! whose second wave waits for an operator's approval is applied with
//! `duplex rollout apply`; on the page (reached from the console's link):
//! every host and the rollout's waves,
//! a refused token's message, "Approve wave 1" approving the wave (its
//! hosts then start), Pause and Resume (the CLI's `duplex rollout status`
//! agreeing), and the Release of a host whose agent was killed with
//! SIGKILL, its reason asked for and shown. The fleet API's refusals (an
//! empty reason, an unknown rollout) are checked on the side. A screenshot
//! goes to `target/console-screenshots/fleet.png`.

#[path = "support/fleet_agents.rs"]
mod fleet_agents;
mod support;

use fleet_agents::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::webdriver::{Browser, Engine};

/// What the fleet page shows, read in one go.
const SHOWN: &str = r##"
const $ = (id) => document.getElementById(id);
const all = (root, css) => [...root.querySelectorAll(css)];
return {
  conn: $("conn").dataset.state,
  rendered: Number(document.body.dataset.rendered || 0),
  error: $("fleet-error").hidden ? null : $("fleet-error").textContent,
  hosts: all(document, "#hosts tbody tr").map((tr) => ({
    host: tr.dataset.host,
    alive: tr.dataset.alive === "true",
    cells: [...tr.cells].map((c) => c.textContent),
    tones: [...tr.cells].map((c) => c.dataset.tone || ""),
  })),
  rollouts: all(document, "#rollouts .rollout").map((p) => ({
    name: p.dataset.rollout,
    phase: p.dataset.phase,
    banners: all(p, ".banner").map((b) => ({ kind: b.dataset.kind, text: b.textContent })),
    waves: all(p, ".waves li").map((li) => ({
      name: li.querySelector(".name").textContent,
      count: li.querySelector(".count").textContent,
      awaiting: li.dataset.awaiting === "true",
      hosts: all(li, ".host").map((h) => h.dataset.host),
    })),
    meters: all(p, ".meter").map((m) => m.dataset.meter + ": " + m.querySelector(".value").textContent),
    slots: all(p, ".slots tbody tr").map((tr) => tr.dataset.host),
    releases: all(p, ".releases li").map((li) => ({ host: li.dataset.host, reason: li.querySelector(".reason").textContent })),
    buttons: all(p, ".actions button").map((b) => ({ command: b.dataset.command, text: b.textContent, enabled: !b.disabled })),
  })),
  message: $("message").hidden ? null : { kind: $("message").dataset.kind, text: $("message").textContent },
  dialog: $("confirm").open ? {
    title: $("confirm-title").textContent,
    identity: !$("identity").hidden,
    reason: !$("confirm-reason-label").hidden,
  } : null,
};
"##;

const ROLLOUT: &str = "web-fleet";

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
}

struct Page {
    browser: Browser,
}

impl Page {
    fn until(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.browser.wait_for(what, SHOWN, ok)
    }

    /// The rollout's panel as last shown.
    fn rollout(v: &Value) -> &Value {
        v["rollouts"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == ROLLOUT))
            .unwrap_or(&Value::Null)
    }

    fn button(v: &Value, command: &str) -> Value {
        Self::rollout(v)["buttons"]
            .as_array()
            .and_then(|b| b.iter().find(|b| b["command"] == command))
            .cloned()
            .unwrap_or(Value::Null)
    }

    fn has_banner(v: &Value, kind: &str) -> bool {
        Self::rollout(v)["banners"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b["kind"] == kind))
    }

    /// Open a command's dialog, give what it asks, send.
    fn command(&self, css: &str, identity: Option<(&str, &str)>, reason: &str) -> Value {
        self.browser.click(css);
        let v = self.until("the dialog", |v| !v["dialog"].is_null());
        assert_eq!(v["dialog"]["identity"], identity.is_some(), "{v}");
        if let Some((by, token)) = identity {
            self.browser.type_into("#confirm-by", by);
            self.browser.type_into("#confirm-token", token);
        }
        if !reason.is_empty() {
            self.browser.type_into("#confirm-reason", reason);
        }
        self.browser.click("#confirm-ok");
        v
    }

    fn message(&self, needle: &str) -> Value {
        let v = self.until(&format!("a message about `{needle}`"), |v| {
            v["message"]["text"]
                .as_str()
                .is_some_and(|t| t.contains(needle))
        });
        v["message"].clone()
    }
}

fn post(port: u16, path: &str, token: &str, body: &str) -> (u16, Value) {
    let mut response = ureq::post(&format!("http://127.0.0.1:{port}{path}"))
        .config()
        .http_status_as_error(false)
        .build()
        .header("authorization", &format!("Bearer {token}"))
        .header("content-type", "application/json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[test]
fn the_fleet_page_shows_hosts_and_waves_approves_pauses_resumes_and_releases() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints();
    let fleet = etcd.fleet();
    let policies = policy_dir(dir.path(), "policies/demo.yaml", 100);
    let mut hosts: Vec<Host> = (1..=4)
        .map(|i| Host::new(dir.path(), &format!("fw-{i}"), &[]))
        .collect();
    etcd.start_registered(&fleet, &mut hosts);
    let rollout = policies.join("rollout.yaml");
    std::fs::write(
        &rollout,
        format!(
            "apiVersion: duplex.dev/v1alpha1
kind: Rollout
metadata: {{ name: {ROLLOUT} }}
spec:
  policy: {{ path: p.yaml }}
  hosts: {{ names: [fw-1, fw-2, fw-3, fw-4] }}
  waves:
    - {{ name: canary, count: 1 }}
    - {{ name: rest }}
  betweenWaves: {{ approval: true }}
  maxUnavailable: 3
  errorBudget: 2
"
        ),
    )
    .unwrap();
    let applied = duplex_fleet(&endpoints, &["rollout", "apply", rollout.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let state = || {
        etcd.rt
            .block_on(fleet.rollout(ROLLOUT))
            .ok()
            .flatten()
            .map(|v| v.state)
            .unwrap_or_default()
    };

    // The page, served by the first host (the canary: the first by name).
    let (port, token) = (hosts[0].port, hosts[0].token());
    let page = Page {
        browser: Browser::start(Engine::Chromium, dir.path()),
    };
    // The console links to the fleet page when its agent is in a fleet.
    page.browser.goto(&format!("http://127.0.0.1:{port}/"));
    page.browser.wait_for(
        "the console's link to the fleet page",
        "return !document.getElementById('fleet-link').hidden",
        |v| v == true,
    );
    page.browser.click("#fleet-link");
    let v = page.until("every host and the rollout's waves", |v| {
        v["hosts"].as_array().is_some_and(|h| h.len() == 4)
            && Page::rollout(v)["waves"]
                .as_array()
                .is_some_and(|w| w.len() == 2)
    });
    assert_eq!(v["conn"], "connected", "{v}");
    let names: Vec<&str> = v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fw-1", "fw-2", "fw-3", "fw-4"], "{v}");
    let waves = &Page::rollout(&v)["waves"];
    assert_eq!(waves[0]["hosts"], serde_json::json!(["fw-1"]), "{v}");
    assert_eq!(
        waves[1]["hosts"],
        serde_json::json!(["fw-2", "fw-3", "fw-4"]),
        "{v}"
    );
    assert_eq!(
        waves[1]["count"].as_str().unwrap().split('/').nth(1),
        Some("3 ended"),
        "{v}"
    );

    // The canary ends; the next wave waits for an approval, which the page
    // offers in the fleet's words.
    let v = page.until("Approve wave 1 offered", |v| {
        Page::button(v, "resume")["text"] == "Approve wave 1"
            && Page::button(v, "resume")["enabled"] == true
    });
    assert!(Page::has_banner(&v, "approval"), "{v}");
    assert_eq!(Page::rollout(&v)["waves"][1]["awaiting"], true, "{v}");
    assert_eq!(Page::rollout(&v)["waves"][0]["count"], "1/1 ended", "{v}");
    assert!(state().holders.is_empty(), "wave 1 waits");
    // The host table shows the canary's last state, colour-coded.
    let canary = &v["hosts"][0];
    assert_eq!(canary["host"], "fw-1");
    assert!(canary["alive"] == true, "{v}");

    // A wrong token: the server's refusal is shown, nothing changes, and
    // the next command asks again.
    let resume = format!(".rollout[data-rollout={ROLLOUT}] .actions button[data-command=resume]");
    page.command(&resume, Some(("alice", "not-the-token")), "");
    let refused = page.message("Bearer");
    assert_eq!(refused["kind"], "error", "{refused}");
    assert!(state().approved_waves.is_empty());

    // Approve with the token: the wave's hosts start.
    let dialog = page.command(&resume, Some(("alice", &token)), "");
    assert!(
        dialog["dialog"]["title"]
            .as_str()
            .unwrap()
            .contains("Approve wave 1"),
        "{dialog}"
    );
    assert_eq!(dialog["dialog"]["reason"], false, "resume needs no reason");
    let ok = page.message("wave 1 approved by alice");
    assert_eq!(ok["kind"], "ok", "{ok}");
    wait_until(
        "a host of wave 1 holds a slot",
        Duration::from_secs(30),
        || state().holders.keys().any(|h| h != "fw-1"),
        &hosts,
    );
    // One of them loses its agent (SIGKILL): its slot stays held.
    let victim = state()
        .holders
        .keys()
        .find(|h| *h != "fw-1")
        .unwrap()
        .clone();
    let i = hosts.iter().position(|h| h.name == victim).unwrap();
    hosts[i].kill();
    let v = page.until("the slots in use", |v| {
        Page::rollout(v)["slots"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == victim.as_str()))
    });
    assert!(
        Page::rollout(&v)["meters"][0]
            .as_str()
            .unwrap()
            .contains("of 3 (maxUnavailable)"),
        "{v}"
    );

    // Pause: the banner, and the CLI agrees; Resume clears it.
    let pause = format!(".rollout[data-rollout={ROLLOUT}] .actions button[data-command=pause]");
    let dialog = page.command(&pause, None, "change freeze");
    assert_eq!(dialog["dialog"]["reason"], true);
    let v = page.until("the paused banner", |v| Page::has_banner(v, "paused"));
    assert_eq!(Page::rollout(&v)["phase"], "paused", "{v}");
    let shown = duplex_fleet(&endpoints, &["rollout", "status", ROLLOUT]);
    assert!(
        shown.stdout.contains("paused by alice: change freeze"),
        "{}",
        shown.stdout
    );
    assert_eq!(Page::button(&v, "resume")["text"], "Resume", "{v}");
    page.command(&resume, None, "");
    page.until("the paused banner cleared", |v| {
        !Page::has_banner(v, "paused") && Page::rollout(v)["phase"] == "in progress"
    });
    let shown = duplex_fleet(&endpoints, &["rollout", "status", ROLLOUT]);
    assert!(
        !shown.stdout.contains("paused") && shown.stdout.contains("(in progress)"),
        "{}",
        shown.stdout
    );

    // The API refuses what the fleet refuses, in its words.
    let (status, body) = post(
        port,
        &format!("/v1/fleet/hosts/{victim}/release"),
        &token,
        r#"{"by":"alice","reason":"  "}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "reason_required", "{body}");
    let (status, body) = post(
        port,
        "/v1/fleet/rollouts/no-such-rollout/pause",
        &token,
        r#"{"by":"alice","reason":"x"}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no-such-rollout"),
        "{body}"
    );
    let (status, _) = post(port, "/v1/fleet/rollouts/x/pause", "", "{}");
    assert_eq!(status, 401, "writes need the token");

    // Release the dead host's slot: the dialog insists on a reason.
    let release = format!(".rollout[data-rollout={ROLLOUT}] .slots button[data-host={victim}]");
    page.browser.click(&release);
    let v = page.until("the release dialog", |v| !v["dialog"].is_null());
    assert_eq!(v["dialog"]["reason"], true, "{v}");
    page.browser.click("#confirm-ok");
    std::thread::sleep(Duration::from_millis(300));
    let v = page.until("the dialog still open", |v| !v["dialog"].is_null());
    assert!(v["dialog"]["title"].as_str().unwrap().contains(&victim));
    page.browser
        .type_into("#confirm-reason", "the host was replaced");
    page.browser.click("#confirm-ok");
    page.message(&format!("Released {victim}'s slot"));
    let v = page.until("the release in the page", |v| {
        Page::rollout(v)["releases"]
            .as_array()
            .is_some_and(|r| r.iter().any(|r| r["host"] == victim.as_str()))
    });
    let releases = &Page::rollout(&v)["releases"];
    assert_eq!(releases[0]["reason"], "the host was replaced", "{v}");
    assert!(
        Page::rollout(&v)["meters"][1]
            .as_str()
            .unwrap()
            .starts_with("budget: 1 of 2"),
        "{v}"
    );
    let state = state();
    assert_eq!(state.releases.len(), 1);
    assert_eq!(state.releases[0].by, "alice");
    assert_eq!(state.releases[0].reason, "the host was replaced");

    page.browser
        .screenshot(&screenshots_dir().join("fleet.png"));
    eprintln!("fleet page test took {:?}", started.elapsed());
}
