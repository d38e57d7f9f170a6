//! The reconcile loop: decide → record → act, until the session ends or
//! needs a person. Every record is appended (and fsync'd) before the step
//! it records is acted on, and the engine's view of the session is the same
//! fold of the same records a later `resume` will make.
//!
//! An [`Engine`] is an owned value: its policy, plugins, recorder (journal
//! writer + sink), clock and cancellation token. `run` consumes it and is a
//! `Send` future, so a front end may block on it or spawn it as a task.

use super::EngineError;
use super::decide::{Decision, Now, decide};
use super::event::{Event, Outcome};
use super::operator::{self, Accepted, Envelope, Inbox, Runner};
use super::recorder::Recorder;
use super::setup::Plugins;
use super::sink::Notice;
use crate::cancel::Cancel;
use crate::clock::SharedClock;
use crate::model::{Command, Phase, UpgradeState};
use crate::policy::{ApprovalPoint, LoadedPolicy, RuleAction};
use std::time::Duration;

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum Stop {
    Ended(Outcome),
    WaitingForApproval(ApprovalPoint),
    Held(String),
    /// `until` was reached.
    Reached(UpgradeState),
    /// The run was cancelled; the session waits in its journal.
    Interrupted {
        why: String,
    },
}

/// Pacing the engine enforces whatever plugins ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// Shortest wait between two polls of a pending operation; it doubles
    /// with every identical answer in a row, up to `max_poll_wait`.
    pub min_poll_wait: Duration,
    /// Longest wait between two polls, whatever the plugin asks: the runner
    /// stays responsive and the log keeps moving.
    pub max_poll_wait: Duration,
    /// A session's journal may grow to this many bytes through plugin calls
    /// and checks; past it the session is held (a plugin is making it grow
    /// without bound). Operator commands are still recorded.
    pub journal_limit_bytes: u64,
}

impl Pacing {
    /// Identical pending answers in a row polled at the plugin's pace before
    /// the waits start doubling.
    pub const FREE_REPEATS: u32 = 10;
    /// The doubling stops here (or at the plugin's own wait, if longer).
    pub const BACKOFF_CAP: Duration = Duration::from_secs(5);

    /// How long to wait before polling again a step that answered pending,
    /// asking for `asked`, the same answer `repeats` times in a row: never
    /// less than `min_poll_wait`; past `FREE_REPEATS` identical answers the
    /// wait doubles (up to `BACKOFF_CAP`, or `asked` if longer); never more
    /// than `max_poll_wait`.
    pub fn poll_wait(&self, asked: Duration, repeats: u32) -> Duration {
        let doublings = repeats.saturating_sub(Self::FREE_REPEATS).min(16);
        let paced = self.min_poll_wait.saturating_mul(1 << doublings);
        let cap = asked.max(Self::BACKOFF_CAP);
        asked
            .max(self.min_poll_wait)
            .max(paced.min(cap))
            .min(self.max_poll_wait)
    }
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            min_poll_wait: Duration::from_millis(20),
            max_poll_wait: Duration::from_secs(30),
            journal_limit_bytes: 64 << 20,
        }
    }
}

pub struct Engine {
    pub(super) policy: LoadedPolicy,
    pub(super) plugins: Plugins,
    pub(super) rec: Recorder,
    pub(super) cancel: Cancel,
    pub(super) clock: SharedClock,
    pub(super) until: Option<UpgradeState>,
    pub(super) pacing: Pacing,
    pub(super) state_dir: std::path::PathBuf,
    /// The current request has journaled a partner report already.
    pub(super) partner_reported: bool,
    /// Operators' commands to this run, read at safe points.
    pub(super) inbox: Option<Inbox>,
    /// A command was accepted since the loop last decided: the step in hand
    /// stops at its next safe point.
    pub(super) preempted: bool,
    /// Wait at approval points and holds for a command instead of stopping.
    wait_for_operator: bool,
    /// The wait last announced, so a re-check does not announce it again.
    announced_wait: Option<String>,
    /// The session's age and the monotonic clock when this run began.
    age_at_start_ms: u64,
    monotonic_at_start: Duration,
}

/// What a run needs besides the session's own records.
pub struct RunParts {
    pub policy: LoadedPolicy,
    pub plugins: Plugins,
    pub recorder: Recorder,
    pub cancel: Cancel,
    pub until: Option<UpgradeState>,
    pub pacing: Pacing,
    /// Where artifacts are staged (`<state>/artifacts`).
    pub state_dir: std::path::PathBuf,
    /// Operators' commands while the run goes on (`None`: nobody can send
    /// any; commands then take the lock once the run has stopped).
    pub inbox: Option<Inbox>,
    /// Wait for a command at approval points and holds, instead of
    /// stopping there (needs an inbox).
    pub wait_for_operator: bool,
}

impl Engine {
    pub fn new(parts: RunParts) -> Self {
        let clock = parts.recorder.clock().clone();
        let age_at_start_ms = clock
            .wall_ms()
            .saturating_sub(parts.recorder.session().started_ms);
        let monotonic_at_start = clock.monotonic();
        Engine {
            policy: parts.policy,
            plugins: parts.plugins,
            rec: parts.recorder,
            cancel: parts.cancel,
            clock,
            until: parts.until,
            pacing: parts.pacing,
            state_dir: parts.state_dir,
            partner_reported: false,
            wait_for_operator: parts.wait_for_operator && parts.inbox.is_some(),
            inbox: parts.inbox,
            preempted: false,
            announced_wait: None,
            age_at_start_ms,
            monotonic_at_start,
        }
    }

    /// The time a decision is made at (see [`Now`]).
    pub(super) fn now(&self) -> Now {
        let ran = self
            .clock
            .monotonic()
            .saturating_sub(self.monotonic_at_start);
        Now {
            wall_ms: self.clock.wall_ms(),
            session_age_ms: self.age_at_start_ms + ran.as_millis() as u64,
        }
    }

    pub(super) fn record(&mut self, event: Event) -> Result<u64, EngineError> {
        self.rec.record(event)
    }

    /// Run until the session ends or stops for a person.
    pub async fn run(mut self) -> Result<Stop, EngineError> {
        match self.run_loop().await {
            Err(EngineError::Cancelled) => {
                let why = self.cancel.reason().unwrap_or_else(|| "cancelled".into());
                self.record(Event::Interrupted { why: why.clone() })?;
                Ok(Stop::Interrupted { why })
            }
            Ok(Stop::Ended(outcome)) => {
                self.rec.finish()?;
                Ok(Stop::Ended(outcome))
            }
            other => other,
        }
    }

    async fn run_loop(&mut self) -> Result<Stop, EngineError> {
        loop {
            if self.cancel.is_cancelled() {
                return Err(EngineError::Cancelled);
            }
            self.preempted = false;
            self.read_inbox()?;
            let session = self.rec.session();
            if let Some(target) = self.until
                && session.config.state == target
                && session.config.phase() == Phase::Done
            {
                return Ok(Stop::Reached(target));
            }
            let decision = decide(
                session,
                &self.policy.policy.spec,
                self.now(),
                fastrand::f64(),
            );
            if !matches!(decision, Decision::WaitForApproval(_) | Decision::Hold(_)) {
                self.announced_wait = None;
            }
            match self.step(decision).await {
                // A command changed the session: decide again.
                Err(EngineError::Preempted) => continue,
                Err(e) => return Err(e),
                Ok(Some(stop)) => return Ok(stop),
                Ok(None) => {}
            }
        }
    }

    /// Carry out one decision; `Some` when the run stops there.
    async fn step(&mut self, decision: Decision) -> Result<Option<Stop>, EngineError> {
        match decision {
            Decision::Apply(command) => {
                self.record(Event::Model { command })?;
            }
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
                };
            }
            Decision::WaitForApproval(point) => {
                if !self.wait_for_operator {
                    return Ok(Some(Stop::WaitingForApproval(point)));
                }
                self.wait(format!("waiting for an approval before {point:?}"))
                    .await?;
            }
            Decision::Hold(reason) => {
                if self.rec.session().held.is_none() {
                    self.record(Event::Held {
                        reason: reason.clone(),
                    })?;
                }
                if !self.wait_for_operator {
                    return Ok(Some(Stop::Held(reason)));
                }
                self.wait(format!("held: {reason}")).await?;
            }
            Decision::End(outcome) => {
                if self.rec.session().ended.is_none() {
                    self.record(Event::SessionEnded { outcome })?;
                }
                return Ok(Some(Stop::Ended(outcome)));
            }
        }
        Ok(None)
    }

    /// Answer the commands already waiting in the inbox, without waiting.
    fn read_inbox(&mut self) -> Result<(), EngineError> {
        while let Some(envelope) = self.inbox.as_mut().and_then(|i| i.try_recv().ok()) {
            self.answer(envelope)?;
        }
        Ok(())
    }

    /// Check an operator's command against the session and the policy,
    /// record it when accepted, and answer whoever sent it.
    pub(super) fn answer(&mut self, envelope: Envelope) -> Result<(), EngineError> {
        let Envelope { request, reply } = envelope;
        let checked = operator::check(
            &request,
            self.rec.session(),
            &self.policy.policy.spec,
            self.now(),
        );
        let answer = match checked {
            Ok(planned) => {
                for event in operator::records(&request, planned, Runner::Running) {
                    self.record(event)?;
                }
                self.preempted = true;
                Ok(Accepted {
                    verb: request.verb,
                    session: self.rec.session_id().to_string(),
                    at: self.rec.session().config.to_string(),
                })
            }
            Err(refused) => Err(refused),
        };
        // The sender may have given up waiting; the command stands.
        let _ = reply.send(answer);
        Ok(())
    }

    /// Wait for an operator's command (approval points and holds, when the
    /// front end keeps the run going). Rules that watch the clock (a
    /// deadline, the window) are looked at again every second.
    async fn wait(&mut self, what: String) -> Result<(), EngineError> {
        if self.announced_wait.as_deref() != Some(what.as_str()) {
            self.rec.notice(&Notice::Waiting { what: what.clone() });
            self.announced_wait = Some(what);
        }
        let spec = &self.policy.policy.spec;
        let clock_rules = spec.window.is_some() || !spec.auto_abort.is_empty();
        let mut inbox = self.inbox.take();
        let cancel = self.cancel.clone();
        let clock = self.clock.clone();
        let result = loop {
            tokio::select! {
                envelope = next_command(&mut inbox) => {
                    if let Err(e) = self.answer(envelope) {
                        break Err(e);
                    }
                    if self.preempted {
                        break Ok(());
                    }
                }
                _ = cancel.cancelled() => break Err(EngineError::Cancelled),
                _ = clock.sleep(RECHECK_WHILE_WAITING), if clock_rules => break Ok(()),
            }
        };
        self.inbox = inbox;
        result
    }

    /// Wait on the engine's clock, unless the run is cancelled (then stop
    /// at this safe point) or an operator's command is accepted meanwhile
    /// (then the step in hand stops: [`EngineError::Preempted`]).
    pub(super) async fn sleep(&mut self, delay: Duration) -> Result<(), EngineError> {
        self.safe_point()?;
        if delay.is_zero() {
            return Ok(());
        }
        let end = self.clock.monotonic() + delay;
        let mut inbox = self.inbox.take();
        let cancel = self.cancel.clone();
        let clock = self.clock.clone();
        let result = loop {
            let left = end.saturating_sub(clock.monotonic());
            if left.is_zero() {
                break Ok(());
            }
            tokio::select! {
                _ = clock.sleep(left) => break Ok(()),
                _ = cancel.cancelled() => break Err(EngineError::Cancelled),
                envelope = next_command(&mut inbox) => {
                    if let Err(e) = self.answer(envelope) {
                        break Err(e);
                    }
                    if self.preempted {
                        break Err(EngineError::Preempted);
                    }
                }
            }
        };
        self.inbox = inbox;
        result
    }

    /// Between two steps: stop here if the run is cancelled or an accepted
    /// command asks the step in hand to stop.
    pub(super) fn safe_point(&self) -> Result<(), EngineError> {
        if self.cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        if self.preempted {
            return Err(EngineError::Preempted);
        }
        Ok(())
    }
}

/// How often a run waiting for a person looks again at the rules that
/// watch the clock.
const RECHECK_WHILE_WAITING: Duration = Duration::from_secs(1);

/// The next command from the inbox; never resolves without one (no inbox,
/// or every sender gone).
pub(super) async fn next_command(inbox: &mut Option<Inbox>) -> Envelope {
    match inbox {
        Some(inbox) => match inbox.recv().await {
            Some(envelope) => envelope,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_are_paced_and_back_off_on_identical_answers() {
        let p = Pacing::default();
        let ms = |asked, repeats| {
            p.poll_wait(Duration::from_millis(asked), repeats)
                .as_millis()
        };
        // An unpaced plugin is polled no sooner than the minimum...
        assert_eq!(ms(0, 0), 20);
        assert_eq!(ms(0, Pacing::FREE_REPEATS), 20);
        // ...then ever more slowly while it says the same thing, up to the cap.
        assert_eq!(ms(0, Pacing::FREE_REPEATS + 1), 40);
        assert_eq!(ms(0, Pacing::FREE_REPEATS + 4), 320);
        assert_eq!(ms(0, 1000), 5000);
        // A plugin's own pace is kept, and the backoff never outruns it...
        assert_eq!(ms(1000, 0), 1000);
        assert_eq!(ms(1000, 1000), 5000);
        assert_eq!(ms(20_000, 1000), 20_000);
        // ...nor the longest wait.
        assert_eq!(ms(120_000, 0), 30_000);
    }
}
