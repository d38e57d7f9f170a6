//! The live views of a run: plain lines (progress redrawn in place on a
//! terminal) or one JSON object per recorded event. Both write through
//! `output`, so a closed pipe ends the output and never the run.

use super::output;
use duplex_core::engine::sink::{
    EventSink, Notice, ProgressUpdate, Recorded, clock_time, describe, is_pending_poll, newsworthy,
};
use std::io::IsTerminal;

/// Plain lines on stdout; on a terminal, pending progress is redrawn in place.
pub struct HumanView {
    tty: bool,
    /// A progress line is on screen and must be cleared before the next line.
    dirty: bool,
}

impl HumanView {
    pub fn new() -> Self {
        HumanView {
            tty: std::io::stdout().is_terminal(),
            dirty: false,
        }
    }

    fn clear_progress(&mut self) {
        if self.dirty {
            output::control_then("\r\x1b[2K", "");
            self.dirty = false;
        }
    }
}

impl EventSink for HumanView {
    fn record(&mut self, r: &Recorded<'_>) {
        if !newsworthy(r.event) || (self.tty && is_pending_poll(r.event)) {
            return;
        }
        self.clear_progress();
        let c = &r.session.config;
        output::line(&format!(
            "{}  {:<12} {:<6}  {}",
            clock_time(r.ts_ms),
            c.state.to_string(),
            c.status().to_string(),
            describe(r.event)
        ));
    }

    fn progress(&mut self, p: &ProgressUpdate) {
        if !self.tty {
            return; // the recorded poll already said it
        }
        let width = 30;
        let filled = (usize::from(p.percent.min(100)) * width) / 100;
        output::control_then(
            "\r\x1b[2K",
            &format!(
                "          {:<20} [{}{}] {:>3}% {}",
                p.label,
                "#".repeat(filled),
                "-".repeat(width - filled),
                p.percent,
                p.message
            ),
        );
        self.dirty = true;
    }

    fn notice(&mut self, notice: &Notice) {
        self.clear_progress();
        match notice {
            Notice::Opened {
                session,
                resumed,
                policy,
                target,
                at,
            } => output::line(&format!(
                "{} session {session} of policy {policy} on {target} ({at}); times are UTC",
                if *resumed { "Resuming" } else { "Started" }
            )),
            other => render_notice(other),
        }
    }
}

/// One JSON object per recorded event on stdout (`--output json`).
pub struct JsonView;

impl EventSink for JsonView {
    fn record(&mut self, r: &Recorded<'_>) {
        let line = serde_json::json!({
            "seq": r.seq,
            "tsMs": r.ts_ms,
            "state": r.session.config.state,
            "status": r.session.config.status(),
            "event": r.event,
        });
        output::json_line(&line.to_string());
    }

    fn progress(&mut self, _: &ProgressUpdate) {}

    fn notice(&mut self, notice: &Notice) {
        if !matches!(notice, Notice::Opened { .. }) {
            render_notice(notice);
        }
    }
}

/// Notices that go to stderr in either view.
fn render_notice(notice: &Notice) {
    match notice {
        Notice::TornTailCut(torn) => output::eline(&format!("warning: {torn}")),
        Notice::Compiling { plugin } => output::eline(&format!(
            "compiling plugin `{plugin}` (first use with this cache; later runs load it in milliseconds)…"
        )),
        Notice::Stopping { why } => output::eline(&format!(
            "{why}: stopping at the next safe point; the session is kept for `duplex resume` (send it again to stop at once)"
        )),
        Notice::Waiting { what } => output::eline(&format!("{what}…")),
        Notice::Opened { .. } => {}
    }
}
