//! The agent's loop: take up the session in flight (after a crash, a
//! reboot, a `kill -9`), then fetch the source and reconcile by digest —
//! whenever the source changes (watched), every fetch interval, and on
//! demand — until SIGTERM/SIGINT, which stops the run at a safe point.
//!
//! By digest: a new digest with nothing in flight starts a session; a
//! change while a session is in flight is drift (reported, not applied)
//! unless it declares `action: abort`; a digest whose session aborted, or
//! is held, is abandoned (never run again on its own until the source
//! changes; a release takes the mark back); a
//! digest already achieved does nothing; a policy that does not load is
//! reported with its errors and starts nothing.
//!
//! On a host that is one of many, a session starts only holding a slot of
//! the fleet's semaphore (`gate`), given back once the session has ended.

use super::events;
use super::fleet::{FleetLink, Wanted};
use super::gate::{Gate, Permit};
use super::metrics::Metrics;
use super::record::{Achieved, HeldSlot, ReconcileRecord};
use super::sink::{AgentSink, Live, SessionNews};
use super::source::{PolicySource, Snapshot};
use super::webhooks::CloudEvent;
use duplex_core::app::{App, AppError, OperatorRequest, OperatorVerb, RunOptions, RunReport};
use duplex_core::cancel::Cancel;
use duplex_core::engine::{Outcome, Stop};
use duplex_core::policy::{LoadError, LoadedPolicy, PolicyAction, PolicyOrigin};
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// What the agent shows of itself in `GET /v1/status`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentView {
    /// The source's current policy.
    pub desired: Option<Desired>,
    /// The last policy a session committed.
    pub achieved: Option<Achieved>,
    /// The session this agent runs now, and the digest it runs.
    pub running: Option<Running>,
    /// The source's policy does not load: its errors, file:line:col.
    pub invalid: Vec<String>,
    /// The source could not be fetched.
    pub fetch_error: Option<String>,
    /// The source changed while a session runs another policy.
    pub drift: Option<String>,
    /// Digests not run again on their own (their session aborted or is
    /// held).
    pub abandoned: Vec<String>,
    /// Why the desired policy does nothing now, when it does nothing.
    pub idle_because: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Desired {
    pub digest: String,
    pub revision: Option<String>,
    pub source: String,
    pub path: String,
    pub fetched_ms: u64,
    /// The policy file as fetched (materialised), for `plan`.
    #[serde(skip)]
    pub file: PathBuf,
    /// The policy's text when it came from the fleet, not from `file`.
    #[serde(skip)]
    pub text: Option<String>,
}

impl Desired {
    /// Load the desired policy again (for `plan`).
    pub fn load(&self) -> Result<LoadedPolicy, LoadError> {
        super::source::load(&self.file, self.text.as_deref())
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub session: Option<String>,
    pub digest: String,
}

/// Everything the loop and the API share.
pub struct Agent {
    pub app: Arc<App>,
    pub metrics: Arc<Metrics>,
    pub live: Live,
    pub events: std::sync::mpsc::Sender<CloudEvent>,
    /// Where the runs' sinks tell the loop what it must know (a session
    /// opened, held, released).
    pub news: tokio::sync::mpsc::UnboundedSender<SessionNews>,
    /// The CloudEvents source of this agent.
    pub event_source: String,
    pub view: Mutex<AgentView>,
    pub fetch_now: Notify,
    pub stop: Cancel,
    pub policy_path: PathBuf,
    /// The fleet this host takes part in (`--fleet`): what the fleet page
    /// and `/v1/fleet` read.
    pub fleet: Option<Arc<FleetLink>>,
}

type SessionTask = tokio::task::JoinHandle<Result<RunReport, AppError>>;

/// The loop's own state.
struct Loop {
    agent: Arc<Agent>,
    record: ReconcileRecord,
    task: Option<SessionTask>,
    running_digest: Option<String>,
    /// The [`attempt_key`] of the session this loop started (none for one it
    /// resumed).
    running_attempt: Option<String>,
    /// [`attempt_key`]s whose session could not start (refused before
    /// anything was written): not tried again until the source changes.
    rejected: BTreeSet<String>,
    /// What was already reported, so a fetch does not report it again.
    reported: BTreeSet<String>,
    /// Where a session's slot comes from (nothing for a host on its own).
    gate: Gate,
    /// Reconcile again this soon (a wait for a slot), not only at the
    /// fetch interval.
    retry: Option<Duration>,
}

/// Where the desired policy comes from: a policy source, or the fleet (the
/// rollout that has a part for this host).
pub enum Desire {
    Source(PolicySource),
    Fleet(Arc<FleetLink>),
}

impl Agent {
    fn now_ms(&self) -> u64 {
        self.app.clock().wall_ms()
    }

    fn sink(&self) -> Box<AgentSink> {
        Box::new(AgentSink::new(
            self.metrics.clone(),
            self.live.clone(),
            self.events.clone(),
            self.news.clone(),
            self.event_source.clone(),
        ))
    }

    /// Change the agent's view; when it changed, say so on the live stream
    /// (its readers, the web console, then read `/v1/status` again).
    fn update(&self, f: impl FnOnce(&mut AgentView)) {
        let changed = {
            let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
            let before = serde_json::to_value(&*view).ok();
            f(&mut view);
            before != serde_json::to_value(&*view).ok()
        };
        if changed {
            let _ = self.live.send(serde_json::json!({ "kind": "agent" }));
        }
    }
}

/// Run the loop until the agent is stopped.
pub async fn run(
    agent: Arc<Agent>,
    desire: Desire,
    interval: Duration,
    mut news: tokio::sync::mpsc::UnboundedReceiver<SessionNews>,
    gate: Gate,
) -> Result<(), String> {
    let record = ReconcileRecord::load(agent.app.state_dir())?;
    let mut lp = Loop {
        agent: agent.clone(),
        record,
        task: None,
        running_digest: None,
        running_attempt: None,
        rejected: BTreeSet::new(),
        reported: BTreeSet::new(),
        gate,
        retry: None,
    };
    lp.publish_record();
    replay_events(&agent);
    lp.resume_in_flight();
    let (mut source, fleet) = match desire {
        Desire::Source(s) => (Some(s), None),
        Desire::Fleet(f) => (None, Some(f)),
    };
    // A stop interrupts a fetch in progress.
    if let Some(flag) = source.as_ref().and_then(PolicySource::interrupt_flag) {
        let stop = agent.stop.clone();
        tokio::spawn(async move {
            stop.cancelled().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
    }
    let (changed_tx, mut changed) = tokio::sync::mpsc::unbounded_channel();
    let watch_paths = source
        .as_ref()
        .map(PolicySource::watch_paths)
        .unwrap_or_default();
    let _watcher = match super::source::watch(watch_paths, changed_tx) {
        Ok(w) => Some(w),
        Err(e) => {
            super::log(&format!(
                "warning: cannot watch the source ({e}); fetching every {interval:?}"
            ));
            None
        }
    };
    if let Some(link) = &fleet {
        tokio::spawn(super::fleet::follow(agent.clone(), link.clone()));
    }
    loop {
        if agent.stop.is_cancelled() {
            break;
        }
        if lp.task.is_none() {
            lp.give_back_an_ended_slot().await;
        }
        let fetched = match (source.take(), &fleet) {
            (Some(mut s), _) => {
                let (s, result) = tokio::task::spawn_blocking(move || {
                    let result = s.fetch();
                    (s, result)
                })
                .await
                .map_err(|e| format!("the fetch task failed: {e}"))?;
                source = Some(s);
                result
                    .map(|s| Wanted::Policy(Box::new(s)))
                    .map_err(|e| e.to_string())
            }
            (None, Some(link)) => link.fetch().await,
            (None, None) => unreachable!("a desire is a source or the fleet"),
        };
        match fetched {
            Ok(Wanted::Policy(snapshot)) => lp.reconcile(*snapshot).await,
            Ok(Wanted::Nothing(why)) => lp.nothing_wanted(why).await,
            Err(e) => {
                super::log(&format!("fetching the policy source failed: {e}"));
                agent.metrics.source_failed("fetch");
                agent.update(|v| v.fetch_error = Some(e));
                if lp.task.is_none() && !lp.gate.is_open() {
                    lp.retry = Some(super::gate::RETRY);
                }
            }
        }
        tokio::select! {
            _ = changed.recv() => {
                // A burst of changes is one reconcile.
                tokio::time::sleep(Duration::from_millis(100)).await;
                while changed.try_recv().is_ok() {}
            }
            _ = tokio::time::sleep(lp.retry.take().map_or(interval, |r| r.min(interval))) => {}
            _ = agent.fetch_now.notified() => {}
            ended = wait_task(&mut lp.task) => lp.ended(ended),
            Some(news) = news.recv() => lp.news(news),
            _ = agent.stop.cancelled() => break,
        }
    }
    // Stopping: the run stops at its next safe point (it saw the cancel).
    if let Some(task) = lp.task.take() {
        let ended = task.await;
        lp.ended(ended);
    }
    Ok(())
}

/// Queue again the events of the newest session's records: a crash may
/// have come between a record and its event reaching the outbox. The
/// outbox drops what it already has (events are known by id).
fn replay_events(agent: &Agent) {
    use duplex_core::engine::Session;
    use duplex_core::engine::sink::Recorded;
    let Ok(log) = agent.app.log(None) else { return };
    let session_id = log.info.id.clone();
    let id = session_id.to_string();
    let mut session: Option<Session> = None;
    for record in log.records {
        let Ok(r) = record else { return };
        let before = session.as_ref().map(|s| s.config.state);
        match &mut session {
            None => match Session::start(&r.event, r.ts_ms) {
                Ok(s) => session = Some(s),
                Err(_) => return,
            },
            Some(s) => {
                if s.apply_at(r.seq, r.ts_ms, &r.event).is_err() {
                    return;
                }
            }
        }
        let Some(s) = &session else { return };
        let recorded = Recorded {
            session_id: &session_id,
            seq: r.seq,
            ts_ms: r.ts_ms,
            event: &r.event,
            session: s,
            append: None,
        };
        for event in events::of_record(&agent.event_source, &id, &recorded, before) {
            let _ = agent.events.send(event);
        }
    }
}

async fn wait_task(
    task: &mut Option<SessionTask>,
) -> Result<Result<RunReport, AppError>, tokio::task::JoinError> {
    match task {
        Some(t) => t.await,
        None => std::future::pending().await,
    }
}

impl Loop {
    fn publish_record(&self) {
        let achieved = self.record.achieved.clone();
        let abandoned = self.record.abandoned.keys().cloned().collect();
        self.agent.update(|v| {
            v.achieved = achieved;
            v.abandoned = abandoned;
        });
    }

    /// Take up the session in flight, if any: it goes on by itself.
    fn resume_in_flight(&mut self) {
        let status = match self.agent.app.status() {
            Ok(s) => s,
            Err(e) => {
                super::log(&format!("cannot read the state dir: {e}"));
                return;
            }
        };
        let Some(s) = status.session else { return };
        if s.finished || s.session.ended.is_some() {
            // A crash after the session ended: `resume` marks it finished.
            if !s.finished {
                self.start_resume(s.session.policy_digest.clone(), s.id.to_string());
            } else if let Some(outcome) = s.session.ended {
                self.remember_ended(
                    &s.session.policy_digest,
                    &s.id.to_string(),
                    s.session.started_ms,
                    outcome,
                );
            }
            return;
        }
        super::log(&format!(
            "taking up session {} in {} where it was left",
            s.id, s.session.config
        ));
        self.start_resume(s.session.policy_digest.clone(), s.id.to_string());
    }

    /// The newest session finished, but the agent died before it recorded
    /// what that meant (between the session's last record and the agent's
    /// record): record it now, so the policy is not run a second time and a
    /// fleet slot taken for it is given back with its outcome.
    fn remember_ended(&mut self, digest: &str, session: &str, started_ms: u64, outcome: Outcome) {
        let known = self
            .record
            .achieved
            .as_ref()
            .is_some_and(|a| a.session == session)
            || self
                .record
                .abandoned
                .get(digest)
                .is_some_and(|s| s == session);
        // The session ran under the slot: it is named there, or it started
        // after the slot was taken (the agent died before naming it).
        let slot_open = self.record.slot.as_ref().is_some_and(|slot| {
            slot.ended.is_none()
                && match &slot.session {
                    Some(s) => s == session,
                    None => slot.taken_ms.is_some_and(|t| started_ms >= t),
                }
        });
        if known && !slot_open {
            return;
        }
        let ended = match outcome {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
        };
        super::log(&format!(
            "session {session} had {ended} before the agent could record it; recorded now"
        ));
        if !known {
            match outcome {
                Outcome::Committed => {
                    self.record.achieved = Some(Achieved {
                        digest: digest.to_string(),
                        revision: None,
                        session: session.to_string(),
                    })
                }
                Outcome::Aborted => {
                    self.record
                        .abandoned
                        .insert(digest.to_string(), session.to_string());
                }
            }
        }
        if slot_open {
            self.slot_ended(session, ended);
        }
        self.save_record();
    }

    fn start_resume(&mut self, digest: String, session: String) {
        let agent = self.agent.clone();
        let options = RunOptions {
            wait_for_operator: true,
            ..Default::default()
        };
        self.running_digest = Some(digest.clone());
        self.agent.update(|v| {
            v.running = Some(Running {
                session: Some(session),
                digest,
            })
        });
        let sink = agent.sink();
        self.task = Some(tokio::spawn(async move {
            agent.app.resume(options, sink, agent.stop.clone()).await
        }));
    }

    async fn reconcile(&mut self, snapshot: Snapshot) {
        let agent = self.agent.clone();
        let digest = snapshot.digest.to_string();
        let attempt = attempt_key(&snapshot, &digest);
        agent.metrics.source_fetched(
            snapshot.revision.as_deref(),
            &digest,
            &snapshot.source_path,
            agent.now_ms() as f64 / 1000.0,
        );
        // The policy's path in its source (the fleet: where it was read
        // when the rollout was applied).
        let policy_path = if agent.policy_path.as_os_str().is_empty() {
            snapshot.policy_path.display().to_string()
        } else {
            agent.policy_path.display().to_string()
        };
        let changed = agent
            .view
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .desired
            .as_ref()
            .is_none_or(|d| d.digest != digest);
        agent.update(|v| {
            v.fetch_error = None;
            v.desired = Some(Desired {
                digest: digest.clone(),
                revision: snapshot.revision.clone(),
                source: snapshot.source_path.clone(),
                path: policy_path.clone(),
                fetched_ms: agent.now_ms(),
                file: snapshot.policy_path.clone(),
                text: snapshot.text.clone(),
            });
        });
        if changed {
            super::log(&format!(
                "source: policy sha256 {}…{}",
                &digest[..12.min(digest.len())],
                snapshot
                    .revision
                    .as_deref()
                    .map(|r| format!(" at revision {}", &r[..12.min(r.len())]))
                    .unwrap_or_default()
            ));
        }
        let mut policy = match snapshot.load() {
            Ok(p) => p,
            Err(e) => return self.invalid(&digest, snapshot.revision.as_deref(), e),
        };
        agent.update(|v| v.invalid.clear());
        policy.origin = Some(PolicyOrigin {
            source: snapshot.source_path.clone(),
            revision: snapshot.revision.clone(),
            path: policy_path.clone(),
        });
        if self.task.is_some() {
            self.rollout_aborted().await;
            return self
                .in_flight(policy, &digest, snapshot.revision.as_deref())
                .await;
        }
        agent.update(|v| v.drift = None);
        // A maintenance window not open yet: the session starts when it
        // opens (the loop wakes then), not refused for good.
        let window_opens_in = policy.policy.spec.window.as_ref().and_then(|w| {
            let ms = w.start.unix_millis() - agent.now_ms() as i64;
            (ms > 0).then(|| (w.start, Duration::from_millis(ms as u64)))
        });
        let idle_because = if self
            .record
            .achieved
            .as_ref()
            .is_some_and(|a| a.digest == digest)
        {
            Some("achieved: a session committed this policy".to_string())
        } else if let Some(session) = self.record.abandoned.get(&digest) {
            Some(format!(
                "abandoned: session {session} of this policy aborted or was held; change the policy to run it again"
            ))
        } else if self.rejected.contains(&attempt) {
            Some(
                "refused: its session could not start (see the log); change the policy, its lock file or its plugins"
                    .into(),
            )
        } else if policy.policy.spec.action == PolicyAction::Abort {
            Some("the policy declares `action: abort` and no session is in flight".into())
        } else if let Some((start, wait)) = window_opens_in {
            self.retry = Some(wait);
            if self.reported.insert(format!("window/{attempt}")) {
                super::log(&format!(
                    "policy {} waits for its maintenance window, which opens at {start}",
                    policy.policy.metadata.name
                ));
            }
            Some(format!(
                "waiting for its maintenance window, which opens at {start}"
            ))
        } else {
            None
        };
        agent.update(|v| v.idle_because = idle_because.clone());
        if idle_because.is_some() {
            if let (Gate::Fleet(link), Some(achieved)) = (&self.gate, &self.record.achieved)
                && achieved.digest == digest
                && self.record.slot.is_none()
                && let Err(e) = link.already_achieved(&achieved.session).await
            {
                super::log(&format!("cannot report to the fleet yet: {e}"));
                self.retry = Some(super::gate::RETRY);
            }
            // Nothing to start: a slot taken for it (before a crash, say)
            // is given back.
            return self.give_back_an_unused_slot().await;
        }
        if let Err(why) = self.take_slot().await {
            agent.update(|v| v.idle_because = Some(why));
            return;
        }
        super::log(&format!(
            "starting a session for policy {} (sha256 {}…)",
            policy.policy.metadata.name,
            &digest[..12]
        ));
        self.running_digest = Some(digest.clone());
        self.running_attempt = Some(attempt);
        agent.update(|v| {
            v.running = Some(Running {
                session: None,
                digest,
            })
        });
        let sink = agent.sink();
        let options = RunOptions {
            wait_for_operator: true,
            ..Default::default()
        };
        let task_agent = agent.clone();
        self.task = Some(tokio::spawn(async move {
            task_agent
                .app
                .apply(policy, options, sink, task_agent.stop.clone())
                .await
        }));
    }

    /// The source changed while a session runs: drift, unless the change
    /// declares an abort.
    async fn in_flight(&mut self, policy: LoadedPolicy, digest: &str, revision: Option<&str>) {
        let Some(running) = self.running_digest.clone() else {
            return;
        };
        if running == digest {
            self.agent.update(|v| v.drift = None);
            return;
        }
        let first_time = self.reported.insert(format!("drift/{digest}"));
        self.agent.update(|v| v.drift = Some(digest.to_string()));
        let session = self
            .agent
            .app
            .status()
            .ok()
            .and_then(|s| s.session)
            .map(|s| s.id.to_string())
            .unwrap_or_default();
        if policy.policy.spec.action == PolicyAction::Abort {
            if !first_time {
                return;
            }
            let by = format!(
                "policy source{}",
                revision
                    .map(|r| format!(" (revision {})", &r[..12.min(r.len())]))
                    .unwrap_or_default()
            );
            let request = OperatorRequest {
                verb: OperatorVerb::Abort,
                by,
                reason: Some("the policy source declares `action: abort`".into()),
            };
            match self.agent.app.deliver(request).await {
                Ok(a) => super::log(&format!(
                    "declared abort accepted; the session is in {}",
                    a.at
                )),
                Err(e) => super::log(&format!("declared abort not applied: {e}")),
            }
            return;
        }
        if first_time {
            super::log(&format!(
                "drift: the source now has policy sha256 {}…; session {session} goes on with the policy it started with",
                &digest[..12.min(digest.len())]
            ));
            let _ = self.agent.events.send(events::drift(
                &self.agent.event_source,
                &session,
                digest,
                revision,
                self.agent.now_ms(),
            ));
        }
    }

    fn invalid(&mut self, digest: &str, revision: Option<&str>, err: LoadError) {
        let errors: Vec<String> = match &err {
            LoadError::Invalid(diags) => diags.iter().map(|d| d.to_string()).collect(),
            other => vec![other.to_string()],
        };
        self.agent.update(|v| v.invalid = errors.clone());
        if !self.reported.insert(format!("invalid/{digest}")) {
            return;
        }
        self.agent.metrics.source_failed("invalid");
        super::log("the source's policy is invalid; nothing is started:");
        for e in &errors {
            super::log(&format!("  {e}"));
        }
        let _ = self.agent.events.send(events::policy_invalid(
            &self.agent.event_source,
            digest,
            revision,
            &errors,
            self.agent.now_ms(),
        ));
    }

    /// A session was held or released: while it is held its policy is
    /// abandoned, so nothing runs it again on its own should the session
    /// end some other way than by a release.
    fn news(&mut self, news: SessionNews) {
        match news {
            SessionNews::Opened { session } => {
                if let Some(slot) = &mut self.record.slot
                    && slot.session.as_deref() != Some(&session)
                {
                    slot.session = Some(session.clone());
                    if let (Gate::Fleet(link), Some(rollout)) = (&self.gate, slot.rollout.clone()) {
                        let (link, session) = (link.clone(), session.clone());
                        tokio::spawn(async move { link.record_session(&rollout, &session).await });
                    }
                    self.save_record();
                }
                self.agent.update(|v| {
                    if let Some(running) = &mut v.running {
                        running.session = Some(session);
                    }
                })
            }
            SessionNews::Hold { session, held } => self.hold_changed(session, held),
        }
    }

    fn hold_changed(&mut self, session: String, held: Option<String>) {
        if let (Gate::Fleet(link), Some(rollout)) = (
            &self.gate,
            self.record.slot.as_ref().and_then(|s| s.rollout.clone()),
        ) {
            let (link, held) = (link.clone(), held.clone());
            tokio::spawn(async move { link.set_held(&rollout, held.as_deref()).await });
        }
        let Some(digest) = self.running_digest.clone() else {
            return;
        };
        match held {
            Some(reason) => {
                super::log(&format!(
                    "session {session} is held ({reason}); its policy is abandoned until it is released or the source changes"
                ));
                self.record.abandoned.insert(digest, session);
            }
            None => {
                if self.record.abandoned.get(&digest) != Some(&session) {
                    return;
                }
                super::log(&format!(
                    "session {session} was released; its policy is no longer abandoned"
                ));
                self.record.abandoned.remove(&digest);
            }
        }
        self.save_record();
    }

    fn save_record(&mut self) {
        if let Err(e) = self.record.save(self.agent.app.state_dir()) {
            super::log(&format!("error: cannot save the agent's record: {e}"));
        }
        self.publish_record();
    }

    /// A session's run ended: remember what it achieved or abandoned.
    fn ended(&mut self, ended: Result<Result<RunReport, AppError>, tokio::task::JoinError>) {
        self.task = None;
        // Idle until the next session: no wasmtime engine, pool or ticker,
        // and the memory they used given back to the system.
        self.agent.app.release_plugin_host();
        super::rest::give_back_memory();
        let digest = self.running_digest.take().unwrap_or_default();
        let attempt = self.running_attempt.take();
        self.agent.update(|v| v.running = None);
        let report = match ended {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                super::log(&format!("the session could not run: {e}"));
                if matches!(e, AppError::Policy(_) | AppError::WindowClosed { .. }) {
                    self.rejected.insert(attempt.unwrap_or(digest));
                }
                return;
            }
            Err(e) => {
                super::log(&format!("the session's task failed: {e}"));
                return;
            }
        };
        let session = report.session.to_string();
        match report.stop {
            Stop::Ended(Outcome::Committed) => {
                super::log(&format!("session {session} committed"));
                let revision = self
                    .agent
                    .view
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .desired
                    .as_ref()
                    .filter(|d| d.digest == digest)
                    .and_then(|d| d.revision.clone());
                if self.record.abandoned.get(&digest) == Some(&session) {
                    self.record.abandoned.remove(&digest);
                }
                self.record.achieved = Some(Achieved {
                    digest,
                    revision,
                    session: session.clone(),
                });
                self.slot_ended(&session, "committed");
            }
            Stop::Ended(Outcome::Aborted) => {
                super::log(&format!(
                    "session {session} aborted; its policy is abandoned until the source changes"
                ));
                self.slot_ended(&session, "aborted");
                self.record.abandoned.insert(digest, session);
            }
            Stop::Interrupted { why } => {
                super::log(&format!(
                    "session {session} stopped ({why}); it is taken up at the next start"
                ));
                return;
            }
            other => {
                super::log(&format!("session {session} stopped: {other:?}"));
                return;
            }
        }
        self.save_record();
    }

    /// Before a session starts: hold a slot of the fleet's semaphore (kept
    /// from before a restart, or taken now). `Err`: why not now; asked again
    /// soon.
    async fn take_slot(&mut self) -> Result<(), String> {
        if self.gate.is_open() {
            return Ok(());
        }
        if self.record.slot.as_ref().is_some_and(|s| s.ended.is_none()) {
            return Ok(());
        }
        match self.gate.ask().await {
            Permit::Go { rollout } => {
                self.reported.retain(|r| !r.starts_with("wait/"));
                super::log(&format!("took a fleet slot ({})", self.gate.describe()));
                self.record.slot = Some(HeldSlot {
                    from: self.gate.describe(),
                    rollout,
                    taken_ms: Some(self.agent.now_ms()),
                    ..Default::default()
                });
                self.save_record();
                Ok(())
            }
            Permit::Wait(why) => {
                if self.reported.insert(format!("wait/{why}")) {
                    super::log(&format!("not starting: {why}"));
                }
                self.retry = Some(super::gate::RETRY);
                Err(why)
            }
        }
    }

    /// The session under the slot ended: remember how, so the slot is given
    /// back (now, or by the next agent should this one die first).
    fn slot_ended(&mut self, session: &str, outcome: &str) {
        if let Some(slot) = &mut self.record.slot {
            slot.session = Some(session.to_string());
            slot.ended = Some(outcome.to_string());
        }
    }

    async fn give_back_an_ended_slot(&mut self) {
        if self.record.slot.as_ref().is_some_and(|s| s.ended.is_some()) {
            self.give_back().await;
        }
    }

    async fn give_back_an_unused_slot(&mut self) {
        if self.task.is_none() && self.record.slot.is_some() {
            self.give_back().await;
        }
    }

    async fn give_back(&mut self) {
        let Some(slot) = self.record.slot.clone() else {
            return;
        };
        match self.gate.give_back(&slot).await {
            Ok(()) => {
                super::log(&format!(
                    "gave the fleet slot back ({}{})",
                    slot.from,
                    match (&slot.session, &slot.ended) {
                        (Some(s), Some(e)) => format!("; session {s} {e}"),
                        _ => "; no session ran under it".into(),
                    }
                ));
                self.record.slot = None;
                self.save_record();
            }
            Err(e) => {
                if self.reported.insert(format!("give-back/{e}")) {
                    super::log(&format!(
                        "cannot give the fleet slot back yet ({e}); asking again"
                    ));
                }
                self.retry = Some(super::gate::RETRY);
            }
        }
    }

    /// The fleet has nothing for this host: nothing starts, and a slot
    /// still held with no session under it is given back.
    async fn nothing_wanted(&mut self, why: String) {
        self.agent.update(|v| {
            v.fetch_error = None;
            v.desired = None;
            v.idle_because = Some(why);
        });
        self.give_back_an_unused_slot().await;
    }

    /// An operator aborted the rollout this host's session runs under:
    /// the session is asked to abort (once), as an operator command from
    /// the rollout; the model decides whether it still can.
    async fn rollout_aborted(&mut self) {
        let Gate::Fleet(link) = &self.gate else {
            return;
        };
        let Some(part) = link.part() else { return };
        let Some(by) = part.aborted else { return };
        let done = format!("rollout-abort/{}", part.rollout);
        if self.reported.contains(&done) {
            return;
        }
        let request = OperatorRequest {
            verb: OperatorVerb::Abort,
            by: format!("rollout {} (aborted by {by})", part.rollout),
            reason: Some(format!("the fleet's rollout {} was aborted", part.rollout)),
        };
        match self.agent.app.deliver(request).await {
            Ok(a) => {
                self.reported.insert(done);
                super::log(&format!(
                    "rollout {} aborted: the session's abort was accepted in {}",
                    part.rollout, a.at
                ));
            }
            // Not yet (the session is still opening, say): asked again at
            // the next reconcile; said once.
            Err(e) => {
                if self.reported.insert(format!("{done}/{e}")) {
                    super::log(&format!(
                        "rollout {} aborted; the session goes on for now: {e}",
                        part.rollout
                    ));
                }
                self.retry = Some(super::gate::RETRY);
            }
        }
    }
}

/// What a refusal to start is remembered by: the policy's digest, and what
/// else in the source the refusal may be about (a plugin's signature, the
/// lock file): the commit for git, else the lock file's bytes beside the
/// policy. So a commit that fixes a signature or the lock file, the policy
/// unchanged, is tried again, and an unchanged source is not.
fn attempt_key(snapshot: &Snapshot, digest: &str) -> String {
    match &snapshot.revision {
        Some(revision) => format!("{digest}@{revision}"),
        None => {
            let lock = duplex_core::app::lock::lock_path(&snapshot.policy_path);
            let lock = std::fs::read(lock)
                .map(|bytes| duplex_core::plugins::sha256_hex(&bytes))
                .unwrap_or_default();
            format!("{digest}+{lock}")
        }
    }
}
