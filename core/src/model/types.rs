//! The vocabulary of the state model: states, phases, statuses, commands.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The upgrade states of the manual, in the order a committed session meets them
/// (Abort sits between Merge and Finish only in this list).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum UpgradeState {
    Idle,
    PrepareSplit,
    Split,
    PrepareMerge,
    Merge,
    Commit,
    Abort,
    Finish,
}

impl UpgradeState {
    pub const ALL: [UpgradeState; 8] = [
        UpgradeState::Idle,
        UpgradeState::PrepareSplit,
        UpgradeState::Split,
        UpgradeState::PrepareMerge,
        UpgradeState::Merge,
        UpgradeState::Commit,
        UpgradeState::Abort,
        UpgradeState::Finish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UpgradeState::Idle => "Idle",
            UpgradeState::PrepareSplit => "PrepareSplit",
            UpgradeState::Split => "Split",
            UpgradeState::PrepareMerge => "PrepareMerge",
            UpgradeState::Merge => "Merge",
            UpgradeState::Commit => "Commit",
            UpgradeState::Abort => "Abort",
            UpgradeState::Finish => "Finish",
        }
    }
}

impl fmt::Display for UpgradeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the current state's request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Not started yet (status Ready).
    Pending,
    /// Running (status Busy).
    Running,
    /// Finished successfully (status Ready): the state may be left.
    Done,
    /// The last attempt failed (status Broken).
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 4] = [Phase::Pending, Phase::Running, Phase::Done, Phase::Failed];

    pub fn status(self) -> OpStatus {
        match self {
            Phase::Pending | Phase::Done => OpStatus::Ready,
            Phase::Running => OpStatus::Busy,
            Phase::Failed => OpStatus::Broken,
        }
    }
}

/// The state's request: not run yet, running, done, or failed (and why).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum Request {
    Pending,
    Running,
    Done,
    Failed(Failure),
}

impl Request {
    pub fn phase(&self) -> Phase {
        match self {
            Request::Pending => Phase::Pending,
            Request::Running => Phase::Running,
            Request::Done => Phase::Done,
            Request::Failed(_) => Phase::Failed,
        }
    }
}

/// Why a request failed, and what may happen next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub reason: String,
    pub disposition: Disposition,
}

/// What a failure allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Disposition {
    /// May succeed if run again: retried within the policy's limits, then
    /// the auto-abort rules apply.
    #[default]
    Retryable,
    /// Will fail the same way again: no automatic retry; the auto-abort
    /// rules apply at once.
    Final,
    /// A person must decide (an inconclusive check, a fault of the runner's
    /// own host): held, without retries and without firing any rule.
    Hold,
}

impl Disposition {
    pub fn is_retryable(&self) -> bool {
        *self == Disposition::Retryable
    }
}

/// The operational status of the manual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OpStatus {
    Ready,
    Busy,
    Broken,
}

impl fmt::Display for OpStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OpStatus::Ready => "Ready",
            OpStatus::Busy => "Busy",
            OpStatus::Broken => "Broken",
        })
    }
}

/// The health of the side that keeps production running while the other
/// side is upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
pub enum PartnerState {
    #[default]
    Unknown,
    Off,
    Booting,
    Up,
    Hung,
    Crashed,
}

impl PartnerState {
    pub const ALL: [PartnerState; 6] = [
        PartnerState::Unknown,
        PartnerState::Off,
        PartnerState::Booting,
        PartnerState::Up,
        PartnerState::Hung,
        PartnerState::Crashed,
    ];
}

impl fmt::Display for PartnerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A command without its payload: what the transition table is keyed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandKind {
    Start,
    Begin,
    Complete,
    Fail,
    Retry,
    Advance,
    Abort,
    Finish,
    ObservePartner,
}

impl CommandKind {
    pub const ALL: [CommandKind; 9] = [
        CommandKind::Start,
        CommandKind::Begin,
        CommandKind::Complete,
        CommandKind::Fail,
        CommandKind::Retry,
        CommandKind::Advance,
        CommandKind::Abort,
        CommandKind::Finish,
        CommandKind::ObservePartner,
    ];
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CommandKind::Start => "start",
            CommandKind::Begin => "begin",
            CommandKind::Complete => "complete",
            CommandKind::Fail => "fail",
            CommandKind::Retry => "retry",
            CommandKind::Advance => "advance",
            CommandKind::Abort => "abort",
            CommandKind::Finish => "finish",
            CommandKind::ObservePartner => "observe-partner",
        })
    }
}
