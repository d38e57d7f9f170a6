//! Waking on changes instead of polling: an etcd watch on a prefix, kept
//! up by a background task (re-established from the last revision seen
//! after a member dies), seen as "something changed, at this revision".

use std::sync::Arc;
use std::time::Duration;

use duplex_core::rollout::RolloutPlan;
use etcd_client::{EventType, WatchOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::FleetError;
use crate::store::{Fleet, Kind, decode};
use crate::types::RolloutState;

/// Changes under a prefix, coalesced: [`Changes::changed`] returns once
/// something changed since the last call. A wake-up, not a source of
/// truth: read the keys again after it, and also on a timer of your own
/// (a watch on a partitioned member can stay silent).
pub struct Changes {
    rx: watch::Receiver<i64>,
    task: JoinHandle<()>,
    endpoints: String,
}

impl Changes {
    /// Waits for the next change; returns the newest revision seen (after
    /// the watch was re-established, the revision it resumed from).
    pub async fn changed(&mut self) -> Result<i64, FleetError> {
        self.rx
            .changed()
            .await
            .map_err(|_| watch_ended(&self.endpoints))?;
        Ok(*self.rx.borrow_and_update())
    }
}

/// A watch's task is gone (the `Fleet` it came from was dropped).
fn watch_ended(endpoints: &str) -> FleetError {
    FleetError::Unreachable {
        op: "watch".into(),
        endpoints: endpoints.to_owned(),
        detail: "the watch task ended".into(),
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A rollout's plan and state as last seen, with the state's
/// `mod_revision`: what [`crate::decide::may_start`] needs, and what
/// [`Fleet::try_start_seen`] compares.
#[derive(Debug, Clone)]
pub struct Seen {
    pub plan: Arc<RolloutPlan>,
    pub state: Arc<RolloutState>,
    pub revision: i64,
}

/// One rollout's state followed through a watch of its state key alone
/// (not its results): every version is delivered with its value, so a
/// waiting host decides on its own copy ([`crate::decide::may_start`]) and
/// asks etcd only when that copy says it may start. Clones share the
/// watch; each clone has its own notion of "changed since I last looked".
#[derive(Clone)]
pub struct RolloutWatch {
    rx: watch::Receiver<Seen>,
    _task: Arc<AbortOnDrop>,
    endpoints: String,
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl RolloutWatch {
    /// The newest version seen.
    pub fn current(&self) -> Seen {
        self.rx.borrow().clone()
    }

    /// Waits for a version newer than the last one this clone looked at.
    pub async fn changed(&mut self) -> Result<Seen, FleetError> {
        self.rx
            .changed()
            .await
            .map_err(|_| watch_ended(&self.endpoints))?;
        Ok(self.rx.borrow_and_update().clone())
    }
}

impl Fleet {
    /// Follows rollout `name`'s state: read once (plan and state), then
    /// every version from its watch, re-established (and read again) after
    /// a member dies or etcd compacted past it, and read again every
    /// `resync` anyway (a watch on a partitioned member can stay silent).
    pub async fn watch_rollout(
        &self,
        name: &str,
        resync: Duration,
    ) -> Result<RolloutWatch, FleetError> {
        let first = self.snapshot(name, None).await?;
        let plan = first.plan.clone();
        let (tx, rx) = watch::channel(Seen {
            plan: first.plan,
            state: Arc::new(first.state),
            revision: first.revision,
        });
        let fleet = self.clone();
        let name = name.to_owned();
        let key = self.state_key(&name);
        let task = tokio::spawn(async move {
            let timeout = fleet.inner.timeout;
            let send = |seen: Seen| {
                tx.send_if_modified(|current| {
                    let newer = seen.revision > current.revision;
                    if newer {
                        *current = seen;
                    }
                    newer
                });
            };
            let mut next = first.revision + 1;
            let mut resync_at = tokio::time::Instant::now() + resync;
            loop {
                let options = WatchOptions::new().with_start_revision(next);
                let mut client = fleet.client.clone();
                fleet.count(Kind::WatchOpen);
                if let Ok(Ok(mut stream)) =
                    tokio::time::timeout(timeout, client.watch(key.clone(), Some(options))).await
                {
                    loop {
                        let message = tokio::select! {
                            m = stream.message() => m,
                            _ = tokio::time::sleep_until(resync_at) => break,
                        };
                        let Ok(Some(resp)) = message else { break };
                        fleet.count_watch_response();
                        if resp.canceled() {
                            if resp.compact_revision() > 0 {
                                next = resp.compact_revision();
                            }
                            break;
                        }
                        for event in resp.events() {
                            let Some(kv) = event.kv() else { continue };
                            next = next.max(kv.mod_revision() + 1);
                            if event.event_type() != EventType::Put {
                                continue;
                            }
                            if let Ok(state) = decode::<RolloutState>(&key, kv.value()) {
                                send(Seen {
                                    plan: plan.clone(),
                                    state: Arc::new(state),
                                    revision: kv.mod_revision(),
                                });
                            }
                        }
                        if tx.is_closed() {
                            return;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                // Read it again: what the watch may have missed.
                if tokio::time::Instant::now() < resync_at {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                resync_at = tokio::time::Instant::now() + resync;
                if let Ok(snap) = fleet.snapshot(&name, None).await {
                    next = next.max(snap.revision + 1);
                    send(Seen {
                        plan: snap.plan,
                        state: Arc::new(snap.state),
                        revision: snap.revision,
                    });
                }
            }
        });
        Ok(RolloutWatch {
            rx,
            _task: Arc::new(AbortOnDrop(task)),
            endpoints: self.inner.endpoints.clone(),
        })
    }

    /// Wakes on any change under `<p>/rollouts/` (plans, states, results).
    pub async fn watch_rollouts(&self) -> Result<Changes, FleetError> {
        self.watch_prefix(self.rollouts_prefix()).await
    }

    /// Wakes on any change under `<p>/hosts/` (registrations, expiries).
    pub async fn watch_hosts(&self) -> Result<Changes, FleetError> {
        self.watch_prefix(format!("{}/hosts/", self.prefix())).await
    }

    async fn watch_prefix(&self, prefix: String) -> Result<Changes, FleetError> {
        // Changes from the next revision on: none is missed between this
        // call and the watch being established.
        let from = self.revision().await? + 1;
        let (tx, rx) = watch::channel(from - 1);
        let fleet = self.clone();
        let task = tokio::spawn(async move {
            let mut next = from;
            let timeout = fleet.inner.timeout;
            loop {
                let options = WatchOptions::new().with_prefix().with_start_revision(next);
                let mut client = fleet.client.clone();
                fleet.count(Kind::WatchOpen);
                if let Ok(Ok(mut stream)) =
                    tokio::time::timeout(timeout, client.watch(prefix.clone(), Some(options))).await
                {
                    while let Ok(Some(resp)) = stream.message().await {
                        fleet.count_watch_response();
                        if resp.canceled() {
                            // Compacted past `next`: resume from what is
                            // left, and wake the reader to read again.
                            if resp.compact_revision() > 0 {
                                next = resp.compact_revision();
                                tx.send_replace(next);
                            }
                            break;
                        }
                        let newest = resp
                            .events()
                            .iter()
                            .filter_map(|e| e.kv().map(|kv| kv.mod_revision()))
                            .max();
                        if let Some(rev) = newest {
                            next = rev + 1;
                            if tx.send(rev).is_err() {
                                return;
                            }
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Changes {
            rx,
            task,
            endpoints: self.inner.endpoints.clone(),
        })
    }
}
