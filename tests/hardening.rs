//! Defects found by trying Duplex as a new operator, a vendor and an
//! attacker would (issue 7), each locked by a run of the `duplex` binary
//! that failed before its fix.

mod support;
#[path = "support/wat.rs"]
mod wat;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// Wait for a child, killing it (and failing) if it outlives `limit`: a
/// watchdog, so a regression shows as a failure rather than a hung suite.
fn wait_within(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(child.id() as i32, sig) };
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    err
}

/// Wait until the latest session's journal says something.
fn wait_for_record(site: &Site, needle: &str, what: &str) {
    let t0 = Instant::now();
    while !site.records().contains(needle) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{what}: never saw {needle}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ─── 1. A closed pipe ───────────────────────────────────────────────────────

#[test]
fn a_closed_pipe_ends_the_output_not_the_command_nor_the_session() {
    let site = Site::new();
    site.policy("", GATES);
    // `duplex apply --output json | head -2`: the reader goes after two lines.
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["--output", "json", "apply"])
        .arg(site.policy_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    out.read_line(&mut String::new()).unwrap();
    drop(out);
    let status = wait_within(&mut child, Duration::from_secs(120), "apply | head -2");
    let err = stderr_of(&mut child);
    assert_eq!(
        status.code(),
        Some(0),
        "the session carries on to its end: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let status = site.status_json();
    assert_eq!(status["outcome"], "committed");
    assert_eq!(status["finished"], true);
    // The live JSON stream starts with the session's first record.
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert_eq!(first["seq"], 1);
    assert_eq!(first["event"]["event"], "sessionStarted");

    // `duplex log | head -1` and `duplex plan --output json | head -1`.
    for args in [
        vec!["log".to_string()],
        vec![
            "--output".into(),
            "json".into(),
            "plan".into(),
            site.policy_path().display().to_string(),
        ],
    ] {
        let mut child = duplex()
            .arg("--state-dir")
            .arg(site.state_dir())
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut String::new()).unwrap();
        drop(out);
        let status = wait_within(&mut child, Duration::from_secs(60), "| head -1");
        let err = stderr_of(&mut child);
        assert_eq!(status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

// ─── 2. Another policy's session in flight ─────────────────────────────────

#[test]
fn apply_refuses_to_carry_on_another_policys_session() {
    let site = Site::new();
    site.policy("", GATES);
    assert_eq!(site.apply(&["--until", "PrepareSplit"]).code, 6);
    let session = site.status_json()["session"].as_str().unwrap().to_string();
    let before = site.records();
    let text = std::fs::read_to_string(site.policy_path()).unwrap();
    for (what, other) in [
        (
            "another policy",
            text.replace("name: test-upgrade", "name: other-upgrade"),
        ),
        (
            "another target",
            text.replace("name: sim-test", "name: sim-other"),
        ),
    ] {
        let file = site.dir.path().join("other.yaml");
        std::fs::write(&file, other).unwrap();
        let out = site.duplex(&["apply", file.to_str().unwrap()]);
        assert_eq!(out.code, 1, "{what}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains(&format!(
                "session {session} of policy test-upgrade on sim-test is in flight"
            )) && out.stderr.contains("`duplex resume`")
                && out.stderr.contains("`duplex abort`"),
            "{what}: {}",
            out.stderr
        );
        assert_eq!(site.records(), before, "{what}: nothing was written");
    }
    // A changed version of the same policy is drift, and carries on.
    let changed = text.replace(
        "name: test-upgrade",
        "name: test-upgrade\n  description: edited",
    );
    std::fs::write(site.policy_path(), changed).unwrap();
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(site.log_text().contains("policy drift"));
}

// ─── 8. Smaller ones ────────────────────────────────────────────────────────

#[test]
fn commands_on_a_missing_state_dir_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("never-used");
    for verb in ["abort", "retry", "resume", "approve"] {
        let out = run(duplex().arg("--state-dir").arg(&state).arg(verb));
        assert_eq!(out.code, 1, "{verb}: {}", out.stderr);
        assert!(
            out.stderr.contains("no upgrade session is in progress"),
            "{verb}: {}",
            out.stderr
        );
        assert!(!state.exists(), "{verb} created {}", state.display());
    }
}

#[test]
fn status_tells_a_runner_preparing_a_session_from_an_empty_state_dir() {
    let site = Site::new();
    let out = site.duplex(&["status"]);
    assert!(
        out.stdout.starts_with("Idle: no upgrade session has run"),
        "{}",
        out.stdout
    );
    // A runner holds the lock (this test process, as `apply` does while it
    // compiles plugins) and has written no session yet.
    let _lock = duplex_core::journal::StateDir::lock(site.state_dir()).unwrap();
    let out = site.duplex(&["status"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("a runner (pid {}", std::process::id()))
            && out.stdout.contains("is preparing one"),
        "{}",
        out.stdout
    );
    assert_eq!(
        site.status_json()["runnerPid"],
        serde_json::json!(std::process::id())
    );
}

#[test]
fn the_first_run_says_it_compiles_plugins_and_times_say_utc() {
    let site = Site::new();
    site.policy("", "");
    let cache = site.dir.path().join("fresh-cache");
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(site.state_dir())
        .arg("apply")
        .arg(site.policy_path())
        .env("DUPLEX_CACHE_DIR", &cache);
    let first = run(&mut cmd);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains("compiling plugin `sim-duplex`")
            && first.stderr.contains("compiling plugin `sim-checks`"),
        "{}",
        first.stderr
    );
    assert!(first.stdout.contains("; times are UTC"), "{}", first.stdout);
    let second = run(&mut cmd);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(!second.stderr.contains("compiling"), "{}", second.stderr);
    assert!(site.log_text().starts_with("(times are UTC)\n"));
}

#[test]
fn validate_compiles_each_plugin_once_into_the_per_user_cache() {
    // Without `$DUPLEX_CACHE_DIR`, `validate` uses the same per-user cache
    // as `apply`: the first run compiles, later runs only load. (Root's
    // cache is the system one, shared with whatever else runs as root: only
    // this policy's entries are removed, which costs the others a compile.)
    let site = Site::new();
    site.policy("", GATES);
    let home = site.dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    // SAFETY: geteuid has no preconditions.
    let cache = if unsafe { libc::geteuid() } == 0 {
        std::path::PathBuf::from("/var/cache/duplex/plugins")
    } else {
        home.join(".cache/duplex/plugins")
    };
    let digests = [plugin_digest("sim-duplex"), plugin_digest("sim-checks")];
    for entry in std::fs::read_dir(&cache).into_iter().flatten() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if digests.iter().any(|d| name.starts_with(d.as_str())) {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let validate = || {
        let mut cmd = duplex();
        cmd.env_remove("DUPLEX_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", &home)
            .arg("validate")
            .arg(site.policy_path());
        let out = run(&mut cmd);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
        assert!(out.stdout.contains(": valid"), "{}", out.stdout);
    };
    let entries = || -> Vec<(String, std::time::SystemTime)> {
        let mut v: Vec<_> = std::fs::read_dir(&cache)
            .map(|d| d.map(|e| e.unwrap()).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.ends_with(".cwasm") && digests.iter().any(|d| name.starts_with(d.as_str()))
            })
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                (name, e.metadata().unwrap().modified().unwrap())
            })
            .collect();
        v.sort();
        v
    };
    validate();
    let first = entries();
    for digest in &digests {
        assert!(
            first
                .iter()
                .any(|(name, _)| name.starts_with(digest.as_str())),
            "no cache entry for {digest} in {first:?}"
        );
    }
    validate();
    assert_eq!(entries(), first, "the second validate rewrote the cache");
}

#[test]
fn history_has_a_header_and_says_where_each_session_ended() {
    let site = Site::new();
    site.policy("", GATES);
    assert_eq!(site.apply(&[]).code, 0);
    assert_eq!(site.apply(&["--until", "Split"]).code, 6);
    assert_eq!(site.duplex(&["abort"]).code, 3);
    let out = site.duplex(&["history"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("SESSION") && lines[0].contains("OUTCOME"),
        "{}",
        out.stdout
    );
    assert!(
        lines[1].contains("committed") && lines[1].contains("Commit"),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].contains("aborted") && lines[2].contains("from Split"),
        "{}",
        out.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&site.duplex(&["history", "--output", "json"]).stdout).unwrap();
    assert_eq!(json[1]["abortedFrom"], "Split");
}

#[test]
fn help_lists_the_exit_codes_and_examples() {
    let out = duplex_run(&["--help"]);
    assert_eq!(out.code, 0);
    for needle in [
        "Exit codes:",
        "  5  held for a person: Broken (duplex retry or duplex abort) or held (duplex release)",
        "  7  interrupted by SIGINT/SIGTERM",
        "Examples:",
        "duplex validate policies/*.yaml",
        "DUPLEX_OPERATOR",
    ] {
        assert!(
            out.stdout.contains(needle),
            "no `{needle}` in:\n{}",
            out.stdout
        );
    }
}

// ─── 13. Unpaced polling ────────────────────────────────────────────────────

#[test]
fn an_operation_pending_forever_is_paced_and_journaled_compactly() {
    let site = Site::new();
    let wat = wat::assemble(Some("pending-forever"));
    let plugin = site.dir.path().join("pending-forever.wasm");
    std::fs::write(&plugin, &wat).unwrap();
    let app = repo_root().join("policies/artifacts/acme-app-2.4.1.pkg");
    std::fs::write(
        site.policy_path(),
        format!(
            "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata: {{name: pending}}
spec:
  target: {{name: stuck, plugin: stuck}}
  software:
    - {{name: acme-app, version: '2.4.1', source: {app}, sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5}}
  plugins:
    - {{name: stuck, source: {plugin}, sha256: {digest}}}
",
            app = app.display(),
            plugin = plugin.display(),
            digest = sha256_hex(wat.as_bytes()),
        ),
    )
    .unwrap();
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .arg("apply")
        .arg(site.policy_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_record(&site, r#""request":"op/split""#, "the split polls");
    // Three seconds of a plugin that asks to be called again at once.
    std::thread::sleep(Duration::from_secs(3));
    signal(&child, libc::SIGTERM);
    let status = wait_within(&mut child, Duration::from_secs(30), "apply after SIGTERM");
    assert_eq!(status.code(), Some(7), "{}", stderr_of(&mut child));
    let journal = site.records();
    let polls = journal.matches(r#""request":"op/split""#).count();
    assert_eq!(polls, 1, "identical answers are journaled once:\n{journal}");
    assert!(journal.lines().count() < 20, "{journal}");
    assert!(
        journal.contains(r#""event":"interrupted","why":"SIGTERM""#),
        "{journal}"
    );
}

// ─── 15. The policy is read once ────────────────────────────────────────────

#[test]
fn a_policy_from_a_pipe_is_read_once_and_kept_as_read() {
    let site = Site::new();
    let path = site.policy("", "");
    let text = std::fs::read(&path).unwrap();
    // `cat policy.yaml | duplex apply /dev/stdin`
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["apply", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &text).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let session_dir = std::fs::read_dir(site.state_dir().join("sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    assert_eq!(
        std::fs::read(session_dir.join("policy.yaml")).unwrap(),
        text
    );

    // A FIFO can only be read once: the session is still what was read.
    let fifo = site.dir.path().join("policy.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer = {
        let (fifo, text) = (fifo.clone(), text.clone());
        std::thread::spawn(move || std::fs::write(fifo, text).unwrap())
    };
    let out = site.duplex(&["apply", fifo.to_str().unwrap()]);
    writer.join().unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(site.status_json()["outcome"], "committed");
}

#[test]
fn an_invalid_policy_on_stdin_says_what_is_wrong() {
    let site = Site::new();
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["apply", "/dev/stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        b"apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\n",
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("/dev/stdin:1:1: missing required field `metadata`"),
        "{err}"
    );
    assert!(
        !site.state_dir().join("sessions").exists(),
        "nothing was written"
    );
}

// ─── 18. Terminal and log injection ─────────────────────────────────────────

#[test]
fn control_characters_from_plugins_never_reach_the_terminal() {
    let site = Site::new();
    let path = site.policy("", "");
    // The install's version is echoed by the plugin in its outcome and log
    // line: a newline that forges a log line and an OSC title escape.
    let forged =
        r#"2.4.1\n12:00:00.000  Idle         Ready   session ended: Committed\e]0;pwned\a"#;
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(r#"version: "2.4.1""#, &format!("version: \"{forged}\""));
    std::fs::write(&path, text).unwrap();
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    for (what, text) in [("live view", out.stdout.clone()), ("log", site.log_text())] {
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{what}: {text:?}"
        );
        assert!(
            !text.lines().any(|l| l.starts_with("12:00:00.000")),
            "{what}: a forged line: {text}"
        );
        assert!(text.contains("2.4.1\\n12:00:00.000"), "{what}: {text}");
    }
    // JSON stays exact: the real characters, escaped by JSON.
    let json = site.duplex(&["log", "--output", "json"]).stdout;
    assert!(
        json.contains(r#"2.4.1\n12:00:00.000"#) && json.contains(r#"\u001b]0;pwned"#),
        "{json}"
    );
}

// ─── 24. Abort from what the session pinned ─────────────────────────────────

/// A site whose plugins and artifact are copies in its own folder, so the
/// test can damage them.
fn site_with_own_copies() -> Site {
    let site = Site::new();
    let root = repo_root();
    for f in ["sim-duplex.wasm", "sim-checks.wasm"] {
        std::fs::copy(root.join("plugins/dist").join(f), site.dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        root.join("policies/artifacts/acme-app-2.4.1.pkg"),
        site.dir.path().join("app.pkg"),
    )
    .unwrap();
    let path = site.policy("", GATES);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            &root
                .join("policies/artifacts/acme-app-2.4.1.pkg")
                .display()
                .to_string(),
            "app.pkg",
        )
        .replace(&format!("{}/", root.join("plugins/dist").display()), "");
    std::fs::write(&path, text).unwrap();
    site
}

#[test]
fn abort_works_whatever_became_of_the_files_the_session_started_from() {
    let site = site_with_own_copies();
    assert_eq!(site.apply(&["--until", "Split"]).code, 6);
    // The installed artifact is deleted, the plugin file replaced, the
    // policy file removed.
    std::fs::remove_file(site.dir.path().join("app.pkg")).unwrap();
    std::fs::write(site.dir.path().join("sim-duplex.wasm"), b"not a plugin").unwrap();
    std::fs::remove_file(site.policy_path()).unwrap();
    let out = site.duplex(&["abort"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert_eq!(site.status_json()["outcome"], "aborted");
}

#[test]
fn without_its_policy_copy_a_session_can_still_be_aborted_and_says_so() {
    let site = site_with_own_copies();
    assert_eq!(site.apply(&["--until", "PrepareMerge"]).code, 6);
    let sessions = site.state_dir().join("sessions");
    let session = std::fs::read_dir(&sessions)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::remove_file(session.join("policy.yaml")).unwrap();
    let status = site.status_json();
    assert_eq!(status["next"], serde_json::json!(["abort"]), "{status}");
    assert!(
        status["policyCopyProblem"]
            .as_str()
            .unwrap()
            .contains("policy.yaml"),
        "{status}"
    );
    let out = site.duplex(&["resume"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains("`duplex abort` still works"),
        "{}",
        out.stderr
    );
    let out = site.duplex(&["abort"]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
}

// ─── 27. Signals ────────────────────────────────────────────────────────────

#[test]
fn sigterm_during_a_hanging_plugin_call_stops_at_once_and_is_recorded() {
    let site = Site::new();
    // The split hangs once, with an hour to run before its deadline.
    let path = site.policy(", faults: {hang: {split: 1}}", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "      capabilities: {storage: true, storageNamespace: sim}\n    - name: sim-checks",
        "      capabilities: {storage: true, storageNamespace: sim}\n      limits: {timeout: 1h}\n    - name: sim-checks",
    );
    std::fs::write(&path, text).unwrap();
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .arg("apply")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env("DUPLEX_OPERATOR", "tester")
        .spawn()
        .unwrap();
    // In Split, Busy: the split call hangs.
    let t0 = Instant::now();
    while !(site.status_json()["state"] == "Split" && site.status_json()["status"] == "Busy") {
        assert!(t0.elapsed() < Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, libc::SIGTERM);
    let status = wait_within(&mut child, Duration::from_secs(60), "apply after SIGTERM");
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(7), "{err}");
    assert!(
        err.contains("SIGTERM: stopping at the next safe point"),
        "{err}"
    );
    assert!(
        site.records()
            .contains(r#""event":"interrupted","why":"SIGTERM""#),
        "{}",
        site.records()
    );
    assert!(site.log_text().contains("runner stopped (SIGTERM)"));
    // The hang was injected once: the resume re-runs the split and goes on.
    let out = site.duplex(&["resume"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn a_sigterm_before_the_session_starts_stops_cleanly_writing_nothing() {
    let site = Site::new();
    site.policy("", "");
    // An empty cache: the plugins compile for a while before anything is
    // written.
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .arg("apply")
        .arg(site.policy_path())
        .env("DUPLEX_CACHE_DIR", site.dir.path().join("empty-cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    signal(&child, libc::SIGTERM);
    let status = wait_within(&mut child, Duration::from_secs(60), "apply after SIGTERM");
    let err = stderr_of(&mut child);
    assert_eq!(
        status.code(),
        Some(7),
        "not killed by the signal: {status:?} {err}"
    );
    assert!(
        err.contains("interrupted (SIGTERM) before the session started; nothing was written"),
        "{err}"
    );
    assert!(
        !site.state_dir().join("sessions").exists()
            || std::fs::read_dir(site.state_dir().join("sessions"))
                .unwrap()
                .next()
                .is_none()
    );
}

// ─── 28. Smaller ────────────────────────────────────────────────────────────

#[test]
fn log_follow_ends_when_the_session_waits_for_a_person() {
    let site = Site::new();
    site.policy("", &format!("{GATES}  approvals: [{{before: Merge}}]\n"));
    assert_eq!(site.apply(&[]).code, 4);
    let mut child = duplex()
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["log", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_within(&mut child, Duration::from_secs(60), "log --follow");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        out.contains("no runner is driving session") && out.contains("`duplex approve`"),
        "{out}"
    );
}

#[test]
fn a_crash_before_the_first_record_leaves_no_session_anywhere() {
    let site = Site::new();
    site.policy("", "");
    let status = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .current_dir(repo_root())
        .env("DUPLEX_CACHE_DIR", plugin_cache_dir())
        .env("DUPLEX_JOURNAL_CRASH", "1:mid-write")
        .arg("--state-dir")
        .arg(site.state_dir())
        .arg("apply")
        .arg(site.policy_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(
        site.duplex(&["status"])
            .stdout
            .starts_with("Idle: no upgrade session has run")
    );
    let log = site.duplex(&["log"]);
    assert!(log.stderr.contains("no session has run"), "{}", log.stderr);
    let resume = site.duplex(&["resume"]);
    assert!(
        resume.stderr.contains("no upgrade session is in progress"),
        "{}",
        resume.stderr
    );
    assert_eq!(site.apply(&[]).code, 0);
}

// ─── 26. The runner's own failures ──────────────────────────────────────────

#[test]
fn a_full_disk_under_plugin_storage_holds_the_session_without_spending_retries() {
    let site = Site::new();
    // Retries and an abort rule that a plugin's failure would use up and fire.
    let policy = site.policy(
        "",
        "  retries: {default: {limit: 3, backoff: {initial: 10ms}}}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let state = site.state_dir();
    let store = state.join("storage/sim");
    std::fs::create_dir_all(&store).unwrap();
    // In a user and mount namespace of its own: the plugins' store is a
    // 4 KiB tmpfs, full before the run starts; the journal is not on it.
    let script = format!(
        "mount -t tmpfs -o size=4k tmpfs {store} && (head -c 65536 /dev/zero > {store}/fill 2>/dev/null; true) && exec {duplex} --state-dir {state} apply {policy}",
        store = store.display(),
        duplex = env!("CARGO_BIN_EXE_duplex"),
        state = state.display(),
        policy = policy.display(),
    );
    let out = run(Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .current_dir(repo_root())
        .env("DUPLEX_CACHE_DIR", plugin_cache_dir())
        .env("DUPLEX_OPERATOR", "tester"));
    assert_eq!(
        out.code, 5,
        "held for a person: {}{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout.contains("capability failed on the host"),
        "{}",
        out.stdout
    );
    let log = site.log_text();
    assert!(
        !log.contains("retry (attempt"),
        "no retry was spent:\n{log}"
    );
    assert!(!log.contains("auto-abort rule"), "no rule fired:\n{log}");
    assert_eq!(site.status_json()["status"], "Broken");
}
