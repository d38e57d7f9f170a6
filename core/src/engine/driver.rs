//! The reconcile loop: fold → decide → act → record, until the session ends
//! or needs a person. Every record is appended (and fsync'd) before the step
//! it records is acted on, and the engine's view of the session is the same
//! fold of the same records a later `resume` will make.

use super::EngineError;
use super::decide::{Decision, decide};
use super::session::{Event, Outcome, Session};
use super::setup::Plugins;
use super::view::EventSink;
use crate::cancel::Cancel;
use crate::journal::SessionWriter;
use crate::model::{Command, Phase, UpgradeState};
use crate::policy::{ApprovalPoint, LoadedPolicy, RuleAction};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Ended(Outcome),
    WaitingForApproval(ApprovalPoint),
    Held(String),
    /// `--until` was reached.
    Reached(UpgradeState),
}

pub struct Engine {
    pub(super) policy: LoadedPolicy,
    pub(super) plugins: Plugins,
    pub(super) writer: Option<SessionWriter>,
    pub(super) session: Session,
    pub(super) session_id: String,
    pub(super) sink: Box<dyn EventSink>,
    pub(super) cancel: Cancel,
    pub(super) until: Option<UpgradeState>,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Engine {
    pub fn new(
        policy: LoadedPolicy,
        plugins: Plugins,
        writer: SessionWriter,
        session: Session,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Self {
        let session_id = writer.id().to_string();
        Engine {
            policy,
            plugins,
            writer: Some(writer),
            session,
            session_id,
            sink,
            cancel,
            until: None,
        }
    }

    pub fn until(mut self, state: Option<UpgradeState>) -> Self {
        self.until = state;
        self
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Append an event, then let the session and the view see it. The model
    /// is asked first, so a refused command is never written.
    pub(super) fn record(&mut self, event: Event) -> Result<(), EngineError> {
        let mut next = self.session.clone();
        next.apply(&event).map_err(EngineError::Model)?;
        let now = now_ms();
        let writer = self
            .writer
            .as_mut()
            .expect("the writer lives until the run ends");
        let seq = writer
            .append_at(now, &event)
            .map_err(EngineError::Journal)?;
        next.last_ms = now;
        self.session = next;
        self.sink.record(seq, now, &event, &self.session);
        Ok(())
    }

    /// Run until the session ends or stops for a person.
    pub async fn run(mut self) -> Result<Stop, EngineError> {
        loop {
            if let Some(target) = self.until
                && self.session.config.state == target
                && self.session.config.phase == Phase::Done
            {
                return Ok(Stop::Reached(target));
            }
            let decision = decide(
                &self.session,
                &self.policy.policy.spec,
                now_ms(),
                fastrand::f64(),
            );
            match decision {
                Decision::Apply(command) => self.record(Event::Model { command })?,
                Decision::RunRequest => self.run_request().await?,
                Decision::RetryAfter { delay, attempt } => {
                    self.record(Event::RetryScheduled {
                        attempt,
                        delay_ms: delay.as_millis() as u64,
                    })?;
                    self.sleep(delay).await?;
                    self.record(Event::Model {
                        command: Command::Retry,
                    })?;
                }
                Decision::Fire(fired) => {
                    self.record(Event::AutoAbort {
                        rule: fired.rule.clone(),
                        action: fired.action,
                        reason: fired.reason.clone(),
                    })?;
                    match fired.action {
                        RuleAction::Abort => self.record(Event::Model {
                            command: Command::Abort,
                        })?,
                        RuleAction::Hold => self.record(Event::Held {
                            reason: fired.reason,
                        })?,
                    }
                }
                Decision::WaitForApproval(point) => return Ok(Stop::WaitingForApproval(point)),
                Decision::Hold(reason) => {
                    if self.session.held.is_none() {
                        self.record(Event::Held {
                            reason: reason.clone(),
                        })?;
                    }
                    return Ok(Stop::Held(reason));
                }
                Decision::End(outcome) => {
                    if self.session.ended.is_none() {
                        self.record(Event::SessionEnded { outcome })?;
                    }
                    if let Some(writer) = self.writer.take() {
                        writer.finish().map_err(EngineError::Journal)?;
                    }
                    return Ok(Stop::Ended(outcome));
                }
            }
        }
    }

    /// Wait, unless the operator interrupts (Ctrl-C, SIGTERM): then stop at
    /// this safe point; `duplex resume` carries on from the journal.
    pub(super) async fn sleep(&self, delay: Duration) -> Result<(), EngineError> {
        if delay.is_zero() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => Ok(()),
            _ = self.cancel.cancelled() => Err(EngineError::Interrupted),
        }
    }
}
