//! What a person (or a machine) sees while the engine runs, and how a
//! recorded event reads in the activity log. The live view and `duplex log`
//! share `describe`, so both tell the same story.

use super::session::{Event, Session};
use crate::journal::format_utc;
use crate::model::Command;
use std::io::{IsTerminal, Write};

/// Receives every recorded event, and progress that is not recorded.
pub trait View {
    fn record(&mut self, seq: u64, ts_ms: u64, event: &Event, session: &Session);
    fn progress(&mut self, request: &str, percent: u8, message: &str);
}

/// `HH:MM:SS.mmm` (UTC) of a timestamp in ms.
pub fn clock_time(ms: u64) -> String {
    let utc = format_utc(ms);
    format!("{}.{:03}", utc.get(11..19).unwrap_or(&utc), ms % 1000)
}

/// One line of text for an event.
pub fn describe(event: &Event) -> String {
    match event {
        Event::SessionStarted {
            policy,
            policy_file,
            target,
            ..
        } => format!("session started: policy {policy} ({policy_file}) on {target}"),
        Event::Model { command } => match command {
            Command::Start => "start → PrepareSplit".into(),
            Command::Begin => "begin request (attempt 1)".into(),
            Command::Complete => "request done: Ready".into(),
            Command::Fail { reason } => format!("request failed: Broken: {reason}"),
            Command::Retry => "retry request".into(),
            Command::Advance => "advance".into(),
            Command::Abort => "ABORT: restore the original configuration".into(),
            Command::Finish => "finish".into(),
            Command::ObservePartner { partner } => format!("partner side is {partner}"),
        },
        Event::Approved { before, by } => format!("approved before {before:?} by {by}"),
        Event::PluginCall {
            plugin,
            call,
            outcome,
            duration_ms,
            request,
            ..
        } => format!("{plugin} {call} [{request}]: {outcome} ({duration_ms} ms)"),
        Event::CheckRan {
            check,
            verdict,
            message,
            consecutive_failures,
        } => {
            if *consecutive_failures > 0 {
                format!("check `{check}`: {verdict} ({consecutive_failures} in a row): {message}")
            } else {
                format!("check `{check}`: {verdict}: {message}")
            }
        }
        Event::RetryScheduled { attempt, delay_ms } => {
            format!(
                "retry (attempt {attempt}) in {}",
                crate::policy::HumanDuration::from(std::time::Duration::from_millis(*delay_ms))
            )
        }
        Event::AutoAbort {
            rule,
            action,
            reason,
        } => {
            format!(
                "auto-abort rule `{rule}` fired ({}): {reason}",
                format!("{action:?}").to_lowercase()
            )
        }
        Event::Held { reason } => format!("HELD for a person: {reason}"),
        Event::Drift { recorded, current } => format!(
            "policy drift: the session runs the policy it started with (sha256 {}…); the file now has sha256 {}…",
            &recorded[..recorded.len().min(12)],
            &current[..current.len().min(12)]
        ),
        Event::AbortRequested { by } => format!("abort requested by {by}"),
        Event::NotRetryable => "the failure is marked not retryable".into(),
        Event::Resumed { pid, at } if at.contains("(Busy)") => {
            format!("runner resumed (pid {pid}) in {at}: the interrupted request runs again")
        }
        Event::Resumed { pid, at } => format!("runner resumed (pid {pid}) in {at}"),
        Event::SessionEnded { outcome } => format!("session ended: {outcome:?}"),
    }
}

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

impl View for HumanView {
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

impl View for JsonView {
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

/// Records nothing anywhere (for library users and tests).
pub struct NoView;

impl View for NoView {
    fn record(&mut self, _: u64, _: u64, _: &Event, _: &Session) {}
    fn progress(&mut self, _: &str, _: u8, _: &str) {}
}
