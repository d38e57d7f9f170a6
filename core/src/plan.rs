//! The path a policy will take through the state model, worked out without
//! touching anything: each state with the work done there (as `work::WORK`
//! lists it), the retry rules in force, the approval points and the
//! auto-abort rules.

use crate::model::{self, UpgradeState};
use crate::policy::{
    ApprovalPoint, AutoAbortRule, Check, LoadedPolicy, MaintenanceWindow, RetryPolicy, RuleAction,
};
use crate::work::{GateSet, Step};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub policy: String,
    pub file: String,
    pub digest: String,
    pub action: String,
    pub target: String,
    pub hardware_plugin: String,
    pub unattended: bool,
    /// When a session may run; `null` when the policy sets no window.
    pub window: Option<MaintenanceWindow>,
    pub steps: Vec<PlanStep>,
    pub abort_from: Vec<UpgradeState>,
    pub abort_path: Vec<PlanStep>,
    pub auto_abort: Vec<String>,
}

/// An approval the session waits for.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanApproval {
    pub before: ApprovalPoint,
    /// Who may approve (empty: anyone).
    pub approvers: Vec<String>,
}

/// One state of the path and what happens there.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlanStep {
    pub state: UpgradeState,
    pub work: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<String>,
    /// A person must approve before the session leaves this state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<PlanApproval>,
}

impl Plan {
    pub fn of(loaded: &LoadedPolicy) -> Plan {
        let policy = &loaded.policy;
        let spec = &policy.spec;
        let hw = spec.target.plugin.clone();
        let step = |state: UpgradeState| {
            let mut work = Vec::new();
            let mut approval = None;
            let state_work = crate::work::of(state);
            for step in state_work.map(|w| w.steps).unwrap_or_default() {
                match step {
                    Step::Gates(set) => gates(
                        match set {
                            GateSet::PrepareSplit => &spec.gates.prepare_split,
                            GateSet::PrepareMerge => &spec.gates.prepare_merge,
                        },
                        &mut work,
                    ),
                    Step::Operation(op) => work.push(format!(
                        "hardware operation `{op}` ({hw}): {}",
                        crate::work::purpose(*op)
                    )),
                    Step::Installs => {
                        for s in &spec.software {
                            work.push(format!(
                                "install {} {} on the Upgrade Side via {} (sha256 {}…)",
                                s.name,
                                s.version,
                                spec.installer_of(s),
                                &s.sha256.as_str()[..12]
                            ));
                        }
                    }
                    Step::Verification => match &spec.verification {
                        Some(v) => {
                            work.push(format!(
                                "verify for {} (a round every {}):",
                                v.soak, v.interval
                            ));
                            for c in &v.checks {
                                work.push(format!(
                                    "  `{}`: {}/{}, fails after {} failure(s) in a row",
                                    c.name, c.plugin, c.check, c.failure_limit
                                ));
                            }
                        }
                        None => work.push("no verification checks".into()),
                    },
                }
            }
            if let Some(point) = state_work.and_then(|w| w.approval_on_leaving) {
                approval = spec.requires_approval(point).map(|a| PlanApproval {
                    before: point,
                    approvers: a.approvers.clone(),
                });
            }
            let retries = (state != UpgradeState::Idle)
                .then(|| describe_retries(&spec.retries.for_state(state)));
            PlanStep {
                state,
                work,
                retries,
                approval,
            }
        };
        let abort_from: Vec<UpgradeState> = UpgradeState::ALL
            .into_iter()
            .filter(|s| model::abortable(*s))
            .collect();
        let abort_path = abort_from
            .first()
            .map(|s| model::abort_path(*s))
            .unwrap_or_default();
        Plan {
            policy: policy.metadata.name.clone(),
            file: loaded.file.display().to_string(),
            digest: loaded.digest.to_string(),
            action: format!("{:?}", spec.action).to_lowercase(),
            target: spec.target.name.clone(),
            hardware_plugin: hw.clone(),
            unattended: spec.approvals.is_empty(),
            window: spec.window.clone(),
            steps: model::forward_path().into_iter().map(step).collect(),
            abort_from,
            abort_path: abort_path.into_iter().map(step).collect(),
            auto_abort: spec.auto_abort.iter().map(describe_rule).collect(),
        }
    }
}

fn gates(checks: &[Check], work: &mut Vec<String>) {
    if checks.is_empty() {
        work.push("no readiness gates: switch at once".into());
    }
    for c in checks {
        work.push(format!("gate {}", describe_check(c)));
    }
}

fn describe_check(c: &Check) -> String {
    format!(
        "`{}`: {}/{} every {}, {} pass(es) in a row, fails after {} failure(s) in a row or {}",
        c.name, c.plugin, c.check, c.interval, c.consecutive_successes, c.failure_limit, c.timeout
    )
}

fn describe_retries(r: &RetryPolicy) -> String {
    if r.limit == 0 {
        return "no retries".into();
    }
    let b = &r.backoff;
    format!(
        "up to {} retr{}, waiting {} ×{} up to {} (±{:.0}%)",
        r.limit,
        if r.limit == 1 { "y" } else { "ies" },
        b.initial,
        b.multiplier,
        b.max,
        b.jitter * 100.0
    )
}

fn describe_rule(rule: &AutoAbortRule) -> String {
    let action = match rule.action() {
        RuleAction::Abort => "abort",
        RuleAction::Hold => "hold for a person",
    };
    let condition = match rule {
        AutoAbortRule::RetriesExhausted { .. } => "a request's retries are used up".to_string(),
        AutoAbortRule::CheckFailing {
            consecutive, check, ..
        } => match check {
            Some(c) => format!("check `{c}` fails {consecutive} time(s) in a row"),
            None => format!("any check fails {consecutive} time(s) in a row"),
        },
        AutoAbortRule::Deadline { commit_within, .. } => {
            format!("Commit is not reached within {commit_within} of the start")
        }
        AutoAbortRule::WindowClosing { margin, .. } => {
            format!("the maintenance window closes (less {margin}) before Merge")
        }
        AutoAbortRule::PartnerUnhealthy { partner_states, .. } => {
            let names: Vec<String> = partner_states.iter().map(|s| s.to_string()).collect();
            format!("the partner side is {}", names.join(" or "))
        }
    };
    let states = if rule.states().is_empty() {
        String::new()
    } else {
        let names: Vec<String> = rule.states().iter().map(|s| s.to_string()).collect();
        format!(" (in {})", names.join(", "))
    };
    format!("when {condition}{states}: {action}")
}
