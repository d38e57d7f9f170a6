//! Where the engine's events go while it runs ([`EventSink`]), and how a
//! recorded event reads in the activity log. Front ends render; the live
//! view and `duplex log` share [`describe`], so both tell the same story.

use super::session::{Event, Session};
use crate::journal::format_utc;
use crate::model::Command;

/// Receives every recorded event, and progress that is not recorded. Owned
/// by the engine and `Send`, so a run can be spawned as a task: the CLI's
/// human and JSON views implement it, the agent will stream it.
pub trait EventSink: Send {
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

/// Records nothing anywhere (for library users and tests).
pub struct NoView;

impl EventSink for NoView {
    fn record(&mut self, _: u64, _: u64, _: &Event, _: &Session) {}
    fn progress(&mut self, _: &str, _: u8, _: &str) {}
}
