//! The model checked against an oracle written independently of the table,
//! for every state × phase × command, plus properties over random sequences.

use super::*;
use proptest::prelude::*;
use std::collections::{HashSet, VecDeque};

/// What the manual says, written as a plain match: the (state, phase) a
/// command leads to, or None when it must be refused.
fn oracle(state: UpgradeState, phase: Phase, kind: CommandKind) -> Option<(UpgradeState, Phase)> {
    use CommandKind as K;
    use Phase::*;
    let working = state != Idle;
    let abortable = matches!(state, PrepareSplit | Split | PrepareMerge | Merge);
    match kind {
        K::ObservePartner => Some((state, phase)),
        K::Start => (state == Idle).then_some((PrepareSplit, Pending)),
        K::Begin => (working && phase == Pending).then_some((state, Running)),
        K::Complete => (working && phase == Running).then_some((state, Done)),
        K::Fail => (working && phase == Running).then_some((state, Failed)),
        K::Retry => (working && phase == Failed).then_some((state, Running)),
        K::Abort => (abortable && phase != Running).then_some((Abort, Pending)),
        K::Finish => {
            (matches!(state, Commit | Abort) && phase == Done).then_some((Finish, Pending))
        }
        K::Advance => {
            if phase != Done {
                return None;
            }
            match state {
                PrepareSplit => Some((Split, Pending)),
                Split => Some((PrepareMerge, Pending)),
                PrepareMerge => Some((Merge, Pending)),
                Merge => Some((Commit, Pending)),
                Finish => Some((Idle, Pending)),
                _ => None,
            }
        }
    }
}

fn command_of(kind: CommandKind) -> Command {
    match kind {
        CommandKind::Start => Command::Start,
        CommandKind::Begin => Command::Begin,
        CommandKind::Complete => Command::Complete,
        CommandKind::Fail => Command::Fail {
            reason: "boom".into(),
            disposition: Disposition::Retryable,
        },
        CommandKind::Retry => Command::Retry,
        CommandKind::Advance => Command::Advance,
        CommandKind::Abort => Command::Abort,
        CommandKind::Finish => Command::Finish,
        CommandKind::ObservePartner => Command::ObservePartner {
            partner: PartnerState::Up,
        },
    }
}

fn config(state: UpgradeState, phase: Phase) -> Configuration {
    Configuration {
        state,
        request: match phase {
            Phase::Pending => Request::Pending,
            Phase::Running => Request::Running,
            Phase::Done => Request::Done,
            Phase::Failed => Request::Failed(Failure {
                reason: "earlier failure".into(),
                disposition: Disposition::Retryable,
            }),
        },
        attempt: if matches!(phase, Phase::Pending) {
            0
        } else {
            2
        },
        partner: PartnerState::Unknown,
    }
}

#[test]
fn every_state_phase_and_command_matches_the_oracle() {
    let mut checked = 0;
    for state in UpgradeState::ALL {
        for phase in Phase::ALL {
            for kind in CommandKind::ALL {
                let from = config(state, phase);
                let got = from.apply(&command_of(kind));
                match (oracle(state, phase, kind), got) {
                    (Some((s, p)), Ok(next)) => {
                        assert_eq!(
                            (next.state, next.phase()),
                            (s, p),
                            "{state} {phase:?} {kind}"
                        )
                    }
                    (None, Err(err)) => {
                        assert_eq!(err.state, state);
                        assert_eq!(err.command, kind);
                        assert!(!err.allowed.contains(&kind), "{err}");
                        assert!(!err.why.is_empty());
                    }
                    (want, got) => {
                        panic!("{state} {phase:?} {kind}: oracle {want:?}, model {got:?}")
                    }
                }
                assert_eq!(from.allows(kind), oracle(state, phase, kind).is_some());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 8 * 4 * 9);
}

#[test]
fn attempts_count_runs_of_the_current_request() {
    let c = Configuration::idle().apply(&Command::Start).unwrap();
    assert_eq!(c.attempt, 0);
    let c = c.apply(&Command::Begin).unwrap();
    assert_eq!((c.attempt, c.status()), (1, OpStatus::Busy));
    let c = c
        .apply(&Command::Fail {
            reason: "disk offline".into(),
            disposition: Disposition::Final,
        })
        .unwrap();
    assert_eq!(c.status(), OpStatus::Broken);
    assert_eq!(
        c.failure(),
        Some(&Failure {
            reason: "disk offline".into(),
            disposition: Disposition::Final
        })
    );
    let c = c.apply(&Command::Retry).unwrap();
    assert_eq!(
        (c.attempt, c.status(), c.failure()),
        (2, OpStatus::Busy, None)
    );
    let c = c
        .apply(&Command::Complete)
        .unwrap()
        .apply(&Command::Advance)
        .unwrap();
    assert_eq!((c.state, c.attempt), (Split, 0));
}

#[test]
fn refusals_say_what_refused_them_and_what_is_allowed() {
    let commit_done = config(Commit, Phase::Done);
    let err = commit_done.apply(&Command::Abort).unwrap_err();
    assert_eq!(
        err.to_string(),
        "abort is not allowed in Commit (Ready): Commit is the point of no return; allowed here: finish"
    );
    let busy = config(Split, Phase::Running);
    let err = busy.apply(&Command::Advance).unwrap_err();
    assert_eq!(
        err.to_string(),
        "advance is not allowed in Split (Busy): a request is running (Busy); allowed here: complete, fail"
    );
    let broken = config(Merge, Phase::Failed);
    let err = broken.apply(&Command::Advance).unwrap_err();
    assert_eq!(
        err.to_string(),
        "advance is not allowed in Merge (Broken): the last request failed (Broken): retry it or abort; allowed here: retry, abort"
    );
    let err = Configuration::idle().apply(&Command::Retry).unwrap_err();
    assert_eq!(
        err.to_string(),
        "retry is not allowed in Idle (Ready): no upgrade session is in progress; allowed here: start"
    );
}

#[test]
fn paths_are_derived_from_the_table() {
    assert_eq!(
        forward_path(),
        vec![
            Idle,
            PrepareSplit,
            Split,
            PrepareMerge,
            Merge,
            Commit,
            Finish,
            Idle
        ]
    );
    for from in [PrepareSplit, Split, PrepareMerge, Merge] {
        assert_eq!(abort_path(from), vec![Abort, Finish, Idle]);
    }
    for from in [Idle, Commit, Abort, Finish] {
        assert!(abort_path(from).is_empty());
    }
}

/// A configuration the model must never produce.
fn invariant_violation(c: &Configuration) -> Option<&'static str> {
    if c.state == Idle && c.phase() != Phase::Pending {
        return Some("Idle runs no request");
    }
    if (c.phase() == Phase::Pending) != (c.attempt == 0) {
        return Some("attempt 0 exactly before the request starts");
    }
    None
}

fn key(c: &Configuration) -> (UpgradeState, Phase) {
    (c.state, c.phase())
}

#[test]
fn every_row_effect_fits_its_command() {
    // Payload effects take their payload from the command: the table must
    // pair them with the command that carries it.
    for row in TRANSITIONS {
        match row.effect {
            Effect::Failed => assert_eq!(row.command, CommandKind::Fail),
            Effect::Partner => assert_eq!(row.command, CommandKind::ObservePartner),
            _ => assert!(
                !matches!(row.command, CommandKind::Fail | CommandKind::ObservePartner),
                "{row:?}"
            ),
        }
    }
}

#[test]
fn leaving_a_state_is_advance_or_finish_as_the_table_says() {
    let expected = [
        (Idle, None),
        (PrepareSplit, Some(CommandKind::Advance)),
        (Split, Some(CommandKind::Advance)),
        (PrepareMerge, Some(CommandKind::Advance)),
        (Merge, Some(CommandKind::Advance)),
        (Commit, Some(CommandKind::Finish)),
        (Abort, Some(CommandKind::Finish)),
        (Finish, Some(CommandKind::Advance)),
    ];
    for (state, command) in expected {
        assert_eq!(leave_command(state), command, "{state}");
    }
}

/// Every configuration reachable from Idle, by breadth-first search.
fn reachable() -> Vec<Configuration> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut queue = VecDeque::from([Configuration::idle()]);
    while let Some(c) = queue.pop_front() {
        if !seen.insert(key(&c)) {
            continue;
        }
        for kind in CommandKind::ALL {
            if let Ok(next) = c.apply(&command_of(kind)) {
                queue.push_back(next);
            }
        }
        out.push(c);
    }
    out
}

fn can_reach_idle(from: &Configuration) -> bool {
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([from.clone()]);
    while let Some(c) = queue.pop_front() {
        if c.state == Idle && c != *from {
            return true;
        }
        if !seen.insert(key(&c)) {
            continue;
        }
        for kind in CommandKind::ALL {
            if let Ok(next) = c.apply(&command_of(kind)) {
                queue.push_back(next);
            }
        }
    }
    false
}

#[test]
fn every_reachable_configuration_is_valid_and_can_get_back_to_idle() {
    let all = reachable();
    // Idle, and each of the seven working states in each of its four phases.
    assert_eq!(all.len(), 1 + 7 * 4);
    for c in &all {
        assert_eq!(invariant_violation(c), None, "{c:?}");
        assert!(can_reach_idle(c), "{c:?} is stuck");
    }
}

proptest! {
    #[test]
    fn random_command_sequences_stay_legal(kinds in proptest::collection::vec(0usize..9, 0..200)) {
        let mut c = Configuration::idle();
        let mut visited = vec![c.state];
        for i in kinds {
            let kind = CommandKind::ALL[i];
            let before = c.clone();
            match c.apply(&command_of(kind)) {
                Ok(next) => {
                    prop_assert!(oracle(before.state, before.phase(), kind).is_some());
                    if next.state != before.state {
                        visited.push(next.state);
                    }
                    c = next;
                }
                Err(err) => {
                    prop_assert!(oracle(before.state, before.phase(), kind).is_none());
                    prop_assert_eq!(err.state, before.state);
                }
            }
            prop_assert_eq!(invariant_violation(&c), None);
            prop_assert!(can_reach_idle(&c) || c.state == Idle);
        }
        // No skipping and no going back: every state change is one the
        // manual's forward or abort path allows.
        for pair in visited.windows(2) {
            let legal = forward_path().windows(2).any(|w| w == pair)
                || matches!(pair, [PrepareSplit | Split | PrepareMerge | Merge, Abort])
                || pair == [Abort, Finish];
            prop_assert!(legal, "illegal step {:?}", pair);
        }
    }
}
