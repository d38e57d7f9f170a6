//! Waking on changes instead of polling: an etcd watch on a prefix, kept
//! up by a background task (re-established from the last revision seen
//! after a member dies), seen as "something changed, at this revision".

use std::time::Duration;

use etcd_client::WatchOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::FleetError;
use crate::store::Fleet;

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
            .map_err(|_| FleetError::Unreachable {
                op: "watch".into(),
                endpoints: self.endpoints.clone(),
                detail: "the watch task ended".into(),
            })?;
        Ok(*self.rx.borrow_and_update())
    }
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fleet {
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
                if let Ok(Ok(mut stream)) =
                    tokio::time::timeout(timeout, client.watch(prefix.clone(), Some(options))).await
                {
                    while let Ok(Some(resp)) = stream.message().await {
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
