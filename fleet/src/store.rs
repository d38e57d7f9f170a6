//! [`Fleet`]: the fleet's keys in etcd, read and changed with transactions.
//! Every etcd call runs under the configured timeout; errors that mean
//! "not reachable right now" (a member down, a leader election) are
//! retried within it, so a partition returns an error instead of hanging
//! and a killed member goes unnoticed.
//!
//! A retried write may have been applied by the attempt whose answer was
//! lost; every write is a transaction that compares what it read, so the
//! retry changes nothing and the next read shows the write. Callers see
//! the effect, not always the attempt that made it: `create_rollout` may
//! say `Unchanged` for a rollout this call created, `try_start`
//! `AlreadyHolds` for a slot it took, `pause`/`abort` `false`.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duplex_core::rollout::RolloutPlan;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::decide;
use crate::error::FleetError;
use crate::types::{Decision, HostResult, Outcome, RolloutState};
use crate::watch::Seen;

/// Where the fleet's etcd is and how long one operation may take.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// `http://host:port` of the etcd members (any subset works).
    pub endpoints: Vec<String>,
    /// The key prefix of everything duplex stores (default `/duplex`).
    pub prefix: String,
    /// The most one operation may take, retries included.
    pub timeout: Duration,
}

impl FleetConfig {
    /// `endpoints` with the default prefix (`/duplex`) and timeout (5 s).
    pub fn new(endpoints: Vec<String>) -> Self {
        FleetConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: Duration::from_secs(5),
        }
    }
}

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/duplex";

/// Whether a rollout was stored by this call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    /// The same document (same digest) was already stored.
    Unchanged,
}

/// A rollout as stored: its plan, its state, and the state's revision.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutView {
    pub plan: RolloutPlan,
    pub state: RolloutState,
    /// The state key's `mod_revision`.
    pub revision: i64,
}

/// Where a host stands in the fleet's rollouts: what `duplex fleet status`
/// and the fleet page show beside its record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPlace {
    /// The rollout where it holds a slot, if any.
    pub slot: Option<String>,
    /// The name of the wave its record names (in the rollout it names).
    pub wave_name: Option<String>,
}

impl HostPlace {
    pub fn of(record: &crate::types::HostRecord, rollouts: &[RolloutView]) -> HostPlace {
        let slot = rollouts
            .iter()
            .find(|v| v.state.holders.contains_key(&record.name))
            .map(|v| v.plan.name.clone());
        let wave_name = match (&record.rollout, record.wave) {
            (Some(r), Some(w)) => rollouts
                .iter()
                .find(|v| &v.plan.name == r)
                .and_then(|v| v.plan.waves.get(w))
                .map(|w| w.name.clone()),
            _ => None,
        };
        HostPlace { slot, wave_name }
    }
}

/// What `resume` changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resumed {
    /// A pause was cleared.
    pub unpaused: bool,
    /// This wave was approved.
    pub approved: Option<usize>,
}

/// A connection to the fleet's etcd. Cheap to clone (one gRPC channel).
#[derive(Clone)]
pub struct Fleet {
    pub(crate) client: Client,
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) prefix: String,
    pub(crate) timeout: Duration,
    pub(crate) endpoints: String,
    /// Requests made through this connection, by kind ([`Kind`]).
    pub(crate) counters: [AtomicU64; COUNTERS],
    /// Plans read, by rollout, with their key's `mod_revision`: a plan is
    /// never changed once stored, so a read of the rollout asks for the
    /// plan key's revision only and reads the plan again when it differs.
    plans: std::sync::Mutex<HashMap<String, (i64, Arc<RolloutPlan>)>>,
}

/// What a request to etcd was, for [`Fleet::requests`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    /// A plain read (`get`): revision, prefix listings, history, one key.
    Range,
    /// A rollout read in one transaction (plan revision, state, result).
    Snapshot,
    /// A plan read because the cached one was missing or stale.
    PlanRead,
    /// A compare-and-swap of a rollout's state.
    Cas,
    /// Another transaction (create a rollout, put a host's record, forget).
    Txn,
    LeaseGrant,
    LeaseRevoke,
    /// A lease's keep-alive stream opened (or re-opened).
    KeepAliveOpen,
    /// One keep-alive sent on a lease's stream.
    KeepAlive,
    /// A watch stream opened (or re-opened).
    WatchOpen,
}

const KINDS: usize = 10;
const COUNTERS: usize = KINDS + 2;

/// Requests a [`Fleet`] (and every clone of it) made to etcd, by kind,
/// retries included; `cas_conflicts` counts the compare-and-swaps that lost
/// a race (each is also in `cas`), `watch_responses` the responses watch
/// streams delivered. Cheap to read; for measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Requests {
    pub range: u64,
    pub snapshot: u64,
    pub plan_read: u64,
    pub cas: u64,
    pub txn: u64,
    pub lease_grant: u64,
    pub lease_revoke: u64,
    pub keep_alive_open: u64,
    pub keep_alive: u64,
    pub watch_open: u64,
    pub cas_conflicts: u64,
    pub watch_responses: u64,
}

impl Requests {
    /// Every unary request and keep-alive (watch responses are pushed by
    /// etcd, not requested, and are not counted).
    pub fn total(&self) -> u64 {
        self.range
            + self.snapshot
            + self.plan_read
            + self.cas
            + self.txn
            + self.lease_grant
            + self.lease_revoke
            + self.keep_alive_open
            + self.keep_alive
            + self.watch_open
    }

    /// `self` plus `other`, field by field.
    pub fn add(&self, other: &Requests) -> Requests {
        Requests {
            range: self.range + other.range,
            snapshot: self.snapshot + other.snapshot,
            plan_read: self.plan_read + other.plan_read,
            cas: self.cas + other.cas,
            txn: self.txn + other.txn,
            lease_grant: self.lease_grant + other.lease_grant,
            lease_revoke: self.lease_revoke + other.lease_revoke,
            keep_alive_open: self.keep_alive_open + other.keep_alive_open,
            keep_alive: self.keep_alive + other.keep_alive,
            watch_open: self.watch_open + other.watch_open,
            cas_conflicts: self.cas_conflicts + other.cas_conflicts,
            watch_responses: self.watch_responses + other.watch_responses,
        }
    }
}

/// Indices past the request kinds: counted, not requests.
const CAS_CONFLICTS: usize = KINDS;
const WATCH_RESPONSES: usize = KINDS + 1;

/// How many times a compare-and-swap is tried before giving up.
const CAS_ATTEMPTS: u32 = 200;

/// How many operation timeouts a compare-and-swap may take in all, lost
/// races and their backoff included, before it fails as `Contended`.
const CAS_TIMEOUTS: u32 = 6;

/// One outcome of a compare-and-swap step.
pub(crate) enum Step<R> {
    /// Nothing to write: return this.
    Done(R),
    /// Write the state (and the host's result), then return this.
    Write {
        state: Box<RolloutState>,
        result: Option<HostResult>,
        value: R,
    },
}

/// A rollout read in one transaction: its plan, state, state revision and
/// (when asked) one host's result.
pub(crate) struct Snapshot {
    pub(crate) plan: Arc<RolloutPlan>,
    pub(crate) state: RolloutState,
    pub(crate) revision: i64,
    result: Option<HostResult>,
}

impl Fleet {
    /// Connects and checks that etcd answers (within the timeout).
    pub async fn connect(config: FleetConfig) -> Result<Fleet, FleetError> {
        let prefix = config.prefix.trim_end_matches('/').to_owned();
        let endpoints = config.endpoints.join(",");
        let options = ConnectOptions::new()
            .with_connect_timeout(config.timeout)
            .with_timeout(config.timeout)
            .with_keep_alive(Duration::from_secs(2), config.timeout);
        let connect = Client::connect(&config.endpoints, Some(options));
        let client = match tokio::time::timeout(config.timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                return Err(FleetError::Unreachable {
                    op: "connect".into(),
                    endpoints,
                    detail: e.to_string(),
                });
            }
            Err(_) => {
                return Err(FleetError::Timeout {
                    op: "connect".into(),
                    endpoints,
                    after: config.timeout,
                });
            }
        };
        let fleet = Fleet {
            client,
            inner: Arc::new(Inner {
                prefix,
                timeout: config.timeout,
                endpoints,
                counters: Default::default(),
                plans: Default::default(),
            }),
        };
        fleet.revision().await?;
        Ok(fleet)
    }

    /// The key prefix (without a trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The requests this connection (and its clones) made so far.
    pub fn requests(&self) -> Requests {
        let c = |i: usize| self.inner.counters[i].load(Ordering::Relaxed);
        Requests {
            range: c(Kind::Range as usize),
            snapshot: c(Kind::Snapshot as usize),
            plan_read: c(Kind::PlanRead as usize),
            cas: c(Kind::Cas as usize),
            txn: c(Kind::Txn as usize),
            lease_grant: c(Kind::LeaseGrant as usize),
            lease_revoke: c(Kind::LeaseRevoke as usize),
            keep_alive_open: c(Kind::KeepAliveOpen as usize),
            keep_alive: c(Kind::KeepAlive as usize),
            watch_open: c(Kind::WatchOpen as usize),
            cas_conflicts: c(CAS_CONFLICTS),
            watch_responses: c(WATCH_RESPONSES),
        }
    }

    pub(crate) fn count(&self, kind: Kind) {
        self.inner.counters[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_watch_response(&self) {
        self.inner.counters[WATCH_RESPONSES].fetch_add(1, Ordering::Relaxed);
    }

    /// etcd's current revision.
    pub async fn revision(&self) -> Result<i64, FleetError> {
        let key = self.inner.prefix.clone();
        let resp = self
            .call(Kind::Range, "read the current revision", |mut c| {
                let key = key.clone();
                async move { c.get(key, Some(GetOptions::new().with_count_only())).await }
            })
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
    }

    // ---- keys ----

    pub(crate) fn host_key(&self, host: &str) -> String {
        format!("{}/hosts/{host}", self.inner.prefix)
    }

    pub(crate) fn seen_key(&self, host: &str) -> String {
        format!("{}/hosts-seen/{host}", self.inner.prefix)
    }

    pub(crate) fn rollouts_prefix(&self) -> String {
        format!("{}/rollouts/", self.inner.prefix)
    }

    fn plan_key(&self, rollout: &str) -> String {
        format!("{}/rollouts/{rollout}/plan", self.inner.prefix)
    }

    pub(crate) fn state_key(&self, rollout: &str) -> String {
        format!("{}/rollouts/{rollout}/state", self.inner.prefix)
    }

    fn results_prefix(&self, rollout: &str) -> String {
        format!("{}/rollouts/{rollout}/results/", self.inner.prefix)
    }

    fn result_key(&self, rollout: &str, host: &str) -> String {
        format!("{}{host}", self.results_prefix(rollout))
    }

    // ---- calls ----

    /// Runs one etcd request under the timeout, retrying what means "not
    /// reachable right now" until it runs out.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        kind: Kind,
        op: &str,
        mut request: F,
    ) -> Result<T, FleetError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.inner.timeout;
        let mut last: Option<String> = None;
        let mut backoff = Duration::from_millis(20);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.gave_up(op, last));
            }
            self.count(kind);
            match tokio::time::timeout(remaining, request(self.client.clone())).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) if transient(&e) => {
                    last = Some(e.to_string());
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(backoff.min(remaining)).await;
                    backoff = (backoff * 2).min(Duration::from_millis(250));
                }
                Ok(Err(e)) => {
                    return Err(FleetError::Refused {
                        op: op.to_owned(),
                        endpoints: self.inner.endpoints.clone(),
                        detail: e.to_string(),
                    });
                }
                Err(_) => return Err(self.gave_up(op, last)),
            }
        }
    }

    fn gave_up(&self, op: &str, last: Option<String>) -> FleetError {
        match last {
            Some(detail) => FleetError::Unreachable {
                op: op.to_owned(),
                endpoints: self.inner.endpoints.clone(),
                detail,
            },
            None => FleetError::Timeout {
                op: op.to_owned(),
                endpoints: self.inner.endpoints.clone(),
                after: self.inner.timeout,
            },
        }
    }

    pub(crate) async fn get_prefix(
        &self,
        op: &str,
        prefix: &str,
    ) -> Result<Vec<KeyValue>, FleetError> {
        let prefix = prefix.to_owned();
        let mut resp = self
            .call(Kind::Range, op, |mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        Ok(resp.take_kvs())
    }

    pub(crate) async fn txn(
        &self,
        kind: Kind,
        op: &str,
        txn: Txn,
    ) -> Result<etcd_client::TxnResponse, FleetError> {
        self.call(kind, op, |mut c| {
            let txn = txn.clone();
            async move { c.txn(txn).await }
        })
        .await
    }

    // ---- rollouts ----

    /// Stores a rollout, once: a transaction that requires its plan key
    /// absent writes the plan and its initial state together. The same
    /// document again is [`Created::Unchanged`]; another document under the
    /// same name is [`FleetError::Conflict`].
    pub async fn create_rollout(&self, plan: &RolloutPlan) -> Result<Created, FleetError> {
        check_name("rollout", &plan.name)?;
        check_plan(plan)?;
        let plan_key = self.plan_key(&plan.name);
        let txn = Txn::new()
            .when([Compare::create_revision(
                plan_key.clone(),
                CompareOp::Equal,
                0,
            )])
            .and_then([
                TxnOp::put(plan_key.clone(), encode(plan), None),
                TxnOp::put(
                    self.state_key(&plan.name),
                    encode(&RolloutState::new(plan)),
                    None,
                ),
            ])
            .or_else([TxnOp::get(plan_key.clone(), None)]);
        let resp = self
            .txn(Kind::Txn, &format!("create rollout {}", plan.name), txn)
            .await?;
        if resp.succeeded() {
            return Ok(Created::New);
        }
        let stored: RolloutPlan = match first_kv(&resp) {
            Some(kv) => decode(&plan_key, kv.value())?,
            None => return Err(FleetError::RolloutNotFound(plan.name.clone())),
        };
        if stored.digest == plan.digest {
            Ok(Created::Unchanged)
        } else {
            Err(FleetError::Conflict {
                rollout: plan.name.clone(),
                stored: stored.digest,
                given: plan.digest.clone(),
            })
        }
    }

    /// Every rollout, by name.
    pub async fn rollouts(&self) -> Result<Vec<RolloutView>, FleetError> {
        let prefix = self.rollouts_prefix();
        let resp = self
            .call(Kind::Range, "list rollouts", |mut c| {
                let prefix = prefix.clone();
                async move {
                    c.get(
                        prefix,
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await
                }
            })
            .await?;
        let mut names = Vec::new();
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            if let Some(name) = key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.strip_suffix("/plan"))
                .filter(|name| !name.contains('/'))
            {
                names.push(name.to_owned());
            }
        }
        let mut views = Vec::with_capacity(names.len());
        for name in names {
            if let Some(view) = self.rollout(&name).await? {
                views.push(view);
            }
        }
        Ok(views)
    }

    /// One rollout, if it exists.
    pub async fn rollout(&self, name: &str) -> Result<Option<RolloutView>, FleetError> {
        check_name("rollout", name)?;
        match self.snapshot(name, None).await {
            Ok(s) => Ok(Some(RolloutView {
                plan: (*s.plan).clone(),
                state: s.state,
                revision: s.revision,
            })),
            Err(FleetError::RolloutNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every host's result in a rollout, by host.
    pub async fn results(&self, name: &str) -> Result<BTreeMap<String, HostResult>, FleetError> {
        check_name("rollout", name)?;
        let prefix = self.results_prefix(name);
        let kvs = self
            .get_prefix(&format!("read the results of rollout {name}"), &prefix)
            .await?;
        let mut results = BTreeMap::new();
        for kv in kvs {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let host = key[prefix.len()..].to_owned();
            results.insert(host, decode(&key, kv.value())?);
        }
        Ok(results)
    }

    /// One host's result in a rollout, if it has one (one key read, where
    /// [`Fleet::results`] reads every host's).
    pub async fn result(&self, name: &str, host: &str) -> Result<Option<HostResult>, FleetError> {
        check_name("rollout", name)?;
        check_name("host", host)?;
        let key = self.result_key(name, host);
        let resp = self
            .call(
                Kind::Range,
                &format!("read the result of {host} in rollout {name}"),
                |mut c| {
                    let key = key.clone();
                    async move { c.get(key, None).await }
                },
            )
            .await?;
        resp.kvs()
            .first()
            .map(|kv| decode(&key, kv.value()))
            .transpose()
    }

    /// Every version the state key of a rollout ever had, oldest first,
    /// with the revision that wrote it: walked back from the newest with a
    /// read at each version's `mod_revision - 1`. Fails with
    /// [`FleetError::Compacted`] once etcd compacted the history away.
    pub async fn state_history(&self, name: &str) -> Result<Vec<(i64, RolloutState)>, FleetError> {
        check_name("rollout", name)?;
        let key = self.state_key(name);
        let op = format!("read the history of {key}");
        let mut history = Vec::new();
        let mut at = 0i64;
        loop {
            let resp = self
                .call(Kind::Range, &op, |mut c| {
                    let key = key.clone();
                    let options = (at > 0).then(|| GetOptions::new().with_revision(at));
                    async move { c.get(key, options).await }
                })
                .await;
            let resp = match resp {
                Ok(r) => r,
                Err(FleetError::Refused { detail, .. }) if detail.contains("compacted") => {
                    return Err(FleetError::Compacted { key, compacted: at });
                }
                Err(e) => return Err(e),
            };
            let Some(kv) = resp.kvs().first() else {
                if at == 0 {
                    return Err(FleetError::RolloutNotFound(name.to_owned()));
                }
                break;
            };
            history.push((kv.mod_revision(), decode(&key, kv.value())?));
            if kv.version() <= 1 {
                break;
            }
            at = kv.mod_revision() - 1;
        }
        history.reverse();
        Ok(history)
    }

    pub(crate) async fn snapshot(
        &self,
        name: &str,
        host: Option<&str>,
    ) -> Result<Snapshot, FleetError> {
        let plan_key = self.plan_key(name);
        let state_key = self.state_key(name);
        // The plan's revision only: the plan itself comes from the cache
        // unless it is missing or stale (a plan is O(hosts) bytes).
        let mut ops = vec![
            TxnOp::get(plan_key.clone(), Some(GetOptions::new().with_keys_only())),
            TxnOp::get(state_key.clone(), None),
        ];
        let result_key = host.map(|h| self.result_key(name, h));
        if let Some(key) = &result_key {
            ops.push(TxnOp::get(key.clone(), None));
        }
        let resp = self
            .txn(
                Kind::Snapshot,
                &format!("read rollout {name}"),
                Txn::new().and_then(ops),
            )
            .await?;
        let gets = gets(&resp);
        let (Some(plan_kv), Some(state_kv)) = (&gets[0], &gets[1]) else {
            return Err(FleetError::RolloutNotFound(name.to_owned()));
        };
        let result = match (&result_key, gets.get(2).and_then(|kv| kv.as_ref())) {
            (Some(key), Some(kv)) => Some(decode(key, kv.value())?),
            _ => None,
        };
        Ok(Snapshot {
            plan: self.plan_at(name, plan_kv.mod_revision()).await?,
            state: decode(&state_key, state_kv.value())?,
            revision: state_kv.mod_revision(),
            result,
        })
    }

    /// Rollout `name`'s plan as stored at `revision` (its key's
    /// `mod_revision`): from the cache, or read (and cached).
    async fn plan_at(&self, name: &str, revision: i64) -> Result<Arc<RolloutPlan>, FleetError> {
        if let Some((rev, plan)) = self.plans().get(name)
            && *rev == revision
        {
            return Ok(plan.clone());
        }
        let key = self.plan_key(name);
        let resp = self
            .call(
                Kind::PlanRead,
                &format!("read the plan of {name}"),
                |mut c| {
                    let key = key.clone();
                    async move { c.get(key, None).await }
                },
            )
            .await?;
        let Some(kv) = resp.kvs().first() else {
            return Err(FleetError::RolloutNotFound(name.to_owned()));
        };
        let plan = Arc::new(decode::<RolloutPlan>(&key, kv.value())?);
        self.plans()
            .insert(name.to_owned(), (kv.mod_revision(), plan.clone()));
        Ok(plan)
    }

    fn plans(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, Arc<RolloutPlan>)>> {
        self.inner.plans.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The compare-and-swap loop every change of a rollout's state goes
    /// through: read (plan, state, `host`'s result), decide with `step`,
    /// write the state (and the result) only if neither the state's
    /// `mod_revision` nor the result's absence changed. A transaction that
    /// lost the race brings back the state and the result as they are now
    /// (its `else` branch), so the next attempt decides on them after a
    /// short jittered pause, without another read. `seen` starts from a
    /// state the caller already has (from [`Fleet::watch_rollout`]) instead
    /// of reading it.
    pub(crate) async fn update<R>(
        &self,
        name: &str,
        host: Option<&str>,
        what: &str,
        seen: Option<&Seen>,
        attempts: u32,
        mut step: impl FnMut(
            &RolloutPlan,
            &RolloutState,
            Option<&HostResult>,
        ) -> Result<Step<R>, FleetError>,
    ) -> Result<R, FleetError> {
        check_name("rollout", name)?;
        if let Some(host) = host {
            check_name("host", host)?;
        }
        let state_key = self.state_key(name);
        let result_key = host.map(|h| self.result_key(name, h));
        let mut snap = match seen {
            Some(seen) => Snapshot {
                plan: seen.plan.clone(),
                state: (*seen.state).clone(),
                revision: seen.revision,
                // Unknown: the transaction requires it absent, and brings
                // it back when it is not.
                result: None,
            },
            None => self.snapshot(name, host).await?,
        };
        // However many races it loses, one change gives up after this long
        // (an operator's command must not hang for minutes under load).
        let give_up_at = tokio::time::Instant::now() + self.inner.timeout * CAS_TIMEOUTS;
        // Decides once more on what the last lost race brought back.
        let mut tried = 0;
        for attempt in 0..=attempts {
            tried = attempt + 1;
            let (state, result, value) = match step(&snap.plan, &snap.state, snap.result.as_ref())?
            {
                Step::Done(value) => return Ok(value),
                Step::Write { .. } if attempt == attempts => break,
                Step::Write {
                    state,
                    result,
                    value,
                } => (state, result, value),
            };
            let mut when = vec![Compare::mod_revision(
                state_key.clone(),
                CompareOp::Equal,
                snap.revision,
            )];
            let mut then = vec![TxnOp::put(state_key.clone(), encode(&state), None)];
            let mut otherwise = vec![TxnOp::get(state_key.clone(), None)];
            if let Some(result_key) = &result_key {
                when.push(Compare::create_revision(
                    result_key.clone(),
                    CompareOp::Equal,
                    0,
                ));
                if let Some(result) = &result {
                    then.push(TxnOp::put(result_key.clone(), encode(result), None));
                }
                otherwise.push(TxnOp::get(result_key.clone(), None));
            }
            let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
            let resp = self.txn(Kind::Cas, what, txn).await?;
            if resp.succeeded() {
                return Ok(value);
            }
            // Lost the race: another agent or operator wrote first.
            self.inner.counters[CAS_CONFLICTS].fetch_add(1, Ordering::Relaxed);
            let gets = gets(&resp);
            let Some(state_kv) = &gets[0] else {
                return Err(FleetError::RolloutNotFound(name.to_owned()));
            };
            snap.state = decode(&state_key, state_kv.value())?;
            snap.revision = state_kv.mod_revision();
            snap.result = match (&result_key, gets.get(1).and_then(|kv| kv.as_ref())) {
                (Some(key), Some(kv)) => Some(decode(key, kv.value())?),
                _ => None,
            };
            // Exponential backoff with full jitter: many writers racing
            // for the one key (every end of a full set of slots) spread
            // out instead of each losing again at once (every lost race
            // is still a raft proposal).
            let cap = (10u64 << attempt.min(7)).min(1_000);
            let wake = tokio::time::Instant::now() + Duration::from_millis(fastrand::u64(0..=cap));
            if wake >= give_up_at {
                break;
            }
            tokio::time::sleep_until(wake).await;
        }
        Err(FleetError::Contended {
            key: state_key,
            attempts: tried,
        })
    }

    /// Whether `host` may start its upgrade in rollout `name` now
    /// ([`decide::may_start`] on the stored state), and when it may, takes
    /// a slot: the state is written only if it did not change since it was
    /// read and the host still has no result.
    ///
    /// `Start` means this call took the slot. `AlreadyHolds` means the host
    /// holds one already: an agent that restarted, or a retry whose first
    /// attempt took the slot but whose answer was lost; both mean "go on".
    pub async fn try_start(
        &self,
        name: &str,
        host: &str,
        now_ms: u64,
        window_open: bool,
    ) -> Result<Decision, FleetError> {
        self.take(name, host, None, now_ms, window_open).await
    }

    /// [`Fleet::try_start`] deciding first on a state already seen (from
    /// [`Fleet::watch_rollout`]) instead of reading it: the slot is taken
    /// only if the state is still at `seen.revision` and the host has no
    /// result; otherwise the transaction brings back the state as it is
    /// and the decision is made again on it. A host that saw `Start` in
    /// its own copy of the state takes its slot in one request. One
    /// attempt only: `None` when it lost the race and a slot still looks
    /// free (many hosts race for it: the caller waits for its next copy
    /// and its next chance rather than retrying at once).
    pub async fn try_start_seen(
        &self,
        name: &str,
        host: &str,
        seen: &Seen,
        now_ms: u64,
        window_open: bool,
    ) -> Result<Option<Decision>, FleetError> {
        match self.take(name, host, Some(seen), now_ms, window_open).await {
            Ok(decision) => Ok(Some(decision)),
            Err(FleetError::Contended { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn take(
        &self,
        name: &str,
        host: &str,
        seen: Option<&Seen>,
        now_ms: u64,
        window_open: bool,
    ) -> Result<Decision, FleetError> {
        self.update(
            name,
            Some(host),
            &format!("take a slot of rollout {name} for {host}"),
            seen,
            if seen.is_some() { 1 } else { CAS_ATTEMPTS },
            |plan, state, result| {
                let decision =
                    decide::may_start(plan, state, host, result.is_some(), now_ms, window_open);
                if decision != Decision::Start {
                    return Ok(Step::Done(decision));
                }
                let wave = plan.wave_of(host).unwrap_or_default();
                Ok(Step::Write {
                    state: Box::new(decide::take_slot(state, host, wave, now_ms)),
                    result: None,
                    value: Decision::Start,
                })
            },
        )
        .await
    }

    /// Records the session `host` runs in its slot.
    pub async fn record_session(
        &self,
        name: &str,
        host: &str,
        session: &str,
    ) -> Result<(), FleetError> {
        self.update(
            name,
            Some(host),
            &format!("record {host}'s session in rollout {name}"),
            None,
            CAS_ATTEMPTS,
            |_, state, _| {
                if state.holders.get(host).and_then(|h| h.session.as_deref()) == Some(session) {
                    return Ok(Step::Done(()));
                }
                let next = decide::set_session(state, host, session).ok_or_else(|| {
                    FleetError::NotHolder {
                        rollout: name.to_owned(),
                        host: host.to_owned(),
                    }
                })?;
                Ok(Step::Write {
                    state: Box::new(next),
                    result: None,
                    value: (),
                })
            },
        )
        .await
    }

    /// Marks `host`'s session held (`Some(why)`) or no longer held: a held
    /// host counts against the error budget while it is held.
    pub async fn set_held(
        &self,
        name: &str,
        host: &str,
        held: Option<&str>,
    ) -> Result<(), FleetError> {
        self.update(
            name,
            Some(host),
            &format!("mark {host} held in rollout {name}"),
            None,
            CAS_ATTEMPTS,
            |_, state, _| {
                if state.holders.get(host).map(|h| h.held.as_deref()) == Some(held) {
                    return Ok(Step::Done(()));
                }
                let next =
                    decide::set_held(state, host, held).ok_or_else(|| FleetError::NotHolder {
                        rollout: name.to_owned(),
                        host: host.to_owned(),
                    })?;
                Ok(Step::Write {
                    state: Box::new(next),
                    result: None,
                    value: (),
                })
            },
        )
        .await
    }

    /// `host`'s part in rollout `name` ended with `outcome` (`Committed`,
    /// `Aborted` or `NotStarted`): its slot is freed and its result written
    /// in the same transaction. Idempotent: a host that already has a
    /// result gets that result back, unchanged.
    pub async fn end(
        &self,
        name: &str,
        host: &str,
        outcome: Outcome,
        session: Option<&str>,
        now_ms: u64,
    ) -> Result<HostResult, FleetError> {
        if outcome == Outcome::Released {
            return Err(FleetError::WrongOutcome {
                outcome,
                instead: "release",
            });
        }
        self.update(
            name,
            Some(host),
            &format!("end {host} in rollout {name}"),
            None,
            CAS_ATTEMPTS,
            |plan, state, result| {
                if let Some(result) = result {
                    return Ok(Step::Done(result.clone()));
                }
                let wave = plan
                    .wave_of(host)
                    .ok_or_else(|| FleetError::HostNotInRollout {
                        rollout: name.to_owned(),
                        host: host.to_owned(),
                    })?;
                let (next, result) = decide::end_host(
                    plan,
                    state,
                    host,
                    wave,
                    outcome,
                    session.map(str::to_owned),
                    now_ms,
                );
                Ok(Step::Write {
                    state: Box::new(next),
                    result: Some(result.clone()),
                    value: result,
                })
            },
        )
        .await
    }

    // ---- operators ----

    /// Pauses rollout `name`: no host starts until [`Fleet::resume`];
    /// hosts in flight go on. `false` when it was paused already.
    pub async fn pause(&self, name: &str, by: &str, reason: &str) -> Result<bool, FleetError> {
        let mark = mark(by, reason, "pause")?;
        self.mark_once(name, "pause", mark, |state| &mut state.paused)
            .await
    }

    /// Sets one of the state's operator marks unless it is set already:
    /// `false` then.
    async fn mark_once(
        &self,
        name: &str,
        verb: &str,
        mark: crate::types::Mark,
        field: fn(&mut RolloutState) -> &mut Option<crate::types::Mark>,
    ) -> Result<bool, FleetError> {
        self.update(
            name,
            None,
            &format!("{verb} rollout {name}"),
            None,
            CAS_ATTEMPTS,
            |_, state, _| {
                let mut next = state.clone();
                let slot = field(&mut next);
                if slot.is_some() {
                    return Ok(Step::Done(false));
                }
                *slot = Some(mark.clone());
                Ok(Step::Write {
                    state: Box::new(next),
                    result: None,
                    value: true,
                })
            },
        )
        .await
    }

    /// Resumes rollout `name`: clears a pause, and approves the wave in
    /// progress when it waits for an approval (the first wave that has not
    /// ended, after the first, once every earlier wave ended): one resume
    /// approves at most one wave, so waves are approved one at a time,
    /// each after the previous one ended. An approval is recorded with
    /// `by` and the time.
    pub async fn resume(&self, name: &str, by: &str) -> Result<Resumed, FleetError> {
        let at_ms = now_ms();
        self.update(
            name,
            None,
            &format!("resume rollout {name}"),
            None,
            CAS_ATTEMPTS,
            |plan, state, _| {
                let paused = state.paused.is_some();
                Ok(match decide::resume(plan, state) {
                    None => Step::Done(Resumed::default()),
                    Some((mut next, approved)) => Step::Write {
                        state: Box::new({
                            if let Some(wave) = approved {
                                next.approvals.push(crate::types::Approval {
                                    wave,
                                    by: by.to_owned(),
                                    at_ms,
                                });
                            }
                            next
                        }),
                        result: None,
                        value: Resumed {
                            unpaused: paused,
                            approved,
                        },
                    },
                })
            },
        )
        .await
    }

    /// Aborts rollout `name` (final): no host starts any more; hosts in
    /// flight go on to their end (an agent may abort its own session on
    /// seeing this). `false` when it was aborted already.
    pub async fn abort(&self, name: &str, by: &str, reason: &str) -> Result<bool, FleetError> {
        let mark = mark(by, reason, "abort")?;
        self.mark_once(name, "abort", mark, |state| &mut state.aborted)
            .await
    }

    /// An operator releases `host`'s slot in every rollout where it holds
    /// one (its agent is gone, or its session will never end by itself):
    /// the release is recorded with `by` and `reason` (mandatory) and the
    /// host ends `Released`, which counts against the error budget.
    /// Returns the rollouts it was released from.
    pub async fn release(
        &self,
        host: &str,
        by: &str,
        reason: &str,
    ) -> Result<Vec<String>, FleetError> {
        check_name("host", host)?;
        let mark = mark(by, reason, "release")?;
        let mut released = Vec::new();
        for view in self.rollouts().await? {
            if !view.state.holders.contains_key(host) {
                continue;
            }
            let name = view.plan.name.clone();
            let done = self
                .update(
                    &name,
                    Some(host),
                    &format!("release {host} in rollout {name}"),
                    None,
                    CAS_ATTEMPTS,
                    |plan, state, _| {
                        Ok(
                            match decide::release_by_operator(
                                plan,
                                state,
                                host,
                                &mark.by,
                                &mark.reason,
                                mark.at_ms,
                            ) {
                                None => Step::Done(false),
                                Some((next, result)) => Step::Write {
                                    state: Box::new(next),
                                    result: Some(result),
                                    value: true,
                                },
                            },
                        )
                    },
                )
                .await?;
            if done {
                released.push(name);
            }
        }
        Ok(released)
    }
}

/// Whether an etcd error means "not reachable right now": retried within
/// the timeout.
fn transient(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        // Unknown (2: "leader changed"), DeadlineExceeded (4), Unavailable (14:
        // no leader, connection refused), Cancelled (1).
        etcd_client::Error::GRpcStatus(s) => matches!(s.code() as i32, 1 | 2 | 4 | 14),
        _ => false,
    }
}

fn mark(by: &str, reason: &str, command: &'static str) -> Result<crate::types::Mark, FleetError> {
    if reason.trim().is_empty() {
        return Err(FleetError::EmptyReason { command });
    }
    Ok(crate::types::Mark {
        by: by.to_owned(),
        reason: reason.to_owned(),
        at_ms: now_ms(),
    })
}

/// Milliseconds since the Unix epoch, for the marks operators leave.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Names become key segments: no `/`, nothing empty, no control characters.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), FleetError> {
    let why = if name.is_empty() {
        "it is empty"
    } else if name.contains('/') {
        "it contains '/'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(FleetError::InvalidName {
        what,
        name: name.to_owned(),
        why,
    })
}

fn check_plan(plan: &RolloutPlan) -> Result<(), FleetError> {
    let invalid = |why: &'static str| FleetError::InvalidPlan {
        rollout: plan.name.clone(),
        why,
    };
    if plan.max_unavailable == 0 {
        return Err(invalid(
            "its plan allows no host out of service (max_unavailable 0)",
        ));
    }
    if plan.error_budget == 0 {
        return Err(invalid("its plan has an error budget of 0"));
    }
    let mut all = std::collections::BTreeSet::new();
    for wave in &plan.waves {
        if !wave.hosts.windows(2).all(|w| w[0] < w[1]) {
            return Err(invalid("a wave's hosts are not sorted and unique"));
        }
        for host in &wave.hosts {
            check_name("host", host)?;
            if !all.insert(host) {
                return Err(invalid("a host is in two waves"));
            }
        }
    }
    Ok(())
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain data serialises")
}

pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, FleetError> {
    serde_json::from_slice(bytes).map_err(|source| FleetError::Invalid {
        key: key.to_owned(),
        source,
    })
}

/// The first key of each `get` of a transaction's branch, in order.
fn gets(resp: &etcd_client::TxnResponse) -> Vec<Option<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
            _ => None,
        })
        .collect()
}

fn first_kv(resp: &etcd_client::TxnResponse) -> Option<KeyValue> {
    resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
        _ => None,
    })
}
