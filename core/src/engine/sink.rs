//! Where the engine's events go while it runs ([`EventSink`]), and how a
//! recorded event reads in the activity log. Front ends render; the live
//! view and `duplex log` share [`describe`], so both tell the same story.

use super::event::{Event, RequestId, Session};
use crate::journal::{TornTail, format_utc};
use crate::model::{Command, Configuration, Disposition};
use crate::policy::HumanDuration;
use std::time::Duration;

/// Receives every recorded event, progress that is not recorded, and
/// notices for whoever watches. Owned by the engine and `Send`, so a run
/// can be spawned as a task (and `Sync`, as the engine is shared across its
/// awaits): the CLI's human and JSON views implement it,
/// the agent will stream it. A sink must not fail the run: when its reader
/// goes away it stops writing, and the session carries on.
pub trait EventSink: Send + Sync {
    /// A record was appended and is durable.
    fn record(&mut self, record: &Recorded<'_>);
    /// A long step moved on (not recorded in the journal).
    fn progress(&mut self, progress: &ProgressUpdate);
    /// Something worth telling (not recorded in the journal).
    fn notice(&mut self, notice: &Notice);
}

/// One record as it was appended, with the session after it.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// The session the record belongs to.
    pub session_id: &'a crate::journal::SessionId,
    pub seq: u64,
    pub ts_ms: u64,
    pub event: &'a Event,
    pub session: &'a Session,
    /// How long appending this record to the journal took, its fsync
    /// included, as the host measured it; `None` for a record shown but not
    /// appended now ([`Recorder::announce`](super::Recorder::announce): the
    /// first record, written when the session was created).
    pub append: Option<Duration>,
}

/// How far a long step is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgressUpdate {
    /// The piece of work (`op/split`, `install/acme-app`), or `verification`.
    pub label: String,
    pub percent: u8,
    pub message: String,
}

/// What a watcher is told that the journal does not keep.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A crash left an incomplete last record; it was cut before going on.
    TornTailCut(TornTail),
    /// A plugin is being compiled (first use on this machine): it takes a
    /// few seconds, then it is cached.
    Compiling { plugin: String },
    /// The run is about to drive a session.
    Opened {
        session: String,
        resumed: bool,
        policy: String,
        target: String,
        at: Configuration,
    },
    /// Asked to stop: the run stops at its next safe point.
    Stopping { why: String },
    /// The run waits for an operator's command (an approval, a release)
    /// instead of stopping: its front end keeps it going.
    Waiting { what: String },
}

/// A sink that drops everything (library users and benchmarks).
pub struct NoSink;

impl EventSink for NoSink {
    fn record(&mut self, _: &Recorded<'_>) {}
    fn progress(&mut self, _: &ProgressUpdate) {}
    fn notice(&mut self, _: &Notice) {}
}

/// `HH:MM:SS.mmm` (UTC) of a timestamp in ms.
pub fn clock_time(ms: u64) -> String {
    let utc = format_utc(ms);
    format!("{}.{:03}", utc.get(11..19).unwrap_or(&utc), ms % 1000)
}

/// One line of text for an event. Plain text: it may hold whatever a
/// plugin said, so a terminal front end escapes control characters.
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
            Command::Fail {
                reason,
                disposition,
            } => match disposition {
                Disposition::Retryable => format!("request failed: Broken: {reason}"),
                Disposition::Final => {
                    format!("request failed: Broken (not retryable): {reason}")
                }
                Disposition::Hold => {
                    format!("request failed: Broken (a person must decide): {reason}")
                }
            },
            Command::Retry => "retry request".into(),
            Command::Advance => "advance".into(),
            Command::Abort => "ABORT: restore the original configuration".into(),
            Command::Finish => "finish".into(),
            Command::ObservePartner { partner } => format!("partner side is {partner}"),
        },
        Event::Approved { before, by } => format!("approved before {before:?} by {by}"),
        Event::PluginCall {
            plugin,
            outcome,
            duration_ms,
            request,
            repeats,
            ..
        } => {
            let again = if *repeats > 0 {
                format!(" (after {repeats} more poll(s) with the same answer)")
            } else {
                String::new()
            };
            format!(
                "{plugin} {} [{request}]: {outcome} ({duration_ms} ms){again}",
                request.call_name()
            )
        }
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
                HumanDuration::from(Duration::from_millis(*delay_ms))
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
        Event::CommandKilled {
            plugin,
            request,
            key,
            command,
            reason,
        } => format!(
            "killed command `{command}` of plugin `{plugin}` ({request}, key `{key}`) with its process group: {reason}"
        ),
        Event::AbortRequested { by } => format!("abort requested by {by}"),
        Event::Asked { verb, by, reason } => match reason {
            Some(reason) => format!("{by} asked to {verb}: {reason}"),
            None => format!("{by} asked to {verb}"),
        },
        Event::Released { by } => format!("hold released by {by}"),
        Event::NotRetryable => "the failure is marked not retryable".into(),
        Event::Resumed { pid, at } if at.contains("(Busy)") => {
            format!("runner resumed (pid {pid}) in {at}: the interrupted request runs again")
        }
        Event::Resumed { pid, at } => format!("runner resumed (pid {pid}) in {at}"),
        Event::Interrupted { why } => {
            format!("runner stopped ({why}); the session waits for a resume")
        }
        Event::SessionEnded { outcome } => format!("session ended: {outcome:?}"),
    }
}

/// Whether a record is news to a person watching live: the journal keeps
/// everything, but a check's verdict is shown by its `checkRan` line and a
/// partner report by the change it makes, so their successful plugin calls
/// are not repeated.
pub fn newsworthy(event: &Event) -> bool {
    match event {
        Event::PluginCall { request, ok, .. } => {
            !(*ok && matches!(request, RequestId::Check(_) | RequestId::Partner))
        }
        _ => true,
    }
}

/// Whether a record is a successful pending poll (a terminal draws those
/// as a progress bar instead).
pub fn is_pending_poll(event: &Event) -> bool {
    matches!(event, Event::PluginCall { ok: true, outcome, .. } if outcome.starts_with("pending"))
}
