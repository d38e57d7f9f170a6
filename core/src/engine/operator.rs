//! An operator's commands to a session — approve, retry, abort, hold,
//! release — checked and recorded in one place. Two callers ask it: a
//! command that takes the state dir's lock when no run holds it (the CLI's
//! `duplex approve` after a stop), and a running engine reading its inbox
//! (a command sent to `duplex apply` or `duplex agent` while they run). So
//! what is allowed, and what gets written, cannot differ between the two.
//!
//! Every accepted command is recorded as `asked` (who, what, why) before its
//! effects; a refused one writes nothing and says why in the model's words.

use super::decide::{Decision, Now, decide, pending_approval};
use super::event::{Event, Outcome, Session};
use crate::model::{self, Command, Disposition, Phase, TransitionError};
use crate::policy::{ApprovalPoint, RuleAction, Spec};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

/// What an operator asks of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperatorVerb {
    /// Let a session waiting at an approval point go on.
    Approve,
    /// Re-run the failed request of a Broken session.
    Retry,
    /// Restore the original configuration (PrepareSplit to Merge).
    Abort,
    /// Stop at the next safe point until released, with a reason.
    Hold,
    /// Let a session held by a person go on.
    Release,
}

impl OperatorVerb {
    pub const ALL: [OperatorVerb; 5] = [
        OperatorVerb::Approve,
        OperatorVerb::Retry,
        OperatorVerb::Abort,
        OperatorVerb::Hold,
        OperatorVerb::Release,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OperatorVerb::Approve => "approve",
            OperatorVerb::Retry => "retry",
            OperatorVerb::Abort => "abort",
            OperatorVerb::Hold => "hold",
            OperatorVerb::Release => "release",
        }
    }
}

impl std::fmt::Display for OperatorVerb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OperatorVerb {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        OperatorVerb::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown command `{s}`; expected one of: {}",
                    OperatorVerb::ALL.map(OperatorVerb::name).join(", ")
                )
            })
    }
}

/// One command, with who gives it and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorRequest {
    pub verb: OperatorVerb,
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Why a command is refused here. Nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("nothing to approve: the session is in {at} and waits for no approval{}", pending_text(.pending))]
    NothingToApprove {
        at: String,
        /// Approval points the policy asks for that are still to come.
        pending: Vec<ApprovalPoint>,
    },
    #[error(
        "{operator} may not approve before {point:?}: the policy names {} as approver(s) there",
        .approvers.join(", ")
    )]
    NotAnApprover {
        operator: String,
        point: ApprovalPoint,
        approvers: Vec<String>,
    },
    /// The state model refuses the command here.
    #[error("{0}")]
    NotAllowed(TransitionError),
    #[error("the session is already held: {reason}")]
    AlreadyHeld { reason: String },
    #[error("nothing to release: the session is in {at} and is not held")]
    NotHeld { at: String },
    #[error(
        "releasing would not move the session on: {why}; retry the request or abort the session"
    )]
    WouldHoldAgain { why: String },
    #[error("the session has ended ({outcome:?}); there is nothing to {verb}")]
    Ended {
        outcome: Outcome,
        verb: OperatorVerb,
    },
    #[error("{verb} needs a reason (why the session is held, for the log)")]
    ReasonRequired { verb: OperatorVerb },
}

fn pending_text(pending: &[ApprovalPoint]) -> String {
    if pending.is_empty() {
        return String::new();
    }
    let points: Vec<String> = pending.iter().map(|p| format!("before {p:?}")).collect();
    format!(" yet (the policy asks for one {})", points.join(" and "))
}

/// What an accepted command will record, decided before anything is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Planned {
    Approve(ApprovalPoint),
    Retry,
    /// Abort; `busy` when a request is in progress (or was, for a runner
    /// that died in it): the request ends first.
    Abort {
        busy: bool,
    },
    Hold,
    Release,
}

/// Who runs the session while the command is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    /// No run holds the session: the command took the lock itself, so a
    /// Busy request belongs to a runner that is gone.
    Gone,
    /// A running engine records the command between two steps; a Busy
    /// request is still its own and ends at the next safe point.
    Running,
}

/// Whether `request` may be given to `session` under `spec` now.
pub fn check(
    request: &OperatorRequest,
    session: &Session,
    spec: &Spec,
    now: Now,
) -> Result<Planned, Refused> {
    let c = &session.config;
    if let Some(outcome) = session.ended
        && matches!(request.verb, OperatorVerb::Hold | OperatorVerb::Release)
    {
        return Err(Refused::Ended {
            outcome,
            verb: request.verb,
        });
    }
    Ok(match request.verb {
        OperatorVerb::Approve => {
            let waiting = pending_approval(session, spec)
                .filter(|_| c.phase() == Phase::Done && session.held.is_none());
            let Some(point) = waiting else {
                return Err(Refused::NothingToApprove {
                    at: c.to_string(),
                    pending: [ApprovalPoint::Merge, ApprovalPoint::Commit]
                        .into_iter()
                        .filter(|p| spec.requires_approval(*p).is_some() && !session.approved(*p))
                        .collect(),
                });
            };
            let approvers = spec
                .requires_approval(point)
                .map(|a| a.approvers.clone())
                .unwrap_or_default();
            if !approvers.is_empty() && !approvers.contains(&request.by) {
                return Err(Refused::NotAnApprover {
                    operator: request.by.clone(),
                    point,
                    approvers,
                });
            }
            Planned::Approve(point)
        }
        OperatorVerb::Retry => {
            c.apply(&Command::Retry).map_err(Refused::NotAllowed)?;
            Planned::Retry
        }
        OperatorVerb::Abort => {
            let busy = c.phase() == Phase::Running && model::abortable(c.state);
            let mut after = c.clone();
            if busy {
                after = after
                    .apply(&ended_request("x"))
                    .map_err(Refused::NotAllowed)?;
            }
            after.apply(&Command::Abort).map_err(Refused::NotAllowed)?;
            Planned::Abort { busy }
        }
        OperatorVerb::Hold => {
            if let Some(reason) = &session.held {
                return Err(Refused::AlreadyHeld {
                    reason: reason.clone(),
                });
            }
            if request
                .reason
                .as_deref()
                .is_none_or(|r| r.trim().is_empty())
            {
                return Err(Refused::ReasonRequired { verb: request.verb });
            }
            Planned::Hold
        }
        OperatorVerb::Release => {
            if session.held.is_none() {
                return Err(Refused::NotHeld { at: c.to_string() });
            }
            // A hold the session's own state makes (retries used up, a
            // failure a person must decide) comes back at once: say so
            // rather than record a release that changes nothing.
            let mut after = session.clone();
            after.held = None;
            match decide(&after, spec, now, 0.5) {
                Decision::Hold(why) => return Err(Refused::WouldHoldAgain { why }),
                Decision::Fire(fired) if fired.action == RuleAction::Hold => {
                    return Err(Refused::WouldHoldAgain { why: fired.reason });
                }
                _ => {}
            }
            Planned::Release
        }
    })
}

/// The failure that ends a Busy request an abort interrupts.
fn ended_request(why: &str) -> Command {
    Command::Fail {
        reason: why.to_string(),
        disposition: Disposition::Retryable,
    }
}

/// The records of an accepted command, in order: `asked` first, then its
/// effects. A Busy request is ended here only when its runner is gone; a
/// running engine ends it at its next safe point ([`abort_ends_request`]).
pub fn records(request: &OperatorRequest, planned: Planned, runner: Runner) -> Vec<Event> {
    let mut events = vec![Event::Asked {
        verb: request.verb,
        by: request.by.clone(),
        reason: request.reason.clone(),
    }];
    match planned {
        Planned::Approve(point) => events.push(Event::Approved {
            before: point,
            by: request.by.clone(),
        }),
        Planned::Retry => events.push(Event::Model {
            command: Command::Retry,
        }),
        Planned::Abort { busy } => {
            if busy && runner == Runner::Gone {
                events.push(Event::Model {
                    command: ended_request("interrupted: the runner stopped during this request"),
                });
            }
            events.push(Event::AbortRequested {
                by: request.by.clone(),
            });
            if !busy || runner == Runner::Gone {
                events.push(Event::Model {
                    command: Command::Abort,
                });
            }
        }
        Planned::Hold => events.push(Event::Held {
            reason: format!(
                "held by {}: {}",
                request.by,
                request.reason.as_deref().unwrap_or_default().trim()
            ),
        }),
        Planned::Release => events.push(Event::Released {
            by: request.by.clone(),
        }),
    }
    events
}

/// The failure recorded for a request a running engine stops because an
/// abort was asked while it was Busy.
pub fn abort_ends_request(session: &Session) -> Option<Command> {
    (session.abort_requested && session.config.phase() == Phase::Running)
        .then(|| ended_request("stopped at a safe point: an abort was asked"))
}

/// What an accepted command changed, for whoever sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub verb: OperatorVerb,
    pub session: String,
    /// Where the session stands right after the command's records, e.g.
    /// `Split (Ready)`.
    pub at: String,
}

/// A command on its way to a running engine, and where its answer goes.
pub struct Envelope {
    pub request: OperatorRequest,
    pub reply: oneshot::Sender<Result<Accepted, Refused>>,
}

/// A running engine's end of the channel operators' commands come by.
pub type Inbox = mpsc::Receiver<Envelope>;
/// The sending end: clone it to give commands to a run.
pub type CommandSender = mpsc::Sender<Envelope>;

/// A channel for one run's commands.
pub fn channel() -> (CommandSender, Inbox) {
    mpsc::channel(16)
}
