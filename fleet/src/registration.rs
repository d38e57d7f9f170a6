//! Hosts registering themselves: `<p>/hosts/<host>` under a lease kept
//! alive by a background task, and its last copy at `<p>/hosts-seen/<host>`
//! without a lease, so a host whose agent died still shows (as not alive).

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::FleetError;
use crate::store::{Fleet, Kind, check_name, decode, encode};
use crate::types::HostRecord;

/// A host's registration, alive while this value is: a background task
/// keeps its lease alive, and grants a new one (putting the record again)
/// when the lease expired, after a partition longer than the TTL. Dropping
/// it stops the keep-alive (the key goes when the lease expires);
/// [`Registration::close`] revokes the lease at once.
pub struct Registration {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    fleet: Fleet,
    ttl: Duration,
    /// The record and the lease it is under, changed together.
    current: Mutex<(HostRecord, i64)>,
}

impl Fleet {
    /// Registers a host: its record under a lease of `ttl` (whole seconds,
    /// at least 1), kept alive in the background.
    pub async fn register(
        &self,
        record: HostRecord,
        ttl: Duration,
    ) -> Result<Registration, FleetError> {
        check_name("host", &record.name)?;
        let ttl = Duration::from_secs(ttl.as_secs().max(1));
        let lease = self.grant(ttl, &record.name).await?;
        self.put_record(&record, lease).await?;
        let shared = Arc::new(Shared {
            fleet: self.clone(),
            ttl,
            current: Mutex::new((record, lease)),
        });
        let task = tokio::spawn(keep_alive(shared.clone()));
        Ok(Registration { shared, task })
    }

    /// Every host ever registered (and not forgotten), by name, with
    /// whether it is alive (its leased key exists). A dead host shows its
    /// last record.
    pub async fn hosts(&self) -> Result<Vec<(HostRecord, bool)>, FleetError> {
        let alive_prefix = format!("{}/hosts/", self.prefix());
        let seen_prefix = format!("{}/hosts-seen/", self.prefix());
        let alive = self.get_prefix("list hosts", &alive_prefix).await?;
        let seen = self.get_prefix("list hosts", &seen_prefix).await?;
        let mut hosts = std::collections::BTreeMap::new();
        for kv in seen {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let record: HostRecord = decode(&key, kv.value())?;
            hosts.insert(record.name.clone(), (record, false));
        }
        for kv in alive {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            let record: HostRecord = decode(&key, kv.value())?;
            hosts.insert(record.name.clone(), (record, true));
        }
        Ok(hosts.into_values().collect())
    }

    /// Forgets a dead host's last record. `false` when the host is alive
    /// (or unknown): a live host cannot be forgotten.
    pub async fn forget_host(&self, host: &str) -> Result<bool, FleetError> {
        check_name("host", host)?;
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.host_key(host), CompareOp::Equal, 0),
                Compare::create_revision(self.seen_key(host), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::delete(self.seen_key(host), None)]);
        Ok(self
            .txn(Kind::Txn, &format!("forget host {host}"), txn)
            .await?
            .succeeded())
    }

    async fn grant(&self, ttl: Duration, host: &str) -> Result<i64, FleetError> {
        let secs = ttl.as_secs() as i64;
        let resp = self
            .call(
                Kind::LeaseGrant,
                &format!("grant a lease for {host}"),
                |mut c| async move { c.lease_grant(secs, None).await },
            )
            .await?;
        Ok(resp.id())
    }

    async fn put_record(&self, record: &HostRecord, lease: i64) -> Result<(), FleetError> {
        let value = encode(record);
        let txn = Txn::new().and_then([
            TxnOp::put(
                self.host_key(&record.name),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(self.seen_key(&record.name), value, None),
        ]);
        self.txn(Kind::Txn, &format!("register host {}", record.name), txn)
            .await?;
        Ok(())
    }
}

impl Registration {
    /// The host's record changed: put it under the lease (a new lease if
    /// the old one expired).
    pub async fn update(&self, record: HostRecord) -> Result<(), FleetError> {
        let mut current = self.shared.current.lock().await;
        current.0 = record;
        let fleet = &self.shared.fleet;
        match fleet.put_record(&current.0, current.1).await {
            Err(FleetError::Refused { detail, .. }) if detail.contains("lease not found") => {
                let lease = fleet.grant(self.shared.ttl, &current.0.name).await?;
                current.1 = lease;
                fleet.put_record(&current.0, lease).await
            }
            other => other,
        }
    }

    /// The lease the record is under now.
    pub async fn lease_id(&self) -> i64 {
        self.shared.current.lock().await.1
    }

    /// Deregisters: stops the keep-alive and revokes the lease (the leased
    /// key goes at once; the last record stays in `hosts-seen`).
    pub async fn close(self) -> Result<(), FleetError> {
        self.task.abort();
        let (name, lease) = {
            let current = self.shared.current.lock().await;
            (current.0.name.clone(), current.1)
        };
        self.shared
            .fleet
            .call(
                Kind::LeaseRevoke,
                &format!("revoke the lease of {name}"),
                |mut c| async move { c.lease_revoke(lease).await },
            )
            .await?;
        Ok(())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps the lease alive (every third of its TTL); when etcd says it
/// expired, grants a new one and puts the record again; when etcd cannot
/// be reached, tries again (a short pause, then the same).
async fn keep_alive(shared: Arc<Shared>) {
    let fleet = &shared.fleet;
    let period = shared.ttl / 3;
    let timeout = fleet.inner.timeout;
    loop {
        let lease = shared.current.lock().await.1;
        let mut client = fleet.client.clone();
        fleet.count(Kind::KeepAliveOpen);
        if let Ok(Ok((mut keeper, mut stream))) =
            tokio::time::timeout(timeout, client.lease_keep_alive(lease)).await
        {
            loop {
                fleet.count(Kind::KeepAlive);
                if !matches!(
                    tokio::time::timeout(timeout, keeper.keep_alive()).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
                match tokio::time::timeout(timeout, stream.message()).await {
                    Ok(Ok(Some(resp))) if resp.ttl() > 0 => tokio::time::sleep(period).await,
                    Ok(Ok(Some(_))) => {
                        // Expired: a new lease, the record put again.
                        let mut current = shared.current.lock().await;
                        if current.1 == lease
                            && let Ok(new) = fleet.grant(shared.ttl, &current.0.name).await
                            && fleet.put_record(&current.0, new).await.is_ok()
                        {
                            current.1 = new;
                        }
                        break;
                    }
                    _ => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200).min(period)).await;
    }
}
