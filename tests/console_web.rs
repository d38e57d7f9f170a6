//! The web console in real browsers (headless Chromium through
//! chromedriver, headless Firefox ESR through geckodriver) against a real
//! `duplex agent` running sim sessions of a policy with two approvals: the
//! status bar follows the session, the tree and the state model path show
//! it, approving from the page takes it to Commit, a refused approval shows
//! the model's reason, hold and release work, the page survives an agent
//! restart, saves the activity, and aborts a second session; the same
//! scenario runs in each browser. A second agent runs a session whose split
//! fails once and is held for a person: the page shows it Broken, with the
//! reason, and retries it (in Chromium). Screenshots go to
//! `target/console-screenshots/` (Firefox's prefixed `firefox-`).

mod support;
use serde_json::{Value, json};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;
use support::agent::*;
use support::webdriver::{Browser, Engine, PATIENCE};
use support::*;

/// What the page shows, read in one go.
const SHOWN: &str = r##"
const $ = (id) => document.getElementById(id);
return {
  conn: $("conn").dataset.state,
  state: $("axis-state").dataset.value,
  status: $("axis-status").dataset.value,
  partner: $("axis-partner").dataset.value,
  session: $("session-id").dataset.session || "",
  outcome: $("outcome").dataset.value,
  achieved: $("achieved").textContent,
  agentNote: $("agent-note").hidden ? "" : $("agent-note").textContent,
  waiting: $("waiting").hidden ? "" : $("waiting").dataset.point,
  held: $("held").hidden ? "" : $("held").textContent,
  pid: $("runner").dataset.pid,
  tone: $("axis-status").dataset.tone,
  request: $("request").textContent,
  phase: $("request").dataset.phase,
  enabled: [...document.querySelectorAll("#actions button[data-command]")]
    .filter((b) => !b.disabled).map((b) => b.dataset.command),
  message: $("message").hidden ? null : { kind: $("message").dataset.kind, text: $("message").textContent },
  dialog: $("confirm").open ? {
    text: $("confirm-text").textContent,
    identity: !$("identity").hidden,
  } : null,
  treeStates: [...document.querySelectorAll("#tree > li[data-kind=state]")]
    .map((li) => li.querySelector(".title").textContent),
  attempts: [...document.querySelectorAll("#tree li[data-kind=attempt]")]
    .map((li) => ({ title: li.querySelector(".title").textContent, outcome: li.dataset.outcome })),
  current: [...document.querySelectorAll("#path li[data-current], #abort-path li[data-current]")]
    .map((li) => ({ state: li.dataset.state, waiting: li.dataset.waiting === "true",
      abort: li.parentElement.id === "abort-path" })),
  progress: [...document.querySelectorAll("#progress .progress")]
    .map((p) => ({ label: p.dataset.label, done: p.dataset.done === "true" })),
  viewing: $("viewing").dataset.session,
  history: [...document.querySelectorAll("#history tbody tr")]
    .map((tr) => ({ session: tr.dataset.session, outcome: tr.cells[4].dataset.outcome })),
};
"##;

/// The page, with every upgrade state it was seen showing, in order.
struct Console {
    browser: Browser,
    states: RefCell<Vec<String>>,
    shots: PathBuf,
    /// Before each screenshot's name: none for Chromium, `firefox-`.
    prefix: &'static str,
}

impl Console {
    /// A browser on the agent's page.
    fn open(engine: Engine, agent: &Agent, downloads: &Path) -> Console {
        let console = Console {
            browser: Browser::start(engine, downloads),
            states: RefCell::new(Vec::new()),
            shots: screenshots_dir(),
            prefix: match engine {
                Engine::Chromium => "",
                Engine::Firefox => "firefox-",
            },
        };
        console.browser.goto(&agent.url("/"));
        console
    }

    /// Wait until the page shows what `ok` wants, noting each state the
    /// status bar shows meanwhile.
    fn until(&self, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
        self.browser.wait_for(what, SHOWN, |v| {
            if let Some(state) = v["state"].as_str().filter(|s| !s.is_empty()) {
                let mut states = self.states.borrow_mut();
                if states.last().map(String::as_str) != Some(state) {
                    states.push(state.to_string());
                }
            }
            ok(v)
        })
    }

    fn screenshot(&self, name: &str) {
        self.browser
            .screenshot(&self.shots.join(format!("{}{name}.png", self.prefix)));
    }

    /// Click an action, see the dialog with the server's consequence, give
    /// what it asks, send.
    fn command(&self, verb: &str, consequence: &str, identity: Option<(&str, &str)>, reason: &str) {
        self.until(&format!("{verb} enabled"), |v| enabled(v, verb));
        self.browser
            .click(&format!("#actions button[data-command={verb}]"));
        let v = self.until(&format!("the {verb} dialog"), |v| !v["dialog"].is_null());
        let text = v["dialog"]["text"].as_str().unwrap();
        assert!(text.contains(consequence), "the dialog says: {text}");
        assert_eq!(v["dialog"]["identity"], identity.is_some(), "{v}");
        if let Some((by, token)) = identity {
            self.browser.type_into("#confirm-by", by);
            self.browser.type_into("#confirm-token", token);
        }
        if !reason.is_empty() {
            self.browser.type_into("#confirm-reason", reason);
        }
        self.browser.click("#confirm-ok");
    }

    /// The answer to the last command, once the page shows one that
    /// mentions `needle`.
    fn message(&self, needle: &str) -> Value {
        let v = self.until(&format!("a message about `{needle}`"), |v| {
            v["message"]["text"]
                .as_str()
                .is_some_and(|t| t.contains(needle))
        });
        v["message"].clone()
    }
}

fn enabled(v: &Value, verb: &str) -> bool {
    v["enabled"]
        .as_array()
        .is_some_and(|a| a.iter().any(|c| c == verb))
}

/// The agent's API token, from its state dir.
fn token_of(agent: &Agent) -> String {
    let token = std::fs::read_to_string(agent.state.join("agent/token")).unwrap();
    token.trim().to_string()
}

fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots")
}

/// Whether `seen` is `FORWARD` with some states skipped (the page shows
/// what it finds when it asks; it may miss a state passed through quickly).
fn in_forward_order(seen: &[String]) -> bool {
    let mut forward = FORWARD.iter();
    seen.iter().all(|s| forward.any(|f| f == s))
}

fn wait_for_file(path: &Path) -> String {
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.is_empty()
        {
            return text;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "never saved: {}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn the_console_follows_approves_refuses_survives_a_restart_and_aborts() {
    follows_approves_refuses_survives_a_restart_and_aborts(Engine::Chromium);
}

#[test]
fn in_firefox_the_console_follows_approves_refuses_survives_a_restart_and_aborts() {
    follows_approves_refuses_survives_a_restart_and_aborts(Engine::Firefox);
}

fn follows_approves_refuses_survives_a_restart_and_aborts(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo_of(dir.path(), "policies/approvals.yaml");
    let port = free_port();
    let mut agent = start_agent_with(dir.path(), &repo, port, &[]);

    // The assets: the pages and their files, with their types; a page
    // the browser has is revalidated, not sent again.
    agent.wait_for("the agent answers", |_| true);
    for (path, kind) in [
        ("/", "text/html"),
        ("/console.css", "text/css"),
        ("/console.js", "text/javascript"),
        ("/shared.js", "text/javascript"),
        ("/fleet", "text/html"),
        ("/fleet.js", "text/javascript"),
    ] {
        let response = ureq::get(&agent.url(path)).call().unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|h| h.to_str().unwrap().to_string())
                .unwrap_or_default()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("cache-control"), "no-cache", "{path}");
        let etag = header("etag");
        let again = ureq::get(&agent.url(path))
            .header("if-none-match", &etag)
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .unwrap();
        assert_eq!(again.status().as_u16(), 304, "{path}");
    }
    // Not in a fleet: the fleet's API says so, and the console does not
    // link to the fleet page.
    let (code, body) = agent.get("/v1/fleet");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("not_in_fleet"), "{body}");
    let token = token_of(&agent);

    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads).unwrap();
    let console = Console::open(engine, &agent, &downloads);
    let page = &console.browser;

    // The session runs to the first approval point; the page follows.
    let v = console.until("waiting for the approval before Merge", |v| {
        v["conn"] == "connected" && v["waiting"] == "Merge" && enabled(v, "approve")
    });
    let first = v["session"].as_str().unwrap().to_string();
    assert_eq!(
        page.execute(
            "return document.getElementById('fleet-link').hidden",
            json!([])
        ),
        true
    );
    assert_eq!(v["state"], "Split", "{v}");
    assert_eq!(v["status"], "Ready", "{v}");
    assert_eq!(v["partner"], "Up", "{v}");
    // Only what the server lists as next is enabled.
    assert_eq!(v["enabled"], json!(["approve", "hold", "abort"]), "{v}");
    // The model's path: the current state is marked as waiting there.
    assert_eq!(
        v["current"],
        json!([{"state": "Split", "waiting": true, "abort": false}]),
        "{v}"
    );
    let abort_path = page.execute(
        "return [...document.querySelectorAll('#abort-path li')].map((li) => li.dataset.state)",
        json!([]),
    );
    assert_eq!(abort_path, json!(["Abort", "Finish", "Idle"]));
    let approvals = page.execute(
        "return [...document.querySelectorAll('#path li[data-approval]')].map((li) => li.dataset.approval)",
        json!([]),
    );
    assert_eq!(approvals, json!(["Merge", "Commit"]));
    // The tree: the states so far; a check's record in the detail pane.
    let v = console.until("the tree shows the states so far", |v| {
        v["treeStates"] == json!(["PrepareSplit", "Split"])
    });
    assert_eq!(v["treeStates"], json!(["PrepareSplit", "Split"]));
    page.click("#tree > li[data-kind=state] > .row .toggle");
    page.click("#tree li[data-kind=check] > .row");
    let detail = page.text("#detail-json");
    assert!(detail.contains("\"event\": \"checkRan\""), "{detail}");
    assert!(detail.contains("\"verdict\": \"pass\""), "{detail}");
    console.screenshot("waiting-for-approval");

    // An approval by someone the policy does not name: refused, and the
    // page says why in the model's words; nothing changes.
    console.command(
        "approve",
        "The merge process starts",
        Some(("mallory", &token)),
        "",
    );
    let refused = console.message("may not approve");
    assert_eq!(refused["kind"], "error", "{refused}");
    let text = refused["text"].as_str().unwrap();
    assert!(
        text.contains("mallory may not approve before Merge: the policy names ops-oncall"),
        "{text}"
    );
    console.screenshot("refused");
    let v = console.until("still waiting", |v| v["waiting"] == "Merge");
    assert_eq!(v["session"], first.as_str());

    // The name and token are kept for the tab until forgotten.
    page.click("#forget");
    console.command(
        "approve",
        "The merge process starts",
        Some(("ops-oncall", &token)),
        "CHG-17 window open",
    );
    let accepted = console.message("approve accepted");
    assert_eq!(accepted["kind"], "ok", "{accepted}");
    let v = console.until("waiting for the approval before Commit", |v| {
        v["waiting"] == "Commit" && enabled(v, "approve")
    });
    assert_eq!(v["state"], "Merge", "{v}");
    assert!(
        v["treeStates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Merge"),
        "{v}"
    );
    // The merge and the soak reported progress: their bars stay, done,
    // until the session leaves Merge.
    let labels: Vec<&str> = v["progress"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["done"] == true)
        .filter_map(|p| p["label"].as_str())
        .collect();
    assert!(labels.contains(&"verification"), "{v}");

    // Hold (a reason is asked for) and release, from the page.
    console.command("hold", "waits for a release", None, "a look at the soak");
    console.message("hold accepted");
    let v = console.until("held", |v| {
        v["held"]
            .as_str()
            .is_some_and(|h| h.contains("a look at the soak"))
            && enabled(v, "release")
    });
    assert!(!enabled(&v, "approve"), "no approval while held: {v}");
    console.command("release", "The hold is lifted", None, "");
    console.message("release accepted");
    console.until("released", |v| {
        v["held"] == "" && v["waiting"] == "Commit" && enabled(v, "approve")
    });

    // The agent goes away: the page says so; a new agent on the same state
    // dir and port takes the session up, and the page shows it by itself.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    console.until("disconnected", |v| v["conn"] == "disconnected");
    console.screenshot("disconnected");
    agent = start_agent_with(dir.path(), &repo, port, &[]);
    let pid = agent.child.id().to_string();
    let v = console.until("reconnected to the new agent", |v| {
        v["conn"] == "connected" && v["pid"] == pid.as_str() && v["waiting"] == "Commit"
    });
    assert_eq!(v["session"], first.as_str());
    page.click("#tree > li[data-kind=state]:last-child li[data-kind=check] > .row");
    console.screenshot("console");

    // The last approval, by the change board: the point of no return.
    page.click("#forget");
    console.command(
        "approve",
        "Commit is the point of no return",
        Some(("change-board", &token)),
        "",
    );
    // Achieved is the agent's own finding, after the last record: the
    // stream's `agent` message brings it (nothing polls).
    let v = console.until("committed and achieved", |v| {
        v["outcome"] == "committed" && v["state"] == "Idle" && v["achieved"] != "–"
    });
    assert_eq!(v["session"], first.as_str());
    assert_eq!(v["enabled"], json!([]), "nothing to command: {v}");
    assert_eq!(
        v["treeStates"],
        json!([
            "PrepareSplit",
            "Split",
            "PrepareMerge",
            "Merge",
            "Commit",
            "Finish"
        ]),
        "{v}"
    );
    let seen = console.states.borrow().clone();
    assert!(in_forward_order(&seen), "states out of order: {seen:?}");
    for state in ["Split", "Merge", "Idle"] {
        assert!(
            seen.iter().any(|s| s == state),
            "{state} never shown: {seen:?}"
        );
    }
    console.screenshot("committed");

    // The activity saved, as JSON and as indented text.
    page.click("#save-json");
    let saved = wait_for_file(&downloads.join(format!("{first}-activity.json")));
    let saved: Value = serde_json::from_str(&saved).unwrap();
    assert_eq!(saved["session"], first.as_str());
    assert!(saved["activity"]["nodes"].as_array().unwrap().len() > 6);
    page.click("#save-text");
    let text = wait_for_file(&downloads.join(format!("{first}-activity.txt")));
    // A state at the top: its time, its mark, its name.
    assert!(
        text.lines()
            .any(|l| l.split_whitespace().nth(2) == Some("Commit")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("   approved before Commit by change-board")),
        "the approval is indented under its state:\n{text}"
    );

    // A second session (a new digest), aborted from the page.
    write_policy(&repo, "policies/approvals.yaml", "# a second change\n");
    git(&repo, &["commit", "-qam", "a second change"]);
    let v = console.until("a second session waits for approval", |v| {
        v["session"] != first.as_str() && v["waiting"] == "Merge" && enabled(v, "abort")
    });
    let second = v["session"].as_str().unwrap().to_string();
    console.command("abort", "The session aborts from Split", None, "");
    console.message("abort accepted");
    let v = console.until("aborted", |v| {
        v["session"] == second.as_str() && v["outcome"] == "aborted"
    });
    assert!(
        v["treeStates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "Abort"),
        "{v}"
    );
    let v = console.until("both sessions in the history", |v| {
        v["history"].as_array().is_some_and(|h| h.len() == 2)
    });
    let outcomes: Vec<(&str, &str)> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["session"].as_str().unwrap(),
                h["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(outcomes.contains(&(first.as_str(), "committed")), "{v}");
    assert!(outcomes.contains(&(second.as_str(), "aborted")), "{v}");
    console.screenshot("aborted");

    // A past session opened from the history shows its own activity.
    page.click(&format!("#history a[data-open-session='{first}']"));
    let v = console.until("the first session's activity", |v| {
        v["viewing"] == first.as_str() && v["treeStates"].as_array().is_some_and(|s| s.len() == 6)
    });
    assert_eq!(v["treeStates"][4], "Commit", "{v}");
    console.screenshot("history");

    // An invalid policy committed: only the agent's own view changes (no
    // session record), and the stream's `agent` message brings it to the
    // page, which polls nothing.
    commit_an_invalid_policy(&repo);
    let v = console.until("the invalid policy shown", |v| {
        v["agentNote"]
            .as_str()
            .is_some_and(|n| n.contains("does not load") && n.contains("policies/p.yaml:4:"))
    });
    assert_eq!(
        v["history"].as_array().map(Vec::len),
        Some(2),
        "nothing started: {v}"
    );
}

/// The approvals policy with the simulated server told to fail the split
/// once and no automatic retry there: its `retriesExhausted: hold` rule
/// stops the session, Broken, for a person.
fn fail_the_split_once(repo: &Path) {
    let path = repo.join("policies/p.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let faults = "    with:\n      faults: { fail: { split: 1 } }\n";
    let retries = "  retries:\n    perState:\n      split: { limit: 0 }\n";
    let changed = text
        .replacen(
            "    plugin: sim-duplex\n",
            &format!("    plugin: sim-duplex\n{faults}"),
            1,
        )
        .replacen("  approvals:\n", &format!("{retries}  approvals:\n"), 1);
    assert!(
        changed.contains(faults) && changed.contains(retries),
        "{changed}"
    );
    std::fs::write(&path, changed).unwrap();
    git(repo, &["commit", "-qam", "the split fails once"]);
}

#[test]
fn a_failed_request_held_for_a_person_is_retried_from_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo_of(dir.path(), "policies/approvals.yaml");
    fail_the_split_once(&repo);
    let agent = start_agent(dir.path(), &repo);
    agent.wait_for("the agent answers", |_| true);
    let token = token_of(&agent);
    let console = Console::open(Engine::Chromium, &agent, dir.path());

    // The split fails; the policy allows no retry there, so the session
    // stops, Broken, and waits for a person. The status bar says so in red,
    // with the request, its attempt and why it failed.
    let v = console.until("Broken, waiting for a retry", |v| {
        v["conn"] == "connected" && v["status"] == "Broken" && enabled(v, "retry")
    });
    let session = v["session"].as_str().unwrap().to_string();
    assert_eq!(v["state"], "Split", "{v}");
    assert_eq!(v["tone"], "bad", "{v}");
    assert_eq!(v["phase"], "failed", "{v}");
    assert_eq!(
        v["request"],
        "op/split · attempt 1 · failed: op/split: split failed (injected failure 1 of 1)",
        "{v}"
    );
    let held = v["held"].as_str().unwrap();
    assert!(
        held.contains("Split failed 1 time(s), its retries (0) are used up"),
        "{v}"
    );
    // What the server lists next (the page has no resume: the agent runs it).
    assert_eq!(v["enabled"], json!(["retry", "abort"]), "{v}");
    // The tree: the split's first attempt, failed, with its reason.
    let v = console.until("the failed attempt in the tree", |v| {
        v["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|a| a["outcome"] == "failed"))
    });
    assert_eq!(
        v["attempts"],
        json!([
            {"title": "request, attempt 1", "outcome": "ok"},
            {"title": "request, attempt 1: request failed: Broken: op/split: split failed (injected failure 1 of 1)",
             "outcome": "failed"},
        ]),
        "{v}"
    );
    console.screenshot("broken");

    // Retried from the page: the dialog gives the server's consequence;
    // the request runs again and the session goes on to the approval
    // before Merge.
    console.command(
        "retry",
        "The failed request of Split runs again from its start (attempt 2).",
        Some(("ops-oncall", &token)),
        "the link is back",
    );
    let accepted = console.message("retry accepted");
    assert_eq!(accepted["kind"], "ok", "{accepted}");
    let v = console.until("the split done on the second attempt", |v| {
        v["waiting"] == "Merge"
            && enabled(v, "approve")
            && v["attempts"][2] == json!({"title": "request, attempt 2", "outcome": "ok"})
    });
    assert_eq!(v["session"], session.as_str(), "{v}");
    assert_eq!(v["state"], "Split", "{v}");
    assert_eq!(v["status"], "Ready", "{v}");
    assert_eq!(v["tone"], "ok", "{v}");
    // The request's last step, its attempt, its phase.
    assert!(
        v["request"]
            .as_str()
            .is_some_and(|r| r.ends_with(" · attempt 2 · done")),
        "{v}"
    );
    assert_eq!(v["held"], "", "{v}");
    assert_eq!(v["enabled"], json!(["approve", "hold", "abort"]), "{v}");
    assert_eq!(v["attempts"].as_array().unwrap().len(), 3, "{v}");
    console.screenshot("retried");
}
