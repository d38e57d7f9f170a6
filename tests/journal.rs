//! Black-box tests of `duplex_core::journal` on real files: round trips folded
//! through the state model, torn tails and corruption on disk, the lock
//! between processes, `force_unlock`, following a live journal, and a
//! SIGKILL at every record boundary followed by a resume, and one between a
//! record and the snapshot the engine takes after it.
//!
//! Child processes are this test binary re-run on the `helper_process`
//! test with `DUPLEX_JOURNAL_TEST_HELPER` naming their role. That test is
//! ignored (it is no test on its own), and fails when run without a role;
//! each helper says it did its part, and the tests check that it did.

use duplex_core::journal::{
    CRASH_ENV, JournalError, LockHolder, LockedStateDir, Record, SessionId, StateDir,
    UnlockOutcome, force_unlock,
};
use duplex_core::model::{Command, Configuration, Phase, UpgradeState};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

mod support;

const HELPER_ENV: &str = "DUPLEX_JOURNAL_TEST_HELPER";
const DIR_ENV: &str = "DUPLEX_JOURNAL_TEST_DIR";

/// A stand-in for the engine's event enum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
enum Event {
    Command { command: Command },
    Note { text: String },
}

fn cmd(command: Command) -> Event {
    Event::Command { command }
}

fn note(i: u64) -> Event {
    Event::Note {
        text: format!("step {i}"),
    }
}

/// The session's state is the fold of its records.
fn fold(records: &[Record<Event>]) -> Configuration {
    records
        .iter()
        .fold(Configuration::idle(), |config, record| {
            match &record.event {
                Event::Command { command } => config.apply(command).expect("a legal command"),
                Event::Note { .. } => config,
            }
        })
}

fn happy_path() -> Vec<Event> {
    use Command::*;
    let mut events = vec![cmd(Start)];
    for _ in 0..4 {
        events.extend([cmd(Begin), cmd(Complete), cmd(Advance)]);
    }
    // Now in Commit, which finishes into Finish, which advances to Idle.
    events.extend([cmd(Begin), cmd(Complete), cmd(Finish)]);
    events.extend([cmd(Begin), cmd(Complete), cmd(Advance)]);
    events.insert(
        3,
        Event::Note {
            text: "gate ok\nsecond line ✓".into(),
        },
    );
    events
}

/// Take the lock again after this process released it. A child that
/// another test forks at that moment shares the lock's open file
/// description until its `exec` closes it (O_CLOEXEC), so the lock can stay
/// held a moment longer: wait for that, briefly. A lock that is never
/// released still fails.
fn relock(path: &Path) -> LockedStateDir {
    retry_while_shared(|| StateDir::lock(path).ok())
}

fn retry_while_shared<T>(mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(done) = attempt() {
            return done;
        }
        assert!(Instant::now() < deadline, "the lock was not released");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn state_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/state");
    (tmp, dir)
}

#[test]
fn records_round_trip_and_fold_into_the_sessions_state() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let mut writer = locked.create_session().unwrap();
    let id = writer.id().clone();
    let events = happy_path();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(writer.append(event).unwrap(), i as u64 + 1);
    }

    // A reader sees it all while the writer still holds the lock.
    let reader = StateDir::read_only(&path).unwrap();
    let report = reader.read_session::<Event>(&id).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(
        report.records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=events.len() as u64).collect::<Vec<_>>()
    );
    assert_eq!(
        report
            .records
            .iter()
            .map(|r| r.event.clone())
            .collect::<Vec<_>>(),
        events
    );
    let at_split = fold(&report.records[..5]);
    assert_eq!(
        (at_split.state, at_split.phase()),
        (UpgradeState::Split, Phase::Pending)
    );
    assert_eq!(fold(&report.records), Configuration::idle());
    assert_eq!(reader.current_session().unwrap().unwrap().id, id);

    // One greppable line per record.
    let text = fs::read_to_string(writer.path()).unwrap();
    assert_eq!(text.lines().count(), events.len());
    assert!(
        text.lines()
            .nth(3)
            .unwrap()
            .contains(r#""text":"gate ok\nsecond line ✓""#)
    );

    let done = writer.finish().unwrap();
    assert_eq!(done.last_seq, events.len() as u64);
    let sessions = reader.sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].finished, Some(done));
    assert!(reader.current_session().unwrap().is_none());
    // History stays readable, and read-only.
    assert_eq!(
        reader.read_session::<Event>(&id).unwrap().records.len(),
        events.len()
    );
    let err = locked.open_session::<Event>(&id).unwrap_err();
    assert!(matches!(err, JournalError::SessionFinished { .. }), "{err}");
}

#[test]
fn a_reopened_session_continues_its_sequence() {
    let (_tmp, path) = state_dir();
    let id = {
        let locked = StateDir::lock(&path).unwrap();
        let mut writer = locked.create_session().unwrap();
        for i in 1..=3 {
            writer.append(&note(i)).unwrap();
        }
        writer.id().clone()
    };
    let locked = relock(&path);
    assert_eq!(locked.current_session().unwrap().unwrap().id, id);
    let (mut writer, report) = locked.open_session::<Event>(&id).unwrap();
    assert_eq!((report.records.len(), report.torn_tail), (3, None));
    assert_eq!(writer.next_seq(), 4);
    assert_eq!(writer.append(&note(4)).unwrap(), 4);
    let report = locked.read_session::<Event>(&id).unwrap();
    assert_eq!(report.records.last().unwrap().event, note(4));
    // Reading as the wrong type is a decode error naming the record.
    let err = locked.read_session::<u64>(&id).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::Decode {
                seq: 1,
                offset: 0,
                ..
            }
        ),
        "{err}"
    );
}

/// A session with `n` notes stamped deterministically; its journal's bytes.
fn session_with(locked: &LockedStateDir, n: u64) -> (SessionId, PathBuf, Vec<u8>) {
    let mut writer = locked.create_session().unwrap();
    for i in 1..=n {
        writer.append_at(i * 1000, &note(i)).unwrap();
    }
    let path = writer.path().to_path_buf();
    (writer.id().clone(), path.clone(), fs::read(path).unwrap())
}

#[test]
fn a_torn_last_record_of_any_length_is_reported_by_readers_and_cut_by_the_writer() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let (id, journal, whole) = session_with(&locked, 3);
    let reader = StateDir::read_only(&path).unwrap();
    let last = reader.read_session::<Event>(&id).unwrap().records[2].offset as usize;
    for cut in last..whole.len() {
        fs::write(&journal, &whole[..cut]).unwrap();
        let torn = (cut > last).then_some((last as u64, (cut - last) as u64));

        let report = reader.read_session::<Event>(&id).unwrap();
        assert_eq!(report.records.len(), 2, "cut at {cut}");
        assert_eq!(
            report
                .torn_tail
                .as_ref()
                .map(|t| (t.offset, t.bytes, t.cut)),
            torn.map(|(o, b)| (o, b, false))
        );
        assert_eq!(
            fs::read(&journal).unwrap(),
            &whole[..cut],
            "a reader modified the journal"
        );

        let (mut writer, report) = locked.open_session::<Event>(&id).unwrap();
        assert_eq!(report.records.len(), 2);
        let tail = report.torn_tail.clone();
        assert_eq!(
            tail.as_ref().map(|t| (t.offset, t.bytes, t.cut)),
            torn.map(|(o, b)| (o, b, true))
        );
        if let Some(tail) = tail {
            let warning = tail.to_string();
            assert!(
                warning.contains(&journal.display().to_string())
                    && warning.contains("has been cut"),
                "{warning}"
            );
        }
        assert_eq!(fs::metadata(&journal).unwrap().len(), last as u64);
        // Appending the same record again restores the journal byte for byte.
        assert_eq!(writer.append_at(3000, &note(3)).unwrap(), 3);
        assert_eq!(fs::read(&journal).unwrap(), whole);
    }
}

#[test]
fn corruption_before_the_end_stops_readers_and_writers_and_is_never_cut() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let (id, journal, whole) = session_with(&locked, 3);
    let reader = StateDir::read_only(&path).unwrap();
    let offsets: Vec<u64> = reader
        .read_session::<Event>(&id)
        .unwrap()
        .records
        .iter()
        .map(|r| r.offset)
        .collect();

    let mut flipped = whole.clone();
    flipped[offsets[1] as usize + 20] ^= 0x04;
    fs::write(&journal, &flipped).unwrap();
    for err in [
        reader.read_session::<Event>(&id).unwrap_err(),
        locked.open_session::<Event>(&id).unwrap_err(),
    ] {
        assert!(
            matches!(err, JournalError::Corrupt { record: 2, offset, .. } if offset == offsets[1]),
            "{err}"
        );
        let msg = err.to_string();
        let expected = format!(
            "journal {} is corrupt at record 2 (byte {}): ",
            journal.display(),
            offsets[1]
        );
        assert!(
            msg.starts_with(&expected) && msg.contains("refusing to guess"),
            "{msg}"
        );
    }
    assert_eq!(
        fs::read(&journal).unwrap(),
        flipped,
        "a corrupt journal was modified"
    );

    // A lost record in the middle is a sequence gap.
    let gap = [&whole[..offsets[1] as usize], &whole[offsets[2] as usize..]].concat();
    fs::write(&journal, gap).unwrap();
    let err = reader.read_session::<Event>(&id).unwrap_err();
    assert!(
        err.to_string()
            .contains("sequence gap: expected record 2, found 3"),
        "{err}"
    );

    // A complete last record with a bad checksum was written whole, so it
    // may have been acted on: corruption, not a torn tail.
    let mut last_bad = whole.clone();
    last_bad[offsets[2] as usize + 30] ^= 0x01;
    fs::write(&journal, &last_bad).unwrap();
    let err = locked.open_session::<Event>(&id).unwrap_err();
    assert!(
        matches!(err, JournalError::Corrupt { record: 3, .. }),
        "{err}"
    );
    assert_eq!(fs::read(&journal).unwrap(), last_bad);
}

#[test]
fn sessions_are_history_in_creation_order_with_one_in_progress_at_most() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let mut ids = Vec::new();
    for n in 0..4 {
        let mut writer = locked.create_session().unwrap();
        ids.push(writer.id().clone());
        let err = locked.create_session().unwrap_err();
        assert!(
            matches!(&err, JournalError::SessionInProgress { id, .. } if id == writer.id()),
            "{err}"
        );
        assert_eq!(locked.current_session().unwrap().unwrap().id, *writer.id());
        for i in 1..=n {
            writer.append(&note(i)).unwrap();
        }
        writer.finish().unwrap();
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let listed: Vec<SessionId> = locked
        .sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ids);
    assert!(locked.current_session().unwrap().is_none());

    // A session whose creation was interrupted is not a session, and is
    // cleared by the next creation.
    let leftover = path.join("sessions/.tmp-20200101T000000Z-0000");
    fs::create_dir_all(&leftover).unwrap();
    assert_eq!(locked.sessions().unwrap().len(), 4);
    locked.create_session().unwrap();
    assert!(!leftover.exists());

    // Finished history that lost its last record is an error, not a
    // shorter story.
    let info = &locked.sessions().unwrap()[3];
    let report = locked.read_session::<Event>(&info.id).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&info.journal)
        .unwrap()
        .set_len(report.records[2].offset)
        .unwrap();
    let err = locked.read_session::<Event>(&info.id).unwrap_err();
    assert!(
        err.to_string()
            .contains("finished after record 3 but the journal holds 2 records"),
        "{err}"
    );

    let err = locked
        .read_session::<Event>(&SessionId::parse("20200101T000000Z-0000").unwrap())
        .unwrap_err();
    assert!(matches!(err, JournalError::SessionNotFound { .. }), "{err}");
}

#[test]
fn a_second_locker_is_refused_at_once_naming_the_holder() {
    let (_tmp, path) = state_dir();
    let first = StateDir::lock(&path).unwrap();
    let me = std::process::id();
    assert_eq!(first.holder().pid, me);
    // flock belongs to the open file description: a second open in the same
    // process conflicts like another process would.
    // A lock that waited would never return here: the holder is this test.
    let err = StateDir::lock(&path).unwrap_err();
    assert!(
        matches!(&err, JournalError::Locked { holder: Some(h), .. } if h.pid == me),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "state dir {} is locked by pid {me} (since ",
            path.display()
        )),
        "{msg}"
    );
    // What to do about it is the front end's to say (the CLI names
    // `duplex unlock --force`; tests/apply.rs checks that end to end).

    let reader = StateDir::read_only(&path).unwrap();
    assert_eq!(reader.lock_holder().map(|h| h.pid), Some(me));

    // A writer keeps the lock alive after its state dir handle is gone.
    let writer = first.create_session().unwrap();
    drop(first);
    assert!(matches!(
        StateDir::lock(&path),
        Err(JournalError::Locked { .. })
    ));
    drop(writer);
    assert_eq!(reader.lock_holder(), None);
    assert_eq!(
        fs::read(path.join("lock")).unwrap(),
        b"",
        "holder details left after release"
    );
    relock(&path);
}

fn helper(role: &str, dir: &Path) -> Process {
    let mut command = Process::new(std::env::current_exe().unwrap());
    command
        .args([
            "helper_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
            "-q",
        ])
        .env(HELPER_ENV, role)
        .env(DIR_ENV, dir)
        .env_remove(CRASH_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Kills the child on drop, so a failing assertion leaves no process.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn another_process_holding_the_lock_is_named_and_its_death_frees_the_lock() {
    let (_tmp, path) = state_dir();
    let mut child = Reaped(
        helper("hold-lock", &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap() == "locked"),
        "the helper did not take the lock"
    );

    let err = StateDir::lock(&path).unwrap_err();
    assert!(
        matches!(&err, JournalError::Locked { holder: Some(h), .. } if h.pid == child.0.id()),
        "{err}"
    );
    let err = force_unlock(&path).unwrap_err();
    assert!(
        matches!(&err, JournalError::HeldByLiveProcess { holder, .. } if holder.pid == child.0.id()),
        "{err}"
    );
    assert!(
        err.to_string().contains("is alive and holds the lock"),
        "{err}"
    );
    // Readers are not blocked.
    assert!(
        StateDir::read_only(&path)
            .unwrap()
            .sessions()
            .unwrap()
            .is_empty()
    );

    // kill -9: the kernel releases the lock; no unlock is needed.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let locked = relock(&path);
    assert_eq!(locked.holder().pid, std::process::id());
}

fn dead_pid() -> u32 {
    let mut child = Process::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn force_unlock_clears_a_dead_holder_and_refuses_a_live_one() {
    let (_tmp, path) = state_dir();
    assert!(matches!(
        force_unlock(&path),
        Err(JournalError::StateDirMissing { .. })
    ));
    fs::create_dir_all(&path).unwrap();
    assert_eq!(
        force_unlock(&path).unwrap(),
        UnlockOutcome::NotHeld { stale: None }
    );

    // Details left by a holder that was killed: the lock itself is free.
    let dead = LockHolder {
        pid: dead_pid(),
        since_ms: 1_764_034_200_000,
        proc_start: None,
    };
    let lock_file = path.join("lock");
    fs::write(&lock_file, serde_json::to_vec(&dead).unwrap()).unwrap();
    assert!(!dead.is_alive());
    assert_eq!(
        force_unlock(&path).unwrap(),
        UnlockOutcome::NotHeld {
            stale: Some(dead.clone())
        }
    );
    assert_eq!(fs::read(&lock_file).unwrap(), b"");

    // A live holder (this process) is never broken.
    let locked = StateDir::lock(&path).unwrap();
    let err = force_unlock(&path).unwrap_err();
    assert!(
        matches!(&err, JournalError::HeldByLiveProcess { holder, .. } if holder.pid == std::process::id()),
        "{err}"
    );
    drop(locked);

    // The recorded holder is dead but its lock lives on in a descriptor
    // another process inherited (played here by this one): the lock file
    // is replaced, and the next locker locks the new one.
    let inherited = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&lock_file)
        .unwrap();
    retry_while_shared(|| inherited.try_lock().ok());
    fs::write(&lock_file, serde_json::to_vec(&dead).unwrap()).unwrap();
    let old_inode = fs::metadata(&lock_file).unwrap().ino();
    assert!(
        matches!(StateDir::lock(&path), Err(JournalError::Locked { holder: Some(h), .. }) if h.pid == dead.pid)
    );
    assert_eq!(
        force_unlock(&path).unwrap(),
        UnlockOutcome::Broken { holder: dead }
    );
    let locked = StateDir::lock(&path).unwrap();
    assert_ne!(fs::metadata(&lock_file).unwrap().ino(), old_inode);
    assert_eq!(locked.holder().pid, std::process::id());
    drop(inherited);
}

#[test]
fn a_follower_sees_every_record_while_another_thread_appends() {
    const N: u64 = 300;
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let mut writer = locked.create_session().unwrap();
    let id = writer.id().clone();
    let reader = StateDir::read_only(&path).unwrap();
    let mut follower = reader.follow::<Event>(&id).unwrap();
    let appender = std::thread::spawn(move || {
        for i in 1..=N {
            writer.append(&note(i)).unwrap();
        }
        writer.finish().unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = Vec::new();
    loop {
        let done = follower.session_finished();
        seen.extend(follower.poll().unwrap());
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "follower saw {} of {N} records",
            seen.len()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    appender.join().unwrap();
    assert_eq!(
        seen.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=N).collect::<Vec<_>>()
    );
    assert!(
        seen.iter()
            .enumerate()
            .all(|(i, r)| r.event == note(i as u64 + 1))
    );
    assert!(follower.poll().unwrap().is_empty());
}

#[test]
fn a_follower_waits_for_a_record_still_being_written() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let (id, journal, whole) = session_with(&locked, 3);
    let reader = StateDir::read_only(&path).unwrap();
    let last = reader.read_session::<Event>(&id).unwrap().records[2].offset;
    fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .unwrap()
        .set_len(last)
        .unwrap();

    let mut follower = reader.follow::<Event>(&id).unwrap();
    assert_eq!(follower.poll().unwrap().len(), 2);
    // Write the third record a byte at a time, as a slow writer would.
    let mut raw = fs::OpenOptions::new().append(true).open(&journal).unwrap();
    for (i, byte) in whole[last as usize..].iter().enumerate() {
        raw.write_all(&[*byte]).unwrap();
        let got = follower.poll().unwrap();
        if last as usize + i + 1 < whole.len() {
            assert!(
                got.is_empty(),
                "a partial record was returned after {} bytes",
                i + 1
            );
            let torn = reader
                .read_session::<Event>(&id)
                .unwrap()
                .torn_tail
                .unwrap();
            assert_eq!(
                (torn.offset, torn.bytes, torn.cut),
                (last, i as u64 + 1, false)
            );
        } else {
            assert_eq!(got.len(), 1);
            assert_eq!((got[0].seq, &got[0].event), (3, &note(3)));
        }
    }
    assert_eq!(follower.offset(), whole.len() as u64);
}

/// A session directory that holds a journal under a name that is no id
/// (an older duplex once wrote `100000101T000000Z-…` after a far-future
/// id) is never skipped: every listing, and so every writer, refuses it,
/// naming it, so no second session can start beside one nobody sees.
#[test]
fn a_session_under_a_name_that_is_no_id_is_refused_not_skipped() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    // Things that are not sessions are passed over.
    fs::write(path.join("sessions/notes.txt"), "mine").unwrap();
    fs::create_dir(path.join("sessions/empty")).unwrap();
    assert!(locked.sessions().unwrap().is_empty());
    let unnamed = path.join("sessions/100000101T000000Z-1234");
    fs::create_dir(&unnamed).unwrap();
    fs::write(unnamed.join("journal"), "").unwrap();
    for err in [
        locked.sessions().unwrap_err(),
        locked.current_session().unwrap_err(),
        locked.create_session().unwrap_err(),
        StateDir::read_only(&path).unwrap().sessions().unwrap_err(),
    ] {
        assert!(
            matches!(&err, JournalError::UnnamedSession { path } if *path == unnamed),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(&format!(
                "{} holds a journal, but its name is not a session id",
                unnamed.display()
            )),
            "{err}"
        );
    }
}

/// Journals and markers are read only from regular files: one replaced by
/// a link to `/dev/zero` (read without end) or by a FIFO (read forever) is
/// refused, naming the file.
#[test]
fn journal_files_and_markers_that_are_not_regular_files_are_refused() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let (id, journal, _) = session_with(&locked, 2);
    let reader = StateDir::read_only(&path).unwrap();
    let fifo = journal.with_file_name("fifo");
    assert!(
        Process::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (target, kind) in [
        (Path::new("/dev/zero"), "a character device"),
        (fifo.as_path(), "a named pipe (FIFO)"),
    ] {
        fs::remove_file(&journal).unwrap();
        std::os::unix::fs::symlink(target, &journal).unwrap();
        let errors = [
            reader.read_session::<Event>(&id).unwrap_err(),
            locked.open_session::<Event>(&id).unwrap_err(),
            reader.follow::<Event>(&id).unwrap_err(),
        ];
        for err in errors {
            assert!(
                matches!(&err, JournalError::NotARegularFile { path, .. } if *path == journal),
                "{err}"
            );
            assert!(
                err.to_string().starts_with(&format!(
                    "{} is {kind}, not a regular file",
                    journal.display()
                )),
                "{err}"
            );
        }
    }

    let marker = journal.with_file_name("finished");
    std::os::unix::fs::symlink("/dev/zero", &marker).unwrap();
    let err = reader.sessions().unwrap_err();
    assert!(
        matches!(&err, JournalError::NotARegularFile { path, .. } if *path == marker),
        "{err}"
    );
}

/// A record has a maximum size: the writer refuses a larger one before
/// writing a byte (and goes on taking records), and a reader refuses a
/// header declaring a larger body as corruption.
#[test]
fn a_record_over_the_size_limit_is_refused_by_the_writer_and_the_reader() {
    let (_tmp, path) = state_dir();
    let locked = StateDir::lock(&path).unwrap();
    let mut writer = locked.create_session().unwrap();
    let id = writer.id().clone();
    let huge = Event::Note {
        text: "x".repeat(duplex_core::journal::MAX_RECORD_BYTES as usize),
    };
    let err = writer.append(&huge).unwrap_err();
    assert!(
        matches!(err, JournalError::RecordTooLarge { seq: 1, bytes, .. } if bytes > duplex_core::journal::MAX_RECORD_BYTES),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("a record holds at most 1048576 bytes"),
        "{err}"
    );
    assert_eq!(fs::metadata(writer.path()).unwrap().len(), 0);
    assert!(!writer.is_poisoned());
    assert_eq!(writer.append(&note(1)).unwrap(), 1);
    let journal = writer.path().to_path_buf();
    drop(writer);

    let mut bytes = fs::read(&journal).unwrap();
    let first = bytes.len() as u64;
    bytes.extend_from_slice(b"00000000 2000000 {\"seq\":2");
    fs::write(&journal, &bytes).unwrap();
    let reader = StateDir::read_only(&path).unwrap();
    for err in [
        reader.read_session::<Event>(&id).unwrap_err(),
        locked.open_session::<Event>(&id).unwrap_err(),
    ] {
        assert!(
            matches!(&err, JournalError::Corrupt { record: 2, offset, what, .. }
                if *offset == first && what.contains("more than 1048576 bytes")),
            "{err}"
        );
    }
}

/// A session dir from the far future (a clock once set to 9999) used to
/// push the next id past year 9999, where it could not be read back: that
/// session was invisible to `status` and `resume`, and a second `apply`
/// started another. Ids are now ordered by number, not by the clock.
#[test]
fn a_session_from_the_far_future_does_not_hide_the_next_one() {
    let site = support::Site::new();
    site.policy("", "");
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let sessions = site.state_dir().join("sessions");
    let only = fs::read_dir(&sessions)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    fs::rename(&only, sessions.join("99991231T235959Z-ffff")).unwrap();

    let out = site.apply(&["--until", "Split"]);
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let status = site.status_json();
    assert_eq!(status["state"], "Split", "{status}");
    let id = status["session"].as_str().unwrap().to_string();
    assert!(id.starts_with("000001-"), "{id}");
    // The second apply carries on that session; it starts no other.
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let mut names: Vec<String> = fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [id.clone(), "99991231T235959Z-ffff".to_string()]);
    let history = site.duplex(&["history", "--output", "json"]);
    assert_eq!(history.code, 0, "{}", history.stderr);
    assert!(history.stdout.contains(&id), "{}", history.stdout);
}

const CRASH_RECORDS: u64 = 4;

/// The helper's writer: resume the current session (or start one), append
/// the notes it lacks, finish.
fn crash_writer(dir: &Path) {
    let state = StateDir::lock(dir).unwrap();
    let mut writer = match state.current_session().unwrap() {
        Some(info) => {
            let (writer, report) = state.open_session::<Event>(&info.id).unwrap();
            if let Some(torn) = report.torn_tail {
                println!("warning: {torn}");
            }
            writer
        }
        None => state.create_session().unwrap(),
    };
    for i in writer.next_seq()..=CRASH_RECORDS {
        writer.append_at(i * 1000, &note(i)).unwrap();
    }
    writer.finish().unwrap();
    println!("{CRASH_WRITER_DONE}");
}

/// What a crash-writer helper prints once its session is finished.
const CRASH_WRITER_DONE: &str = "crash-writer: session finished";

fn journal_of_only_session(dir: &Path) -> Vec<u8> {
    let sessions = StateDir::read_only(dir).unwrap().sessions().unwrap();
    assert_eq!(sessions.len(), 1);
    fs::read(&sessions[0].journal).unwrap()
}

#[test]
fn a_kill_at_every_record_boundary_resumes_to_the_same_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = tmp.path().join("reference");
    let out = helper("crash-writer", &reference)
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(CRASH_WRITER_DONE),
        "the helper did not write the reference session: {out:?}"
    );
    let expected = journal_of_only_session(&reference);

    for point in ["before-write", "mid-write", "after-write", "after-sync"] {
        for seq in 1..=CRASH_RECORDS {
            let dir = tmp.path().join(format!("{point}-{seq}"));
            let status = helper("crash-writer", &dir)
                .env(CRASH_ENV, format!("{seq}:{point}"))
                .status()
                .unwrap();
            assert_eq!(status.signal(), Some(9), "{point} {seq}: {status:?}");

            let reader = StateDir::read_only(&dir).unwrap();
            let current = reader
                .current_session()
                .unwrap()
                .expect("an unfinished session");
            let report = reader.read_session::<Event>(&current.id).unwrap();
            // kill -9 keeps what `write` put in the page cache.
            let durable = if point.starts_with("after") {
                seq
            } else {
                seq - 1
            };
            assert_eq!(report.records.len() as u64, durable, "{point} {seq}");
            assert_eq!(
                report.torn_tail.is_some(),
                point == "mid-write",
                "{point} {seq}"
            );

            let resumed = helper("crash-writer", &dir)
                .stdout(Stdio::piped())
                .output()
                .unwrap();
            assert!(resumed.status.success(), "{point} {seq}: {resumed:?}");
            let said = String::from_utf8_lossy(&resumed.stdout);
            assert!(said.contains(CRASH_WRITER_DONE), "{point} {seq}: {said}");
            assert_eq!(
                said.contains("has been cut"),
                point == "mid-write",
                "{point} {seq}: {said}"
            );
            assert_eq!(journal_of_only_session(&dir), expected, "{point} {seq}");
            assert!(reader.current_session().unwrap().is_none());
        }
    }
}

/// Not a test on its own: the body of the child processes above, which
/// run it with `--ignored` and their role in `DUPLEX_JOURNAL_TEST_HELPER`.
#[test]
#[ignore = "the body of the helper processes the other tests start"]
fn helper_process() {
    let role = std::env::var(HELPER_ENV).unwrap_or_else(|_| {
        panic!("{HELPER_ENV} is not set: this is the helper process of the other tests, not a test")
    });
    let dir = PathBuf::from(std::env::var(DIR_ENV).unwrap());
    match role.as_str() {
        "hold-lock" => {
            let _locked = StateDir::lock(&dir).unwrap();
            println!("locked");
            std::io::stdout().flush().unwrap();
            // The parent kills us; never outlive it by much.
            std::thread::sleep(Duration::from_secs(60));
        }
        "crash-writer" => crash_writer(&dir),
        "snapshot-recorder" => snapshot_recorder(&dir),
        other => panic!("unknown helper role {other}"),
    }
}

/// The records the snapshot helper writes: past two snapshots.
const SNAPSHOT_RECORDS: u64 = 2 * duplex_core::engine::SNAPSHOT_EVERY_RECORDS + 10;

/// The helper that records through the engine's `Recorder` (which takes
/// the snapshots), with the real events.
fn snapshot_recorder(dir: &Path) {
    use duplex_core::engine::{Event as Real, Recorder, RequestId, Session};
    let state = StateDir::lock(dir).unwrap();
    let first = Real::SessionStarted {
        policy: "p".into(),
        policy_file: dir.join("p.yaml").display().to_string(),
        policy_digest: "0".repeat(64),
        target: "t".into(),
        format: duplex_core::engine::JOURNAL_FORMAT,
        hardware: None,
        origin: None,
    };
    let writer = state.create_session_with(1, &first, &[]).unwrap();
    let session = Session::start(&first, 1).unwrap();
    let clock = duplex_core::clock::SystemClock::shared();
    let mut rec = Recorder::new(
        writer,
        session,
        Box::new(duplex_core::engine::sink::NoSink),
        clock,
    );
    for n in 2..=SNAPSHOT_RECORDS {
        rec.record(Real::PluginCall {
            request: RequestId::Partner,
            plugin: "p".into(),
            ok: true,
            outcome: format!("call {n}"),
            duration_ms: 0,
            logs: Vec::new(),
            repeats: 0,
        })
        .unwrap();
    }
}

#[test]
fn a_kill_between_a_record_and_its_snapshot_reads_as_a_full_replay() {
    use duplex_core::app::{App, AppConfig};
    let every = duplex_core::engine::SNAPSHOT_EVERY_RECORDS;
    let tmp = tempfile::tempdir().unwrap();
    // Killed right after the record that takes the second snapshot is
    // durable, before the snapshot is written: the first one is stale.
    let at = 2 * every + 1;
    let status = helper("snapshot-recorder", tmp.path())
        .env(CRASH_ENV, format!("{at}:after-sync"))
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let session = StateDir::read_only(tmp.path())
        .unwrap()
        .current_session()
        .unwrap()
        .unwrap();
    let snapshot: serde_json::Value =
        serde_json::from_slice(&fs::read(session.dir.join("snapshot")).unwrap()).unwrap();
    assert_eq!(
        snapshot["at"]["seq"],
        every + 1,
        "the first snapshot, stale"
    );
    let app = App::new(AppConfig {
        state_dir: tmp.path().to_path_buf(),
        cache_dir: None,
        clock: duplex_core::clock::SystemClock::shared(),
        pacing: duplex_core::engine::Pacing::default(),
    });
    let from_snapshot = (app.status().unwrap(), app.history().unwrap());
    fs::remove_file(session.dir.join("snapshot")).unwrap();
    let replayed = (app.status().unwrap(), app.history().unwrap());
    assert_eq!(from_snapshot, replayed);
    let records = StateDir::read_only(tmp.path())
        .unwrap()
        .read_session::<duplex_core::engine::Event>(&session.id)
        .unwrap()
        .records;
    assert_eq!(records.len() as u64, at);
}
