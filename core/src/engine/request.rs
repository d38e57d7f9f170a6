//! The request each state runs, step by step as `work::WORK` lists them:
//! readiness gates, hardware operations, installs, verification. A request
//! either completes or fails (Broken); everything it does is recorded as it
//! happens, and it is safe to re-run from the start after a crash because
//! every plugin call is idempotent.

use super::EngineError;
use super::decide::condition_rules;
use super::driver::Engine;
use super::event::{Event, RequestId};
use crate::model::{Command, Disposition};
use crate::plugins::{
    CallContext, CallError, CallOutcome, CheckResult, HardwareOp, LoadedPlugin, Progress, Side,
};
use crate::policy::Params;
use crate::work::{self, Step};
use std::time::Duration;

/// Why a request failed.
pub(super) struct Failure {
    pub reason: String,
    pub disposition: Disposition,
}

impl Failure {
    pub fn retryable(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            disposition: Disposition::Retryable,
        }
    }

    pub fn hold(reason: impl Into<String>) -> Failure {
        Failure {
            reason: reason.into(),
            disposition: Disposition::Hold,
        }
    }
}

pub(super) type Outcome = Result<(), Failure>;

/// What a plugin call's record keeps of its outcome and its log lines: a
/// plugin's words are cut so that no record comes near the journal's record
/// limit (`journal::MAX_RECORD_BYTES`), whatever the plugin says.
const MAX_OUTCOME_BYTES: usize = 4 << 10;
const MAX_LOG_BYTES_PER_RECORD: usize = 256 << 10;

/// `text`, cut at `max` bytes (on a character boundary), saying how much
/// was cut.
fn clip(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let cut = text.len();
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(&format!("… ({} more bytes not kept)", cut - end));
    text
}

/// Lines up to `max` bytes in all, saying how many were dropped.
fn clip_lines(lines: Vec<String>, max: usize) -> Vec<String> {
    let mut kept = Vec::new();
    let mut bytes = 0;
    let total = lines.len();
    for line in lines {
        let line = clip(line, MAX_OUTCOME_BYTES);
        if bytes + line.len() > max {
            break;
        }
        bytes += line.len();
        kept.push(line);
    }
    if kept.len() < total {
        let dropped = total - kept.len();
        kept.push(format!("({dropped} more log line(s) not kept)"));
    }
    kept
}

impl Engine {
    pub(super) async fn run_request(&mut self) -> Result<(), EngineError> {
        self.partner_reported = false;
        let steps = self.steps().await;
        // Nothing a request started outlives it: commands still running
        // (a stop, a failure, a check that never waited for its command)
        // are killed with their process groups, and each kill journaled.
        let why = match &steps {
            Ok(Ok(())) => "the request completed",
            Ok(Err(_)) => "the request failed",
            Err(EngineError::Cancelled) => "the run stopped",
            Err(EngineError::Preempted) => "an operator's command stopped the request",
            Err(_) => "the request ended",
        };
        self.end_commands(
            why,
            steps.is_ok() || matches!(steps, Err(EngineError::Cancelled | EngineError::Preempted)),
        )?;
        let outcome = match steps {
            Ok(outcome) => outcome,
            // Stopped at a safe point by an operator: an abort ends the
            // request (then the loop aborts); a hold leaves it Busy, to run
            // again from its start when the hold is released.
            Err(EngineError::Preempted) => {
                if let Some(command) = super::operator::abort_ends_request(self.rec.session()) {
                    self.record(Event::Model { command })?;
                }
                return Ok(());
            }
            // Plugins made the journal grow past its limit: no more plugin
            // calls are recorded; a person must look.
            Err(e @ EngineError::JournalLimit { .. }) => Err(Failure::hold(e.to_string())),
            Err(e) => return Err(e),
        };
        match outcome {
            Ok(()) => self.record(Event::Model {
                command: Command::Complete,
            }),
            Err(failure) => self.record(Event::Model {
                command: Command::Fail {
                    reason: failure.reason,
                    disposition: failure.disposition,
                },
            }),
        }
        .map(drop)
    }

    /// Kills the commands every plugin left running; journals each kill
    /// when `record` (the journal still takes records).
    fn end_commands(&mut self, why: &str, record: bool) -> Result<(), EngineError> {
        let killed: Vec<_> = self
            .plugins
            .values()
            .flat_map(|p| p.end_commands(why))
            .collect();
        if record {
            for k in killed {
                self.record(Event::CommandKilled {
                    plugin: k.plugin,
                    request: k.request,
                    key: k.key,
                    command: k.command,
                    reason: k.reason,
                })?;
            }
        }
        Ok(())
    }

    /// The state's steps, in order, until one fails.
    async fn steps(&mut self) -> Result<Outcome, EngineError> {
        let state = self.rec.session().config.state;
        let Some(work) = work::of(state) else {
            return Err(EngineError::Internal(format!("{state} runs no request")));
        };
        let mut outcome = self.observe_partner().await?;
        for step in work.steps {
            if outcome.is_err() {
                break;
            }
            outcome = match *step {
                Step::Gates(set) => {
                    let gates = match set {
                        work::GateSet::PrepareSplit => &self.policy.policy.spec.gates.prepare_split,
                        work::GateSet::PrepareMerge => &self.policy.policy.spec.gates.prepare_merge,
                    }
                    .clone();
                    self.gates(&gates, set.side()).await?
                }
                Step::Operation(op) => self.operation(op).await?,
                Step::Installs => self.installs().await?,
                Step::Verification => self.verification().await?,
            };
        }
        Ok(outcome)
    }

    pub(super) fn context(&self, request: &RequestId, side: Side, params: &Params) -> CallContext {
        let session = self.rec.session();
        CallContext::new(
            self.rec.session_id().to_string(),
            session.config.state,
            request.to_string(),
        )
        .with_attempt(session.config.attempt.max(1))
        .with_side(side)
        .with_params(serde_json::Value::Object(params.clone()))
        .with_cancel(self.cancel.flag())
    }

    /// Run a plugin call off the async thread. A cancelled run stops waiting
    /// for it (the request stays Busy and a resume re-runs it). Returns the
    /// result and the record that describes it, for the caller to journal.
    pub(super) async fn call<T: Send + 'static>(
        &mut self,
        request: &RequestId,
        plugin: &str,
        call: impl FnOnce(&LoadedPlugin) -> Result<CallOutcome<T>, CallError> + Send + 'static,
        describe: impl Fn(&T) -> (bool, String),
    ) -> Result<(Result<T, CallError>, Event), EngineError> {
        if self.rec.journal_bytes() > self.pacing.journal_limit_bytes {
            return Err(EngineError::JournalLimit {
                bytes: self.rec.journal_bytes(),
                limit: self.pacing.journal_limit_bytes,
            });
        }
        let loaded = self.plugins.get(plugin).cloned().ok_or_else(|| {
            EngineError::Internal(format!("plugin `{plugin}` is not loaded for this run"))
        })?;
        self.safe_point()?;
        let started = std::time::Instant::now();
        let mut handle = tokio::task::spawn_blocking(move || call(&loaded));
        // Commands are answered (and recorded) while the call runs; the call
        // itself is let finish or time out, and the step stops after it.
        let mut inbox = self.inbox.take();
        let cancel = self.cancel.clone();
        let joined = loop {
            tokio::select! {
                joined = &mut handle => break Ok(joined),
                _ = cancel.cancelled() => break Err(EngineError::Cancelled),
                envelope = super::driver::next_command(&mut inbox) => {
                    if let Err(e) = self.answer(envelope) {
                        break Err(e);
                    }
                }
            }
        };
        self.inbox = inbox;
        let result =
            joined?.map_err(|e| EngineError::Internal(format!("plugin call task failed: {e}")))?;
        // The host ended the call because the run was cancelled: that is
        // the run's interruption, not the plugin's failure.
        if matches!(result, Err(CallError::Cancelled { .. })) {
            return Err(EngineError::Cancelled);
        }
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
            Err(e) => (false, e.to_string(), Vec::new(), started.elapsed()),
        };
        let event = Event::PluginCall {
            request: request.clone(),
            plugin: plugin.to_string(),
            ok,
            outcome: clip(outcome, MAX_OUTCOME_BYTES),
            duration_ms: duration.as_millis() as u64,
            logs: clip_lines(logs, MAX_LOG_BYTES_PER_RECORD),
            repeats: 0,
        };
        Ok((result.map(|o| o.value), event))
    }

    /// Ask the hardware plugin how the partner side is, and record a change.
    /// Plugins that do not report it leave the partner Unknown.
    async fn observe_partner(&mut self) -> Result<Outcome, EngineError> {
        let hw = self.policy.policy.spec.target.plugin.clone();
        if !self
            .plugins
            .get(&hw)
            .is_some_and(|p| p.info().reports_partner)
        {
            return Ok(Ok(()));
        }
        let params = self.policy.policy.spec.target.with.clone();
        let ctx = self.context(&RequestId::Partner, Side::Production, &params);
        let (result, event) = self
            .call(
                &RequestId::Partner,
                &hw,
                move |p| p.partner(&ctx),
                |s| (true, format!("partner is {s}")),
            )
            .await?;
        // A report that changes nothing (same state, no log lines) is not
        // journaled again within a request: it is asked alongside every poll.
        let unchanged = matches!(&result, Ok(p) if *p == self.rec.session().config.partner);
        let quiet = matches!(&event, Event::PluginCall { logs, .. } if logs.is_empty());
        if !(unchanged && quiet && self.partner_reported) {
            self.record(event)?;
        }
        self.partner_reported = true;
        match result {
            Ok(partner) => {
                if partner != self.rec.session().config.partner {
                    self.record(Event::Model {
                        command: Command::ObservePartner { partner },
                    })?;
                }
                Ok(self.rule_check())
            }
            Err(e) => Ok(Err(call_failure(
                e,
                "cannot learn the partner side's state: ",
            ))),
        }
    }

    /// A condition rule that fired while the request runs fails the request;
    /// the decision after it applies the rule.
    pub(super) fn rule_check(&self) -> Outcome {
        match condition_rules(self.rec.session(), &self.policy.policy.spec, self.now()) {
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
        self.poll(
            RequestId::Operation(op),
            &hw,
            move |p, ctx| p.operate(ctx, op),
            &params,
        )
        .await
    }

    /// Installs every artifact, in order, each staged copy verified again
    /// just before it is handed over (staged afresh if it was damaged or
    /// removed).
    async fn installs(&mut self) -> Result<Outcome, EngineError> {
        let spec = self.policy.policy.spec.clone();
        for software in &spec.software {
            let staging = {
                let policy = self.policy.clone();
                let software = software.clone();
                let state_dir = self.state_dir.clone();
                tokio::task::spawn_blocking(move || {
                    crate::artifact::stage(&policy, &software, &state_dir)
                })
            };
            let staged = staging.await.unwrap_or_else(|e| {
                Err(crate::artifact::ArtifactError::Stage {
                    name: software.name.clone(),
                    path: self.state_dir.clone(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
            let artifact = match staged {
                Ok(s) => s.artifact,
                Err(err) => {
                    return Ok(Err(Failure {
                        reason: err.to_string(),
                        disposition: Disposition::Final,
                    }));
                }
            };
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
                    RequestId::Install(software.name.clone()),
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

    /// Call a resumable step until it is done or fails, paced (see
    /// [`super::Pacing::poll_wait`]). Identical pending answers are journaled once,
    /// then counted on the next record.
    async fn poll(
        &mut self,
        request: RequestId,
        plugin: &str,
        step: impl Fn(&LoadedPlugin, &CallContext) -> Result<CallOutcome<Progress>, CallError>
        + Send
        + Sync
        + Clone
        + 'static,
        params: &Params,
    ) -> Result<Outcome, EngineError> {
        let mut last: Option<(u8, String)> = None;
        let mut same_in_a_row: u32 = 0;
        let mut unrecorded: u64 = 0;
        loop {
            let ctx = self.context(&request, Side::Upgrade, params);
            let s = step.clone();
            let (result, mut event) = self
                .call(&request, plugin, move |p| s(p, &ctx), describe_progress)
                .await?;
            let pending = match &result {
                Ok(Progress::Pending {
                    percent, message, ..
                }) => Some((*percent, message.clone())),
                _ => None,
            };
            let repeated = pending.is_some() && pending == last;
            let has_logs = matches!(&event, Event::PluginCall { logs, .. } if !logs.is_empty());
            if repeated && !has_logs {
                unrecorded += 1;
            } else {
                if let Event::PluginCall { repeats, .. } = &mut event {
                    *repeats = unrecorded;
                }
                unrecorded = 0;
                self.record(event)?;
            }
            same_in_a_row = if repeated { same_in_a_row + 1 } else { 0 };
            if pending.is_some() {
                last = pending;
            }
            match result {
                Ok(Progress::Done { .. }) => return self.observe_partner().await,
                Ok(Progress::Pending {
                    percent,
                    message,
                    retry_after,
                }) => {
                    self.rec.progress(request.to_string(), percent, message);
                    if let Err(f) = self.observe_partner().await? {
                        return Ok(Err(f));
                    }
                    self.sleep(self.pacing.poll_wait(retry_after, same_in_a_row))
                        .await?;
                }
                // A failure may be the partner's doing: record its state
                // first, so the rules see it.
                Ok(Progress::Failed { message, retryable }) => {
                    self.observe_partner().await?.ok();
                    return Ok(Err(Failure {
                        reason: format!("{request}: {message}"),
                        disposition: if retryable {
                            Disposition::Retryable
                        } else {
                            Disposition::Final
                        },
                    }));
                }
                Err(e) => {
                    self.observe_partner().await?.ok();
                    return Ok(Err(call_failure(e, "")));
                }
            }
        }
    }
}

/// A failed call as a request failure. Configuration mistakes are not worth
/// retrying; everything else may be transient.
pub(super) fn call_failure(e: CallError, prefix: &str) -> Failure {
    let disposition = match e {
        CallError::CapabilityDenied { .. } | CallError::NotProvided { .. } => Disposition::Final,
        // The runner's own side failed (its disk is full, say): not the
        // plugin's doing, so no retry is spent and no rule fires; a person
        // fixes the host and retries.
        CallError::HostFault { .. } => Disposition::Hold,
        _ => Disposition::Retryable,
    };
    Failure {
        reason: format!("{prefix}{e}"),
        disposition,
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

pub(super) fn describe_check(c: &CheckResult) -> (bool, String) {
    (
        c.verdict == crate::plugins::Verdict::Pass,
        format!("{}: {}", c.verdict, c.message),
    )
}

/// How long a soak must run, in rounds: one at the start, then one per
/// interval until the soak time is over.
pub(super) fn soak_rounds(soak: Duration, interval: Duration) -> u32 {
    if interval.is_zero() {
        return 1;
    }
    (soak.as_millis() / interval.as_millis()).min(u32::MAX as u128 - 1) as u32 + 1
}
