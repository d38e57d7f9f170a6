//! The fleet store against real 3-member etcd clusters on loopback
//! (Debian's etcd 3.4; `scripts/install-test-deps.sh`), one per test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duplex_core::rollout::{BetweenWaves, PlannedPolicy, PlannedWave, RolloutPlan};
use duplex_fleet::local_cluster::LocalCluster;
use duplex_fleet::{
    Created, Decision, Fleet, FleetConfig, FleetError, HostRecord, Outcome, WaitReason,
};

const TIMEOUT: Duration = Duration::from_secs(3);

async fn cluster() -> (tempfile::TempDir, LocalCluster) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(3, dir.path()).await.unwrap();
    (dir, cluster)
}

async fn fleet(cluster: &LocalCluster) -> Fleet {
    Fleet::connect(FleetConfig {
        endpoints: cluster.endpoints(),
        prefix: "/duplex-test".into(),
        timeout: TIMEOUT,
    })
    .await
    .unwrap()
}

/// Waves of `sizes[i]` hosts named `w<i>-<j>`.
fn plan(name: &str, sizes: &[usize], max_unavailable: u32, error_budget: u32) -> RolloutPlan {
    RolloutPlan {
        name: name.into(),
        digest: format!("digest-of-{name}"),
        policy: PlannedPolicy {
            text: "policy".into(),
            digest: "policy-digest".into(),
            path: "/srv/policy.yaml".into(),
        },
        waves: sizes
            .iter()
            .enumerate()
            .map(|(i, n)| PlannedWave {
                name: format!("wave-{i}"),
                hosts: (0..*n).map(|j| format!("w{i}-{j:02}")).collect(),
            })
            .collect(),
        max_unavailable,
        error_budget,
        between_waves: BetweenWaves::default(),
        windows: vec![],
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn record(name: &str, state: &str) -> HostRecord {
    HostRecord {
        name: name.into(),
        version: "0.1.0".into(),
        state: Some(state.into()),
        updated_ms: now_ms(),
        ..HostRecord::default()
    }
}

async fn alive(fleet: &Fleet, host: &str) -> Option<(HostRecord, bool)> {
    fleet
        .hosts()
        .await
        .unwrap()
        .into_iter()
        .find(|(r, _)| r.name == host)
}

/// Polls `check` every 100 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_visible_kept_alive_expires_and_comes_back() {
    let (_dir, cluster) = cluster().await;
    let fleet = fleet(&cluster).await;
    let ttl = Duration::from_secs(2);

    let reg = fleet.register(record("h1", "normal"), ttl).await.unwrap();
    let (r, is_alive) = alive(&fleet, "h1").await.unwrap();
    assert!(is_alive);
    assert_eq!(r.state.as_deref(), Some("normal"));
    reg.update(record("h1", "upgrading")).await.unwrap();
    assert_eq!(
        alive(&fleet, "h1").await.unwrap().0.state.as_deref(),
        Some("upgrading")
    );

    // Kept alive past its TTL.
    tokio::time::sleep(ttl * 2).await;
    assert!(alive(&fleet, "h1").await.unwrap().1, "kept alive");

    // The lease expires under it (as after a partition longer than the
    // TTL): the registration grants a new one and puts the record again.
    let old = reg.lease_id().await;
    let mut raw = etcd_client::Client::connect(cluster.endpoints(), None)
        .await
        .unwrap();
    raw.lease_revoke(old).await.unwrap();
    eventually(Duration::from_secs(5), "re-registered", || async {
        reg.lease_id().await != old && alive(&fleet, "h1").await.is_some_and(|(_, a)| a)
    })
    .await;
    assert_eq!(
        alive(&fleet, "h1").await.unwrap().0.state.as_deref(),
        Some("upgrading"),
        "the latest record is put again"
    );

    // The agent goes away without a word: the lease expires, the last
    // record stays visible as not alive.
    drop(reg);
    let dropped = Instant::now();
    eventually(Duration::from_secs(8), "expired", || async {
        alive(&fleet, "h1").await.is_some_and(|(_, a)| !a)
    })
    .await;
    assert!(dropped.elapsed() >= Duration::from_secs(1));
    assert_eq!(
        alive(&fleet, "h1").await.unwrap().0.state.as_deref(),
        Some("upgrading")
    );

    // It comes back; a clean close removes it at once; forgotten, it is gone.
    let reg = fleet.register(record("h1", "normal"), ttl).await.unwrap();
    assert!(alive(&fleet, "h1").await.unwrap().1);
    assert!(
        !fleet.forget_host("h1").await.unwrap(),
        "alive: not forgotten"
    );
    reg.close().await.unwrap();
    assert!(!alive(&fleet, "h1").await.unwrap().1);
    assert!(fleet.forget_host("h1").await.unwrap());
    assert!(alive(&fleet, "h1").await.is_none());

    assert!(matches!(
        fleet.register(record("a/b", "x"), ttl).await,
        Err(FleetError::InvalidName { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_is_created_once_unchanged_again_and_never_replaced() {
    let (_dir, cluster) = cluster().await;
    let fleet = fleet(&cluster).await;
    let p = plan("r1", &[2, 3], 2, 1);
    assert_eq!(fleet.create_rollout(&p).await.unwrap(), Created::New);
    assert_eq!(fleet.create_rollout(&p).await.unwrap(), Created::Unchanged);
    let mut other = p.clone();
    other.digest = "another-digest".into();
    other.max_unavailable = 5;
    let err = fleet.create_rollout(&other).await.unwrap_err();
    assert!(matches!(err, FleetError::Conflict { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("digest-of-r1") && message.contains("another-digest"),
        "{message}"
    );

    let view = fleet.rollout("r1").await.unwrap().unwrap();
    assert_eq!(view.plan, p, "the first document stays");
    assert_eq!(view.state.ended_by_wave, vec![0, 0]);
    assert!(view.state.holders.is_empty());
    assert!(fleet.rollout("nope").await.unwrap().is_none());
    fleet.create_rollout(&plan("r2", &[1], 1, 1)).await.unwrap();
    let names: Vec<String> = fleet
        .rollouts()
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.plan.name)
        .collect();
    assert_eq!(names, ["r1", "r2"]);
    assert!(matches!(
        fleet.try_start("nope", "w0-00", now_ms(), true).await,
        Err(FleetError::RolloutNotFound(_))
    ));
    assert!(matches!(
        fleet.create_rollout(&plan("bad/name", &[1], 1, 1)).await,
        Err(FleetError::InvalidName { .. })
    ));
    assert!(matches!(
        fleet.create_rollout(&plan("zero", &[1], 0, 1)).await,
        Err(FleetError::InvalidPlan { .. })
    ));
    assert_eq!(
        fleet
            .try_start("r1", "stranger", now_ms(), true)
            .await
            .unwrap(),
        Decision::NotInRollout
    );
}

/// 15 agents (each its own client) race over 30 hosts in 3 waves with 3
/// slots; then every version of the state key is checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_agents_never_exceed_the_limit_and_waves_end_in_order() {
    let (_dir, cluster) = cluster().await;
    let admin = fleet(&cluster).await;
    let p = plan("race", &[6, 12, 12], 3, 100);
    admin.create_rollout(&p).await.unwrap();
    let hosts: Vec<String> = p.waves.iter().flat_map(|w| w.hosts.clone()).collect();

    let mut agents = Vec::new();
    for agent in 0..15 {
        let mine: Vec<String> = hosts.iter().skip(agent).step_by(15).cloned().collect();
        let endpoints = cluster.endpoints();
        agents.push(tokio::spawn(async move {
            let fleet = Fleet::connect(FleetConfig {
                endpoints,
                prefix: "/duplex-test".into(),
                timeout: TIMEOUT,
            })
            .await
            .unwrap();
            let mut changes = fleet.watch_rollouts().await.unwrap();
            let mut pending = mine;
            let mut starts = 0;
            while !pending.is_empty() {
                let mut still = Vec::new();
                for host in pending {
                    match fleet
                        .try_start("race", &host, now_ms(), true)
                        .await
                        .unwrap()
                    {
                        Decision::Start | Decision::AlreadyHolds => {
                            starts += 1;
                            let session = format!("session-{host}");
                            fleet.record_session("race", &host, &session).await.unwrap();
                            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..15))).await;
                            let outcome = if fastrand::u8(0..10) == 0 {
                                Outcome::Aborted
                            } else {
                                Outcome::Committed
                            };
                            let r = fleet
                                .end("race", &host, outcome, None, now_ms())
                                .await
                                .unwrap();
                            assert_eq!(r.session.as_deref(), Some(session.as_str()));
                        }
                        Decision::Ended => {}
                        Decision::Wait(_) => still.push(host),
                        Decision::NotInRollout => panic!("{host} is in the rollout"),
                    }
                }
                pending = still;
                if !pending.is_empty() {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), changes.changed()).await;
                }
            }
            starts
        }));
    }
    let mut starts = 0;
    for agent in agents {
        starts += agent.await.unwrap();
    }
    assert_eq!(starts, 30, "each host started once");

    let results = admin.results("race").await.unwrap();
    assert_eq!(results.keys().cloned().collect::<Vec<_>>(), hosts);
    let view = admin.rollout("race").await.unwrap().unwrap();
    assert!(view.state.holders.is_empty());
    assert_eq!(view.state.ended_by_wave, vec![6, 12, 12]);
    assert!(view.state.finished(&p));
    let aborted = results
        .values()
        .filter(|r| r.outcome == Outcome::Aborted)
        .count();
    assert_eq!(view.state.aborted_count as usize, aborted);
    let ended: Vec<u64> = view
        .state
        .wave_ended_ms
        .iter()
        .map(|t| t.unwrap())
        .collect();
    assert!(ended.windows(2).all(|w| w[0] <= w[1]), "{ended:?}");

    let history = admin.state_history("race").await.unwrap();
    // At least: creation, then a start and an end per host (and sessions).
    assert!(history.len() > 30 * 3, "{} versions", history.len());
    assert!(history.windows(2).all(|w| w[0].0 < w[1].0));
    let mut spans: BTreeMap<&str, (usize, usize, u64)> = BTreeMap::new();
    for (i, (revision, state)) in history.iter().enumerate() {
        assert!(
            state.holders.len() <= 3,
            "{} holders at revision {revision}",
            state.holders.len()
        );
        for (host, holder) in &state.holders {
            for earlier in 0..holder.wave {
                assert!(
                    state.wave_ended(&p, earlier),
                    "{host} holds a slot at revision {revision} before wave {earlier} ended"
                );
            }
            let span = spans
                .entry(host.as_str())
                .or_insert((i, i, holder.since_ms));
            assert!(
                span.1 == i || span.1 + 1 == i,
                "{host} held two slots (again at revision {revision})"
            );
            assert_eq!(span.2, holder.since_ms, "{host} took a second slot");
            span.1 = i;
        }
    }
    assert_eq!(spans.len(), 30, "every host held a slot at some revision");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_budget_halts_the_rollout() {
    let (_dir, cluster) = cluster().await;
    let fleet = fleet(&cluster).await;
    let p = plan("budget", &[6], 3, 2);
    fleet.create_rollout(&p).await.unwrap();
    for host in ["w0-00", "w0-01", "w0-02"] {
        assert_eq!(
            fleet
                .try_start("budget", host, now_ms(), true)
                .await
                .unwrap(),
            Decision::Start
        );
    }
    // A held host counts while it is held.
    fleet
        .set_held("budget", "w0-02", Some("gate failed"))
        .await
        .unwrap();
    fleet
        .end("budget", "w0-00", Outcome::Aborted, Some("s0"), now_ms())
        .await
        .unwrap();
    let d = fleet
        .try_start("budget", "w0-03", now_ms(), true)
        .await
        .unwrap();
    assert!(
        matches!(&d, Decision::Wait(WaitReason::Halted(why)) if why.contains("1 held")),
        "{d:?}"
    );
    fleet.set_held("budget", "w0-02", None).await.unwrap();
    assert_eq!(
        fleet
            .try_start("budget", "w0-03", now_ms(), true)
            .await
            .unwrap(),
        Decision::Start
    );
    fleet
        .end("budget", "w0-01", Outcome::Aborted, None, now_ms())
        .await
        .unwrap();
    let view = fleet.rollout("budget").await.unwrap().unwrap();
    assert!(view.state.halted.is_some());
    let d = fleet
        .try_start("budget", "w0-04", now_ms(), true)
        .await
        .unwrap();
    assert!(matches!(d, Decision::Wait(WaitReason::Halted(_))), "{d:?}");
    // Hosts in flight go on and end.
    assert_eq!(
        fleet
            .try_start("budget", "w0-02", now_ms(), true)
            .await
            .unwrap(),
        Decision::AlreadyHolds
    );
    fleet
        .end("budget", "w0-02", Outcome::Committed, None, now_ms())
        .await
        .unwrap();
    assert!(matches!(
        fleet.set_held("budget", "w0-02", Some("x")).await,
        Err(FleetError::NotHolder { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_pause_resume_approve_release_and_abort() {
    let (_dir, cluster) = cluster().await;
    let fleet = fleet(&cluster).await;
    let mut p = plan("ops", &[2, 2], 2, 5);
    p.between_waves.approval = true;
    fleet.create_rollout(&p).await.unwrap();
    let mut changes = fleet.watch_rollouts().await.unwrap();
    let start = |host: &'static str| {
        let fleet = fleet.clone();
        async move { fleet.try_start("ops", host, now_ms(), true).await.unwrap() }
    };

    assert!(matches!(
        fleet.pause("ops", "alice", " ").await,
        Err(FleetError::EmptyReason { command: "pause" })
    ));
    assert!(fleet.pause("ops", "alice", "change freeze").await.unwrap());
    assert!(!fleet.pause("ops", "alice", "again").await.unwrap());
    // The watch wakes on the change.
    tokio::time::timeout(Duration::from_secs(2), changes.changed())
        .await
        .expect("woken")
        .unwrap();
    assert!(matches!(
        start("w0-00").await,
        Decision::Wait(WaitReason::Paused(m)) if m.by == "alice" && m.reason == "change freeze"
    ));
    let resumed = fleet.resume("ops", "alice").await.unwrap();
    assert!(resumed.unpaused);
    assert_eq!(resumed.approved, None);
    assert_eq!(start("w0-00").await, Decision::Start);
    assert_eq!(start("w0-01").await, Decision::Start);
    assert_eq!(
        fleet
            .try_start("ops", "w0-01", now_ms(), false)
            .await
            .unwrap(),
        Decision::AlreadyHolds
    );
    assert!(matches!(
        start("w1-00").await,
        Decision::Wait(WaitReason::EarlierWave { wave: 0, .. })
    ));
    fleet.record_session("ops", "w0-00", "s-00").await.unwrap();

    // Release: a reason is mandatory; recorded with it; the host ends Released.
    assert!(matches!(
        fleet.release("w0-00", "bob", "").await,
        Err(FleetError::EmptyReason { command: "release" })
    ));
    assert_eq!(
        fleet
            .release("w0-00", "bob", "host lost its disk")
            .await
            .unwrap(),
        ["ops"]
    );
    assert!(
        fleet
            .release("w0-00", "bob", "again")
            .await
            .unwrap()
            .is_empty()
    );
    let results = fleet.results("ops").await.unwrap();
    let r = &results["w0-00"];
    assert_eq!(r.outcome, Outcome::Released);
    assert_eq!(r.by.as_deref(), Some("bob"));
    assert_eq!(r.reason.as_deref(), Some("host lost its disk"));
    assert_eq!(r.session.as_deref(), Some("s-00"));
    let state = fleet.rollout("ops").await.unwrap().unwrap().state;
    assert_eq!(state.releases.len(), 1);
    assert_eq!(state.releases[0].reason, "host lost its disk");
    assert_eq!(
        state.releases[0].was_holder.session.as_deref(),
        Some("s-00")
    );
    // The released host's agent comes back and ends: it gets the result there is.
    let again = fleet
        .end("ops", "w0-00", Outcome::Committed, None, now_ms())
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::Released);
    assert!(matches!(
        fleet
            .end("ops", "w0-01", Outcome::Released, None, now_ms())
            .await,
        Err(FleetError::WrongOutcome { .. })
    ));

    let first = fleet
        .end("ops", "w0-01", Outcome::Committed, Some("s-01"), now_ms())
        .await
        .unwrap();
    let second = fleet
        .end("ops", "w0-01", Outcome::Aborted, None, now_ms() + 5)
        .await
        .unwrap();
    assert_eq!(first, second, "ending twice returns the first result");
    assert_eq!(start("w0-01").await, Decision::Ended);

    // Wave 1 waits for an approval; resume gives it.
    assert!(matches!(
        start("w1-00").await,
        Decision::Wait(WaitReason::Approval { wave: 1, .. })
    ));
    let resumed = fleet.resume("ops", "alice").await.unwrap();
    assert_eq!(resumed.approved, Some(1));
    assert!(!resumed.unpaused);
    assert_eq!(
        fleet
            .try_start("ops", "w1-00", now_ms(), false)
            .await
            .unwrap(),
        Decision::Wait(WaitReason::OutsideWindow)
    );
    assert_eq!(start("w1-00").await, Decision::Start);

    // Abort is final for hosts that have not started.
    assert!(matches!(
        fleet.abort("ops", "carol", "").await,
        Err(FleetError::EmptyReason { command: "abort" })
    ));
    assert!(fleet.abort("ops", "carol", "bad release").await.unwrap());
    assert!(matches!(
        start("w1-01").await,
        Decision::Wait(WaitReason::Aborted(m)) if m.by == "carol"
    ));
    assert_eq!(start("w1-00").await, Decision::AlreadyHolds);
    assert_eq!(
        fleet.resume("ops", "alice").await.unwrap(),
        Default::default(),
        "resume does not undo an abort"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_die_and_come_back() {
    let (_dir, mut cluster) = cluster().await;
    let fleet = fleet(&cluster).await;
    let p = plan("outage", &[8], 2, 10);
    fleet.create_rollout(&p).await.unwrap();
    assert_eq!(
        fleet
            .try_start("outage", "w0-00", now_ms(), true)
            .await
            .unwrap(),
        Decision::Start
    );

    // One member dies (whichever it is: it may be the leader).
    let dead = fastrand::usize(0..3);
    cluster.kill_member(dead);
    let started = Instant::now();
    assert_eq!(
        fleet
            .try_start("outage", "w0-01", now_ms(), true)
            .await
            .unwrap(),
        Decision::Start
    );
    fleet
        .end("outage", "w0-00", Outcome::Committed, None, now_ms())
        .await
        .unwrap();
    fleet
        .end("outage", "w0-01", Outcome::Committed, None, now_ms())
        .await
        .unwrap();
    assert_eq!(
        fleet
            .try_start("outage", "w0-02", now_ms(), true)
            .await
            .unwrap(),
        Decision::Start
    );
    assert!(started.elapsed() < TIMEOUT * 3);
    // It comes back on its data dir and catches up.
    cluster.restart_member(dead).await.unwrap();
    let before = fleet.rollout("outage").await.unwrap().unwrap();

    // Every member dies: errors within the timeout, no hang.
    cluster.kill_all();
    for _ in 0..2 {
        let started = Instant::now();
        let err = fleet
            .try_start("outage", "w0-03", now_ms(), true)
            .await
            .unwrap_err();
        let took = started.elapsed();
        assert!(
            matches!(
                err,
                FleetError::Unreachable { .. } | FleetError::Timeout { .. }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("127.0.0.1"), "{err}");
        assert!(took < TIMEOUT + Duration::from_secs(1), "took {took:?}");
    }
    assert!(fleet.rollout("outage").await.is_err());

    // Back: the same client works again and nothing was lost.
    cluster.restart_all().await.unwrap();
    let after = fleet.rollout("outage").await.unwrap().unwrap();
    assert_eq!(after, before);
    assert_eq!(
        fleet
            .try_start("outage", "w0-03", now_ms(), true)
            .await
            .unwrap(),
        Decision::Start
    );
    let history = fleet.state_history("outage").await.unwrap();
    assert!(history.iter().all(|(_, s)| s.holders.len() <= 2));
    let holders: BTreeSet<String> = fleet
        .rollout("outage")
        .await
        .unwrap()
        .unwrap()
        .state
        .holders
        .into_keys()
        .collect();
    assert_eq!(holders, BTreeSet::from(["w0-02".into(), "w0-03".into()]));
}
