//! The request each state runs: readiness gates, hardware operations,
//! installs, verification. A request either completes or fails (Broken);
//! everything it does is recorded as it happens, and it is safe to re-run
//! from the start after a crash because every plugin call is idempotent.

use super::EngineError;
use super::decide::condition_rules;
use super::driver::{Engine, now_ms};
use super::session::Event;
use crate::model::{Command, UpgradeState};
use crate::plugins::{
    CallContext, CallError, CallOutcome, CheckResult, HardwareOp, LoadedPlugin, Progress, Side,
    Verdict,
};
use crate::policy::{Check, Params};
use std::time::Duration;

/// Why a request failed.
pub(super) struct Failure {
    reason: String,
    retryable: bool,
    /// A person must decide (an inconclusive gate): hold, whatever the rules say.
    hold: bool,
}

impl Failure {
    fn retryable(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            retryable: true,
            hold: false,
        }
    }
}

type Outcome = Result<(), Failure>;

/// Longest wait between two polls of a pending operation, whatever the
/// plugin asks: the runner stays responsive and the log keeps moving.
const MAX_POLL_WAIT: Duration = Duration::from_secs(30);

/// How a check's run ended.
enum Tally {
    Pass,
    Fail(String),
    Inconclusive(String),
}

impl Engine {
    pub(super) async fn run_request(&mut self) -> Result<(), EngineError> {
        let state = self.session.config.state;
        let outcome = match self.observe_partner().await? {
            Err(f) => Err(f),
            Ok(()) => match state {
                UpgradeState::PrepareSplit => {
                    self.gates(
                        &self.policy.policy.spec.gates.prepare_split.clone(),
                        Side::Production,
                    )
                    .await?
                }
                UpgradeState::PrepareMerge => {
                    self.gates(
                        &self.policy.policy.spec.gates.prepare_merge.clone(),
                        Side::Upgrade,
                    )
                    .await?
                }
                UpgradeState::Split => match self.operation(HardwareOp::Split).await? {
                    Ok(()) => self.installs().await?,
                    failed => failed,
                },
                UpgradeState::Merge => match self.operation(HardwareOp::Merge).await? {
                    Ok(()) => self.verification().await?,
                    failed => failed,
                },
                UpgradeState::Commit => self.operation(HardwareOp::Commit).await?,
                UpgradeState::Abort => self.operation(HardwareOp::Abort).await?,
                UpgradeState::Finish => self.operation(HardwareOp::Finish).await?,
                UpgradeState::Idle => unreachable!("Idle runs no request"),
            },
        };
        match outcome {
            Ok(()) => self.record(Event::Model {
                command: Command::Complete,
            }),
            Err(failure) => {
                if !failure.retryable {
                    self.record(Event::NotRetryable)?;
                }
                self.record(Event::Model {
                    command: Command::Fail {
                        reason: failure.reason.clone(),
                    },
                })?;
                if failure.hold {
                    self.record(Event::Held {
                        reason: failure.reason,
                    })?;
                }
                Ok(())
            }
        }
    }

    fn context(&self, request: &str, side: Side, params: &Params) -> CallContext {
        CallContext::new(self.session_id.clone(), self.session.config.state, request)
            .with_attempt(self.session.config.attempt.max(1))
            .with_side(side)
            .with_params(serde_json::Value::Object(params.clone()))
    }

    fn plugin(&self, name: &str) -> LoadedPlugin {
        self.plugins[name].clone()
    }

    /// Run a plugin call off the async thread; an interruption stops waiting
    /// for it (the request stays Busy and `resume` re-runs it).
    async fn call<T: Send + 'static>(
        &mut self,
        request: &str,
        plugin: &str,
        call: impl FnOnce(&LoadedPlugin) -> Result<CallOutcome<T>, CallError> + Send + 'static,
        describe: impl Fn(&T) -> (bool, String),
    ) -> Result<Result<T, CallError>, EngineError> {
        let loaded = self.plugin(plugin);
        let started = std::time::Instant::now();
        let handle = tokio::task::spawn_blocking(move || call(&loaded));
        let result = tokio::select! {
            joined = handle => joined.map_err(|e| EngineError::Internal(format!("plugin call task failed: {e}")))?,
            _ = self.cancel.cancelled() => return Err(EngineError::Interrupted),
        };
        let elapsed = started.elapsed();
        let (ok, outcome, logs, duration) = match &result {
            Ok(o) => {
                let (ok, text) = describe(&o.value);
                let logs = o
                    .logs
                    .iter()
                    .map(|l| format!("{} {}", l.level, l.message))
                    .collect();
                (ok, text, logs, o.elapsed)
            }
            Err(e) => (false, e.to_string(), Vec::new(), elapsed),
        };
        self.record(Event::PluginCall {
            request: request.to_string(),
            plugin: plugin.to_string(),
            call: call_name(request),
            ok,
            outcome,
            duration_ms: duration.as_millis() as u64,
            logs,
        })?;
        Ok(result.map(|o| o.value))
    }

    /// Ask the hardware plugin how the partner side is, and record a change.
    /// Plugins that do not report it leave the partner Unknown.
    async fn observe_partner(&mut self) -> Result<Outcome, EngineError> {
        let hw = self.policy.policy.spec.target.plugin.clone();
        if !self.plugins[&hw].info().reports_partner {
            return Ok(Ok(()));
        }
        let params = self.policy.policy.spec.target.with.clone();
        let ctx = self.context("partner", Side::Production, &params);
        let result = self
            .call(
                "partner",
                &hw,
                move |p| p.partner(&ctx),
                |s| (true, format!("partner is {s}")),
            )
            .await?;
        match result {
            Ok(partner) => {
                if partner != self.session.config.partner {
                    self.record(Event::Model {
                        command: Command::ObservePartner { partner },
                    })?;
                }
                Ok(self.rule_check())
            }
            Err(e) => Ok(Err(Failure::retryable(format!(
                "cannot learn the partner side's state: {e}"
            )))),
        }
    }

    /// A condition rule that fired while the request runs fails the request;
    /// the decision after it applies the rule.
    fn rule_check(&self) -> Outcome {
        match condition_rules(&self.session, &self.policy.policy.spec, now_ms()) {
            Some(fired) => Err(Failure::retryable(format!(
                "auto-abort rule `{}`: {}",
                fired.rule, fired.reason
            ))),
            None => Ok(()),
        }
    }

    /// Poll a hardware operation until it is done or fails.
    async fn operation(&mut self, op: HardwareOp) -> Result<Outcome, EngineError> {
        let hw = self.policy.policy.spec.target.plugin.clone();
        let params = self.policy.policy.spec.target.with.clone();
        let request = format!("op/{op}");
        self.poll(&request, &hw, move |p, ctx| p.operate(ctx, op), &params)
            .await
    }

    /// Installs every artifact, in order, each verified just before it is handed over.
    async fn installs(&mut self) -> Result<Outcome, EngineError> {
        let spec = self.policy.policy.spec.clone();
        for software in &spec.software {
            let artifact = match crate::artifact::verify_artifact(&self.policy, software) {
                Ok(a) => a,
                Err(err) => {
                    return Ok(Err(Failure {
                        reason: err.to_string(),
                        retryable: false,
                        hold: false,
                    }));
                }
            };
            let request = format!("install/{}", software.name);
            let installer = spec.installer_of(software).to_string();
            // The target plugin installing: its `with:` (pace, site settings)
            // applies, the item's own `with:` on top.
            let mut params = if installer == spec.target.plugin {
                spec.target.with.clone()
            } else {
                Params::new()
            };
            params.extend(software.with.clone());
            let outcome = self
                .poll(
                    &request,
                    &installer,
                    move |p, ctx| p.install(ctx, &artifact),
                    &params,
                )
                .await?;
            if outcome.is_err() {
                return Ok(outcome);
            }
        }
        Ok(Ok(()))
    }

    async fn poll(
        &mut self,
        request: &str,
        plugin: &str,
        step: impl Fn(&LoadedPlugin, &CallContext) -> Result<CallOutcome<Progress>, CallError>
        + Send
        + Sync
        + Clone
        + 'static,
        params: &Params,
    ) -> Result<Outcome, EngineError> {
        loop {
            let ctx = self.context(request, Side::Upgrade, params);
            let s = step.clone();
            let result = self
                .call(request, plugin, move |p| s(p, &ctx), describe_progress)
                .await?;
            match result {
                Ok(Progress::Done { .. }) => return self.observe_partner().await,
                Ok(Progress::Pending {
                    percent,
                    message,
                    retry_after,
                }) => {
                    self.sink.progress(request, percent, &message);
                    if let Err(f) = self.observe_partner().await? {
                        return Ok(Err(f));
                    }
                    self.sleep(retry_after.min(MAX_POLL_WAIT)).await?;
                }
                // A failure may be the partner's doing: record its state
                // first, so the rules see it.
                Ok(Progress::Failed { message, retryable }) => {
                    self.observe_partner().await?.ok();
                    return Ok(Err(Failure {
                        reason: format!("{request}: {message}"),
                        retryable,
                        hold: false,
                    }));
                }
                Err(e) => {
                    self.observe_partner().await?.ok();
                    return Ok(Err(call_failure(e)));
                }
            }
        }
    }

    /// Readiness gates, one after another: each must pass
    /// `consecutiveSuccesses` times in a row within its timeout.
    async fn gates(&mut self, gates: &[Check], side: Side) -> Result<Outcome, EngineError> {
        for gate in gates {
            let deadline = now_ms() + gate.timeout.as_duration().as_millis() as u64;
            let mut passes = 0;
            let mut failures = 0;
            loop {
                match self.run_check(gate, side, &mut failures).await? {
                    Tally::Pass => {
                        passes += 1;
                        if passes >= gate.consecutive_successes {
                            break;
                        }
                    }
                    Tally::Fail(message) => {
                        passes = 0;
                        if failures >= gate.failure_limit {
                            return Ok(Err(Failure::retryable(format!(
                                "gate `{}` failed {failures} time(s) in a row: {message}",
                                gate.name
                            ))));
                        }
                    }
                    Tally::Inconclusive(message) => return Ok(Err(inconclusive(gate, &message))),
                }
                if let Err(f) = self.rule_check() {
                    return Ok(Err(f));
                }
                let interval = gate.interval.as_duration();
                if now_ms() + interval.as_millis() as u64 > deadline {
                    return Ok(Err(Failure::retryable(format!(
                        "gate `{}` did not pass {} time(s) in a row within {}",
                        gate.name, gate.consecutive_successes, gate.timeout
                    ))));
                }
                self.sleep(interval).await?;
            }
        }
        Ok(Ok(()))
    }

    /// After the merge: every check, round after round, for the soak time.
    async fn verification(&mut self) -> Result<Outcome, EngineError> {
        let Some(v) = self.policy.policy.spec.verification.clone() else {
            return Ok(Ok(()));
        };
        let end = now_ms() + v.soak.as_duration().as_millis() as u64;
        let mut failures = vec![0u32; v.checks.len()];
        loop {
            for (check, failed) in v.checks.iter().zip(failures.iter_mut()) {
                match self.run_check(check, Side::Upgrade, failed).await? {
                    Tally::Pass => {}
                    Tally::Fail(message) if *failed >= check.failure_limit => {
                        return Ok(Err(Failure::retryable(format!(
                            "verification check `{}` failed {failed} time(s) in a row: {message}",
                            check.name
                        ))));
                    }
                    Tally::Fail(_) => {}
                    Tally::Inconclusive(message) => return Ok(Err(inconclusive(check, &message))),
                }
                if let Err(f) = self.rule_check() {
                    return Ok(Err(f));
                }
            }
            if now_ms() >= end {
                return Ok(Ok(()));
            }
            let soak = v.soak.as_duration().as_millis().max(1) as u64;
            let left = end.saturating_sub(now_ms());
            let percent = (100 - (left * 100 / soak).min(100)) as u8;
            self.sink.progress(
                "verification",
                percent,
                &format!(
                    "soaking, all checks passing ({} left)",
                    crate::policy::HumanDuration::from(Duration::from_millis(
                        left.div_ceil(1000) * 1000
                    ))
                ),
            );
            let wait = v
                .interval
                .as_duration()
                .min(Duration::from_millis(end.saturating_sub(now_ms())));
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
        let request = format!("check/{}", check.name);
        let ctx = self.context(&request, side, &check.with);
        let name = check.check.clone();
        let result = self
            .call(
                &request,
                &check.plugin.clone(),
                move |p| p.check(&ctx, &name),
                describe_check,
            )
            .await?;
        let (tally, verdict, message) = match result {
            Ok(CheckResult {
                verdict, message, ..
            }) => match verdict {
                Verdict::Pass => (Tally::Pass, "pass", message),
                Verdict::Fail => (Tally::Fail(message.clone()), "fail", message),
                Verdict::Inconclusive => (
                    Tally::Inconclusive(message.clone()),
                    "inconclusive",
                    message,
                ),
            },
            // A check that cannot run has not passed.
            Err(e) => (Tally::Fail(e.to_string()), "fail", e.to_string()),
        };
        *failures = if matches!(tally, Tally::Fail(_)) {
            *failures + 1
        } else {
            0
        };
        self.record(Event::CheckRan {
            check: check.name.clone(),
            verdict: verdict.to_string(),
            message,
            consecutive_failures: *failures,
        })?;
        Ok(tally)
    }
}

fn inconclusive(check: &Check, message: &str) -> Failure {
    Failure {
        reason: format!(
            "check `{}` is inconclusive: {message}; a person must decide: `duplex retry` or `duplex abort`",
            check.name
        ),
        retryable: false,
        hold: true,
    }
}

/// Configuration mistakes are not worth retrying; everything else may be transient.
fn call_failure(e: CallError) -> Failure {
    let retryable = !matches!(
        e,
        CallError::CapabilityDenied { .. } | CallError::NotProvided { .. }
    );
    Failure {
        reason: e.to_string(),
        retryable,
        hold: false,
    }
}

fn call_name(request: &str) -> String {
    match request.split_once('/') {
        Some(("op", op)) => format!("operate {op}"),
        Some(("install", _)) => "install".into(),
        Some(("check", _)) => "check".into(),
        _ => request.to_string(),
    }
}

fn describe_progress(p: &Progress) -> (bool, String) {
    match p {
        Progress::Done { message } => (true, format!("done: {message}")),
        Progress::Pending {
            percent, message, ..
        } => (true, format!("pending {percent}%: {message}")),
        Progress::Failed { message, retryable } => (
            false,
            format!(
                "failed ({}): {message}",
                if *retryable {
                    "retryable"
                } else {
                    "not retryable"
                }
            ),
        ),
    }
}

fn describe_check(c: &CheckResult) -> (bool, String) {
    (
        c.verdict == Verdict::Pass,
        format!("{}: {}", c.verdict, c.message),
    )
}
