//! The console's screens through real sessions: the simulated system's
//! plugins driven by the application layer on a simulated clock over a
//! temporary state dir, read back by the console's local source and drawn
//! on ratatui's `TestBackend`. One snapshot per screen (`snapshots/`; with
//! `CI=true` insta writes none, so a missing one fails).

use super::model::{Intent, WatchView};
use super::source::LocalSource;
use duplex_core::app::{App, AppConfig, Operator, OperatorRequest, OperatorVerb, RunOptions};
use duplex_core::cancel::Cancel;
use duplex_core::clock::SimulatedClock;
use duplex_core::engine::sink::NoSink;
use duplex_core::engine::{Outcome, Stop};
use duplex_core::model::UpgradeState;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const START_MS: u64 = 1_800_000_000_000;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn plugin_digest(name: &str) -> String {
    let sums = std::fs::read_to_string(repo_root().join("plugins/dist/SHA256SUMS")).unwrap();
    sums.lines()
        .find(|l| l.ends_with(&format!(" {name}.wasm")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string()
}

/// A session on the simulated system: a policy (`target_with` for
/// sim-duplex, `spec` appended to its spec) in a temporary dir, and the
/// application layer over its state dir on a simulated clock.
struct Scene {
    dir: tempfile::TempDir,
    app: Arc<App>,
}

impl Scene {
    fn new(target_with: &str, spec: &str) -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let root = repo_root();
        let text = format!(
            "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata:
  name: console-test
spec:
  target:
    name: sim-test
    plugin: sim-duplex
    with: {{time-scale: 0{target_with}}}
  software:
    - name: acme-app
      version: \"2.4.1\"
      source: {root}/policies/artifacts/acme-app-2.4.1.pkg
      sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5
  plugins:
    - name: sim-duplex
      source: {root}/plugins/dist/sim-duplex.wasm
      sha256: {d}
      capabilities: {{storage: true, storageNamespace: sim}}
    - name: sim-checks
      source: {root}/plugins/dist/sim-checks.wasm
      sha256: {c}
      capabilities: {{storage: true, storageNamespace: sim}}
{spec}",
            root = root.display(),
            d = plugin_digest("sim-duplex"),
            c = plugin_digest("sim-checks"),
        );
        std::fs::write(dir.path().join("policy.yaml"), text).unwrap();
        let app = App::new(AppConfig {
            state_dir: dir.path().join("state"),
            // The compiled plugins the integration tests share.
            cache_dir: Some(root.join("target/tmp/plugin-cache")),
            clock: SimulatedClock::starting_at(START_MS),
            pacing: Default::default(),
        });
        Scene {
            dir,
            app: Arc::new(app),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn apply(&self, until: Option<UpgradeState>) -> Stop {
        let policy = duplex_core::policy::load_file(&self.dir.path().join("policy.yaml")).unwrap();
        let options = RunOptions {
            until,
            ..Default::default()
        };
        Self::runtime()
            .block_on(
                self.app
                    .apply(policy, options, Box::new(NoSink), Cancel::new()),
            )
            .unwrap()
            .stop
    }

    fn operate(&self, verb: OperatorVerb, by: &Operator, reason: &str) -> Stop {
        let request = OperatorRequest {
            verb,
            by: by.0.clone(),
            reason: Some(reason.into()),
        };
        Self::runtime()
            .block_on(self.app.operate(
                request,
                RunOptions::default(),
                Box::new(NoSink),
                Cancel::new(),
            ))
            .unwrap()
            .stop
    }

    /// The console's view of the state dir, as `duplex watch` reads it.
    fn view(&self) -> WatchView {
        let mut source = LocalSource::new(self.app.clone());
        let mut view = WatchView::new("state dir (a temporary one)".into());
        view.update(source.read().unwrap());
        view
    }

    /// The screen, 110×34, with what differs between runs (the temporary
    /// dir, the session id, the policy's digest, this process's pid)
    /// replaced.
    fn screen(&self, view: &WatchView) -> String {
        let mut terminal = Terminal::new(TestBackend::new(110, 34)).unwrap();
        terminal
            .draw(|frame| super::render::draw(frame, view))
            .unwrap();
        let mut text = terminal.backend().to_string();
        if let Some(s) = view.session() {
            text = text.replace(&s.id.to_string(), "[session id]");
            // The policy names plugins by the checkout's absolute path, so
            // its digest differs from one checkout to another.
            let digest = s.session.policy_digest.get(..12).unwrap_or_default();
            text = text.replace(&format!("sha256 {digest}"), "sha256 [policy sha]");
        }
        let dir = self.dir.path().display().to_string();
        // A resume records the pid of the process that resumed: this one.
        let pid = format!("pid {}", std::process::id());
        let text = text.replace(&dir, "[dir]");
        text.lines()
            .map(|line| same_width(line, &pid, "pid [this]"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// `line` with `from` replaced by `to`, the run of padding after it
/// widened or narrowed so the columns to its right stay where they were (a
/// pid's number of digits varies from run to run).
fn same_width(line: &str, from: &str, to: &str) -> String {
    let Some(at) = line.find(from) else {
        return line.to_string();
    };
    let (head, rest) = line.split_at(at);
    let rest = &rest[from.len()..];
    let grow = to.chars().count() as isize - from.chars().count() as isize;
    let Some(pad) = rest.find("  ") else {
        return format!("{head}{to}{rest}");
    };
    let (before, after) = rest.split_at(pad);
    let spaces = after.len() - after.trim_start_matches(' ').len();
    let wanted = (spaces as isize - grow).max(1) as usize;
    format!(
        "{head}{to}{before}{}{}",
        " ".repeat(wanted),
        after.trim_start_matches(' ')
    )
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

#[test]
fn watch_screen_waiting_for_approval() {
    let scene = Scene::new(
        "",
        "  approvals:\n    - before: Merge\n      approvers: [ops-oncall]\n",
    );
    assert!(matches!(scene.apply(None), Stop::WaitingForApproval(_)));
    let mut view = scene.view();
    insta::assert_snapshot!("waiting_for_approval", scene.screen(&view));
    // `a`: the confirmation shows what the core says an approval does.
    assert_eq!(view.key(key(KeyCode::Char('a'))), Intent::Nothing);
    insta::assert_snapshot!("waiting_for_approval_confirm", scene.screen(&view));
    assert_eq!(
        view.key(key(KeyCode::Char('y'))),
        Intent::Send {
            verb: OperatorVerb::Approve,
            reason: None
        }
    );
}

#[test]
fn watch_screen_broken_then_retry() {
    let scene = Scene::new(
        ", faults: {fail: {split: 3}}",
        "  retries: {default: {limit: 1, backoff: {initial: 10ms, jitter: 0}}}\n  autoAbort: [{when: retriesExhausted, action: hold}]\n",
    );
    assert!(matches!(scene.apply(None), Stop::Held(_)));
    let mut view = scene.view();
    // Approve is not possible while Broken: refused in the console.
    view.key(key(KeyCode::Char('a')));
    insta::assert_snapshot!("broken", scene.screen(&view));
    view.key(key(KeyCode::Char('r')));
    insta::assert_snapshot!("broken_retry_confirm", scene.screen(&view));
}

#[test]
fn watch_screen_committed() {
    let scene = Scene::new("", "");
    assert_eq!(scene.apply(None), Stop::Ended(Outcome::Committed));
    let mut view = scene.view();
    // The first state closed, the second's attempt selected.
    view.key(key(KeyCode::Home));
    view.key(key(KeyCode::Down));
    view.key(key(KeyCode::Enter));
    view.key(key(KeyCode::Down));
    view.key(key(KeyCode::Down));
    insta::assert_snapshot!("committed", scene.screen(&view));
}

#[test]
fn watch_screen_aborted_with_a_hold_reason_typed_first() {
    let scene = Scene::new("", "");
    assert_eq!(
        scene.apply(Some(UpgradeState::Split)),
        Stop::Reached(UpgradeState::Split)
    );
    let mut view = scene.view();
    // A hold asks its reason before its confirmation.
    view.key(key(KeyCode::Char('h')));
    for c in "disk alarm".chars() {
        view.key(key(KeyCode::Char(c)));
    }
    insta::assert_snapshot!("hold_reason", scene.screen(&view));
    view.key(key(KeyCode::Esc));
    let alice = Operator("alice".into());
    assert_eq!(
        scene.operate(OperatorVerb::Abort, &alice, "the change window ended"),
        Stop::Ended(Outcome::Aborted)
    );
    let view = scene.view();
    insta::assert_snapshot!("aborted", scene.screen(&view));
}
