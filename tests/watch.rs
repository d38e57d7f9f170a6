//! `duplex watch` in a real terminal (a detached tmux session): it shows
//! the session a background `duplex apply --wait` runs, sends an approval
//! after its confirmation so the session goes on to commit, quits on `q`
//! with exit code 0 and gives the terminal back (the alternate screen
//! left, the cursor shown). The same against a real agent
//! (`duplex watch --agent`): its session followed, approved through the
//! agent's API, the agent's refusal shown. Also `duplex apply` on a
//! terminal: its long steps drawn as progress bars. tmux comes from
//! scripts/install-test-deps.sh.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::agent::{policy_repo_of, start_agent};
use support::*;

/// Generous: the machine may be busy; nothing here is timed.
const DEADLINE: Duration = Duration::from_secs(180);

/// A tmux server of this test's own (its socket in the test's temp dir),
/// killed when dropped.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// A detached 120×40 session running `command` through `sh -c`.
    fn start(dir: &Path, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let out = tmux
            .cmd()
            .args(["new-session", "-d", "-x", "120", "-y", "40", command])
            .output()
            .expect("tmux runs (scripts/install-test-deps.sh installs it)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    fn capture(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let out = self.cmd().args(["display", "-p", format]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn keys(&self, keys: &str) {
        let out = self.cmd().args(["send-keys", keys]).output().unwrap();
        assert!(out.status.success());
    }

    /// Wait until the screen shows every one of `needles`; the screen.
    fn wait_for(&self, needles: &[&str]) -> String {
        let started = Instant::now();
        loop {
            let screen = self.capture();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the screen never showed {needles:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// On a session waiting in Split for its approval before Merge: `r` is
    /// refused by the console itself (retry is not among the session's
    /// next commands); `a` asks a confirmation that says what the approval
    /// will do; `y` sends it.
    fn refuse_a_retry_then_approve(&self) {
        self.keys("r");
        self.wait_for(&["retry is not possible now (the session is in Split)"]);
        self.keys("a");
        self.wait_for(&["Confirm: approve", "The merge process starts"]);
        self.keys("y");
    }

    /// `q` quits the console (started by [`reporting_exit`] with the word
    /// `watch`): exit code 0, and the terminal given back — main screen,
    /// cursor shown, the console's frame gone from it.
    fn quit_and_expect_the_terminal_back(&self, exit_file: &Path) {
        self.keys("q");
        let screen = self.wait_for(&["watch-exited"]);
        assert_eq!(
            std::fs::read_to_string(exit_file).unwrap().trim(),
            "0",
            "{screen}"
        );
        assert_eq!(self.display("#{alternate_on}"), "0");
        assert_eq!(self.display("#{cursor_flag}"), "1");
        assert!(!screen.contains("Activity"), "{screen}");
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

/// `VAR=value … duplex ARGS` as a shell command line, run as `operator`.
fn duplex_line(operator: &str, args: &str) -> String {
    format!(
        "DUPLEX_CACHE_DIR='{}' DUPLEX_OPERATOR={operator} '{}' {args}",
        plugin_cache_dir().display(),
        env!("CARGO_BIN_EXE_duplex"),
    )
}

/// `duplex --state-dir <site's> ARGS` as a shell command line.
fn shell_line(site: &Site, operator: &str, args: &str) -> String {
    let state = site.state_dir();
    duplex_line(
        operator,
        &format!("--state-dir '{}' {args}", state.display()),
    )
}

/// `line`, then its exit code written to `exit_file` and `<word>-exited`
/// on the screen; the pane stays open to be read.
fn reporting_exit(line: &str, exit_file: &Path, word: &str) -> String {
    format!(
        "{line}; echo $? > '{}'; echo {word}-exited; sleep 600",
        exit_file.display()
    )
}

#[test]
fn watch_in_a_terminal_approves_a_waiting_session_and_gives_the_terminal_back() {
    let site = Site::new();
    let policy = site.policy("", "  approvals:\n    - before: Merge\n");
    let mut apply = duplex();
    apply
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["apply", "--wait"])
        .arg(&policy)
        .env("DUPLEX_OPERATOR", "runner")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let apply = apply.spawn().expect("duplex apply starts");
    // Waiting for the approval, in the foreground run (its socket served).
    let started = Instant::now();
    while site.status_json()["waitingFor"].is_null() {
        assert!(started.elapsed() < DEADLINE, "the session never waited");
        std::thread::sleep(Duration::from_millis(100));
    }
    let exit_file = site.dir.path().join("watch-exit");
    let tmux = Tmux::start(
        site.dir.path(),
        &reporting_exit(&shell_line(&site, "ops", "watch"), &exit_file, "watch"),
    );
    let screen = tmux.wait_for(&[
        "State Split",
        "Status Ready",
        "Partner Up",
        "WAITING for approval before Merge",
        "test-upgrade on sim-test",
    ]);
    assert_eq!(tmux.display("#{alternate_on}"), "1", "{screen}");
    tmux.refuse_a_retry_then_approve();
    tmux.wait_for(&["approve accepted by the duplex running session"]);
    tmux.wait_for(&["COMMITTED and finished"]);
    let out = apply.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(site.log_text().contains("ops asked to approve"));
    tmux.quit_and_expect_the_terminal_back(&exit_file);
}

/// Where an agent's session waits for an approval (`Merge`, `Commit`).
fn agent_waits_before(v: &serde_json::Value) -> Option<&str> {
    v["status"]["session"]["waitingFor"]["point"].as_str()
}

#[test]
fn watch_follows_an_agent_approves_through_its_api_and_shows_its_refusal() {
    let dir = tempfile::tempdir().unwrap();
    // Approvals before Merge by ops-oncall, before Commit by change-board.
    let repo = policy_repo_of(dir.path(), "policies/approvals.yaml");
    let agent = start_agent(dir.path(), &repo);
    let v = agent.wait_for("the agent's session waits for approval before Merge", |v| {
        agent_waits_before(v) == Some("Merge")
    });
    let session = v["status"]["session"]["id"].as_str().unwrap().to_string();
    // The git commit the agent runs, shown beside the policy's digest.
    let revision = format!(
        "revision {}",
        v["agent"]["desired"]["revision"].as_str().unwrap()
    );
    let exit_file = dir.path().join("watch-exit");
    let token_file = agent.state.join("agent/token");
    let watch = format!(
        "watch --agent '{}' --token-file '{}'",
        agent.url(""),
        token_file.display()
    );
    let tmux = Tmux::start(
        dir.path(),
        &reporting_exit(&duplex_line("ops-oncall", &watch), &exit_file, "watch"),
    );
    let screen = tmux.wait_for(&[
        &format!("duplex watch: agent {}", agent.url("")),
        &session,
        "firmware-with-approvals on sim-ft-02",
        "Policy firmware-with-approvals   sha256 ",
        &revision,
        "State Split",
        "WAITING for approval before Merge (approvers: ops-oncall)",
        "possible now: approve",
    ]);
    assert_eq!(tmux.display("#{alternate_on}"), "1", "{screen}");
    // As ops-oncall: sent to the agent, accepted.
    tmux.refuse_a_retry_then_approve();
    tmux.wait_for(&["approve accepted by the agent for session"]);
    // The session goes on to the next approval point; the screen follows.
    agent.wait_for(
        "the agent's session waits for approval before Commit",
        |v| agent_waits_before(v) == Some("Commit"),
    );
    tmux.wait_for(&[
        "State Merge",
        "WAITING for approval before Commit (approvers: change-board)",
        "approved before Merge by ops-oncall",
    ]);
    // ops-oncall may not approve before Commit: the agent refuses, and the
    // screen shows its reason; the session still waits.
    tmux.keys("a");
    tmux.wait_for(&["Confirm: approve"]);
    tmux.keys("y");
    tmux.wait_for(&[
        "refused: ops-oncall may not approve before Commit: the policy names change-board",
    ]);
    let v = agent.wait_for("the status answers", |_| true);
    assert_eq!(agent_waits_before(&v), Some("Commit"), "{v}");
    tmux.quit_and_expect_the_terminal_back(&exit_file);
}

#[test]
fn watch_gives_the_terminal_back_on_sigterm() {
    let site = Site::new();
    let pid_file = site.dir.path().join("watch-pid");
    let exit_file = site.dir.path().join("watch-exit");
    // `$!` of a background job is the console's own pid; `wait` keeps the
    // job in the foreground's place for its exit code.
    let tmux = Tmux::start(
        site.dir.path(),
        &reporting_exit(
            &format!(
                "{} & echo $! > '{}'; wait $!",
                shell_line(&site, "ops", "watch"),
                pid_file.display()
            ),
            &exit_file,
            "watch",
        ),
    );
    let screen = tmux.wait_for(&["No session yet"]);
    assert_eq!(tmux.display("#{alternate_on}"), "1", "{screen}");
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let kill = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .status()
        .unwrap();
    assert!(kill.success());
    let screen = tmux.wait_for(&["watch-exited"]);
    // Exit code 7: stopped by a signal, as the other verbs say it.
    assert_eq!(std::fs::read_to_string(&exit_file).unwrap().trim(), "7");
    assert_eq!(tmux.display("#{alternate_on}"), "0", "{screen}");
    assert_eq!(tmux.display("#{cursor_flag}"), "1");
}

/// Whether a screen line is a progress bar: `[` 30 of `#>-` `]` then a
/// percentage.
fn is_progress_bar(line: &str) -> bool {
    line.char_indices().any(|(i, c)| {
        c == '['
            && line[i + 1..].chars().take(30).all(|b| "#>-".contains(b))
            && line[i + 1..].chars().nth(30) == Some(']')
            && line[i..].contains('%')
    })
}

#[test]
fn apply_on_a_terminal_draws_long_steps_as_progress_bars() {
    let site = Site::new();
    let exit_file = site.dir.path().join("apply-exit");
    // The demo policy paces its simulated steps (about 15 s): its
    // operations and installs report progress while they run.
    let tmux = Tmux::start(
        site.dir.path(),
        &reporting_exit(
            &format!(
                "cd '{}' && {}",
                repo_root().display(),
                shell_line(&site, "ops", "apply policies/demo.yaml")
            ),
            &exit_file,
            "apply",
        ),
    );
    let started = Instant::now();
    let bar = loop {
        let screen = tmux.capture();
        if let Some(line) = screen.lines().find(|l| is_progress_bar(l)) {
            break line.to_string();
        }
        assert!(
            !screen.contains("apply-exited"),
            "no progress bar was seen before apply ended:\n{screen}"
        );
        assert!(started.elapsed() < DEADLINE, "no progress bar:\n{screen}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        bar.contains("op/") || bar.contains("install/") || bar.contains("verification"),
        "{bar}"
    );
    let screen = tmux.wait_for(&["apply-exited"]);
    assert_eq!(
        std::fs::read_to_string(&exit_file).unwrap().trim(),
        "0",
        "{screen}"
    );
    assert!(
        screen.contains("Upgrade committed and finished"),
        "{screen}"
    );
    // Bars are cleared once their step ends: none is left on the screen.
    assert!(!screen.lines().any(is_progress_bar), "{screen}");
}
