//! The one way a session's events are written: asked of the model, appended
//! (and fsync'd) to the journal, folded into the in-memory session, then
//! shown to the sink — in that order, so nothing is acted on or shown that
//! is not durable, and the engine's view is the fold a later resume makes.

use super::EngineError;
use super::event::{Event, Session, SessionSummary};
use super::sink::{EventSink, Notice, ProgressUpdate, Recorded};
use crate::clock::SharedClock;
use crate::journal::{Finished, JournalError, SessionWriter};
use std::time::Instant;

/// The fold is saved as the session's snapshot (see
/// [`SessionWriter::save_snapshot`]) once this many records, or this many
/// journal bytes, have been appended since the last one, so that `status`
/// replays at most about that much of a journal however long it grows. A
/// snapshot is not fsynced (a reader checks it against the journal), so it
/// adds nothing to a session's fsyncs; a whole ordinary session (about 40
/// records) writes none.
pub const SNAPSHOT_EVERY_RECORDS: u64 = 128;
pub const SNAPSHOT_EVERY_BYTES: u64 = 64 * 1024;

pub struct Recorder {
    writer: SessionWriter,
    session: Session,
    sink: Box<dyn EventSink>,
    clock: SharedClock,
    /// Where the last snapshot was taken: (next seq, journal bytes).
    snapshot_at: (u64, u64),
}

/// Mark `writer`'s session finished, its marker carrying the summary of
/// `session` (the fold of its journal) that `status` and `history` show.
pub fn finish_session(writer: SessionWriter, session: &Session) -> Result<Finished, JournalError> {
    let summary = serde_json::to_value(SessionSummary::from(session)).ok();
    writer.finish_with(summary)
}

impl Recorder {
    pub fn new(
        writer: SessionWriter,
        session: Session,
        sink: Box<dyn EventSink>,
        clock: SharedClock,
    ) -> Recorder {
        Recorder {
            snapshot_at: (writer.next_seq(), writer.len_bytes()),
            writer,
            session,
            sink,
            clock,
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn session_id(&self) -> &crate::journal::SessionId {
        self.writer.id()
    }

    /// Bytes in the session's journal so far.
    pub fn journal_bytes(&self) -> u64 {
        self.writer.len_bytes()
    }

    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Append an event and let the session and the sink see it. The model is
    /// asked first, so a command it refuses is never written.
    pub fn record(&mut self, event: Event) -> Result<u64, EngineError> {
        if let Event::Model { command } = &event {
            self.session
                .config
                .apply(command)
                .map_err(EngineError::Model)?;
        }
        let ts = self.clock.wall_ms();
        // A measurement of the host (how long the disk took), not session
        // time: the engine's Clock may be simulated, and nothing decides on
        // this; front ends report it (the agent's journal latency metric).
        let appending = Instant::now();
        let seq = self
            .writer
            .append_at(ts, &event)
            .map_err(EngineError::Journal)?;
        let append = appending.elapsed();
        self.session
            .apply_at(seq, ts, &event)
            .map_err(|e| EngineError::Internal(format!("record {seq} does not fold: {e}")))?;
        let (since_seq, since_bytes) = self.snapshot_at;
        if seq + 1 - since_seq >= SNAPSHOT_EVERY_RECORDS
            || self.writer.len_bytes() - since_bytes >= SNAPSHOT_EVERY_BYTES
        {
            // A snapshot only saves readers time: one that cannot be written
            // (the journal's own appends report a full disk) is skipped.
            let _ = self.writer.save_snapshot(&self.session);
            self.snapshot_at = (seq + 1, self.writer.len_bytes());
        }
        self.sink.record(&Recorded {
            session_id: self.writer.id(),
            seq,
            ts_ms: ts,
            event: &event,
            session: &self.session,
            append: Some(append),
        });
        Ok(seq)
    }

    /// Show a record already in the journal (the first one, written when the
    /// session was created) as if it had just been recorded.
    pub fn announce(&mut self, seq: u64, ts_ms: u64, event: &Event) {
        self.sink.record(&Recorded {
            session_id: self.writer.id(),
            seq,
            ts_ms,
            event,
            session: &self.session,
            append: None,
        });
    }

    pub fn progress(&mut self, label: impl Into<String>, percent: u8, message: impl Into<String>) {
        self.sink.progress(&ProgressUpdate {
            label: label.into(),
            percent,
            message: message.into(),
        });
    }

    pub fn notice(&mut self, notice: &Notice) {
        self.sink.notice(notice);
    }

    /// Mark the session finished (after its last record).
    pub fn finish(self) -> Result<Finished, EngineError> {
        finish_session(self.writer, &self.session).map_err(EngineError::Journal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SimulatedClock;
    use crate::engine::sink::Recorded;
    use crate::journal::StateDir;
    use crate::model::Command;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    /// Each record's seq and append time, as the sink saw them.
    type Seen = Arc<Mutex<Vec<(u64, Option<Duration>)>>>;

    struct Appends(Seen);

    impl EventSink for Appends {
        fn record(&mut self, r: &Recorded<'_>) {
            self.0.lock().unwrap().push((r.seq, r.append));
        }
        fn progress(&mut self, _: &ProgressUpdate) {}
        fn notice(&mut self, _: &Notice) {}
    }

    #[test]
    fn appended_records_carry_their_append_time_and_announced_ones_none() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::lock(tmp.path().join("state")).unwrap();
        let first = Event::SessionStarted {
            policy: "demo".into(),
            policy_file: "demo.yaml".into(),
            policy_digest: "ab".repeat(32),
            target: "demo".into(),
            format: crate::engine::JOURNAL_FORMAT,
            hardware: None,
            origin: None,
        };
        let writer = dir.create_session_with(1_000, &first, &[]).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        // A simulated clock that never moves: the append time is the host's,
        // measured whatever the session's clock says.
        let mut rec = Recorder::new(
            writer,
            Session::start(&first, 1_000).unwrap(),
            Box::new(Appends(seen.clone())),
            SimulatedClock::starting_at(1_000),
        );
        rec.announce(1, 1_000, &first);
        rec.record(Event::Model {
            command: Command::Start,
        })
        .unwrap();
        rec.record(Event::Model {
            command: Command::Begin,
        })
        .unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0], (1, None));
        for (seq, append) in &seen[1..] {
            // An fsync'd append takes some time, and not a minute.
            let append = append.unwrap_or_else(|| panic!("record {seq} has no append time"));
            assert!(append > Duration::ZERO && append < Duration::from_secs(60));
        }
        assert_eq!((seen[1].0, seen[2].0), (2, 3));
    }
}
