//! A session's events as the journal stores them, and the fold that turns
//! them back into where the session is. The fold re-applies every model
//! command through the state model, so a journal that claims a transition
//! the model refuses is rejected rather than believed.

use crate::model::{Command, Configuration, Phase, TransitionError, UpgradeState};
use crate::policy::{ApprovalPoint, RuleAction};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One journal record's payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "camelCase")]
pub enum Event {
    /// The first record of every session.
    #[serde(rename_all = "camelCase")]
    SessionStarted {
        policy: String,
        policy_file: String,
        policy_digest: String,
        target: String,
    },
    /// A command the state model accepted; the fold applies it again.
    Model { command: Command },
    /// A person said go at an approval point.
    Approved { before: ApprovalPoint, by: String },
    /// One plugin call and its outcome.
    #[serde(rename_all = "camelCase")]
    PluginCall {
        request: String,
        plugin: String,
        call: String,
        ok: bool,
        outcome: String,
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        logs: Vec<String>,
    },
    /// A gate or verification check ran.
    #[serde(rename_all = "camelCase")]
    CheckRan {
        check: String,
        verdict: String,
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
    /// The request's failure, recorded next, is marked non-retryable by its plugin.
    NotRetryable,
    /// A runner took the session up again (after a stop, a crash or a reboot).
    Resumed {
        pid: u32,
        /// Where the session stood, e.g. `Split (Busy)`: a Busy request runs again.
        at: String,
    },
    /// The last record: the session is back in Idle.
    SessionEnded { outcome: Outcome },
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

/// Where a session is: the fold of its events.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub policy: String,
    pub policy_file: String,
    pub policy_digest: String,
    pub target: String,
    pub config: Configuration,
    /// The session passed through Abort (its outcome will be Aborted).
    pub aborted: bool,
    /// The session has left Idle (so Idle again means it went all the way round).
    pub began: bool,
    /// The current failure cannot be retried automatically.
    pub not_retryable: bool,
    pub approvals: Vec<ApprovalPoint>,
    /// Why the session is held for a person, until something moves it on.
    pub held: Option<String>,
    pub abort_requested: bool,
    /// Failures in a row per check name.
    pub check_failures: BTreeMap<String, u32>,
    /// When the session started and when its last event was written (ms).
    pub started_ms: u64,
    pub last_ms: u64,
    pub ended: Option<Outcome>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FoldError {
    #[error("the session's first record is not `sessionStarted`")]
    NoStart,
    #[error("record {seq} applies a command the state model refuses: {source}")]
    Refused {
        seq: u64,
        #[source]
        source: TransitionError,
    },
    #[error("record {seq} comes after the session ended")]
    AfterEnd { seq: u64 },
}

impl Session {
    /// Fold `(seq, ts_ms, event)` records, in order.
    pub fn fold<'a>(
        records: impl IntoIterator<Item = (u64, u64, &'a Event)>,
    ) -> Result<Session, FoldError> {
        let mut records = records.into_iter();
        let Some((
            _,
            ts,
            Event::SessionStarted {
                policy,
                policy_file,
                policy_digest,
                target,
            },
        )) = records.next()
        else {
            return Err(FoldError::NoStart);
        };
        let mut session = Session {
            policy: policy.clone(),
            policy_file: policy_file.clone(),
            policy_digest: policy_digest.clone(),
            target: target.clone(),
            config: Configuration::idle(),
            aborted: false,
            began: false,
            not_retryable: false,
            approvals: Vec::new(),
            held: None,
            abort_requested: false,
            check_failures: BTreeMap::new(),
            started_ms: ts,
            last_ms: ts,
            ended: None,
        };
        for (seq, ts, event) in records {
            if session.ended.is_some() {
                return Err(FoldError::AfterEnd { seq });
            }
            session.last_ms = ts;
            session
                .apply(event)
                .map_err(|source| FoldError::Refused { seq, source })?;
        }
        Ok(session)
    }

    /// Apply one event; the engine calls this for every record it appends,
    /// so its view and the fold of the journal never differ.
    pub fn apply(&mut self, event: &Event) -> Result<(), TransitionError> {
        match event {
            Event::Model { command } => {
                self.config = self.config.apply(command)?;
                if matches!(command, Command::Start) {
                    self.began = true;
                }
                if !matches!(
                    command,
                    Command::Fail { .. } | Command::ObservePartner { .. }
                ) {
                    self.not_retryable = false;
                }
                if self.config.state == UpgradeState::Abort {
                    self.aborted = true;
                }
                // Anything that moves the session on ends a hold.
                if !matches!(
                    command,
                    Command::ObservePartner { .. } | Command::Fail { .. }
                ) {
                    self.held = None;
                }
                if matches!(command, Command::Begin | Command::Retry)
                    && self.config.phase == Phase::Running
                {
                    // A fresh attempt starts counting check failures again.
                    self.check_failures.clear();
                }
            }
            Event::Approved { before, .. } => {
                if !self.approvals.contains(before) {
                    self.approvals.push(*before);
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
            Event::Held { reason } => self.held = Some(reason.clone()),
            Event::AbortRequested { .. } => self.abort_requested = true,
            Event::NotRetryable => self.not_retryable = true,
            Event::SessionEnded { outcome } => self.ended = Some(*outcome),
            Event::SessionStarted { .. }
            | Event::PluginCall { .. }
            | Event::RetryScheduled { .. }
            | Event::AutoAbort { .. }
            | Event::Drift { .. }
            | Event::Resumed { .. } => {}
        }
        Ok(())
    }

    pub fn approved(&self, point: ApprovalPoint) -> bool {
        self.approvals.contains(&point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> Event {
        Event::SessionStarted {
            policy: "demo".into(),
            policy_file: "policies/demo.yaml".into(),
            policy_digest: "ab".repeat(32),
            target: "sim".into(),
        }
    }

    fn model(command: Command) -> Event {
        Event::Model { command }
    }

    #[test]
    fn the_fold_replays_model_commands() {
        let events = [
            started(),
            model(Command::Start),
            model(Command::Begin),
            model(Command::Fail {
                reason: "gate closed".into(),
            }),
            Event::Held {
                reason: "retries used up".into(),
            },
        ];
        let s = Session::fold(
            events
                .iter()
                .enumerate()
                .map(|(i, e)| (i as u64 + 1, 1000 + i as u64, e)),
        )
        .unwrap();
        assert_eq!(s.config.state, UpgradeState::PrepareSplit);
        assert_eq!(s.config.phase, Phase::Failed);
        assert_eq!(s.held.as_deref(), Some("retries used up"));
        assert_eq!((s.started_ms, s.last_ms), (1000, 1004));
    }

    #[test]
    fn a_journal_claiming_an_illegal_transition_is_rejected() {
        let events = [started(), model(Command::Start), model(Command::Advance)];
        let err = Session::fold(events.iter().enumerate().map(|(i, e)| (i as u64 + 1, 0, e)))
            .unwrap_err();
        assert!(matches!(err, FoldError::Refused { seq: 3, .. }), "{err}");
        assert!(err.to_string().starts_with("record 3 applies a command the state model refuses: advance is not allowed in PrepareSplit (Ready)"));
        let no_start = [model(Command::Start)];
        assert_eq!(
            Session::fold(no_start.iter().map(|e| (1, 0, e))).unwrap_err(),
            FoldError::NoStart
        );
    }

    #[test]
    fn events_round_trip_through_json() {
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
        let m = serde_json::to_string(&model(Command::Fail { reason: "x".into() })).unwrap();
        assert_eq!(
            m,
            r#"{"event":"model","command":{"command":"fail","reason":"x"}}"#
        );
    }
}
