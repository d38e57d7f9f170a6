//! The reconcile brain: given where a session is, what the policy says and
//! the time, the next thing to do. Pure (the clock and the jitter sample are
//! arguments), so every policy rule is tested without plugins or sleeps.

use super::session::{Outcome, Session};
use crate::model::{Command, Phase, UpgradeState, abortable};
use crate::policy::{ApprovalPoint, AutoAbortRule, Backoff, PolicyAction, RuleAction, Spec};
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
    /// Stop: a person must approve (`duplex approve`).
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

pub fn decide(session: &Session, spec: &Spec, now_ms: u64, jitter_sample: f64) -> Decision {
    if let Some(outcome) = session.ended {
        return Decision::End(outcome);
    }
    let c = &session.config;
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
    if c.phase != Phase::Running && wants_abort && abortable(c.state) {
        return Decision::Apply(Command::Abort);
    }
    if let Some(reason) = &session.held {
        return Decision::Hold(reason.clone());
    }
    if c.phase != Phase::Running
        && let Some(fired) = condition_rules(session, spec, now_ms)
    {
        return Decision::Fire(fired);
    }
    match c.phase {
        Phase::Pending => Decision::Apply(Command::Begin),
        Phase::Running => Decision::RunRequest,
        Phase::Failed => after_failure(session, spec, jitter_sample),
        Phase::Done => after_done(session, spec),
    }
}

fn after_done(session: &Session, spec: &Spec) -> Decision {
    let needs = |point| spec.requires_approval(point).is_some() && !session.approved(point);
    match session.config.state {
        UpgradeState::Split if needs(ApprovalPoint::Merge) => {
            Decision::WaitForApproval(ApprovalPoint::Merge)
        }
        UpgradeState::Merge if needs(ApprovalPoint::Commit) => {
            Decision::WaitForApproval(ApprovalPoint::Commit)
        }
        UpgradeState::Commit | UpgradeState::Abort => Decision::Apply(Command::Finish),
        _ => Decision::Apply(Command::Advance),
    }
}

fn after_failure(session: &Session, spec: &Spec, jitter_sample: f64) -> Decision {
    let c = &session.config;
    let retry = spec.retries.for_state(c.state);
    let reason = c.failure.clone().unwrap_or_default();
    if !session.not_retryable && c.attempt <= retry.limit {
        return Decision::RetryAfter {
            delay: backoff_delay(&retry.backoff, c.attempt, jitter_sample),
            attempt: c.attempt + 1,
        };
    }
    let why = if session.not_retryable {
        format!("{} failed and cannot be retried: {reason}", c.state)
    } else {
        format!(
            "{} failed {} time(s), its retries ({}) are used up: {reason}",
            c.state, c.attempt, retry.limit
        )
    };
    let rule = spec.auto_abort.iter().find(|r| {
        matches!(r, AutoAbortRule::RetriesExhausted { .. })
            && (r.states().is_empty() || r.states().contains(&c.state))
    });
    match rule {
        Some(rule) => Decision::Fire(fire(rule, c.state, why)),
        None => Decision::Hold(format!(
            "{why}; no auto-abort rule applies — run `duplex retry` or `duplex abort`"
        )),
    }
}

/// The rules that watch conditions rather than failures: deadline, window,
/// partner health, checks failing in a row. They apply in the listed states,
/// or by default wherever an abort is possible.
pub fn condition_rules(session: &Session, spec: &Spec, now_ms: u64) -> Option<Fired> {
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
                let deadline = session.started_ms + commit_within.as_duration().as_millis() as u64;
                (now_ms >= deadline && state < UpgradeState::Commit)
                    .then(|| format!("Commit was not reached within {commit_within} of the start"))
            }
            AutoAbortRule::WindowClosing { margin, .. } => spec.window.as_ref().and_then(|w| {
                let end = w.end.unix_millis() - margin.as_duration().as_millis() as i64;
                (now_ms as i64 >= end && state < UpgradeState::Merge).then(|| {
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
