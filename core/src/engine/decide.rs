//! The reconcile brain: given where a session is, what the policy says and
//! the time, the next thing to do. Pure (the clock and the jitter sample are
//! arguments), so every policy rule is tested without plugins or sleeps.

use super::event::{Outcome, Session};
use crate::model::{self, Command, CommandKind, Disposition, Phase, UpgradeState, abortable};
use crate::policy::{ApprovalPoint, AutoAbortRule, Backoff, PolicyAction, RuleAction, Spec};
use crate::work;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Record this model command and go on.
    Apply(Command),
    /// Run the current state's request (again, if a crash interrupted it).
    RunRequest,
    /// Wait, then retry the failed request.
    RetryAfter { delay: Duration, attempt: u32 },
    /// An auto-abort rule fired: record it, then abort or hold.
    Fire(Fired),
    /// Stop: a person must approve.
    WaitForApproval(ApprovalPoint),
    /// Stop: Broken (or stopped) with no automatic way out.
    Hold(String),
    /// The session is over.
    End(Outcome),
}

/// A rule that fired, and what it does in the current state.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub rule: String,
    /// What the engine does: the rule's action, or hold where the state model
    /// cannot abort.
    pub action: RuleAction,
    pub reason: String,
}

/// The time a decision is made at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The wall clock (ms since the epoch): for the maintenance window,
    /// which is written as wall-clock times.
    pub wall_ms: u64,
    /// How long the session has been going: for the `deadline` rule. Within
    /// a run it is measured on the monotonic clock, so a step of the wall
    /// clock does not move it; across a stop it counts the wall-clock time
    /// between the last record and the resume.
    pub session_age_ms: u64,
}

pub fn decide(session: &Session, spec: &Spec, now: Now, jitter_sample: f64) -> Decision {
    if let Some(outcome) = session.ended {
        return Decision::End(outcome);
    }
    let c = &session.config;
    let phase = c.phase();
    if c.state == UpgradeState::Idle {
        // Back in Idle after leaving it: the session went all the way round.
        return if session.began {
            Decision::End(if session.aborted {
                Outcome::Aborted
            } else {
                Outcome::Committed
            })
        } else {
            Decision::Apply(Command::Start)
        };
    }
    let wants_abort = session.abort_requested || spec.action == PolicyAction::Abort;
    if phase != Phase::Running && wants_abort && abortable(c.state) {
        return Decision::Apply(Command::Abort);
    }
    if let Some(reason) = &session.held {
        return Decision::Hold(reason.clone());
    }
    if phase != Phase::Running
        && let Some(fired) = condition_rules(session, spec, now)
    {
        return Decision::Fire(fired);
    }
    match phase {
        Phase::Pending => Decision::Apply(Command::Begin),
        Phase::Running => Decision::RunRequest,
        Phase::Failed => after_failure(session, spec, jitter_sample),
        Phase::Done => after_done(session, spec),
    }
}

/// The approval the session waits for before it may leave its state, if any.
pub fn pending_approval(session: &Session, spec: &Spec) -> Option<ApprovalPoint> {
    let point = work::of(session.config.state)?.approval_on_leaving?;
    (spec.requires_approval(point).is_some() && !session.approved(point)).then_some(point)
}

fn after_done(session: &Session, spec: &Spec) -> Decision {
    if let Some(point) = pending_approval(session, spec) {
        return Decision::WaitForApproval(point);
    }
    match model::leave_command(session.config.state) {
        Some(CommandKind::Finish) => Decision::Apply(Command::Finish),
        Some(_) => Decision::Apply(Command::Advance),
        None => Decision::Hold(format!(
            "the state model has no way out of {}",
            session.config.state
        )),
    }
}

fn after_failure(session: &Session, spec: &Spec, jitter_sample: f64) -> Decision {
    let c = &session.config;
    let Some(failure) = c.failure() else {
        return Decision::Hold(format!("{} is Broken without a reason", c.state));
    };
    let retry = spec.retries.for_state(c.state);
    let reason = &failure.reason;
    let why = match failure.disposition {
        // A person must decide: no retry and no rule.
        Disposition::Hold => return Decision::Hold(reason.clone()),
        Disposition::Retryable if c.attempt <= retry.limit => {
            return Decision::RetryAfter {
                delay: backoff_delay(&retry.backoff, c.attempt, jitter_sample),
                attempt: c.attempt + 1,
            };
        }
        Disposition::Retryable => format!(
            "{} failed {} time(s), its retries ({}) are used up: {reason}",
            c.state, c.attempt, retry.limit
        ),
        Disposition::Final => format!("{} failed and cannot be retried: {reason}", c.state),
    };
    let rule = spec.auto_abort.iter().find(|r| {
        matches!(r, AutoAbortRule::RetriesExhausted { .. })
            && (r.states().is_empty() || r.states().contains(&c.state))
    });
    match rule {
        Some(rule) => Decision::Fire(fire(rule, c.state, why)),
        None => Decision::Hold(format!("{why}; no auto-abort rule applies")),
    }
}

/// The rules that watch conditions rather than failures: deadline, window,
/// partner health, checks failing in a row. They apply in the listed states,
/// or by default wherever an abort is possible.
pub fn condition_rules(session: &Session, spec: &Spec, now: Now) -> Option<Fired> {
    let state = session.config.state;
    for rule in &spec.auto_abort {
        let applies = if rule.states().is_empty() {
            abortable(state)
        } else {
            rule.states().contains(&state)
        };
        if !applies {
            continue;
        }
        let reason = match rule {
            AutoAbortRule::RetriesExhausted { .. } => None,
            AutoAbortRule::Deadline { commit_within, .. } => {
                let limit = commit_within.as_duration().as_millis() as u64;
                (now.session_age_ms >= limit && state < UpgradeState::Commit)
                    .then(|| format!("Commit was not reached within {commit_within} of the start"))
            }
            AutoAbortRule::WindowClosing { margin, .. } => spec.window.as_ref().and_then(|w| {
                let end = w.end.unix_millis() - margin.as_duration().as_millis() as i64;
                (now.wall_ms as i64 >= end && state < UpgradeState::Merge).then(|| {
                    format!(
                        "the maintenance window closes at {} and Merge is not reached",
                        w.end
                    )
                })
            }),
            AutoAbortRule::PartnerUnhealthy { partner_states, .. } => partner_states
                .contains(&session.config.partner)
                .then(|| format!("the partner side is {}", session.config.partner)),
            AutoAbortRule::CheckFailing {
                consecutive, check, ..
            } => session
                .check_failures
                .iter()
                .find(|(name, n)| check.as_ref().is_none_or(|c| c == *name) && **n >= *consecutive)
                .map(|(name, n)| format!("check `{name}` failed {n} time(s) in a row")),
        };
        if let Some(reason) = reason {
            return Some(fire(rule, state, reason));
        }
    }
    None
}

fn fire(rule: &AutoAbortRule, state: UpgradeState, reason: String) -> Fired {
    match rule.action() {
        RuleAction::Abort if !abortable(state) => Fired {
            rule: rule.when().to_string(),
            action: RuleAction::Hold,
            reason: format!("{reason}; abort is impossible in {state}, holding for a person"),
        },
        action => Fired {
            rule: rule.when().to_string(),
            action,
            reason,
        },
    }
}

/// Exponential backoff: `initial × multiplier^(attempt−1)`, capped at `max`,
/// varied by ± `jitter` (`sample` is uniform in [0, 1)).
pub fn backoff_delay(b: &Backoff, attempt: u32, sample: f64) -> Duration {
    let base = b.initial.as_duration().as_secs_f64()
        * b.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
    let capped = base.min(b.max.as_duration().as_secs_f64());
    let factor = 1.0 + b.jitter * (2.0 * sample.clamp(0.0, 1.0) - 1.0);
    Duration::from_secs_f64((capped * factor).max(0.0))
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
