//! `duplex apply` and the session verbs, driven the way an operator would,
//! on the simulated system and a fresh state dir each.

mod support;
use support::*;

#[test]
fn the_happy_path_commits_and_finishes() {
    let site = Site::new();
    site.policy("", GATES);
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Upgrade committed and finished: sim-test runs acme-app 2.4.1."),
        "{}",
        out.stdout
    );
    assert_eq!(site.states(), FORWARD);
    let status = site.status_json();
    assert_eq!(status["state"], "Idle");
    assert_eq!(status["outcome"], "committed");
    assert_eq!(status["finished"], true);
    let history = site.duplex(&["history"]);
    assert!(history.stdout.contains("committed"), "{}", history.stdout);
    assert!(
        history.stdout.starts_with("SESSION "),
        "a header: {}",
        history.stdout
    );
    let log = site.log_text();
    for needle in [
        "check `duplexed`: pass",
        "check `services`: pass",
        "check `after-merge`: pass",
        "operate split [op/split]: done",
        "install [install/acme-app]: done: installed acme-app 2.4.1 on the Upgrade Side",
        "operate commit [op/commit]: done",
        "session ended: Committed",
    ] {
        assert!(log.contains(needle), "log lacks `{needle}`:\n{log}");
    }
    // A second apply starts a new session from Idle.
    let again = site.apply(&[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    // The header and a line per session.
    assert_eq!(site.duplex(&["history"]).stdout.lines().count(), 3);
}

#[test]
fn abort_from_each_abortable_state_restores_and_finishes() {
    for state in ["PrepareSplit", "Split", "PrepareMerge", "Merge"] {
        let site = Site::new();
        site.policy("", GATES);
        let out = site.apply(&["--until", state]);
        assert_eq!(out.code, 6, "{state}: {}{}", out.stdout, out.stderr);
        let out = site.duplex(&["abort"]);
        assert_eq!(out.code, 3, "{state}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("is back on its original configuration"),
            "{}",
            out.stdout
        );
        let states = site.states();
        let at = FORWARD.iter().position(|s| *s == state).unwrap();
        let mut expected: Vec<&str> = FORWARD[..=at].to_vec();
        expected.extend(["Abort", "Finish", "Idle"]);
        assert_eq!(states, expected, "{state}");
        assert!(site.log_text().contains("abort requested by tester"));
        assert_eq!(site.status_json()["outcome"], "aborted");
    }
}

#[test]
fn a_transient_failure_is_retried() {
    let site = Site::new();
    site.policy(
        ", faults: {fail: {split: 2}}",
        "  retries: {default: {limit: 3, backoff: {initial: 10ms, max: 20ms}}}\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert_eq!(log.matches("retry (attempt").count(), 2, "{log}");
    assert!(log.contains("request failed: Broken: op/split: "), "{log}");
    assert_eq!(site.states(), FORWARD);
}

#[test]
fn exhausted_retries_abort_when_the_policy_says_abort() {
    let site = Site::new();
    site.policy(
        ", faults: {fail: {merge: 9}}",
        "  retries: {default: {limit: 1, backoff: {initial: 10ms}}}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(log.contains("auto-abort rule `retriesExhausted` fired (abort): Merge failed 2 time(s), its retries (1) are used up"), "{log}");
    assert_eq!(
        site.states(),
        [
            "Idle",
            "PrepareSplit",
            "Split",
            "PrepareMerge",
            "Merge",
            "Abort",
            "Finish",
            "Idle"
        ]
    );
}

#[test]
fn exhausted_retries_hold_for_a_person_then_retry_or_abort() {
    let site = Site::new();
    site.policy(
        ", faults: {fail: {split: 3}}",
        "  retries: {default: {limit: 1, backoff: {initial: 10ms}}}\n  autoAbort: [{when: retriesExhausted, action: hold}]\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Held for a person: Split failed 2 time(s)"),
        "{}",
        out.stdout
    );
    let status = site.status_json();
    assert_eq!(status["state"], "Split");
    assert_eq!(status["status"], "Broken");
    assert_eq!(
        status["next"],
        serde_json::json!(["retry", "abort", "resume"])
    );
    // Resuming alone changes nothing: it is held.
    assert_eq!(site.duplex(&["resume"]).code, 5);
    // The operator retries: the third failure, then the rules hold again...
    let out = site.duplex(&["retry"]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    // ...and once more: the injected faults are used up, so it goes through.
    let out = site.duplex(&["retry"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(site.states(), FORWARD);
}

#[test]
fn approvals_wait_for_a_person() {
    let site = Site::new();
    site.policy(
        "",
        &format!("{GATES}  approvals: [{{before: Merge, approvers: [ops]}}, {{before: Commit}}]\n"),
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Waiting for approval before Merge (approvers: ops)"),
        "{}",
        out.stdout
    );
    assert_eq!(site.status_json()["waitingFor"], "approval before Merge");
    // Applying again does not get past the approval point.
    assert_eq!(site.apply(&[]).code, 4);
    // Only the approvers the policy names may approve there; a refusal
    // names them and writes nothing.
    let records = site.records();
    let out = site.duplex(&["approve"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stderr,
        "error: tester may not approve before Merge: the policy names ops as approver(s) there\n"
    );
    assert_eq!(site.records(), records, "a refused approval writes nothing");
    let out = site.duplex_as("ops", &["approve"]);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Waiting for approval before Commit"),
        "{}",
        out.stdout
    );
    assert_eq!(site.status_json()["state"], "Merge");
    let out = site.duplex(&["approve"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains("approved before Merge by ops")
            && log.contains("approved before Commit by tester"),
        "{log}"
    );
    assert_eq!(site.duplex(&["approve"]).code, 1, "nothing left to approve");
}

#[test]
fn a_missed_deadline_aborts() {
    let site = Site::new();
    site.policy(
        ", faults: {fail: {merge: 50}}",
        "  retries: {default: {limit: 50, backoff: {initial: 20ms, max: 20ms}}}\n  autoAbort: [{when: deadline, commitWithin: 300ms, action: abort}]\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(site.log_text().contains(
        "auto-abort rule `deadline` fired (abort): Commit was not reached within 300ms of the start"
    ));
}

#[test]
fn a_crashed_partner_aborts() {
    let site = Site::new();
    site.policy(
        ", faults: {crash-partner-at: merge}",
        "  autoAbort: [{when: partnerUnhealthy, action: abort}]\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(log.contains("partner side is Crashed"), "{log}");
    assert!(
        log.contains(
            "auto-abort rule `partnerUnhealthy` fired (abort): the partner side is Crashed"
        ),
        "{log}"
    );
}

#[test]
fn a_changed_policy_is_drift_and_is_not_applied() {
    let site = Site::new();
    site.policy("", GATES);
    assert_eq!(site.apply(&["--until", "Split"]).code, 6);
    // The operator edits the file mid-session: another retry limit.
    let path = site.policy_path();
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "name: test-upgrade",
        "name: test-upgrade\n  description: edited",
    );
    std::fs::write(&path, text).unwrap();
    let status = site.status_json();
    assert!(
        status["drift"]
            .as_str()
            .unwrap()
            .contains("changed since the session started"),
        "{status}"
    );
    let plan = site.duplex(&["plan", path.to_str().unwrap()]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert!(
        plan.stdout.contains("In flight: session "),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("differs and is not applied to it"),
        "{}",
        plan.stdout
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        site.log_text()
            .contains("policy drift: the session runs the policy it started with")
    );
}

#[test]
fn a_declared_abort_aborts_the_session_in_flight() {
    let site = Site::new();
    site.policy("", GATES);
    assert_eq!(site.apply(&["--until", "PrepareMerge"]).code, 6);
    site.policy("", &format!("{GATES}  action: abort\n"));
    let out = site.apply(&[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(site.log_text().contains("abort requested by policy"));
    // With nothing in flight, an abort policy has nothing to do.
    let out = site.apply(&[]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nothing to abort"), "{}", out.stderr);
}

#[test]
fn commands_are_refused_where_the_state_model_refuses_them() {
    let site = Site::new();
    site.policy("", GATES);
    let out = site.duplex(&["resume"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no upgrade session is in progress"),
        "{}",
        out.stderr
    );
    assert_eq!(site.apply(&["--until", "Commit"]).code, 6);
    let out = site.duplex(&["abort"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: abort is not allowed in Commit (Ready): Commit is the point of no return; allowed here: finish\n"
    );
    let out = site.duplex(&["retry"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "retry is not allowed in Commit (Ready): only a failed (Broken) request can be retried"
        ),
        "{}",
        out.stderr
    );
    let out = site.duplex(&["approve"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("nothing to approve"), "{}", out.stderr);
    assert_eq!(site.duplex(&["resume"]).code, 0);
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let site = Site::new();
    // A plugin whose digest is wrong.
    site.policy("", "");
    let path = site.policy_path();
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        &plugin_digest("sim-checks"),
        &"0".repeat(64),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = site.apply(&[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("does not match its pinned digest"),
        "{}",
        out.stderr
    );
    // A gate naming a check the plugin does not provide.
    site.policy(
        "",
        "  gates: {prepareSplit: [{name: g, plugin: sim-checks, check: no-such-check}]}\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("plugin `sim-checks` provides no check `no-such-check`"),
        "{}",
        out.stderr
    );
    // Nothing was started.
    assert_eq!(
        site.duplex(&["history"]).stdout.trim(),
        format!("no sessions in {}", site.state_dir().display())
    );
}

#[test]
fn a_second_apply_on_the_same_state_dir_is_refused_naming_the_holder() {
    let site = Site::new();
    // Slow enough to still hold the lock while the second one starts.
    site.policy(", delay-ms: 200, time-scale: 1", "");
    let mut first = duplex();
    first
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["apply", site.policy_path().to_str().unwrap()])
        .stdout(std::process::Stdio::null());
    let mut child = first.spawn().unwrap();
    let lock = site.state_dir().join("lock");
    let t0 = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|t| t.contains(&child.id().to_string())) {
        assert!(
            t0.elapsed().as_secs() < 20,
            "the first apply never took the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let second = site.apply(&[]);
    assert_eq!(second.code, 1);
    assert!(
        second
            .stderr
            .contains(&format!("is locked by pid {}", child.id())),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains(
            "; is another `duplex apply` running? If that process is dead, run `duplex unlock --force`"
        ),
        "{}",
        second.stderr
    );
    // Status works while the writer runs.
    assert_eq!(site.duplex(&["status"]).code, 0);
    assert!(child.wait().unwrap().success());
}

fn journal_of(site: &Site) -> std::path::PathBuf {
    let sessions = site.state_dir().join("sessions");
    let dir = std::fs::read_dir(sessions)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    dir.join("journal")
}

#[test]
fn a_bit_flip_in_the_journal_stops_with_a_clear_error() {
    let site = Site::new();
    site.policy("", GATES);
    assert_eq!(site.apply(&["--until", "Split"]).code, 6);
    let journal = journal_of(&site);
    let mut bytes = std::fs::read(&journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x04;
    std::fs::write(&journal, &bytes).unwrap();
    for verb in [&["resume"][..], &["status"], &["log"]] {
        let out = site.duplex(verb);
        assert_eq!(out.code, 1, "{verb:?}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stderr.contains("is corrupt at record"),
            "{verb:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(journal.to_str().unwrap()),
            "{verb:?} does not name the file: {}",
            out.stderr
        );
    }
    // Nothing was changed by trying.
    assert_eq!(std::fs::read(&journal).unwrap(), bytes);
}

#[test]
fn a_torn_last_record_is_cut_with_a_warning_and_the_session_goes_on() {
    let site = Site::new();
    site.policy("", GATES);
    assert_eq!(site.apply(&["--until", "PrepareMerge"]).code, 6);
    let journal = journal_of(&site);
    let bytes = std::fs::read(&journal).unwrap();
    // Half of a record that never finished being written.
    let mut torn = bytes.clone();
    torn.extend_from_slice(&bytes[..bytes.iter().position(|b| *b == b'\n').unwrap() / 2]);
    std::fs::write(&journal, &torn).unwrap();
    let out = site.duplex(&["resume"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.starts_with("warning: "), "{}", out.stderr);
    assert!(
        out.stderr.contains("ended with an incomplete record")
            && out.stderr.contains("it has been cut"),
        "{}",
        out.stderr
    );
    assert_eq!(site.states(), FORWARD);
}

#[test]
fn a_closing_maintenance_window_aborts_before_merge() {
    let site = Site::new();
    let utc_in = |secs: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        duplex_core::journal::format_utc((now + secs * 1000) as u64)
    };
    // Open now, closing in an hour; with a two-hour margin the rule holds
    // from the first step.
    let (start, end) = (utc_in(-3600), utc_in(3600));
    site.policy(
        "",
        &format!("  window: {{start: \"{start}\", end: \"{end}\"}}\n  autoAbort: [{{when: windowClosing, margin: 2h, action: abort}}]\n"),
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    assert!(site.log_text().contains(&format!("auto-abort rule `windowClosing` fired (abort): the maintenance window closes at {end} and Merge is not reached")));
}

#[test]
fn no_session_starts_after_its_maintenance_window_closed() {
    let site = Site::new();
    site.policy(
        "",
        "  window: {start: \"2020-01-01T00:00:00Z\", end: \"2020-01-02T00:00:00Z\"}\n  autoAbort: [{when: windowClosing, action: abort}]\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "the maintenance window closed at 2020-01-02T00:00:00Z; not starting a session after it (nothing was written)"
        ),
        "{}",
        out.stderr
    );
    // Nothing was written: no session, and no hardware abort ran.
    assert!(
        !site.state_dir().join("sessions").exists()
            || std::fs::read_dir(site.state_dir().join("sessions"))
                .unwrap()
                .next()
                .is_none()
    );
    assert_eq!(site.status_json()["session"], serde_json::Value::Null);
}

/// The README's main command: the demo policy, as shipped, end to end.
#[test]
fn the_demo_policy_upgrades_the_simulated_system() {
    let site = Site::new();
    let out = site.duplex(&["apply", "policies/demo.yaml"]);
    assert_committed(&site, &out);
    // Its gate before the merge looks at the Upgrade Side, which is about
    // to take over production, not at the side running production now.
    assert!(
        site.log_text()
            .contains("check `upgrade-side-version`: pass: acme-app 2.4.1 on the upgrade side"),
        "{}",
        site.log_text()
    );
}

#[test]
fn an_inconclusive_gate_holds_for_a_person() {
    let site = Site::new();
    site.policy(
        "",
        "  gates: {prepareSplit: [{name: duplexed, plugin: sim-checks, check: duplexed, with: {inconclusive-times: 1}}]}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Held for a person: check `duplexed` is inconclusive: duplexed: cannot tell (injected doubt 1 of 1); a person must decide"),
        "{}",
        out.stdout
    );
    // The person looked and decides to go on.
    let out = site.duplex(&["retry"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn unlock_needs_force_and_leaves_a_live_lock_alone() {
    let site = Site::new();
    site.policy("", "");
    assert_eq!(site.apply(&["--until", "PrepareSplit"]).code, 6);
    let out = site.duplex(&["unlock"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    // Nobody holds the lock once apply has exited.
    let out = site.duplex(&["unlock", "--force", "--output", "json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["result"], "not-locked");
    assert_eq!(site.duplex(&["resume"]).code, 0);
}

#[test]
fn no_session_starts_before_its_maintenance_window_opens() {
    let site = Site::new();
    site.policy(
        "",
        "  window: {start: \"2099-01-01T00:00:00Z\", end: \"2099-01-02T00:00:00Z\"}\n",
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "the maintenance window opens at 2099-01-01T00:00:00Z; not starting a session before it"
        ),
        "{}",
        out.stderr
    );
    assert!(site.duplex(&["history"]).stdout.starts_with("no sessions"));
}

#[test]
fn log_follow_streams_a_running_session_until_it_ends() {
    let site = Site::new();
    site.policy(", delay-ms: 100, time-scale: 1", "");
    let mut apply = duplex();
    apply
        .arg("--state-dir")
        .arg(site.state_dir())
        .args(["apply", site.policy_path().to_str().unwrap()])
        .stdout(std::process::Stdio::null());
    let mut child = apply.spawn().unwrap();
    let sessions = site.state_dir().join("sessions");
    let t0 = std::time::Instant::now();
    while !std::fs::read_dir(&sessions)
        .is_ok_and(|mut d| d.any(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')))
    {
        assert!(t0.elapsed().as_secs() < 20, "no session appeared");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Follows from the start and returns once the session is finished.
    let out = site.duplex(&["log", "--follow"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("session started"), "{}", out.stdout);
    assert!(
        out.stdout.trim_end().ends_with("session ended: Committed"),
        "{}",
        out.stdout
    );
    assert!(child.wait().unwrap().success());
}
