use super::*;
use crate::types::Mark;
use duplex_core::rollout::{BetweenWaves, PlannedPolicy, PlannedWave};
use proptest::prelude::*;
use std::time::Duration;

/// `waves[i]` hosts named `w<i>-<j>`.
fn plan(waves: &[usize], max_unavailable: u32, error_budget: u32) -> RolloutPlan {
    RolloutPlan {
        name: "r".into(),
        digest: "d".into(),
        policy: PlannedPolicy {
            text: String::new(),
            digest: "p".into(),
            path: "/p.yaml".into(),
        },
        waves: waves
            .iter()
            .enumerate()
            .map(|(i, n)| PlannedWave {
                name: format!("wave-{i}"),
                hosts: {
                    let mut h: Vec<String> = (0..*n).map(|j| format!("w{i}-{j:02}")).collect();
                    h.sort();
                    h
                },
            })
            .collect(),
        max_unavailable,
        error_budget,
        between_waves: BetweenWaves::default(),
        windows: vec![],
    }
}

fn mark() -> Mark {
    Mark {
        by: "ops".into(),
        reason: "why".into(),
        at_ms: 1,
    }
}

fn start(p: &RolloutPlan, s: &RolloutState, host: &str) -> RolloutState {
    assert_eq!(
        may_start(p, s, host, false, 0, true),
        Decision::Start,
        "{host}"
    );
    take_slot(s, host, p.wave_of(host).unwrap(), 0)
}

fn end(p: &RolloutPlan, s: &RolloutState, host: &str, o: Outcome, now: u64) -> RolloutState {
    end_host(p, s, host, p.wave_of(host).unwrap(), o, None, now).0
}

#[test]
fn a_host_outside_the_plan_is_not_in_the_rollout() {
    let p = plan(&[2], 1, 1);
    let s = RolloutState::new(&p);
    assert_eq!(
        may_start(&p, &s, "other", false, 0, true),
        Decision::NotInRollout
    );
}

#[test]
fn a_holder_goes_on_whatever_happened_and_an_ended_host_is_ended() {
    let p = plan(&[2], 1, 1);
    let mut s = start(&p, &RolloutState::new(&p), "w0-00");
    s.aborted = Some(mark());
    s.paused = Some(mark());
    assert_eq!(
        may_start(&p, &s, "w0-00", false, 0, false),
        Decision::AlreadyHolds
    );
    assert_eq!(may_start(&p, &s, "w0-01", true, 0, true), Decision::Ended);
}

#[test]
fn slots_are_limited_to_max_unavailable() {
    let p = plan(&[4], 2, 10);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = start(&p, &s, "w0-01");
    assert_eq!(
        may_start(&p, &s, "w0-02", false, 0, true),
        Decision::Wait(WaitReason::NoFreeSlot {
            holders: vec!["w0-00".into(), "w0-01".into()],
            max: 2
        })
    );
    let s = end(&p, &s, "w0-00", Outcome::Committed, 5);
    assert_eq!(s.holders.len(), 1);
    assert_eq!(s.ended_by_wave, vec![1]);
    start(&p, &s, "w0-02");
}

#[test]
fn a_wave_starts_only_when_every_earlier_wave_ended_and_the_end_is_stamped() {
    let p = plan(&[2, 1, 1], 3, 10);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let wait = |s: &RolloutState, host: &str| may_start(&p, s, host, false, 0, true);
    assert_eq!(
        wait(&s, "w2-00"),
        Decision::Wait(WaitReason::EarlierWave {
            wave: 0,
            name: "wave-0".into(),
            ended: 0,
            of: 2
        })
    );
    let s = end(&p, &s, "w0-00", Outcome::Committed, 10);
    assert_eq!(s.wave_ended_ms, vec![None, None, None]);
    // Ending without a slot (NotStarted) counts for the wave too.
    let s = end(&p, &s, "w0-01", Outcome::NotStarted, 20);
    assert_eq!(s.wave_ended_ms, vec![Some(20), None, None]);
    assert_eq!(s.aborted_count, 0);
    assert_eq!(
        wait(&s, "w2-00"),
        Decision::Wait(WaitReason::EarlierWave {
            wave: 1,
            name: "wave-1".into(),
            ended: 0,
            of: 1
        })
    );
    let s = start(&p, &s, "w1-00");
    let s = end(&p, &s, "w1-00", Outcome::Aborted, 30);
    assert_eq!(s.wave_ended_ms, vec![Some(20), Some(30), None]);
    let s = start(&p, &s, "w2-00");
    let s = end(&p, &s, "w2-00", Outcome::Committed, 40);
    assert!(s.finished(&p));
    assert_eq!(s.ended_by_wave, vec![2, 1, 1]);
}

#[test]
fn approval_is_needed_for_each_wave_after_the_first() {
    let mut p = plan(&[1, 1], 1, 10);
    p.between_waves.approval = true;
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    // Nothing to approve while the first wave runs.
    assert_eq!(resume(&p, &s), None);
    let s = end(&p, &s, "w0-00", Outcome::Committed, 1);
    assert_eq!(
        may_start(&p, &s, "w1-00", false, 0, true),
        Decision::Wait(WaitReason::Approval {
            wave: 1,
            name: "wave-1".into()
        })
    );
    let (s, approved) = resume(&p, &s).unwrap();
    assert_eq!(approved, Some(1));
    assert_eq!(resume(&p, &s), None, "approving twice changes nothing");
    start(&p, &s, "w1-00");
}

#[test]
fn the_pause_between_waves_runs_from_the_end_of_the_previous_wave() {
    let mut p = plan(&[1, 1], 1, 10);
    p.between_waves.pause = Duration::from_secs(60);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = end(&p, &s, "w0-00", Outcome::Committed, 1_000);
    assert_eq!(
        may_start(&p, &s, "w1-00", false, 60_999, true),
        Decision::Wait(WaitReason::BetweenWaves { until_ms: 61_000 })
    );
    assert_eq!(
        may_start(&p, &s, "w1-00", false, 61_000, true),
        Decision::Start
    );
}

#[test]
fn approval_is_asked_before_the_pause_and_both_apply() {
    let mut p = plan(&[1, 1], 1, 10);
    p.between_waves = BetweenWaves {
        pause: Duration::from_millis(100),
        approval: true,
    };
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = end(&p, &s, "w0-00", Outcome::Committed, 0);
    assert!(matches!(
        may_start(&p, &s, "w1-00", false, 50, true),
        Decision::Wait(WaitReason::Approval { .. })
    ));
    let (s, _) = resume(&p, &s).unwrap();
    assert_eq!(
        may_start(&p, &s, "w1-00", false, 50, true),
        Decision::Wait(WaitReason::BetweenWaves { until_ms: 100 })
    );
    assert_eq!(
        may_start(&p, &s, "w1-00", false, 100, true),
        Decision::Start
    );
}

#[test]
fn outside_the_windows_nobody_starts() {
    let p = plan(&[1], 1, 1);
    let s = RolloutState::new(&p);
    assert_eq!(
        may_start(&p, &s, "w0-00", false, 0, false),
        Decision::Wait(WaitReason::OutsideWindow)
    );
}

#[test]
fn aborted_halted_and_paused_come_first_in_that_order() {
    let p = plan(&[1, 1], 1, 1);
    let mut s = start(&p, &RolloutState::new(&p), "w0-00");
    s.aborted = Some(mark());
    s.halted = Some("budget".into());
    s.paused = Some(mark());
    let w = |s: &RolloutState| may_start(&p, s, "w1-00", false, 0, false);
    assert_eq!(w(&s), Decision::Wait(WaitReason::Aborted(mark())));
    s.aborted = None;
    assert_eq!(w(&s), Decision::Wait(WaitReason::Halted("budget".into())));
    s.halted = None;
    assert_eq!(w(&s), Decision::Wait(WaitReason::Paused(mark())));
    let (s, approved) = resume(&p, &s).unwrap();
    assert_eq!(approved, None);
    assert!(matches!(
        w(&s),
        Decision::Wait(WaitReason::EarlierWave { .. })
    ));
}

#[test]
fn aborts_reach_the_error_budget_and_halt_the_rollout() {
    let p = plan(&[5], 2, 2);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = start(&p, &s, "w0-01");
    let s = end(&p, &s, "w0-00", Outcome::Aborted, 1);
    assert_eq!(s.halted, None);
    let s = start(&p, &s, "w0-02");
    let s = end(&p, &s, "w0-01", Outcome::Aborted, 2);
    assert!(s.halted.as_deref().unwrap().contains("error budget of 2"));
    assert!(matches!(
        may_start(&p, &s, "w0-03", false, 0, true),
        Decision::Wait(WaitReason::Halted(_))
    ));
    // The host in flight goes on and ends.
    assert_eq!(
        may_start(&p, &s, "w0-02", false, 0, true),
        Decision::AlreadyHolds
    );
    let s = end(&p, &s, "w0-02", Outcome::Committed, 3);
    assert!(s.holders.is_empty());
}

#[test]
fn a_held_host_counts_against_the_budget_while_it_is_held() {
    let p = plan(&[3], 2, 1);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = set_held(&s, "w0-00", Some("gate failed")).unwrap();
    assert!(matches!(
        may_start(&p, &s, "w0-01", false, 0, true),
        Decision::Wait(WaitReason::Halted(why)) if why.contains("1 held")
    ));
    assert_eq!(s.halted, None, "held is not final");
    let s = set_held(&s, "w0-00", None).unwrap();
    start(&p, &s, "w0-01");
    assert_eq!(set_held(&s, "w0-02", Some("x")), None);
}

#[test]
fn a_release_frees_the_slot_is_recorded_and_counts_against_the_budget() {
    let p = plan(&[2], 1, 1);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = set_session(&s, "w0-00", "sess-1").unwrap();
    let (s, result) = release_by_operator(&p, &s, "w0-00", "ops", "host is gone", 7).unwrap();
    assert!(s.holders.is_empty());
    assert_eq!(s.releases.len(), 1);
    assert_eq!(s.releases[0].reason, "host is gone");
    assert_eq!(s.releases[0].was_holder.session.as_deref(), Some("sess-1"));
    assert_eq!(result.outcome, Outcome::Released);
    assert_eq!(result.session.as_deref(), Some("sess-1"));
    assert_eq!(result.by.as_deref(), Some("ops"));
    assert_eq!(s.ended_by_wave, vec![1]);
    assert!(s.halted.is_some(), "a release counts against the budget");
    assert_eq!(release_by_operator(&p, &s, "w0-01", "ops", "x", 8), None);
}

#[test]
fn the_session_is_kept_in_the_result() {
    let p = plan(&[1], 1, 1);
    let s = start(&p, &RolloutState::new(&p), "w0-00");
    let s = set_session(&s, "w0-00", "s1").unwrap();
    let (_, r) = end_host(&p, &s, "w0-00", 0, Outcome::Committed, None, 9);
    assert_eq!(r.session.as_deref(), Some("s1"));
    assert_eq!(r.at_ms, 9);
    assert_eq!(set_session(&s, "nobody", "s"), None);
}

#[derive(Debug, Clone)]
enum Op {
    /// A host (index into every host) asks to start.
    Start(usize),
    /// The n-th holder (in name order) ends with an outcome.
    End(usize, u8),
    Release(usize),
    Held(usize, bool),
    Pause,
    Resume,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..40usize).prop_map(Op::Start),
        4 => (0..8usize, 0..4u8).prop_map(|(i, o)| Op::End(i, o)),
        1 => (0..8usize).prop_map(Op::Release),
        1 => (0..8usize, any::<bool>()).prop_map(|(i, h)| Op::Held(i, h)),
        1 => Just(Op::Pause),
        1 => Just(Op::Resume),
    ]
}

proptest! {
    /// Whatever agents and operators do, in any order: never more holders
    /// than max_unavailable, no host holds twice or starts after its end,
    /// no host of a wave holds a slot before every earlier wave ended,
    /// and the counts agree with the results.
    #[test]
    fn the_invariants_hold_under_any_sequence(
        waves in proptest::collection::vec(1..6usize, 1..5),
        max in 1..4u32,
        budget in 1..6u32,
        approval in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut p = plan(&waves, max, budget);
        p.between_waves.approval = approval;
        let hosts: Vec<String> = p.waves.iter().flat_map(|w| w.hosts.clone()).collect();
        let mut s = RolloutState::new(&p);
        let mut results: std::collections::BTreeMap<String, HostResult> = Default::default();
        for (now, op) in ops.into_iter().enumerate() {
            let now = now as u64;
            match op {
                Op::Start(i) => {
                    let host = &hosts[i % hosts.len()];
                    let d = may_start(&p, &s, host, results.contains_key(host), now, true);
                    if d == Decision::Start {
                        s = take_slot(&s, host, p.wave_of(host).unwrap(), now);
                    }
                }
                Op::End(i, o) => {
                    if s.holders.is_empty() { continue; }
                    let host = s.holders.keys().nth(i % s.holders.len()).unwrap().clone();
                    let outcome = [Outcome::Committed, Outcome::Aborted, Outcome::Committed, Outcome::Aborted][o as usize];
                    let (n, r) = end_host(&p, &s, &host, p.wave_of(&host).unwrap(), outcome, None, now);
                    s = n;
                    prop_assert!(results.insert(host, r).is_none());
                }
                Op::Release(i) => {
                    if s.holders.is_empty() { continue; }
                    let host = s.holders.keys().nth(i % s.holders.len()).unwrap().clone();
                    let (n, r) = release_by_operator(&p, &s, &host, "ops", "gone", now).unwrap();
                    s = n;
                    prop_assert!(results.insert(host, r).is_none());
                }
                Op::Held(i, h) => {
                    if s.holders.is_empty() { continue; }
                    let host = s.holders.keys().nth(i % s.holders.len()).unwrap().clone();
                    s = set_held(&s, &host, h.then_some("held")).unwrap();
                }
                Op::Pause => s.paused = Some(mark()),
                Op::Resume => if let Some((n, _)) = resume(&p, &s) { s = n },
            }
            prop_assert!(s.holders.len() <= max as usize);
            for (h, holder) in &s.holders {
                prop_assert!(!results.contains_key(h));
                for earlier in 0..holder.wave {
                    prop_assert!(s.wave_ended(&p, earlier));
                }
            }
            for (w, wave) in p.waves.iter().enumerate() {
                let ended = results.values().filter(|r| r.wave == w).count() as u32;
                prop_assert_eq!(s.ended_in(w), ended);
                prop_assert_eq!(s.wave_ended_ms[w].is_some(), ended as usize == wave.hosts.len());
            }
            let failed = results.values().filter(|r| matches!(r.outcome, Outcome::Aborted | Outcome::Released)).count() as u32;
            prop_assert_eq!(s.halted.is_some(), failed >= budget);
        }
    }
}

#[test]
fn try_chance_spreads_the_free_slots_over_the_waiting_hosts() {
    let plan = plan(&[1, 99], 10, 5);
    let mut state = RolloutState::new(&plan);
    // Wave 1: 99 waiting, 10 free; spread 2 → 20/99.
    let p = try_chance(&plan, &state, "w1-05", 2.0);
    assert!((p - 20.0 / 99.0).abs() < 1e-9, "{p}");
    // Fewer waiting than slots: always try.
    state.ended_by_wave[1] = 95;
    assert_eq!(try_chance(&plan, &state, "w1-05", 2.0), 1.0);
    // No free slot: never.
    state.ended_by_wave[1] = 0;
    for i in 0..10 {
        state = take_slot(&state, &format!("w1-{i:02}"), 1, 0);
    }
    assert_eq!(try_chance(&plan, &state, "w1-50", 2.0), 0.0);
    assert_eq!(try_chance(&plan, &state, "nobody", 2.0), 0.0);
}
