//! The queries read what a full replay reads, whatever shortcut they take:
//! a writer's snapshot (checked against the journal, never believed
//! otherwise), a finished session's marker (old markers replayed), the
//! state dir's `newest` hint, a streamed log.

use super::{App, AppConfig, HistoryEntry, StatusReport};
use crate::clock::SystemClock;
use crate::engine::sink::NoSink;
use crate::engine::{Event, Pacing, Recorder, RequestId, SNAPSHOT_EVERY_RECORDS, Session};
use crate::journal::{SessionInfo, StateDir};
use crate::model::Command;
use crate::plugins::Verdict;
use std::fs;
use std::path::PathBuf;

const POLICY: &str = include_str!("../../../policies/demo.yaml");

struct Site {
    _tmp: tempfile::TempDir,
    state: PathBuf,
}

impl Site {
    fn app(&self) -> App {
        App::new(AppConfig {
            state_dir: self.state.clone(),
            cache_dir: None,
            clock: SystemClock::shared(),
            pacing: Pacing::default(),
        })
    }

    fn status(&self) -> StatusReport {
        self.app().status().unwrap()
    }

    fn history(&self) -> Vec<HistoryEntry> {
        self.app().history().unwrap()
    }

    fn info(&self) -> SessionInfo {
        StateDir::read_only(&self.state)
            .unwrap()
            .sessions()
            .unwrap()
            .pop()
            .unwrap()
    }

    fn snapshot(&self) -> PathBuf {
        self.info().dir.join("snapshot")
    }

    /// The status and history a full replay gives: without the snapshot.
    fn replayed(&self) -> (StatusReport, Vec<HistoryEntry>) {
        let saved = fs::read(self.snapshot()).ok();
        let _ = fs::remove_file(self.snapshot());
        let replayed = (self.status(), self.history());
        if let Some(bytes) = saved {
            fs::write(self.snapshot(), bytes).unwrap();
        }
        replayed
    }
}

fn event(n: u64) -> Event {
    if n.is_multiple_of(2) {
        Event::PluginCall {
            request: RequestId::Partner,
            plugin: "sim-duplex".into(),
            ok: true,
            outcome: format!("partner healthy ({n})"),
            duration_ms: 1,
            logs: Vec::new(),
            repeats: 0,
        }
    } else {
        Event::CheckRan {
            check: "duplexed".into(),
            verdict: Verdict::Pass,
            message: format!("check {n}"),
            consecutive_failures: 0,
        }
    }
}

/// A session in flight through the engine's recorder: the first record,
/// `start`, then `records` in all, the recorder taking its snapshots.
fn in_flight(records: u64) -> (Site, Recorder) {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let dir = StateDir::lock(&state).unwrap();
    let first = Event::SessionStarted {
        policy: "demo".into(),
        policy_file: tmp.path().join("demo.yaml").display().to_string(),
        policy_digest: crate::policy::Sha256::of(POLICY.as_bytes()).to_string(),
        target: "demo".into(),
        format: crate::engine::JOURNAL_FORMAT,
        hardware: None,
        origin: None,
    };
    let writer = dir
        .create_session_with(
            1_000,
            &first,
            &[(PathBuf::from("policy.yaml"), POLICY.as_bytes().to_vec())],
        )
        .unwrap();
    let session = Session::start(&first, 1_000).unwrap();
    let mut rec = Recorder::new(writer, session, Box::new(NoSink), SystemClock::shared());
    rec.record(Event::Model {
        command: Command::Start,
    })
    .unwrap();
    for n in 3..=records {
        rec.record(event(n)).unwrap();
    }
    (Site { _tmp: tmp, state }, rec)
}

#[test]
fn status_from_a_snapshot_is_the_status_of_a_full_replay() {
    let (site, _rec) = in_flight(3 * SNAPSHOT_EVERY_RECORDS + 5);
    assert!(site.snapshot().is_file(), "the recorder took a snapshot");
    let (status, history) = site.replayed();
    assert_eq!(site.status(), status);
    assert_eq!(site.history(), history);
    let s = status.session.unwrap();
    assert!(!s.finished);
    assert_eq!(
        s.session.config.state,
        crate::model::UpgradeState::PrepareSplit
    );
}

#[test]
fn a_snapshot_that_does_not_check_out_is_not_believed() {
    let (site, _rec) = in_flight(2 * SNAPSHOT_EVERY_RECORDS + 7);
    let (status, history) = site.replayed();
    let good = fs::read_to_string(site.snapshot()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&good).unwrap();
    let with = |pointer: &str, value: serde_json::Value| {
        let mut json = json.clone();
        *json.pointer_mut(pointer).unwrap() = value;
        json.to_string()
    };
    let at = &json["at"];
    let cases = [
        ("garbage", "\u{0}\u{0}not json".to_string()),
        ("torn", good[..good.len() / 2].to_string()),
        ("empty", String::new()),
        ("another version", with("/version", 99.into())),
        ("wrong checksum", with("/at/crc", 12345.into())),
        (
            "wrong seq",
            with("/at/seq", (at["seq"].as_u64().unwrap() + 1).into()),
        ),
        (
            "past the journal's end",
            with("/at/offset", (1u64 << 40).into()),
        ),
        (
            "off by one byte",
            with("/at/offset", (at["offset"].as_u64().unwrap() + 1).into()),
        ),
        // Names the right record but is not its fold: the time of its last
        // event is not that record's.
        ("a fold of something else", with("/state/lastMs", 1.into())),
        (
            "not a fold at all",
            with("/state", serde_json::json!({"x": 1})),
        ),
    ];
    for (what, text) in cases {
        fs::write(site.snapshot(), text).unwrap();
        assert_eq!(site.status(), status, "{what}");
        assert_eq!(site.history(), history, "{what}");
    }
    // A snapshot of another session (same shape, other records).
    let (other, _other_rec) = in_flight(2 * SNAPSHOT_EVERY_RECORDS + 7);
    fs::copy(other.snapshot(), site.snapshot()).unwrap();
    assert_eq!(site.status(), status, "another session's snapshot");
}

#[test]
fn a_kill_between_a_record_and_the_snapshot_costs_only_a_longer_replay() {
    let (site, rec) = in_flight(SNAPSHOT_EVERY_RECORDS + 3);
    let stale = fs::read(site.snapshot()).unwrap();
    // What a kill leaves: records durable after the last snapshot (the
    // writer died before taking the next), a snapshot half written under
    // its temporary name, and a record torn mid-write.
    drop(rec);
    let dir = StateDir::lock(&site.state).unwrap();
    let info = dir.current_session().unwrap().unwrap();
    let (mut writer, _) = dir.open_session::<Event>(&info.id).unwrap();
    for n in 0..SNAPSHOT_EVERY_RECORDS + 10 {
        writer.append(&event(n)).unwrap();
    }
    drop(writer);
    drop(dir);
    fs::write(info.dir.join(".snapshot.tmp"), &stale[..stale.len() / 3]).unwrap();
    let mut journal = fs::OpenOptions::new()
        .append(true)
        .open(&info.journal)
        .unwrap();
    std::io::Write::write_all(&mut journal, b"1234abcd 99 {\"seq\"").unwrap();
    assert_eq!(fs::read(site.snapshot()).unwrap(), stale);
    let (status, history) = site.replayed();
    assert!(status.session.as_ref().unwrap().torn_tail.is_some());
    assert_eq!(site.status(), status);
    assert_eq!(site.history(), history);
}

/// A finished session as the engine finishes it, with its summary marker.
fn finished(records: u64) -> Site {
    let (site, mut rec) = in_flight(records);
    rec.record(Event::SessionEnded {
        outcome: crate::engine::Outcome::Committed,
    })
    .unwrap();
    rec.finish().unwrap();
    site
}

#[test]
fn a_finished_session_reads_the_same_from_its_marker_and_from_an_old_one() {
    let site = finished(SNAPSHOT_EVERY_RECORDS + 20);
    let marker = site.info().dir.join("finished");
    let new: serde_json::Value = serde_json::from_slice(&fs::read(&marker).unwrap()).unwrap();
    assert!(
        new["summary"].is_object() && new["last"].is_object(),
        "{new}"
    );
    assert!(!site.snapshot().exists(), "finishing drops the snapshot");
    let (status, history) = (site.status(), site.history());
    let s = status.session.as_ref().unwrap();
    assert!(s.finished);
    assert_eq!(s.session.ended, Some(crate::engine::Outcome::Committed));
    assert_eq!(history[0].outcome, Some(crate::engine::Outcome::Committed));
    // A marker as earlier releases wrote it: the journal is replayed.
    let old = serde_json::json!({"last_seq": new["last_seq"], "ts_ms": new["ts_ms"]});
    fs::write(&marker, old.to_string()).unwrap();
    assert_eq!(site.status(), status);
    assert_eq!(site.history(), history);
    // A marker whose journal lost its tail is not believed: the replay
    // says what is wrong, as it always did.
    fs::write(&marker, new.to_string()).unwrap();
    let journal = site.info().journal;
    let len = fs::metadata(&journal).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let err = site.app().status().unwrap_err().to_string();
    assert!(err.contains("incomplete record"), "{err}");
    let problem = site.history()[0].problem.clone().unwrap();
    assert!(problem.starts_with("unreadable: "), "{problem}");
}

#[test]
fn a_finished_sessions_policy_copy_is_validated_only_when_changed() {
    let site = finished(10);
    let copy = site.info().dir.join("policy.yaml");
    assert_eq!(site.status().session.unwrap().policy_copy_problem, None);
    fs::write(&copy, "not: a policy\n").unwrap();
    let problem = site.status().session.unwrap().policy_copy_problem.unwrap();
    assert!(problem.contains("policy.yaml"), "{problem}");
}

#[test]
fn the_newest_hint_is_used_only_while_the_sessions_folder_is_unchanged() {
    let site = finished(5);
    let hint = site.state.join("newest");
    assert!(hint.is_file());
    let first = site.info();
    assert_eq!(site.status().session.unwrap().id, first.id);
    // A newer session appears by other means (another release, by hand):
    // the hint is stale, and the listing finds it.
    let newer = crate::journal::SessionId::next(Some(&first.id), 2_000_000_000).unwrap();
    let newer_dir = site.state.join("sessions").join(newer.as_str());
    fs::create_dir(&newer_dir).unwrap();
    fs::copy(&first.journal, newer_dir.join("journal")).unwrap();
    assert_eq!(site.status().session.unwrap().id, newer);
    // A hint naming a session that is not there is not used either.
    fs::write(&hint, "{\"id\":\"000009-20261125T013000Z-3f9a\"}").unwrap();
    assert_eq!(site.status().session.unwrap().id, newer);
}

#[test]
fn the_log_streams_what_a_whole_read_reads_and_refuses_what_it_refuses() {
    let site = finished(3 * SNAPSHOT_EVERY_RECORDS);
    let info = site.info();
    let dir = StateDir::read_only(&site.state).unwrap();
    let whole = dir.read_session::<Event>(&info.id).unwrap();
    let log = site.app().log(None).unwrap();
    assert_eq!(log.torn_tail, None);
    let streamed: Vec<_> = log.records.map(Result::unwrap).collect();
    assert_eq!(streamed, whole.records);
    // Corruption anywhere is an error before the first record.
    let mut bytes = fs::read(&info.journal).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&info.journal, &bytes).unwrap();
    let whole = super::AppError::from(dir.read_session::<Event>(&info.id).unwrap_err());
    let streamed = site.app().log(None).err().unwrap();
    assert_eq!(streamed.to_string(), whole.to_string());
    assert!(whole.to_string().contains("corrupt"), "{whole}");
}

#[test]
fn a_snapshot_round_trips_the_whole_fold() {
    let (site, rec) = in_flight(40);
    let json = serde_json::to_string(rec.session()).unwrap();
    let back: Session = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, rec.session());
    drop(site);
}
