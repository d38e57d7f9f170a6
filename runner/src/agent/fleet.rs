//! `duplex agent --fleet`: this host takes part in the fleet's rollouts,
//! coordinated through etcd by the `duplex-fleet` crate (the only one that
//! knows etcd). The agent registers its host under a lease, takes its
//! desired policy from the rollout that has a part for it, starts a session
//! only holding a slot of that rollout's semaphore (`gate`), and reports how
//! the session ended, which frees the slot.
//!
//! There is no coordinator: every agent asks etcd for itself. Losing etcd
//! stops this host from *starting*; a session in flight goes on to its end
//! on its own journal, and its end is reported (and its slot freed) once
//! etcd answers again.

use super::source::Snapshot;
use duplex_core::policy::Sha256;
use duplex_core::rollout::RolloutPlan;
use duplex_fleet::{
    Decision, Fleet, FleetConfig, HostRecord, Outcome, Registration, RolloutState, RolloutView,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// How long a registration outlives its agent.
pub const LEASE_TTL: Duration = Duration::from_secs(10);

/// The rollout this host takes part in now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub rollout: String,
    pub wave: usize,
    pub wave_name: String,
    /// The rollout was aborted by an operator: who and why.
    pub aborted: Option<String>,
}

pub struct FleetLink {
    config: FleetConfig,
    /// Connected on first use, and again until it works: an agent started
    /// while etcd is away still takes its session in flight up.
    fleet: tokio::sync::OnceCell<Fleet>,
    pub host: String,
    pub labels: BTreeMap<String, String>,
    part: Mutex<Option<Part>>,
    /// The last rollout this host had a part in, and its wave: what its
    /// registration shows once that part has ended.
    last_part: Mutex<Option<(String, usize)>>,
    /// The rollout's plan and its state as the last fetch read them.
    plan: Mutex<Option<(RolloutPlan, RolloutState)>>,
    registration: tokio::sync::Mutex<Option<Registration>>,
}

/// What the fleet wants of this host now.
pub enum Wanted {
    /// A rollout's policy.
    Policy(Box<Snapshot>),
    /// No rollout has a part for this host that has not ended.
    Nothing(String),
}

impl FleetLink {
    pub fn new(config: FleetConfig, host: String, labels: BTreeMap<String, String>) -> FleetLink {
        FleetLink {
            config,
            fleet: tokio::sync::OnceCell::new(),
            host,
            labels,
            part: Mutex::new(None),
            last_part: Mutex::new(None),
            plan: Mutex::new(None),
            registration: tokio::sync::Mutex::new(None),
        }
    }

    /// The connection to the fleet's etcd, made now if it is not yet.
    pub async fn fleet(&self) -> Result<&Fleet, String> {
        self.fleet
            .get_or_try_init(|| Fleet::connect(self.config.clone()))
            .await
            .map_err(|e| e.to_string())
    }

    /// The prefix of the fleet's keys.
    pub fn prefix(&self) -> &str {
        self.config.prefix.trim_end_matches('/')
    }

    pub fn part(&self) -> Option<Part> {
        self.part.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn now_ms() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// Register (or update) this host's record; the first call starts the
    /// lease's keep-alive.
    pub async fn register(&self, record: HostRecord) -> Result<(), String> {
        let mut registration = self.registration.lock().await;
        match registration.as_ref() {
            Some(r) => r.update(record).await.map_err(|e| e.to_string()),
            None => {
                *registration = Some(
                    self.fleet()
                        .await?
                        .register(record, LEASE_TTL)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                Ok(())
            }
        }
    }

    /// The record this host registers, from what the agent knows.
    pub fn record(
        &self,
        state: Option<String>,
        status: Option<String>,
        partner: Option<String>,
        achieved: Option<String>,
        last_event: Option<String>,
    ) -> HostRecord {
        let part = self
            .last_part
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        HostRecord {
            name: self.host.clone(),
            labels: self.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            state,
            status,
            partner,
            achieved,
            rollout: part.as_ref().map(|p| p.0.clone()),
            wave: part.as_ref().map(|p| p.1),
            last_event,
            updated_ms: Self::now_ms(),
        }
    }

    /// Which rollout has a part for this host now: the first by name that
    /// includes it and where it has no result yet; a host holding a slot
    /// stays with that rollout until its part ends.
    pub async fn fetch(&self) -> Result<Wanted, String> {
        let fleet = self.fleet().await?;
        let rollouts = fleet.rollouts().await.map_err(|e| e.to_string())?;
        let mut chosen: Option<(RolloutView, usize)> = None;
        // A rollout that still has a part for this host but will start
        // nobody (halted, aborted): why nothing starts.
        let mut stopped: Option<String> = None;
        // The last rollout (by name) where this host's part has ended.
        let mut ended: Option<(String, usize)> = None;
        for view in rollouts {
            let Some(wave) = view.plan.wave_of(&self.host) else {
                continue;
            };
            if view.state.holders.contains_key(&self.host) {
                chosen = Some((view, wave));
                break;
            }
            // This host's result alone: reading every host's would cost
            // O(hosts) per wake-up.
            let result = fleet
                .result(&view.plan.name, &self.host)
                .await
                .map_err(|e| e.to_string())?;
            if result.is_some() {
                ended = Some((view.plan.name.clone(), wave));
                continue;
            }
            // An operator's abort says more than the budget it spent.
            if let Some(m) = &view.state.aborted {
                stopped = Some(format!(
                    "rollout {} was aborted by {}: {}",
                    view.plan.name, m.by, m.reason
                ));
                continue;
            }
            if let Some(why) = &view.state.halted {
                stopped = Some(format!("rollout {} is halted: {why}", view.plan.name));
                continue;
            }
            if chosen.is_none() {
                chosen = Some((view, wave));
            }
        }
        let Some((view, wave)) = chosen else {
            *self.part.lock().unwrap_or_else(|e| e.into_inner()) = None;
            *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let last = {
                let mut last = self.last_part.lock().unwrap_or_else(|e| e.into_inner());
                // A new agent learns from the fleet where its host took part.
                if last.is_none() {
                    *last = ended;
                }
                last.clone()
            };
            return Ok(Wanted::Nothing(match (stopped, last) {
                (Some(why), _) => why,
                (None, Some((rollout, _))) => format!(
                    "this host's part in rollout {rollout} has ended; no other rollout has a part for it"
                ),
                (None, None) => format!(
                    "no rollout in the fleet has a part for host {} that has not ended",
                    self.host
                ),
            }));
        };
        let (plan, state) = (view.plan, view.state);
        let part = Part {
            rollout: plan.name.clone(),
            wave,
            wave_name: plan.waves[wave].name.clone(),
            aborted: state
                .aborted
                .as_ref()
                .map(|m| format!("{}: {}", m.by, m.reason)),
        };
        let digest: Sha256 = plan.policy.digest.parse().map_err(|e| {
            format!(
                "rollout {}: the stored policy digest is not a SHA-256: {e}",
                plan.name
            )
        })?;
        let policy_path = PathBuf::from(&plan.policy.path);
        let snapshot = Snapshot {
            revision: Some(plan.digest.clone()),
            source_path: format!("etcd {}/rollouts/{}", self.prefix(), plan.name),
            root: policy_path
                .parent()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
            policy_path,
            digest,
            text: Some(plan.policy.text.clone()),
        };
        *self.last_part.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((part.rollout.clone(), part.wave));
        *self.part.lock().unwrap_or_else(|e| e.into_inner()) = Some(part);
        *self.plan.lock().unwrap_or_else(|e| e.into_inner()) = Some((plan, state));
        Ok(Wanted::Policy(Box::new(snapshot)))
    }

    /// May this host start now? Takes the slot when it may.
    pub async fn ask(&self) -> Result<Option<String>, String> {
        let (Some(part), Some((plan, state))) = (
            self.part(),
            self.plan.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        ) else {
            return Err("no rollout has a part for this host".into());
        };
        let now = jiff::Timestamp::now();
        let window_open = duplex_core::rollout::window_open(&plan.windows, now);
        // Decide first on the state the fetch just read: a host that must
        // wait asks etcd nothing more (a change wakes it, and so does its
        // timer); only a host that may start asks, in a transaction that
        // decides again on the state as it is then.
        let seen = duplex_fleet::decide::may_start(
            &plan,
            &state,
            &self.host,
            false,
            Self::now_ms(),
            window_open,
        );
        let decision = match seen {
            Decision::Wait(_) => seen,
            _ => self
                .fleet()
                .await?
                .try_start(&part.rollout, &self.host, Self::now_ms(), window_open)
                .await
                .map_err(|e| format!("cannot ask the fleet for a slot: {e}"))?,
        };
        match decision {
            Decision::Start | Decision::AlreadyHolds => Ok(Some(part.rollout)),
            Decision::Wait(why) => Err(format!(
                "rollout {} wave {} ({}): {why}",
                part.rollout,
                part.wave + 1,
                part.wave_name
            )),
            Decision::Ended => Err(format!(
                "this host's part in rollout {} has ended",
                part.rollout
            )),
            Decision::NotInRollout => Err(format!("this host is not in rollout {}", part.rollout)),
        }
    }

    /// The session under the slot ended (or none ran): report it, which
    /// frees the slot.
    pub async fn end(
        &self,
        rollout: &str,
        outcome: Option<&str>,
        session: Option<&str>,
    ) -> Result<(), String> {
        let outcome = match outcome {
            Some("committed") => Outcome::Committed,
            Some("aborted") => Outcome::Aborted,
            _ => Outcome::NotStarted,
        };
        self.fleet()
            .await?
            .end(rollout, &self.host, outcome, session, Self::now_ms())
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The host already runs the rollout's policy (a session committed it
    /// before): its part ends as committed without taking a slot.
    pub async fn already_achieved(&self, session: &str) -> Result<(), String> {
        let Some(part) = self.part() else {
            return Ok(());
        };
        self.end(&part.rollout, Some("committed"), Some(session))
            .await
    }

    pub async fn record_session(&self, rollout: &str, session: &str) {
        let recorded = match self.fleet().await {
            Ok(f) => f
                .record_session(rollout, &self.host, session)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = recorded {
            super::log(&format!("cannot record the session in the fleet: {e}"));
        }
    }

    pub async fn set_held(&self, rollout: &str, held: Option<&str>) {
        let set = match self.fleet().await {
            Ok(f) => f
                .set_held(rollout, &self.host, held)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(e) = set {
            super::log(&format!("cannot tell the fleet the session is held: {e}"));
        }
    }
}

/// For the agent's life, in the background: wake the loop on every change
/// under the fleet's rollouts (a slot freed, a wave approved), tell the
/// live stream's readers (the fleet page) of every change to the rollouts
/// and to the hosts' registrations (`{"kind": "fleet"}`: read `/v1/fleet`
/// again), and keep this host's registration current (its lease kept alive
/// by `duplex-fleet`).
pub async fn follow(
    agent: std::sync::Arc<super::reconcile::Agent>,
    link: std::sync::Arc<FleetLink>,
) {
    let watch = |rollouts: bool| {
        let (agent, link) = (agent.clone(), link.clone());
        tokio::spawn(async move {
            loop {
                let changes = match link.fleet().await {
                    Ok(f) if rollouts => f.watch_rollouts().await.ok(),
                    Ok(f) => f.watch_hosts().await.ok(),
                    Err(_) => None,
                };
                if let Some(mut changes) = changes {
                    while changes.changed().await.is_ok() {
                        if rollouts {
                            agent.fetch_now.notify_one();
                        }
                        let _ = agent.live.send(serde_json::json!({ "kind": "fleet" }));
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    let watchers = [watch(true), watch(false)];
    let mut written: Option<HostRecord> = None;
    let mut failing = false;
    loop {
        let record = record_of(&agent, &link);
        let changed = written.as_ref().is_none_or(|w| {
            HostRecord {
                updated_ms: 0,
                ..w.clone()
            } != HostRecord {
                updated_ms: 0,
                ..record.clone()
            }
        });
        if changed {
            match link.register(record.clone()).await {
                Ok(()) => {
                    if failing {
                        super::log("registered in the fleet again");
                    }
                    failing = false;
                    written = Some(record);
                }
                Err(e) => {
                    if !failing {
                        super::log(&format!("cannot register in the fleet yet: {e}"));
                    }
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = agent.stop.cancelled() => break,
        }
    }
    for w in watchers {
        w.abort();
    }
}

fn record_of(agent: &super::reconcile::Agent, link: &FleetLink) -> HostRecord {
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(str::to_string))
    };
    let (mut state, mut status, mut partner) = (None, None, None);
    if let Ok(report) = agent.app.status()
        && let Some(s) = report.session
    {
        let config = &s.session.config;
        state = name(serde_json::to_value(config.state));
        status = name(serde_json::to_value(config.status()));
        partner = name(serde_json::to_value(config.partner));
    }
    let view = agent.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let last = view
        .running
        .as_ref()
        .map(|r| match &r.session {
            Some(s) => format!("running session {s}"),
            None => "starting a session".to_string(),
        })
        .or(view.idle_because.clone())
        .or(view.fetch_error.clone());
    link.record(
        state,
        status,
        partner,
        view.achieved.as_ref().map(|a| a.digest.clone()),
        last,
    )
}
