//! Checks, run round after round until a threshold: one loop serves the
//! readiness gates (each until it passes N times in a row, within its
//! timeout) and the verification soak (every check, for the soak time and at
//! least the rounds that time holds). Durations are measured on the
//! monotonic clock.

use super::EngineError;
use super::driver::Engine;
use super::event::{Event, RequestId};
use super::request::{Failure, Outcome, describe_check, soak_rounds};
use crate::plugins::{CheckResult, Side, Verdict};
use crate::policy::{Check, HumanDuration};
use std::time::Duration;

/// When a run of checks is over.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Every check passed this many rounds in a row (a gate), within `timeout`.
    Passes { needed: u32, timeout: Duration },
    /// Every check kept passing for `soak`, over at least `rounds` rounds.
    Soak { soak: Duration, rounds: u32 },
}

/// How one run of a check ended.
enum Tally {
    Pass,
    Fail(String),
    Inconclusive(String),
    /// The runner's own side failed under the check: a person must look.
    HostFault(String),
}

impl Engine {
    /// Readiness gates, one after another.
    pub(super) async fn gates(
        &mut self,
        gates: &[Check],
        side: Side,
    ) -> Result<Outcome, EngineError> {
        for gate in gates {
            let until = Until::Passes {
                needed: gate.consecutive_successes,
                timeout: gate.timeout.as_duration(),
            };
            let outcome = self
                .check_rounds(
                    "gate",
                    std::slice::from_ref(gate),
                    side,
                    gate.interval.as_duration(),
                    until,
                )
                .await?;
            if outcome.is_err() {
                return Ok(outcome);
            }
        }
        Ok(Ok(()))
    }

    /// After the merge: every check, round after round, for the soak time.
    pub(super) async fn verification(&mut self) -> Result<Outcome, EngineError> {
        let Some(v) = self.policy.policy.spec.verification.clone() else {
            return Ok(Ok(()));
        };
        let (soak, interval) = (v.soak.as_duration(), v.interval.as_duration());
        let until = Until::Soak {
            soak,
            rounds: soak_rounds(soak, interval),
        };
        self.check_rounds(
            "verification check",
            &v.checks,
            Side::Upgrade,
            interval,
            until,
        )
        .await
    }

    async fn check_rounds(
        &mut self,
        what: &str,
        checks: &[Check],
        side: Side,
        interval: Duration,
        until: Until,
    ) -> Result<Outcome, EngineError> {
        let start = self.clock.monotonic();
        let mut failures = vec![0u32; checks.len()];
        let mut passing_rounds = 0u32;
        let mut rounds = 0u32;
        loop {
            let mut all_passed = true;
            for (check, failed) in checks.iter().zip(failures.iter_mut()) {
                match self.run_check(check, side, failed).await? {
                    Tally::Pass => {}
                    Tally::Fail(message) => {
                        all_passed = false;
                        if *failed >= check.failure_limit {
                            return Ok(Err(Failure::retryable(format!(
                                "{what} `{}` failed {failed} time(s) in a row: {message}",
                                check.name
                            ))));
                        }
                    }
                    Tally::Inconclusive(message) => {
                        return Ok(Err(Failure::hold(format!(
                            "check `{}` is inconclusive: {message}; a person must decide",
                            check.name
                        ))));
                    }
                    Tally::HostFault(message) => return Ok(Err(Failure::hold(message))),
                }
                if let Err(f) = self.rule_check() {
                    return Ok(Err(f));
                }
            }
            rounds += 1;
            passing_rounds = if all_passed { passing_rounds + 1 } else { 0 };
            let elapsed = self.clock.monotonic().saturating_sub(start);
            let wait = match until {
                Until::Passes { needed, .. } if passing_rounds >= needed => return Ok(Ok(())),
                Until::Passes { needed, timeout } => {
                    if elapsed + interval > timeout {
                        let gate = &checks[0].name;
                        return Ok(Err(Failure::retryable(format!(
                            "{what} `{gate}` did not pass {needed} time(s) in a row within {}",
                            HumanDuration::from(timeout)
                        ))));
                    }
                    interval
                }
                Until::Soak { soak, rounds: need } => {
                    if elapsed >= soak && rounds >= need {
                        return Ok(Ok(()));
                    }
                    let left = soak.saturating_sub(elapsed);
                    let by_time = (elapsed.as_millis() * 100 / soak.as_millis().max(1)).min(100);
                    let by_rounds = u128::from(rounds) * 100 / u128::from(need.max(1));
                    let percent = by_time.min(by_rounds) as u8;
                    self.rec.progress(
                        "verification",
                        percent,
                        format!(
                            "soaking, all checks passing ({} left, round {rounds} of {need})",
                            HumanDuration::from(Duration::from_millis(
                                (left.as_millis() as u64).div_ceil(1000) * 1000
                            ))
                        ),
                    );
                    if left.is_zero() {
                        interval
                    } else {
                        interval.min(left)
                    }
                }
            };
            self.sleep(wait).await?;
        }
    }

    /// One run of a check, recorded with the failures-in-a-row count.
    async fn run_check(
        &mut self,
        check: &Check,
        side: Side,
        failures: &mut u32,
    ) -> Result<Tally, EngineError> {
        let request = RequestId::Check(check.name.clone());
        let ctx = self.context(&request, side, &check.with);
        let name = check.check.clone();
        let (result, event) = self
            .call(
                &request,
                &check.plugin.clone(),
                move |p| p.check(&ctx, &name),
                describe_check,
            )
            .await?;
        self.record(event)?;
        let (tally, verdict, message) = match result {
            Ok(CheckResult {
                verdict, message, ..
            }) => match verdict {
                Verdict::Pass => (Tally::Pass, verdict, message),
                Verdict::Fail => (Tally::Fail(message.clone()), verdict, message),
                Verdict::Inconclusive => (Tally::Inconclusive(message.clone()), verdict, message),
            },
            Err(e @ crate::plugins::CallError::HostFault { .. }) => (
                Tally::HostFault(e.to_string()),
                Verdict::Fail,
                e.to_string(),
            ),
            // A check that cannot run has not passed.
            Err(e) => (Tally::Fail(e.to_string()), Verdict::Fail, e.to_string()),
        };
        *failures = if matches!(tally, Tally::Fail(_)) {
            *failures + 1
        } else {
            0
        };
        self.record(Event::CheckRan {
            check: check.name.clone(),
            verdict,
            message,
            consecutive_failures: *failures,
        })?;
        Ok(tally)
    }
}
