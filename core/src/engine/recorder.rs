//! The one way a session's events are written: asked of the model, appended
//! (and fsync'd) to the journal, folded into the in-memory session, then
//! shown to the sink — in that order, so nothing is acted on or shown that
//! is not durable, and the engine's view is the fold a later resume makes.

use super::EngineError;
use super::event::{Event, Session};
use super::sink::{EventSink, Notice, ProgressUpdate, Recorded};
use crate::clock::SharedClock;
use crate::journal::{Finished, SessionWriter};

pub struct Recorder {
    writer: SessionWriter,
    session: Session,
    sink: Box<dyn EventSink>,
    clock: SharedClock,
}

impl Recorder {
    pub fn new(
        writer: SessionWriter,
        session: Session,
        sink: Box<dyn EventSink>,
        clock: SharedClock,
    ) -> Recorder {
        Recorder {
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
        let seq = self
            .writer
            .append_at(ts, &event)
            .map_err(EngineError::Journal)?;
        self.session
            .apply_at(seq, ts, &event)
            .map_err(|e| EngineError::Internal(format!("record {seq} does not fold: {e}")))?;
        self.sink.record(&Recorded {
            seq,
            ts_ms: ts,
            event: &event,
            session: &self.session,
        });
        Ok(seq)
    }

    /// Show a record already in the journal (the first one, written when the
    /// session was created) as if it had just been recorded.
    pub fn announce(&mut self, seq: u64, ts_ms: u64, event: &Event) {
        self.sink.record(&Recorded {
            seq,
            ts_ms,
            event,
            session: &self.session,
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
        self.writer.finish().map_err(EngineError::Journal)
    }
}
