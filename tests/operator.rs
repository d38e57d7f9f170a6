//! Operators' commands reach the process that runs the session: `duplex
//! abort`, `hold`, `approve` from another shell while a foreground `duplex
//! apply` runs (through the state dir's control socket), and `release`
//! when nobody runs it (taking the lock).

mod support;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A foreground `duplex apply` of the demo policy (about 15 s long).
fn start_demo(site: &Site) -> Child {
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(site.state_dir())
        .args(["apply", "policies/demo.yaml"])
        .env("DUPLEX_OPERATOR", "runner")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.spawn().expect("duplex apply starts")
}

/// Wait until the running session is in `state`.
fn wait_for_state(site: &Site, state: &str) {
    let started = Instant::now();
    loop {
        let out = site.duplex(&["status", "--output", "json"]);
        if out.code == 0 {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            if v["state"] == state {
                return;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the session never reached {state}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(child: Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().expect("exited"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

#[test]
fn abort_from_another_shell_reaches_a_foreground_apply() {
    let site = Site::new();
    let apply = start_demo(&site);
    wait_for_state(&site, "Split");
    assert!(site.state_dir().join("duplex.sock").exists());
    // A command the model refuses says why, and changes nothing.
    let refused = site.duplex_as("alice", &["approve"]);
    assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
    assert!(
        refused
            .stderr
            .contains("nothing to approve: the session is in Split"),
        "{}",
        refused.stderr
    );
    let nothing = site.duplex_as("alice", &["release"]);
    assert_eq!(nothing.code, 1);
    assert!(
        nothing.stderr.contains("nothing to release"),
        "{}",
        nothing.stderr
    );
    // The abort is accepted by the running duplex, not by a second runner.
    let out = site.duplex_as("alice", &["abort", "--reason", "the change window ended"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("abort accepted by the duplex running session"),
        "{}",
        out.stdout
    );
    let apply = finish(apply);
    assert_eq!(apply.code, 3, "{}{}", apply.stdout, apply.stderr);
    assert!(apply.stdout.contains("Upgrade aborted and finished"));
    let log = site.log_text();
    assert!(
        !log.contains("alice asked to approve"),
        "a refused command is not recorded:\n{log}"
    );
    for needle in [
        "alice asked to abort: the change window ended",
        "abort requested by alice",
        "ABORT: restore the original configuration",
        "session ended: Aborted",
    ] {
        assert!(log.contains(needle), "log lacks `{needle}`:\n{log}");
    }
    // The socket is gone with the run: commands take the lock again.
    assert!(!site.state_dir().join("duplex.sock").exists());
}

#[test]
fn hold_stops_a_foreground_apply_and_release_carries_it_on() {
    let site = Site::new();
    let apply = start_demo(&site);
    wait_for_state(&site, "Split");
    let usage = site.duplex(&["hold"]);
    assert_eq!(usage.code, 2, "a hold needs a reason: {}", usage.stderr);
    let out = site.duplex_as("bob", &["hold", "--reason", "disk alarms on the partner"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let apply = finish(apply);
    assert_eq!(apply.code, 5, "{}{}", apply.stdout, apply.stderr);
    assert!(
        apply
            .stdout
            .contains("Held for a person: held by bob: disk alarms on the partner"),
        "{}",
        apply.stdout
    );
    let status = site.status_json();
    assert_eq!(status["held"], "held by bob: disk alarms on the partner");
    let next = status["next"].as_array().unwrap();
    assert!(next.contains(&serde_json::json!("release")), "{status}");
    assert!(!next.contains(&serde_json::json!("hold")), "{status}");
    // Held twice is refused; release (nobody runs it: it takes the lock).
    let again = site.duplex_as("bob", &["hold", "--reason", "again"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("already held"), "{}", again.stderr);
    let out = site.duplex_as(
        "carol",
        &["release", "--reason", "alarms were a sensor fault"],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Upgrade committed and finished"),
        "{}",
        out.stdout
    );
    let log = site.log_text();
    assert!(
        log.contains("bob asked to hold: disk alarms on the partner"),
        "{log}"
    );
    assert!(
        log.contains("carol asked to release: alarms were a sensor fault"),
        "{log}"
    );
    assert!(log.contains("hold released by carol"), "{log}");
}

#[test]
fn a_command_with_nobody_running_and_no_session_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("never");
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(&state)
        .args(["hold", "--reason", "x"]);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(!state.exists());
}
