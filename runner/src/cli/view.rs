//! The live views of a run: plain lines (progress redrawn in place on a
//! terminal) or one JSON object per recorded event.

use duplex_core::engine::view::{EventSink, clock_time, describe};
use duplex_core::engine::{Event, Session};
use std::io::{IsTerminal, Write};

/// Whether the live view shows an event. The journal keeps everything; a
/// person watching wants changes: a check's verdict is shown by its
/// `checkRan` line and a partner report by the change it makes, so their
/// successful plugin calls are not repeated, and on a terminal pending polls
/// are drawn as a progress bar instead.
fn newsworthy(event: &Event, tty: bool) -> bool {
    match event {
        Event::PluginCall {
            request,
            ok,
            outcome,
            ..
        } => {
            let repeated = *ok && (request.starts_with("check/") || request == "partner");
            let progress = tty && *ok && outcome.starts_with("pending");
            !repeated && !progress
        }
        _ => true,
    }
}

/// Plain lines on stdout; on a terminal, pending progress is redrawn in place.
pub struct HumanView {
    out: std::io::Stdout,
    tty: bool,
    /// A progress line is on screen and must be cleared before the next line.
    dirty: bool,
}

impl Default for HumanView {
    fn default() -> Self {
        Self::new()
    }
}

impl HumanView {
    pub fn new() -> Self {
        let out = std::io::stdout();
        let tty = out.is_terminal();
        HumanView {
            out,
            tty,
            dirty: false,
        }
    }
}

impl EventSink for HumanView {
    fn record(&mut self, _seq: u64, ts_ms: u64, event: &Event, session: &Session) {
        if !newsworthy(event, self.tty) {
            return;
        }
        let mut out = self.out.lock();
        if self.dirty {
            let _ = write!(out, "\r\x1b[2K");
            self.dirty = false;
        }
        let time = clock_time(ts_ms);
        let c = &session.config;
        let _ = writeln!(
            out,
            "{time}  {:<12} {:<6}  {}",
            c.state.to_string(),
            c.status().to_string(),
            describe(event)
        );
        let _ = out.flush();
    }

    fn progress(&mut self, request: &str, percent: u8, message: &str) {
        if !self.tty {
            return; // the recorded poll already said it
        }
        let mut out = self.out.lock();
        let width = 30;
        let filled = (usize::from(percent.min(100)) * width) / 100;
        let _ = write!(
            out,
            "\r\x1b[2K          {request:<20} [{}{}] {percent:>3}% {message}",
            "#".repeat(filled),
            "-".repeat(width - filled)
        );
        let _ = out.flush();
        self.dirty = true;
    }
}

/// One JSON object per recorded event on stdout (`--output json`).
pub struct JsonView;

impl EventSink for JsonView {
    fn record(&mut self, seq: u64, ts_ms: u64, event: &Event, session: &Session) {
        let line = serde_json::json!({
            "seq": seq,
            "tsMs": ts_ms,
            "state": session.config.state,
            "status": session.config.status(),
            "event": event,
        });
        println!("{line}");
    }

    fn progress(&mut self, _: &str, _: u8, _: &str) {}
}
