//! What each state of the model does: the one table from which the engine's
//! work, `plan`'s description and the approval points are all derived. The
//! model (`model::TRANSITIONS`) says where a state may go; this says what
//! happens while the session is in it.

use crate::model::UpgradeState::{self, *};
use crate::plugins::{HardwareOp, Side};
use crate::policy::ApprovalPoint;

/// One piece of a state's request, run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The policy's readiness gates of this set, each until it passes.
    Gates(GateSet),
    /// A hardware operation of the target's plugin, polled until done.
    Operation(HardwareOp),
    /// Every `software` item, installed on the Upgrade Side in order.
    Installs,
    /// The policy's verification checks, round after round, for the soak.
    Verification,
}

/// Which of the policy's gate lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateSet {
    /// `gates.prepareSplit`: before the Upgrade Side is split off.
    PrepareSplit,
    /// `gates.prepareMerge`: before the Upgrade Side takes over production.
    PrepareMerge,
}

impl GateSet {
    /// The side the gates look at.
    pub fn side(self) -> Side {
        match self {
            // Before the split only the production side runs anything.
            GateSet::PrepareSplit => Side::Production,
            GateSet::PrepareMerge => Side::Upgrade,
        }
    }
}

/// What a state does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateWork {
    pub state: UpgradeState,
    pub steps: &'static [Step],
    /// When the policy asks for it, a person approves before the session
    /// leaves this state.
    pub approval_on_leaving: Option<ApprovalPoint>,
}

/// Every state that runs a request, in the order of the manual.
pub const WORK: &[StateWork] = &[
    work(PrepareSplit, &[Step::Gates(GateSet::PrepareSplit)], None),
    work(
        Split,
        &[Step::Operation(HardwareOp::Split), Step::Installs],
        Some(ApprovalPoint::Merge),
    ),
    work(PrepareMerge, &[Step::Gates(GateSet::PrepareMerge)], None),
    work(
        Merge,
        &[Step::Operation(HardwareOp::Merge), Step::Verification],
        Some(ApprovalPoint::Commit),
    ),
    work(Commit, &[Step::Operation(HardwareOp::Commit)], None),
    work(Abort, &[Step::Operation(HardwareOp::Abort)], None),
    work(Finish, &[Step::Operation(HardwareOp::Finish)], None),
];

const fn work(
    state: UpgradeState,
    steps: &'static [Step],
    approval_on_leaving: Option<ApprovalPoint>,
) -> StateWork {
    StateWork {
        state,
        steps,
        approval_on_leaving,
    }
}

/// What `state` does; `None` for Idle, which runs no request.
pub fn of(state: UpgradeState) -> Option<&'static StateWork> {
    WORK.iter().find(|w| w.state == state)
}

/// The state a person's approval at `point` lets the session leave.
pub fn approval_state(point: ApprovalPoint) -> UpgradeState {
    WORK.iter()
        .find(|w| w.approval_on_leaving == Some(point))
        .map(|w| w.state)
        .expect("every approval point is in the table")
}

/// What a hardware operation is for, in the manual's words.
pub fn purpose(op: HardwareOp) -> &'static str {
    match op {
        HardwareOp::Split => "isolate the Upgrade Side",
        HardwareOp::Merge => "restart applications on the Upgrade Side",
        HardwareOp::Commit => "resynchronise the disks from the upgraded side — point of no return",
        HardwareOp::Abort => "restore the original configuration, resynchronise the disks",
        HardwareOp::Finish => "clean up resources",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, CommandKind};

    #[test]
    fn every_state_that_runs_a_request_has_work_and_only_those() {
        for state in UpgradeState::ALL {
            let runs_request = model::Configuration {
                state,
                ..model::Configuration::idle()
            }
            .allows(CommandKind::Begin);
            assert_eq!(of(state).is_some(), runs_request, "{state}");
        }
    }

    #[test]
    fn each_hardware_operation_runs_in_exactly_one_state() {
        for op in HardwareOp::ALL {
            let states: Vec<_> = WORK
                .iter()
                .filter(|w| w.steps.contains(&Step::Operation(op)))
                .collect();
            assert_eq!(states.len(), 1, "{op}");
        }
    }

    #[test]
    fn approvals_guard_the_states_before_merge_and_commit() {
        assert_eq!(approval_state(ApprovalPoint::Merge), Split);
        assert_eq!(approval_state(ApprovalPoint::Commit), Merge);
        // The approval is given before the model moves on towards the
        // point's state.
        assert_eq!(
            model::successor(Split, model::leave_command(Split).unwrap()),
            Some(PrepareMerge)
        );
        assert_eq!(
            model::successor(Merge, model::leave_command(Merge).unwrap()),
            Some(Commit)
        );
    }
}
