//! The active-upgrade state model of the NEC Express5800/320Fc (manual p. 21).
//!
//! Pure: no I/O, no async, no clock. A [`Configuration`] plus a [`Command`]
//! gives the next configuration or a [`TransitionError`]. Everything in the
//! runner that moves a session asks this module; nothing re-implements it.
//!
//! Every state except Idle runs one *request* (its readiness gates, hardware
//! operation, install, verification). The request's [`Phase`] is what the
//! manual calls the operational status: Pending and Done are *Ready*, Running
//! is *Busy*, Failed is *Broken*.

mod types;

pub use types::{
    CommandKind, Disposition, Failure, OpStatus, PartnerState, Phase, Request, UpgradeState,
};

use serde::{Deserialize, Serialize};
use std::fmt;

use CommandKind as C;
use UpgradeState::*;

// ─── The transition table ───────────────────────────────────────────────────
//
// One row per legal (state, phase, command). Anything not listed is refused
// with a `TransitionError`. Read top to bottom, this is the whole model.

/// The states that run a request.
const WORKING: &[UpgradeState] = &[
    PrepareSplit,
    Split,
    PrepareMerge,
    Merge,
    Commit,
    Abort,
    Finish,
];
/// Abort is allowed only from these (manual p. 21), and never while Busy.
const ABORTABLE: &[UpgradeState] = &[PrepareSplit, Split, PrepareMerge, Merge];
const ALL: &[UpgradeState] = &[
    Idle,
    PrepareSplit,
    Split,
    PrepareMerge,
    Merge,
    Commit,
    Abort,
    Finish,
];

pub const TRANSITIONS: &[Transition] = &[
    //  from          phase required      command            effect
    row(&[Idle], When::Any, C::Start, Effect::Enter(PrepareSplit)),
    // One request per state: begin it, and it completes or fails; a failed
    // request is retried (re-run from the start, so requests are idempotent).
    row(WORKING, When::Is(Phase::Pending), C::Begin, Effect::Run),
    row(WORKING, When::Is(Phase::Running), C::Complete, Effect::Done),
    row(WORKING, When::Is(Phase::Running), C::Fail, Effect::Failed),
    row(WORKING, When::Is(Phase::Failed), C::Retry, Effect::Rerun),
    // Forward, one state at a time, only once the state's request is done.
    row(
        &[PrepareSplit],
        When::Is(Phase::Done),
        C::Advance,
        Effect::Enter(Split),
    ),
    row(
        &[Split],
        When::Is(Phase::Done),
        C::Advance,
        Effect::Enter(PrepareMerge),
    ),
    row(
        &[PrepareMerge],
        When::Is(Phase::Done),
        C::Advance,
        Effect::Enter(Merge),
    ),
    row(
        &[Merge],
        When::Is(Phase::Done),
        C::Advance,
        Effect::Enter(Commit),
    ),
    row(
        &[Commit, Abort],
        When::Is(Phase::Done),
        C::Finish,
        Effect::Enter(Finish),
    ),
    row(
        &[Finish],
        When::Is(Phase::Done),
        C::Advance,
        Effect::Enter(Idle),
    ),
    // Abort restores the original configuration; never while a request runs.
    row(ABORTABLE, When::NotRunning, C::Abort, Effect::Enter(Abort)),
    // The partner side's health is observed at any time.
    row(ALL, When::Any, C::ObservePartner, Effect::Partner),
];

// ─── Table types ────────────────────────────────────────────────────────────

/// One row of [`TRANSITIONS`].
#[derive(Debug, Clone, Copy)]
pub struct Transition {
    pub from: &'static [UpgradeState],
    pub when: When,
    pub command: CommandKind,
    pub effect: Effect,
}

const fn row(
    from: &'static [UpgradeState],
    when: When,
    command: CommandKind,
    effect: Effect,
) -> Transition {
    Transition {
        from,
        when,
        command,
        effect,
    }
}

/// The request phase a row requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Any,
    Is(Phase),
    /// Pending, Done or Failed: Ready or Broken, never Busy.
    NotRunning,
}

impl When {
    fn matches(self, phase: Phase) -> bool {
        match self {
            When::Any => true,
            When::Is(p) => p == phase,
            When::NotRunning => phase != Phase::Running,
        }
    }
}

/// What a row does to the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Switch to another state; its request is Pending.
    Enter(UpgradeState),
    /// The request starts: attempt 1, Busy.
    Run,
    /// The request finished: Ready to move on.
    Done,
    /// The request failed: Broken, with the reason.
    Failed,
    /// The failed request runs again: next attempt, Busy.
    Rerun,
    /// Record the partner side's health.
    Partner,
}

// ─── Configuration and commands ─────────────────────────────────────────────

/// Where a session is: the fold of everything that happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Configuration {
    pub state: UpgradeState,
    /// The state's request, and why it failed when it did.
    pub request: Request,
    /// How many times the current request has been run (0 before it starts).
    pub attempt: u32,
    pub partner: PartnerState,
}

impl Default for Configuration {
    fn default() -> Self {
        Self::idle()
    }
}

/// A command given to the model, with its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase")]
pub enum Command {
    Start,
    Begin,
    Complete,
    /// The request failed; `disposition` says what may happen next (a
    /// retryable failure is written without it, as journal format 1 did).
    Fail {
        reason: String,
        #[serde(default, skip_serializing_if = "Disposition::is_retryable")]
        disposition: Disposition,
    },
    Retry,
    Advance,
    Abort,
    Finish,
    ObservePartner {
        partner: PartnerState,
    },
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::Start => C::Start,
            Command::Begin => C::Begin,
            Command::Complete => C::Complete,
            Command::Fail { .. } => C::Fail,
            Command::Retry => C::Retry,
            Command::Advance => C::Advance,
            Command::Abort => C::Abort,
            Command::Finish => C::Finish,
            Command::ObservePartner { .. } => C::ObservePartner,
        }
    }
}

/// A command the model refused in the configuration it was given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command} is not allowed in {state} ({status}): {why}; allowed here: {}", list(.allowed))]
pub struct TransitionError {
    pub state: UpgradeState,
    pub status: OpStatus,
    pub command: CommandKind,
    pub why: &'static str,
    pub allowed: Vec<CommandKind>,
}

fn list(allowed: &[CommandKind]) -> String {
    let names: Vec<String> = allowed
        .iter()
        .filter(|k| **k != C::ObservePartner)
        .map(|k| k.to_string())
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

impl Configuration {
    /// No session.
    pub fn idle() -> Self {
        Self {
            state: Idle,
            request: Request::Pending,
            attempt: 0,
            partner: PartnerState::Unknown,
        }
    }

    /// Where the state's request is.
    pub fn phase(&self) -> Phase {
        self.request.phase()
    }

    /// Why the request failed, when the session is Broken.
    pub fn failure(&self) -> Option<&Failure> {
        match &self.request {
            Request::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// Ready, Busy or Broken, as the manual names it.
    pub fn status(&self) -> OpStatus {
        self.phase().status()
    }

    fn row_for(&self, kind: CommandKind) -> Option<&'static Transition> {
        let phase = self.phase();
        TRANSITIONS
            .iter()
            .find(|t| t.command == kind && t.from.contains(&self.state) && t.when.matches(phase))
    }

    /// Whether the model accepts a command of this kind here.
    pub fn allows(&self, kind: CommandKind) -> bool {
        self.row_for(kind).is_some()
    }

    /// Every command kind the model accepts here, in table order.
    pub fn allowed(&self) -> Vec<CommandKind> {
        CommandKind::ALL
            .iter()
            .copied()
            .filter(|k| self.allows(*k))
            .collect()
    }

    /// Apply a command: the next configuration, or why it is refused.
    pub fn apply(&self, command: &Command) -> Result<Configuration, TransitionError> {
        let kind = command.kind();
        let Some(row) = self.row_for(kind) else {
            return Err(self.refused(kind));
        };
        let mut next = self.clone();
        match (row.effect, command) {
            (Effect::Enter(state), _) => {
                next.state = state;
                next.request = Request::Pending;
                next.attempt = 0;
            }
            (Effect::Run, _) => {
                next.request = Request::Running;
                next.attempt = 1;
            }
            (Effect::Done, _) => next.request = Request::Done,
            (
                Effect::Failed,
                Command::Fail {
                    reason,
                    disposition,
                },
            ) => {
                next.request = Request::Failed(Failure {
                    reason: reason.clone(),
                    disposition: *disposition,
                });
            }
            (Effect::Rerun, _) => {
                next.request = Request::Running;
                next.attempt = self.attempt.saturating_add(1);
            }
            (Effect::Partner, Command::ObservePartner { partner }) => next.partner = *partner,
            // A payload effect under a command without that payload: the
            // table is wrong (`every_row_effect_fits_its_command` checks it).
            (Effect::Failed | Effect::Partner, _) => {
                return Err(self.refused(kind));
            }
        }
        Ok(next)
    }

    fn refused(&self, kind: CommandKind) -> TransitionError {
        TransitionError {
            state: self.state,
            status: self.status(),
            command: kind,
            why: self.refusal_reason(kind),
            allowed: self.allowed(),
        }
    }

    /// The most useful single reason a command is refused here.
    fn refusal_reason(&self, kind: CommandKind) -> &'static str {
        match (self.state, self.phase(), kind) {
            (Idle, _, _) => "no upgrade session is in progress",
            (_, _, C::Start) => "an upgrade session is already in progress",
            (Commit | Finish, _, C::Abort) => "Commit is the point of no return",
            (Abort, _, C::Abort) => "the session is already aborting",
            (_, Phase::Running, _) => "a request is running (Busy)",
            (_, Phase::Failed, _) => "the last request failed (Broken): retry it or abort",
            (_, Phase::Pending, C::Retry) => "only a failed (Broken) request can be retried",
            (_, Phase::Done, C::Retry) => "only a failed (Broken) request can be retried",
            (_, Phase::Pending, _) => "this state's request has not run yet",
            (_, Phase::Done, C::Begin) => "this state's request is already done",
            (_, Phase::Done, C::Complete | C::Fail) => "no request is running",
            (_, _, C::Finish) => "only Commit and Abort lead to Finish",
            (_, _, C::Advance) => "this state does not advance: use finish",
            _ => "the state model has no such transition",
        }
    }
}

// ─── Paths through the model (derived from the table) ───────────────────────

/// The state a command leads to from `state` once its request is done, if
/// that command changes the state at all.
pub fn successor(state: UpgradeState, kind: CommandKind) -> Option<UpgradeState> {
    TRANSITIONS.iter().find_map(|t| match t.effect {
        Effect::Enter(to) if t.command == kind && t.from.contains(&state) => Some(to),
        _ => None,
    })
}

/// Whether the model lets a session abort from `state` (when not Busy).
pub fn abortable(state: UpgradeState) -> bool {
    successor(state, C::Abort).is_some()
}

/// The command that leaves `state` forward once its request is done
/// (`advance`, or `finish` from Commit and Abort); `None` for Idle.
pub fn leave_command(state: UpgradeState) -> Option<CommandKind> {
    TRANSITIONS.iter().find_map(|t| match t.effect {
        Effect::Enter(_) if t.when == When::Is(Phase::Done) && t.from.contains(&state) => {
            Some(t.command)
        }
        _ => None,
    })
}

/// The happy path from Idle back to Idle: every state a committed session
/// passes through, in order.
pub fn forward_path() -> Vec<UpgradeState> {
    path_from(Idle, &[C::Start, C::Advance, C::Finish])
}

/// The states an abort from `from` passes through: Abort, Finish, Idle.
pub fn abort_path(from: UpgradeState) -> Vec<UpgradeState> {
    match successor(from, C::Abort) {
        Some(to) => path_from(to, &[C::Finish, C::Advance]),
        None => Vec::new(),
    }
}

fn path_from(start: UpgradeState, commands: &[CommandKind]) -> Vec<UpgradeState> {
    let mut path = vec![start];
    let mut state = start;
    while let Some(next) = commands.iter().find_map(|k| successor(state, *k)) {
        path.push(next);
        if next == Idle {
            break;
        }
        state = next;
    }
    path
}

impl fmt::Display for Configuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.state, self.status())?;
        if let Some(failure) = self.failure() {
            write!(f, ": {}", failure.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
