//! A session's events as the journal stores them, and the fold that turns
//! them back into where the session is. The fold re-applies every model
//! command through the state model, so a journal that claims a transition
//! the model refuses is rejected rather than believed.
//!
//! # Journal format
//!
//! The first record names the format its session was written in
//! (`sessionStarted.format`; absent in format 1, duplex 0.1.0). Format 2
//! writes a failure as one `fail` command with its disposition, types
//! request ids and verdicts, and pins what an abort needs. This release
//! reads formats 1 and 2 to the same story (tests/journal_compat.rs) and
//! refuses a newer format by name rather than misreading it.

use super::operator::OperatorVerb;
use crate::model::{Command, Configuration, Disposition, Phase, UpgradeState};
use crate::plugins::{HardwareOp, Verdict};
use crate::policy::{ApprovalPoint, Params, PluginRef, PolicyOrigin, RuleAction};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// The journal format this release writes.
pub const JOURNAL_FORMAT: u32 = 3;

/// One journal record's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
// `SessionStarted` pins the target plugin's whole entry (its capabilities
// grow with each capability): a record is built, written and dropped, once
// per session for that one, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    /// The first record of every session.
    #[serde(rename_all = "camelCase")]
    SessionStarted {
        policy: String,
        policy_file: String,
        policy_digest: String,
        target: String,
        /// The journal format (absent: 1).
        #[serde(default = "format_1", skip_serializing_if = "is_format_1")]
        format: u32,
        /// What an abort needs, pinned at the start: it never depends on
        /// the policy loading again (absent in format 1).
        /// Boxed: a plugin entry with its grants is far larger than any
        /// other event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hardware: Option<Box<HardwarePin>>,
        /// Where the policy came from when a front end knows (the agent: its
        /// source, revision and path); absent for a file named on a command line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        origin: Option<PolicyOrigin>,
    },
    /// A command the state model accepted; the fold applies it again.
    Model { command: Command },
    /// A person said go at an approval point.
    Approved { before: ApprovalPoint, by: String },
    /// One plugin call and its outcome.
    #[serde(rename_all = "camelCase")]
    PluginCall {
        request: RequestId,
        plugin: String,
        ok: bool,
        outcome: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
        /// Polls before this one that got the same pending answer and were
        /// not journaled one by one.
        #[serde(default, skip_serializing_if = "is_zero")]
        repeats: u64,
    },
    /// The runner killed a command a plugin had started (`exec`) and left
    /// running, with its process group.
    #[serde(rename_all = "camelCase")]
    CommandKilled {
        plugin: String,
        /// The request that started it (`op/split`, `check/ready`).
        request: String,
        key: String,
        command: String,
        reason: String,
    },
    /// A gate or verification check ran.
    #[serde(rename_all = "camelCase")]
    CheckRan {
        check: String,
        verdict: Verdict,
        message: String,
        /// Failures in a row so far, counting this one.
        consecutive_failures: u32,
    },
    /// The runner waits before retrying a failed request.
    #[serde(rename_all = "camelCase")]
    RetryScheduled { attempt: u32, delay_ms: u64 },
    /// An auto-abort rule fired.
    AutoAbort {
        rule: String,
        action: RuleAction,
        reason: String,
    },
    /// The session stopped for a person.
    Held { reason: String },
    /// The policy on disk is not the one the session started with.
    #[serde(rename_all = "camelCase")]
    Drift { recorded: String, current: String },
    /// A person asked for an abort.
    AbortRequested { by: String },
    /// An operator's command was accepted (format 3): who asked, what, and
    /// why. Its effects are the records that follow it.
    Asked {
        verb: OperatorVerb,
        by: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// A hold was released by a person (format 3): the session goes on.
    Released { by: String },
    /// Format 1 only: the failure recorded next cannot be retried.
    NotRetryable,
    /// A runner took the session up again (after a stop, a crash or a reboot).
    Resumed {
        pid: u32,
        /// Where the session stood, e.g. `Split (Busy)`: a Busy request runs again.
        at: String,
    },
    /// The runner was asked to stop (a signal, an operator's request) and
    /// stopped at a safe point; the session waits for a resume.
    Interrupted { why: String },
    /// The last record: the session is back in Idle.
    SessionEnded { outcome: Outcome },
}

impl Event {
    /// The event's name as the journal writes it (`"event": "pluginCall"`).
    pub fn name(&self) -> &'static str {
        match self {
            Event::SessionStarted { .. } => "sessionStarted",
            Event::Model { .. } => "model",
            Event::Approved { .. } => "approved",
            Event::PluginCall { .. } => "pluginCall",
            Event::CommandKilled { .. } => "commandKilled",
            Event::CheckRan { .. } => "checkRan",
            Event::RetryScheduled { .. } => "retryScheduled",
            Event::AutoAbort { .. } => "autoAbort",
            Event::Held { .. } => "held",
            Event::Drift { .. } => "drift",
            Event::AbortRequested { .. } => "abortRequested",
            Event::NotRetryable => "notRetryable",
            Event::Resumed { .. } => "resumed",
            Event::Interrupted { .. } => "interrupted",
            Event::Asked { .. } => "asked",
            Event::Released { .. } => "released",
            Event::SessionEnded { .. } => "sessionEnded",
        }
    }
}

fn format_1() -> u32 {
    1
}

fn is_format_1(format: &u32) -> bool {
    *format == 1
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What an abort needs from the policy: the hardware plugin (pinned by
/// digest, with its grants and limits) and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HardwarePin {
    /// The policy's entry for the target's plugin, its `source` made absolute.
    pub plugin: PluginRef,
    /// The target's `with:`.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub with: Params,
}

/// The piece of work a plugin call belongs to, written in the journal (and
/// handed to plugins) as `partner`, `op/split`, `install/<name>` or
/// `check/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RequestId {
    /// The partner side's health, asked alongside every request.
    Partner,
    Operation(HardwareOp),
    Install(String),
    Check(String),
}

impl RequestId {
    /// What the plugin was asked, for the activity log.
    pub fn call_name(&self) -> String {
        match self {
            RequestId::Partner => "partner".into(),
            RequestId::Operation(op) => format!("operate {op}"),
            RequestId::Install(_) => "install".into(),
            RequestId::Check(_) => "check".into(),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Partner => f.write_str("partner"),
            RequestId::Operation(op) => write!(f, "op/{op}"),
            RequestId::Install(name) => write!(f, "install/{name}"),
            RequestId::Check(name) => write!(f, "check/{name}"),
        }
    }
}

impl FromStr for RequestId {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a request id");
        if text == "partner" {
            return Ok(RequestId::Partner);
        }
        let (kind, name) = text.split_once('/').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        match kind {
            "op" => HardwareOp::ALL
                .into_iter()
                .find(|op| op.name() == name)
                .map(RequestId::Operation)
                .ok_or_else(bad),
            "install" => Ok(RequestId::Install(name.into())),
            "check" => Ok(RequestId::Check(name.into())),
            _ => Err(bad()),
        }
    }
}

impl Serialize for RequestId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Committed and finished: the system runs the new software.
    Committed,
    /// Aborted and finished: the original configuration is restored.
    Aborted,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
        }
    }
}

/// Who approved what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalRecord {
    pub before: ApprovalPoint,
    pub by: String,
}

/// Where a session is: the fold of its events. It serializes whole (the
/// writer's snapshot of the fold, read back by `status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub policy: String,
    pub policy_file: String,
    pub policy_digest: String,
    pub target: String,
    /// The journal format the session is written in.
    pub format: u32,
    /// What an abort needs (format 2 and later).
    pub hardware: Option<HardwarePin>,
    pub config: Configuration,
    /// The session passed through Abort (its outcome will be Aborted).
    pub aborted: bool,
    /// The state it aborted from, once it did.
    pub aborted_from: Option<UpgradeState>,
    /// The session has left Idle (so Idle again means it went all the way round).
    pub began: bool,
    pub approvals: Vec<ApprovalRecord>,
    /// Why the session is held for a person, until something moves it on.
    pub held: Option<String>,
    pub abort_requested: bool,
    /// Failures in a row per check name.
    pub check_failures: BTreeMap<String, u32>,
    /// The piece of work in hand: the last one the current request called a
    /// plugin for (partner reports run alongside every request).
    pub request: Option<RequestId>,
    /// When the session started and when its last event was written (ms,
    /// wall clock).
    pub started_ms: u64,
    pub last_ms: u64,
    pub ended: Option<Outcome>,
    /// Where the policy came from, when the session's first record says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<PolicyOrigin>,
    /// Format 1: a `notRetryable` record marks the failure that follows.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    next_failure_final: bool,
}

/// What a finished session's marker says of it: everything `status` and
/// `history` show of a finished session, so they need not replay its
/// journal. Written by the engine when it finishes the session; a marker
/// without one (older releases, or too long) is replayed instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub policy: String,
    pub policy_file: String,
    pub policy_digest: String,
    pub target: String,
    pub config: Configuration,
    pub request: Option<RequestId>,
    pub held: Option<String>,
    pub started_ms: u64,
    pub last_ms: u64,
    pub ended: Option<Outcome>,
    pub aborted_from: Option<UpgradeState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<PolicyOrigin>,
}

impl From<&Session> for SessionSummary {
    fn from(s: &Session) -> Self {
        SessionSummary {
            policy: s.policy.clone(),
            policy_file: s.policy_file.clone(),
            policy_digest: s.policy_digest.clone(),
            target: s.target.clone(),
            config: s.config.clone(),
            request: s.request.clone(),
            held: s.held.clone(),
            started_ms: s.started_ms,
            last_ms: s.last_ms,
            ended: s.ended,
            aborted_from: s.aborted_from,
            origin: s.origin.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FoldError {
    #[error("the session's first record is not `sessionStarted`")]
    NoStart,
    #[error(
        "the session is written in journal format {format}, newer than this duplex reads \
         (formats 1 to {JOURNAL_FORMAT}); use the duplex that wrote it"
    )]
    NewerFormat { format: u32 },
    #[error("record {seq} applies a command the state model refuses: {source}")]
    Refused {
        seq: u64,
        #[source]
        source: crate::model::TransitionError,
    },
    #[error("record {seq} comes after the session ended")]
    AfterEnd { seq: u64 },
}

impl Session {
    /// The session a `sessionStarted` event opens, at time `ts`.
    pub fn start(event: &Event, ts: u64) -> Result<Session, FoldError> {
        let Event::SessionStarted {
            policy,
            policy_file,
            policy_digest,
            target,
            format,
            hardware,
            origin,
        } = event
        else {
            return Err(FoldError::NoStart);
        };
        if *format > JOURNAL_FORMAT {
            return Err(FoldError::NewerFormat { format: *format });
        }
        Ok(Session {
            policy: policy.clone(),
            policy_file: policy_file.clone(),
            policy_digest: policy_digest.clone(),
            target: target.clone(),
            format: *format,
            hardware: hardware.as_deref().cloned(),
            config: Configuration::idle(),
            aborted: false,
            aborted_from: None,
            began: false,
            approvals: Vec::new(),
            held: None,
            abort_requested: false,
            check_failures: BTreeMap::new(),
            request: None,
            started_ms: ts,
            last_ms: ts,
            ended: None,
            origin: origin.clone(),
            next_failure_final: false,
        })
    }

    /// Fold `(seq, ts_ms, event)` records, in order.
    pub fn fold<'a>(
        records: impl IntoIterator<Item = (u64, u64, &'a Event)>,
    ) -> Result<Session, FoldError> {
        let mut records = records.into_iter();
        let Some((_, ts, first)) = records.next() else {
            return Err(FoldError::NoStart);
        };
        let mut session = Session::start(first, ts)?;
        for (seq, ts, event) in records {
            session.apply_at(seq, ts, event)?;
        }
        Ok(session)
    }

    /// Apply record `seq`, written at `ts`.
    pub fn apply_at(&mut self, seq: u64, ts: u64, event: &Event) -> Result<(), FoldError> {
        if self.ended.is_some() {
            return Err(FoldError::AfterEnd { seq });
        }
        self.apply(event)
            .map_err(|source| FoldError::Refused { seq, source })?;
        self.last_ms = ts;
        Ok(())
    }

    /// Apply one event; the engine calls this for every record it appends,
    /// so its view and the fold of the journal never differ.
    pub fn apply(&mut self, event: &Event) -> Result<(), crate::model::TransitionError> {
        match event {
            Event::Model { command } => self.apply_command(command)?,
            Event::Approved { before, by } => {
                if !self.approved(*before) {
                    self.approvals.push(ApprovalRecord {
                        before: *before,
                        by: by.clone(),
                    });
                }
                self.held = None;
            }
            Event::CheckRan {
                check,
                consecutive_failures,
                ..
            } => {
                self.check_failures
                    .insert(check.clone(), *consecutive_failures);
            }
            Event::PluginCall { request, .. } if *request != RequestId::Partner => {
                self.request = Some(request.clone());
            }
            Event::Held { reason } => self.held = Some(reason.clone()),
            Event::Released { .. } => self.held = None,
            Event::AbortRequested { .. } => self.abort_requested = true,
            Event::NotRetryable => self.next_failure_final = true,
            Event::SessionEnded { outcome } => self.ended = Some(*outcome),
            Event::SessionStarted { .. }
            | Event::PluginCall { .. }
            | Event::RetryScheduled { .. }
            | Event::AutoAbort { .. }
            | Event::Drift { .. }
            | Event::CommandKilled { .. }
            | Event::Resumed { .. }
            | Event::Asked { .. }
            | Event::Interrupted { .. } => {}
        }
        Ok(())
    }

    fn apply_command(&mut self, command: &Command) -> Result<(), crate::model::TransitionError> {
        let before = self.config.state;
        self.config = match command {
            // Format 1 wrote a final failure as `notRetryable` + `fail`.
            Command::Fail { reason, .. } if self.next_failure_final => {
                self.config.apply(&Command::Fail {
                    reason: reason.clone(),
                    disposition: Disposition::Final,
                })?
            }
            _ => self.config.apply(command)?,
        };
        if !matches!(command, Command::ObservePartner { .. }) {
            self.next_failure_final = false;
        }
        if matches!(command, Command::Start) {
            self.began = true;
        }
        if self.config.state == UpgradeState::Abort && !self.aborted {
            self.aborted = true;
            self.aborted_from = Some(before);
        }
        if self.config.state != before {
            self.request = None;
        }
        // Anything that moves the session on ends a hold.
        if !matches!(
            command,
            Command::ObservePartner { .. } | Command::Fail { .. }
        ) {
            self.held = None;
        }
        if matches!(command, Command::Begin | Command::Retry)
            && self.config.phase() == Phase::Running
        {
            // A fresh attempt starts counting check failures again.
            self.check_failures.clear();
        }
        Ok(())
    }

    pub fn approved(&self, point: ApprovalPoint) -> bool {
        self.approvals.iter().any(|a| a.before == point)
    }

    /// The failure's disposition, when the session is Broken.
    pub fn disposition(&self) -> Option<Disposition> {
        self.config.failure().map(|f| f.disposition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Failure;

    fn started() -> Event {
        Event::SessionStarted {
            policy: "demo".into(),
            policy_file: "policies/demo.yaml".into(),
            policy_digest: "ab".repeat(32),
            target: "sim".into(),
            format: JOURNAL_FORMAT,
            hardware: None,
            origin: None,
        }
    }

    fn model(command: Command) -> Event {
        Event::Model { command }
    }

    fn fold(events: &[Event]) -> Result<Session, FoldError> {
        Session::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64 + 1, 1000 + i as u64, e)),
        )
    }

    #[test]
    fn the_fold_replays_model_commands() {
        let events = [
            started(),
            model(Command::Start),
            model(Command::Begin),
            model(Command::Fail {
                reason: "gate closed".into(),
                disposition: Disposition::Hold,
            }),
            Event::Held {
                reason: "a person must decide".into(),
            },
        ];
        let s = fold(&events).unwrap();
        assert_eq!(s.config.state, UpgradeState::PrepareSplit);
        assert_eq!(s.config.phase(), Phase::Failed);
        assert_eq!(s.disposition(), Some(Disposition::Hold));
        assert_eq!(s.held.as_deref(), Some("a person must decide"));
        assert_eq!((s.started_ms, s.last_ms), (1000, 1004));
    }

    #[test]
    fn a_format_1_not_retryable_record_makes_the_next_failure_final() {
        let events = [
            started(),
            model(Command::Start),
            model(Command::Begin),
            Event::NotRetryable,
            model(Command::Fail {
                reason: "bad".into(),
                disposition: Disposition::Retryable,
            }),
        ];
        let s = fold(&events).unwrap();
        assert_eq!(
            s.config.failure(),
            Some(&Failure {
                reason: "bad".into(),
                disposition: Disposition::Final
            })
        );
    }

    #[test]
    fn a_journal_claiming_an_illegal_transition_is_rejected() {
        let events = [started(), model(Command::Start), model(Command::Advance)];
        let err = fold(&events).unwrap_err();
        assert!(matches!(err, FoldError::Refused { seq: 3, .. }), "{err}");
        assert!(err.to_string().starts_with("record 3 applies a command the state model refuses: advance is not allowed in PrepareSplit (Ready)"));
        assert_eq!(
            fold(&[model(Command::Start)]).unwrap_err(),
            FoldError::NoStart
        );
    }

    #[test]
    fn a_newer_format_is_refused_by_name() {
        let mut first = started();
        if let Event::SessionStarted { format, .. } = &mut first {
            *format = JOURNAL_FORMAT + 1;
        }
        let err = fold(&[first]).unwrap_err();
        assert_eq!(
            err,
            FoldError::NewerFormat {
                format: JOURNAL_FORMAT + 1
            }
        );
        assert!(
            err.to_string()
                .contains("journal format 4, newer than this duplex reads (formats 1 to 3)"),
            "{err}"
        );
    }

    #[test]
    fn events_round_trip_through_json_in_the_journal_format() {
        let e = Event::AutoAbort {
            rule: "retriesExhausted".into(),
            action: RuleAction::Abort,
            reason: "split failed 4 times".into(),
        };
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"event":"autoAbort","rule":"retriesExhausted","action":"abort","reason":"split failed 4 times"}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&text).unwrap(), e);
        // A retryable failure is written exactly as format 1 wrote it.
        let m = serde_json::to_string(&model(Command::Fail {
            reason: "x".into(),
            disposition: Disposition::Retryable,
        }))
        .unwrap();
        assert_eq!(
            m,
            r#"{"event":"model","command":{"command":"fail","reason":"x"}}"#
        );
        let call = r#"{"event":"pluginCall","request":"op/split","plugin":"hw","call":"operate split","ok":true,"outcome":"done","durationMs":3}"#;
        let Event::PluginCall { request, .. } = serde_json::from_str::<Event>(call).unwrap() else {
            panic!()
        };
        assert_eq!(request, RequestId::Operation(HardwareOp::Split));
        assert!(serde_json::from_str::<Event>(&call.replace("op/split", "op/explode")).is_err());
        let check = r#"{"event":"checkRan","check":"c","verdict":"inconclusive","message":"m","consecutiveFailures":0}"#;
        assert!(matches!(
            serde_json::from_str::<Event>(check).unwrap(),
            Event::CheckRan {
                verdict: Verdict::Inconclusive,
                ..
            }
        ));
    }

    #[test]
    fn request_ids_read_back_what_they_write() {
        for id in [
            RequestId::Partner,
            RequestId::Operation(HardwareOp::Commit),
            RequestId::Install("acme-app".into()),
            RequestId::Check("free/space".into()),
        ] {
            assert_eq!(id.to_string().parse::<RequestId>().unwrap(), id);
        }
        for bad in ["", "op/", "op/nope", "gate/x", "check", "install/"] {
            assert!(bad.parse::<RequestId>().is_err(), "{bad}");
        }
    }
}
