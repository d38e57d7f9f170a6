//! Journals written by an earlier release read to the same story
//! (tests/data/journals/README.md): status, history and the log of a state
//! dir written by duplex 0.1.0 (journal format 1) against what that
//! release printed for it.

mod support;
use support::*;

fn fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    copy_dir(&repo_root().join("tests/data/journals/v1"), &state);
    (dir, state)
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn expected(name: &str) -> String {
    std::fs::read_to_string(
        repo_root()
            .join("tests/data/journals/v1-read-by-0.1.0")
            .join(name),
    )
    .unwrap()
}

fn json(state: &std::path::Path, args: &[&str]) -> String {
    let out = run(duplex()
        .arg("--state-dir")
        .arg(state)
        .args(["--output", "json"])
        .args(args));
    assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    out.stdout
}

/// Every field the old release printed is printed again, with its value.
fn assert_superset(old: &serde_json::Value, new: &serde_json::Value, what: &str) {
    match (old, new) {
        (serde_json::Value::Object(o), serde_json::Value::Object(n)) => {
            for (k, v) in o {
                let Some(nv) = n.get(k) else {
                    panic!("{what}: `{k}` is gone");
                };
                assert_superset(v, nv, &format!("{what}.{k}"));
            }
        }
        (serde_json::Value::Array(o), serde_json::Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{what}: length");
            for (i, (ov, nv)) in o.iter().zip(n).enumerate() {
                assert_superset(ov, nv, &format!("{what}[{i}]"));
            }
        }
        _ => assert_eq!(old, new, "{what}"),
    }
}

#[test]
fn status_and_history_of_a_format_1_state_dir_tell_the_same_story() {
    let (_dir, state) = fixture();
    for (args, file) in [(["status"], "status.json"), (["history"], "history.json")] {
        let mut old: serde_json::Value = serde_json::from_str(&expected(file)).unwrap();
        let new: serde_json::Value = serde_json::from_str(&json(&state, &args)).unwrap();
        // Drift is about the policy file on this host now, not the journal:
        // the old release ran while the session's policy file
        // (/tmp/fx/policy3.yaml) was in place and unchanged. Where it is
        // not, status must say so.
        if file == "status.json" {
            let policy_file = new["policyFile"].as_str().unwrap().to_owned();
            if !std::path::Path::new(&policy_file).exists() {
                let gone = format!("{policy_file} is gone; the session keeps its own copy");
                assert_eq!(new["drift"], gone.as_str());
                old["drift"] = new["drift"].clone();
            }
        }
        assert_superset(&old, &new, file);
    }
}

#[test]
fn the_log_of_each_format_1_session_reads_record_for_record() {
    let (_dir, state) = fixture();
    let mut sessions = 0;
    for entry in std::fs::read_dir(state.join("sessions")).unwrap().flatten() {
        let id = entry.file_name().to_string_lossy().into_owned();
        let old = expected(&format!("log-{id}.json"));
        let new = json(&state, &["log", "--session", &id]);
        let (old, new): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
        assert_eq!(old.len(), new.len(), "{id}");
        for (o, n) in old.iter().zip(&new) {
            let mut o: serde_json::Value = serde_json::from_str(o).unwrap();
            let n: serde_json::Value = serde_json::from_str(n).unwrap();
            // Format 2 derives a plugin call's name from its request id.
            if let Some(event) = o["event"].as_object_mut() {
                event.remove("call");
            }
            assert_eq!(o, n, "{id}");
        }
        sessions += 1;
    }
    assert_eq!(sessions, 3);
}

#[test]
fn a_format_1_session_in_flight_can_be_carried_on_by_this_release() {
    // The held session's failure was marked not retryable (two records in
    // format 1): status offers the same ways out, and `retry` is accepted.
    let (_dir, state) = fixture();
    let status: serde_json::Value = serde_json::from_str(&json(&state, &["status"])).unwrap();
    assert_eq!(status["state"], "Split");
    assert_eq!(status["status"], "Broken");
    assert_eq!(
        status["next"],
        serde_json::json!(["retry", "abort", "resume"])
    );
}

#[test]
fn a_journal_of_a_newer_format_is_refused_by_name() {
    let (_dir, state) = fixture();
    let session = std::fs::read_dir(state.join("sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let journal = session.join("journal");
    let text = std::fs::read_to_string(&journal).unwrap();
    let first = text.lines().next().unwrap();
    let body = first.splitn(3, ' ').nth(2).unwrap();
    let newer = body.replacen(
        r#""target":"sim-fixture""#,
        r#""target":"sim-fixture","format":9"#,
        1,
    );
    let line = format!("{:08x} {} {newer}\n", crc32(newer.as_bytes()), newer.len());
    let rest: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&journal, format!("{line}{rest}")).unwrap();
    let out = run(duplex().arg("--state-dir").arg(&state).arg("status"));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("journal format 9, newer than this duplex reads (formats 1 to 3)"),
        "{}",
        out.stderr
    );
}

/// CRC-32 (IEEE), as the journal frames records.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
