//! The pure decisions of a rollout: whether a host may start, and every
//! change to a [`RolloutState`]. No I/O, no clock: `now_ms` and whether a
//! maintenance window is open come in as values. The etcd store
//! ([`crate::Fleet`]) reads the state, calls these, and writes the result
//! with a compare-and-swap, so every agent decides the same way.

use duplex_core::rollout::RolloutPlan;

use crate::types::{Decision, Holder, HostResult, Outcome, Release, RolloutState, WaitReason};

/// Whether `host` may start its upgrade now.
///
/// In order: a host outside the plan is [`Decision::NotInRollout`]; a host
/// that holds a slot [`Decision::AlreadyHolds`] (whatever else happened:
/// its session goes on); a host with a result [`Decision::Ended`]. Then it
/// waits while the rollout is aborted, halted (`halted` is set, or the
/// aborted, released and held hosts reach the error budget), paused; while an
/// earlier wave has hosts that have not ended; for an approval of its wave
/// (waves after the first, when the plan asks for approvals); for the
/// pause after the previous wave ended; outside the maintenance windows;
/// while every slot is held. Otherwise [`Decision::Start`].
pub fn may_start(
    plan: &RolloutPlan,
    state: &RolloutState,
    host: &str,
    has_result: bool,
    now_ms: u64,
    window_open: bool,
) -> Decision {
    let Some(wave) = plan.wave_of(host) else {
        return Decision::NotInRollout;
    };
    if state.holders.contains_key(host) {
        return Decision::AlreadyHolds;
    }
    if has_result {
        return Decision::Ended;
    }
    if let Some(mark) = &state.aborted {
        return Decision::Wait(WaitReason::Aborted(mark.clone()));
    }
    if let Some(why) = &state.halted {
        return Decision::Wait(WaitReason::Halted(why.clone()));
    }
    if let Some(why) = budget_exhausted(plan, state) {
        return Decision::Wait(WaitReason::Halted(why));
    }
    if let Some(mark) = &state.paused {
        return Decision::Wait(WaitReason::Paused(mark.clone()));
    }
    for (earlier, w) in plan.waves.iter().enumerate().take(wave) {
        if !state.wave_ended(plan, earlier) {
            return Decision::Wait(WaitReason::EarlierWave {
                wave: earlier,
                name: w.name.clone(),
                ended: state.ended_in(earlier),
                of: w.hosts.len() as u32,
            });
        }
    }
    if wave > 0 {
        if plan.between_waves.approval && !state.approved_waves.contains(&wave) {
            return Decision::Wait(WaitReason::Approval {
                wave,
                name: plan.waves[wave].name.clone(),
            });
        }
        let pause = plan.between_waves.pause.as_millis() as u64;
        if pause > 0 {
            // The previous wave ended (checked above), so it has a time;
            // a state written without one waits no pause.
            let ended = state
                .wave_ended_ms
                .get(wave - 1)
                .copied()
                .flatten()
                .unwrap_or(0);
            let until_ms = ended.saturating_add(pause);
            if now_ms < until_ms {
                return Decision::Wait(WaitReason::BetweenWaves { until_ms });
            }
        }
    }
    if !window_open {
        return Decision::Wait(WaitReason::OutsideWindow);
    }
    if state.holders.len() >= plan.max_unavailable as usize {
        return Decision::Wait(WaitReason::NoFreeSlot {
            holders: state.holders.keys().cloned().collect(),
            max: plan.max_unavailable,
        });
    }
    Decision::Start
}

/// How likely a waiting host whose own copy of the state says
/// [`Decision::Start`] should try to take a slot now, so that about
/// `spread` hosts per free slot race for it instead of every host waiting
/// in its wave (each loser costs etcd a transaction): `spread × free slots
/// / hosts of its wave that neither ended nor hold a slot`, at most 1. A
/// host that does not try looks again at the next change or on its timer;
/// the rule only thins the herd, the transaction decides who wins.
pub fn try_chance(plan: &RolloutPlan, state: &RolloutState, host: &str, spread: f64) -> f64 {
    let Some(wave) = plan.wave_of(host) else {
        return 0.0;
    };
    let free = (plan.max_unavailable as usize).saturating_sub(state.holders.len());
    let holding = state.holders.values().filter(|h| h.wave == wave).count();
    let waiting = plan.waves[wave]
        .hosts
        .len()
        .saturating_sub(state.ended_in(wave) as usize + holding)
        .max(1);
    (spread * free as f64 / waiting as f64).min(1.0)
}

/// Why the error budget is spent, if it is: aborted + released + held
/// hosts reach `error_budget`.
pub fn budget_exhausted(plan: &RolloutPlan, state: &RolloutState) -> Option<String> {
    let spent = state.budget_spent();
    (spent >= plan.error_budget).then(|| {
        let held = state.holders.values().filter(|h| h.held.is_some()).count();
        format!(
            "the error budget of {} is spent: {} aborted, {} released, {} held",
            plan.error_budget,
            state.aborted_count,
            state.releases.len(),
            held
        )
    })
}

/// `host` takes a slot in `wave`. Only after [`may_start`] said
/// [`Decision::Start`] on this very state.
pub fn take_slot(state: &RolloutState, host: &str, wave: usize, now_ms: u64) -> RolloutState {
    let mut next = state.clone();
    next.holders.insert(
        host.to_owned(),
        Holder {
            since_ms: now_ms,
            wave,
            session: None,
            held: None,
        },
    );
    next
}

/// The session `host` runs in its slot; `None` when it holds none.
pub fn set_session(state: &RolloutState, host: &str, session: &str) -> Option<RolloutState> {
    let mut next = state.clone();
    next.holders.get_mut(host)?.session = Some(session.to_owned());
    Some(next)
}

/// Marks `host`'s session as held (`Some(why)`) or no longer held
/// (`None`); `None` when it holds no slot. A held host counts against the
/// error budget while it is held.
pub fn set_held(state: &RolloutState, host: &str, held: Option<&str>) -> Option<RolloutState> {
    let mut next = state.clone();
    next.holders.get_mut(host)?.held = held.map(str::to_owned);
    Some(next)
}

/// `host` ends in `wave` with `outcome`: its slot (if it holds one) is
/// freed, the wave's count goes up (stamping `wave_ended_ms` when it was
/// the wave's last host), an abort is counted, and `halted` is set once
/// aborted and released hosts reach the error budget.
///
/// A host may end without holding a slot (`NotStarted`: its agent could
/// not start a session): it still counts as ended for its wave, so the
/// rollout does not wait for it forever. `Released` is
/// [`release_by_operator`]'s.
pub fn end_host(
    plan: &RolloutPlan,
    state: &RolloutState,
    host: &str,
    wave: usize,
    outcome: Outcome,
    session: Option<String>,
    now_ms: u64,
) -> (RolloutState, HostResult) {
    let mut next = state.clone();
    let holder = next.holders.remove(host);
    let session = session.or_else(|| holder.and_then(|h| h.session));
    count_end(plan, &mut next, wave, outcome, now_ms);
    let result = HostResult {
        outcome,
        session,
        wave,
        at_ms: now_ms,
        by: None,
        reason: None,
    };
    (next, result)
}

/// An operator releases `host`'s slot: the holder is removed, the release
/// recorded (who, why, the slot as it was), and the host ends `Released`.
/// `None` when it holds no slot.
///
/// A released host counts against the error budget: its agent may be gone
/// or partitioned with its session anywhere between start and commit, so
/// nobody knows how its upgrade ended, and a rollout must not read "an
/// operator gave up on this host" as a success.
pub fn release_by_operator(
    plan: &RolloutPlan,
    state: &RolloutState,
    host: &str,
    by: &str,
    reason: &str,
    now_ms: u64,
) -> Option<(RolloutState, HostResult)> {
    let mut next = state.clone();
    let holder = next.holders.remove(host)?;
    let wave = holder.wave;
    let session = holder.session.clone();
    next.releases.push(Release {
        host: host.to_owned(),
        by: by.to_owned(),
        reason: reason.to_owned(),
        at_ms: now_ms,
        was_holder: holder,
    });
    count_end(plan, &mut next, wave, Outcome::Released, now_ms);
    let result = HostResult {
        outcome: Outcome::Released,
        session,
        wave,
        at_ms: now_ms,
        by: Some(by.to_owned()),
        reason: Some(reason.to_owned()),
    };
    Some((next, result))
}

fn count_end(
    plan: &RolloutPlan,
    state: &mut RolloutState,
    wave: usize,
    outcome: Outcome,
    now_ms: u64,
) {
    let waves = plan.waves.len().max(wave + 1);
    if state.ended_by_wave.len() < waves {
        state.ended_by_wave.resize(waves, 0);
    }
    if state.wave_ended_ms.len() < waves {
        state.wave_ended_ms.resize(waves, None);
    }
    state.ended_by_wave[wave] += 1;
    if state.wave_ended(plan, wave) && state.wave_ended_ms[wave].is_none() {
        state.wave_ended_ms[wave] = Some(now_ms);
    }
    if outcome == Outcome::Aborted {
        state.aborted_count += 1;
    }
    let failed = state.aborted_count + state.releases.len() as u32;
    if state.halted.is_none() && failed >= plan.error_budget {
        state.halted = Some(format!(
            "the error budget of {} is spent: {} aborted, {} released",
            plan.error_budget,
            state.aborted_count,
            state.releases.len()
        ));
    }
}

/// What `resume` changes: the pause is cleared, and the wave in progress
/// (the first that has not ended) is approved when it is after the first,
/// the plan asks for approvals, and every earlier wave has ended. One
/// `resume` approves at most one wave, and only once the previous wave
/// has ended, so an operator approves a wave having seen how the one
/// before it went. `None` when there is nothing to change.
pub fn resume(plan: &RolloutPlan, state: &RolloutState) -> Option<(RolloutState, Option<usize>)> {
    let mut next = state.clone();
    let unpaused = next.paused.take().is_some();
    let current = (0..plan.waves.len()).find(|&w| !state.wave_ended(plan, w));
    let approved = match current {
        Some(w) if w > 0 && plan.between_waves.approval && !state.approved_waves.contains(&w) => {
            next.approved_waves.insert(w);
            Some(w)
        }
        _ => None,
    };
    (unpaused || approved.is_some()).then_some((next, approved))
}

#[cfg(test)]
mod tests;
