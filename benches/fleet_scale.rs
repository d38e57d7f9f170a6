//! The fleet at scale: N simulated hosts (default 10,000) on one real
//! 3-member etcd cluster, rolled out with a limit of 100.
//!
//!   cargo bench -p duplex-fleet --bench fleet_scale
//!   FLEET_SCALE_HOSTS=500 cargo bench -p duplex-fleet --bench fleet_scale
//!
//! Real: the etcd members (`LocalCluster`, Debian's etcd, data on disk in a
//! tempdir), every request through `duplex_fleet::Fleet` (registration
//! under a lease kept alive, the rollout, slots taken and given back by
//! compare-and-swap, record updates). Simulated: the hosts, as tokio tasks
//! in this process sharing `FLEET_SCALE_CLIENTS` connections (default 32)
//! round-robin, and their upgrades (a sleep of `FLEET_SCALE_UPGRADE_MS`,
//! default 200). One whole rollout is one measurement: no criterion loop.
//!
//! Each host waits as `FLEET_SCALE_MODE` says:
//! - `seen` (default): the client's watch of the rollout's state key
//!   (`Fleet::watch_rollout`) keeps a copy of the state; the host decides
//!   on that copy (`decide::may_start`, no request) every
//!   `FLEET_SCALE_CHECK_MS` (default 250, jittered), and only when it says
//!   Start, and with the chance `decide::try_chance` (about
//!   `FLEET_SCALE_SPREAD`, default 1, hosts per free slot), takes the slot
//!   with one compare-and-swap (`Fleet::try_start_seen`).
//! - `naive`: what `duplex agent --fleet` did: `try_start` (a read and a
//!   compare-and-swap loop) on every change under the rollouts (the
//!   client's `watch_rollouts`, shared by its hosts) and every 2 s.
//!
//! Measured: registration time, the keep-alive load at rest
//! (`FLEET_SCALE_IDLE_S`, default 10 s, one lease TTL), the rollout's wall time (created →
//! every host has a result), the requests by kind (`Fleet::requests`) per
//! host, compare-and-swap conflicts, etcd's own counters from each
//! member's `/metrics` (proposals, gRPC calls by method, bytes, db size),
//! each member's CPU and RSS sampled every 250 ms from /proc. Checked: at
//! most 100 holders at every revision of the state (`state_history`), every
//! host exactly one result, committed. Figures printed and written to
//! `target/fleet-scale.json`.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duplex_core::rollout::{BetweenWaves, PlannedPolicy, PlannedWave, RolloutPlan};
use duplex_fleet::local_cluster::LocalCluster;
use duplex_fleet::{
    Decision, Fleet, FleetConfig, HostRecord, Outcome, Registration, Requests, RolloutWatch, decide,
};
use serde_json::json;

const ROLLOUT: &str = "scale";
const MAX_UNAVAILABLE: u32 = 100;
const LEASE_TTL: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Config {
    hosts: usize,
    clients: usize,
    upgrade: Duration,
    check: Duration,
    spread: f64,
    naive: bool,
    idle: Duration,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("fleet_scale: bench");
        return;
    }
    let config = Config {
        hosts: env("FLEET_SCALE_HOSTS", 10_000),
        clients: env("FLEET_SCALE_CLIENTS", 32),
        upgrade: Duration::from_millis(env("FLEET_SCALE_UPGRADE_MS", 200)),
        check: Duration::from_millis(env("FLEET_SCALE_CHECK_MS", 250)),
        spread: env("FLEET_SCALE_SPREAD", 1.0),
        naive: env("FLEET_SCALE_MODE", String::from("seen")) == "naive",
        idle: Duration::from_secs(env("FLEET_SCALE_IDLE_S", 10)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(config));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn host_name(i: usize) -> String {
    format!("h{i:07}")
}

/// Waves canary (1 host) → 10% → the rest, hosts named in sorted order.
fn plan(hosts: usize) -> RolloutPlan {
    let tenth = (hosts / 10).max(1);
    let bounds = [(0, 1), (1, 1 + tenth), (1 + tenth, hosts)];
    RolloutPlan {
        name: ROLLOUT.into(),
        digest: "scale-digest".into(),
        policy: PlannedPolicy {
            text: "policy".into(),
            digest: "policy-digest".into(),
            path: "/srv/policy.yaml".into(),
        },
        waves: ["canary", "ten-percent", "rest"]
            .iter()
            .zip(bounds)
            .map(|(name, (from, to))| PlannedWave {
                name: (*name).into(),
                hosts: (from..to.min(hosts)).map(host_name).collect(),
            })
            .filter(|w| !w.hosts.is_empty())
            .collect(),
        max_unavailable: MAX_UNAVAILABLE,
        error_budget: 1_000,
        between_waves: BetweenWaves::default(),
        windows: vec![],
    }
}

fn record(name: &str, status: &str, achieved: Option<&str>) -> HostRecord {
    HostRecord {
        name: name.into(),
        version: "0.1.0".into(),
        state: Some(status.into()),
        status: Some(status.into()),
        achieved: achieved.map(str::to_owned),
        rollout: Some(ROLLOUT.into()),
        updated_ms: now_ms(),
        ..HostRecord::default()
    }
}

// ---- etcd's side: /metrics and /proc ----

/// One member's `/metrics`, the series this bench reads, summed over
/// labels except the gRPC method.
fn scrape(endpoint: &str) -> BTreeMap<String, f64> {
    let addr = endpoint.trim_start_matches("http://");
    let mut out = BTreeMap::new();
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return out;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    );
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        let key = match name {
            "etcd_server_proposals_committed_total"
            | "etcd_server_proposals_applied_total"
            | "etcd_server_proposals_failed_total"
            | "etcd_mvcc_db_total_size_in_bytes"
            | "etcd_mvcc_db_total_size_in_use_in_bytes"
            | "etcd_debugging_mvcc_keys_total"
            | "etcd_debugging_mvcc_watcher_total"
            | "etcd_debugging_mvcc_events_total"
            | "etcd_network_client_grpc_received_bytes_total"
            | "etcd_network_client_grpc_sent_bytes_total"
            | "etcd_server_is_leader"
            | "etcd_disk_backend_commit_duration_seconds_count"
            | "etcd_disk_backend_commit_duration_seconds_sum"
            | "etcd_disk_wal_fsync_duration_seconds_count"
            | "etcd_disk_wal_fsync_duration_seconds_sum" => name.to_owned(),
            "grpc_server_handled_total" | "grpc_server_msg_received_total" => {
                let method = labels
                    .split(',')
                    .find_map(|l| l.strip_prefix("grpc_method=\""))
                    .map(|m| m.trim_end_matches(['"', '}']))
                    .unwrap_or("?");
                format!("{name}/{method}")
            }
            _ => continue,
        };
        *out.entry(key).or_default() += value;
    }
    out
}

fn scrape_all(cluster: &LocalCluster) -> Vec<BTreeMap<String, f64>> {
    cluster.endpoints().iter().map(|e| scrape(e)).collect()
}

fn delta(
    before: &[BTreeMap<String, f64>],
    after: &[BTreeMap<String, f64>],
) -> Vec<BTreeMap<String, f64>> {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| {
            a.iter()
                .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0)))
                .filter(|(_, v)| *v != 0.0)
                .collect()
        })
        .collect()
}

/// utime + stime of a process, in clock ticks, and its RSS in KiB.
fn proc_sample(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())?;
    Some((ticks, rss))
}

#[derive(Default, Clone, Copy, Debug)]
struct Load {
    /// Highest CPU over one 250 ms sample, in % of one core.
    peak_cpu: f64,
    /// CPU seconds over the phase.
    cpu_s: f64,
    peak_rss_kib: u64,
}

/// Samples every process in `pids` (the members, then this process)
/// every 250 ms into the phase `phase` says, until `stop`.
fn sampler(
    pids: Vec<u32>,
    phase: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<BTreeMap<String, Vec<Load>>> {
    std::thread::spawn(move || {
        let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let mut loads: BTreeMap<String, Vec<Load>> = BTreeMap::new();
        let mut last: Vec<Option<(u64, u64)>> = pids.iter().map(|p| proc_sample(*p)).collect();
        let mut at = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(250));
            let now = Instant::now();
            let dt = now.duration_since(at).as_secs_f64();
            at = now;
            let phase = phase.lock().unwrap().clone();
            let entry = loads
                .entry(phase)
                .or_insert_with(|| vec![Load::default(); pids.len()]);
            for (i, pid) in pids.iter().enumerate() {
                let sample = proc_sample(*pid);
                if let (Some((t0, _)), Some((t1, rss))) = (last[i], sample) {
                    let cpu_s = (t1 - t0) as f64 / tick;
                    let l = &mut entry[i];
                    l.cpu_s += cpu_s;
                    l.peak_cpu = l.peak_cpu.max(100.0 * cpu_s / dt);
                    l.peak_rss_kib = l.peak_rss_kib.max(rss);
                }
                last[i] = sample;
            }
        }
        loads
    })
}

// ---- the hosts ----

#[derive(Default)]
struct Tally {
    /// Local decisions that said Start, and the tries the chance allowed.
    local_start: AtomicU64,
    tries: AtomicU64,
    lost: AtomicU64,
    errors: AtomicU64,
    done: AtomicU64,
}

enum Wake {
    Seen(RolloutWatch),
    Naive(tokio::sync::watch::Receiver<i64>),
}

async fn upgrade(fleet: &Fleet, registration: &Registration, host: &str, config: &Config) {
    let _ = registration.update(record(host, "upgrading", None)).await;
    tokio::time::sleep(config.upgrade).await;
    loop {
        match fleet
            .end(ROLLOUT, host, Outcome::Committed, Some("session"), now_ms())
            .await
        {
            Ok(_) => break,
            Err(e) => {
                eprintln!("{host}: end: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let _ = registration
        .update(record(host, "idle", Some("policy-digest")))
        .await;
}

fn jittered(d: Duration) -> Duration {
    d.mul_f64(0.5 + fastrand::f64())
}

async fn host(
    fleet: Fleet,
    registration: Registration,
    name: String,
    mut wake: Wake,
    config: Config,
    tally: Arc<Tally>,
) -> Registration {
    loop {
        let outcome = match &mut wake {
            Wake::Seen(watch) => {
                let seen = watch.current();
                let now = now_ms();
                match decide::may_start(&seen.plan, &seen.state, &name, false, now, true) {
                    Decision::Start => {
                        tally.local_start.fetch_add(1, Ordering::Relaxed);
                        if fastrand::f64()
                            < decide::try_chance(&seen.plan, &seen.state, &name, config.spread)
                        {
                            tally.tries.fetch_add(1, Ordering::Relaxed);
                            match fleet.try_start_seen(ROLLOUT, &name, &seen, now, true).await {
                                Ok(Some(d)) => Some(d),
                                Ok(None) => {
                                    tally.lost.fetch_add(1, Ordering::Relaxed);
                                    None
                                }
                                Err(e) => {
                                    tally.errors.fetch_add(1, Ordering::Relaxed);
                                    eprintln!("{name}: {e}");
                                    None
                                }
                            }
                        } else {
                            None
                        }
                    }
                    other => Some(other),
                }
            }
            Wake::Naive(_) => match fleet.try_start(ROLLOUT, &name, now_ms(), true).await {
                Ok(d) => Some(d),
                Err(e) => {
                    tally.errors.fetch_add(1, Ordering::Relaxed);
                    eprintln!("{name}: {e}");
                    None
                }
            },
        };
        match outcome {
            Some(Decision::Start | Decision::AlreadyHolds) => {
                upgrade(&fleet, &registration, &name, &config).await;
                break;
            }
            Some(Decision::Ended | Decision::NotInRollout) => break,
            Some(Decision::Wait(_)) | None => {}
        }
        match &mut wake {
            // Decisions on the local copy cost no request: a timer.
            Wake::Seen(_) => tokio::time::sleep(jittered(config.check)).await,
            Wake::Naive(rx) => {
                tokio::select! {
                    _ = rx.changed() => {}
                    _ = tokio::time::sleep(jittered(Duration::from_secs(2))) => {}
                }
            }
        }
    }
    tally.done.fetch_add(1, Ordering::Relaxed);
    registration
}

fn sum_requests(fleets: &[Fleet]) -> Requests {
    fleets
        .iter()
        .fold(Requests::default(), |acc, f| acc.add(&f.requests()))
}

fn minus(a: &Requests, b: &Requests) -> Requests {
    Requests {
        range: a.range - b.range,
        snapshot: a.snapshot - b.snapshot,
        plan_read: a.plan_read - b.plan_read,
        cas: a.cas - b.cas,
        txn: a.txn - b.txn,
        lease_grant: a.lease_grant - b.lease_grant,
        lease_revoke: a.lease_revoke - b.lease_revoke,
        keep_alive_open: a.keep_alive_open - b.keep_alive_open,
        keep_alive: a.keep_alive - b.keep_alive,
        watch_open: a.watch_open - b.watch_open,
        cas_conflicts: a.cas_conflicts - b.cas_conflicts,
        watch_responses: a.watch_responses - b.watch_responses,
    }
}

fn per_host(r: &Requests, hosts: usize) -> serde_json::Value {
    let v = serde_json::to_value(r).unwrap();
    let mut out = serde_json::Map::new();
    for (k, n) in v.as_object().unwrap() {
        out.insert(
            k.clone(),
            json!((n.as_u64().unwrap() as f64 / hosts as f64 * 1000.0).round() / 1000.0),
        );
    }
    out.insert(
        "total".into(),
        json!((r.total() as f64 / hosts as f64 * 1000.0).round() / 1000.0),
    );
    serde_json::Value::Object(out)
}

async fn run(config: Config) {
    let n = config.hosts;
    println!(
        "fleet_scale: {n} hosts, {} clients, upgrade {:?}, mode {}, limit {MAX_UNAVAILABLE}",
        config.clients,
        config.upgrade,
        if config.naive { "naive" } else { "seen" }
    );
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(3, dir.path()).await.unwrap();
    let mut pids: Vec<u32> = cluster.pids().into_iter().map(Option::unwrap).collect();
    pids.push(std::process::id());
    let phase = Arc::new(Mutex::new(String::from("start")));
    let stop = Arc::new(AtomicBool::new(false));
    let sampling = sampler(pids, phase.clone(), stop.clone());
    let set_phase = |p: &str| *phase.lock().unwrap() = p.to_owned();

    let mut fleets = Vec::new();
    for _ in 0..config.clients {
        fleets.push(
            Fleet::connect(FleetConfig {
                endpoints: cluster.endpoints(),
                prefix: "/duplex".into(),
                timeout: Duration::from_secs(10),
            })
            .await
            .unwrap(),
        );
    }
    let metrics_start = scrape_all(&cluster);

    // Registration: every host under its own lease, kept alive.
    set_phase("register");
    let started = Instant::now();
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let fleet = fleets[i % fleets.len()].clone();
        let limit = limit.clone();
        set.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let name = host_name(i);
            loop {
                match fleet.register(record(&name, "idle", None), LEASE_TTL).await {
                    Ok(r) => return (i, r),
                    Err(e) => {
                        eprintln!("{name}: register: {e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
    }
    let mut registrations: Vec<Option<Registration>> = (0..n).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, r) = joined.unwrap();
        registrations[i] = Some(r);
    }
    let register_s = started.elapsed().as_secs_f64();
    let requests_registered = sum_requests(&fleets);
    let metrics_registered = scrape_all(&cluster);
    println!("registered {n} hosts in {register_s:.1} s");

    // At rest: only the keep-alives.
    set_phase("idle");
    tokio::time::sleep(config.idle).await;
    let requests_idle = minus(&sum_requests(&fleets), &requests_registered);
    let metrics_idle = scrape_all(&cluster);

    // The rollout.
    set_phase("rollout");
    let plan = plan(n);
    let started = Instant::now();
    let requests_before = sum_requests(&fleets);
    fleets[0].create_rollout(&plan).await.unwrap();
    let tally = Arc::new(Tally::default());
    let mut wakes: Vec<Wake> = Vec::new();
    let mut keep = Vec::new();
    for fleet in &fleets {
        if config.naive {
            let mut changes = fleet.watch_rollouts().await.unwrap();
            let (tx, rx) = tokio::sync::watch::channel(0i64);
            keep.push(tokio::spawn(async move {
                while let Ok(rev) = changes.changed().await {
                    if tx.send(rev).is_err() {
                        break;
                    }
                }
            }));
            wakes.push(Wake::Naive(rx));
        } else {
            wakes.push(Wake::Seen(
                fleet
                    .watch_rollout(ROLLOUT, Duration::from_secs(30))
                    .await
                    .unwrap(),
            ));
        }
    }
    let mut hosts = tokio::task::JoinSet::new();
    for (i, registration) in registrations.iter_mut().enumerate() {
        let c = i % fleets.len();
        let wake = match &wakes[c] {
            Wake::Seen(w) => Wake::Seen(w.clone()),
            Wake::Naive(rx) => Wake::Naive(rx.clone()),
        };
        hosts.spawn(host(
            fleets[c].clone(),
            registration.take().unwrap(),
            host_name(i),
            wake,
            config.clone(),
            tally.clone(),
        ));
    }
    let progress = {
        let tally = tally.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(10)).await;
                println!(
                    "  {:>6.0} s: {} of {n} hosts done",
                    started.elapsed().as_secs_f64(),
                    tally.done.load(Ordering::Relaxed)
                );
            }
        })
    };
    let mut kept = Vec::new();
    while let Some(joined) = hosts.join_next().await {
        kept.push(joined.unwrap());
    }
    let rollout_s = started.elapsed().as_secs_f64();
    progress.abort();
    let requests_rollout = minus(&sum_requests(&fleets), &requests_before);
    let metrics_rollout = scrape_all(&cluster);
    set_phase("check");
    drop(wakes);
    for k in keep {
        k.abort();
    }
    println!("rollout of {n} hosts: {rollout_s:.1} s");

    // Correctness, from etcd.
    let checker = &fleets[0];
    let history = checker.state_history(ROLLOUT).await.unwrap();
    let max_holders = history
        .iter()
        .map(|(_, s)| s.holders.len())
        .max()
        .unwrap_or(0);
    assert!(
        max_holders <= MAX_UNAVAILABLE as usize,
        "{max_holders} holders at once"
    );
    let state_bytes_max = history
        .iter()
        .map(|(_, s)| serde_json::to_vec(s).unwrap().len())
        .max()
        .unwrap_or(0);
    let results = checker.results(ROLLOUT).await.unwrap();
    assert_eq!(results.len(), n, "every host has exactly one result");
    assert!(results.values().all(|r| r.outcome == Outcome::Committed));
    let view = checker.rollout(ROLLOUT).await.unwrap().unwrap();
    assert!(view.state.finished(&view.plan) && view.state.holders.is_empty());
    // Waves in order: each wave's first start after the previous wave's end.
    let plan_bytes = serde_json::to_vec(&view.plan).unwrap().len();
    println!(
        "checked: {} state versions, at most {max_holders} holders, {n} results (committed)",
        history.len()
    );
    stop.store(true, Ordering::Relaxed);
    let loads = sampling.join().unwrap();
    drop(kept);

    // ---- the figures ----
    let d_register = delta(&metrics_start, &metrics_registered);
    let d_idle = delta(&metrics_registered, &metrics_idle);
    let d_rollout = delta(&metrics_idle, &metrics_rollout);
    let sum = |d: &[BTreeMap<String, f64>], k: &str| -> f64 {
        d.iter().map(|m| m.get(k).copied().unwrap_or(0.0)).sum()
    };
    let leader = |d: &[BTreeMap<String, f64>], k: &str| -> f64 {
        // Proposals are committed on every member: the leader's count.
        d.iter()
            .map(|m| m.get(k).copied().unwrap_or(0.0))
            .fold(0.0, f64::max)
    };
    let grpc_by_method = |d: &[BTreeMap<String, f64>]| -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for m in d {
            for (k, v) in m {
                if let Some(method) = k.strip_prefix("grpc_server_msg_received_total/") {
                    *out.entry(method.to_owned()).or_default() += v;
                }
            }
        }
        out
    };
    let db = |m: &[BTreeMap<String, f64>], k: &str| -> f64 {
        m.iter()
            .map(|m| m.get(k).copied().unwrap_or(0.0))
            .fold(0.0, f64::max)
    };
    let load_json = |phase: &str| -> serde_json::Value {
        let Some(l) = loads.get(phase) else {
            return json!(null);
        };
        json!(
            l.iter()
                .enumerate()
                .map(|(i, l)| json!({
                    "process": if i < 3 { format!("etcd m{i}") } else { "bench (the simulated hosts)".into() },
                    "peak_cpu_percent": l.peak_cpu.round(),
                    "cpu_seconds": (l.cpu_s * 10.0).round() / 10.0,
                    "peak_rss_mib": (l.peak_rss_kib as f64 / 1024.0).round(),
                }))
                .collect::<Vec<_>>()
        )
    };
    let phase_json = |d: &[BTreeMap<String, f64>], secs: f64| {
        let proposals = leader(d, "etcd_server_proposals_committed_total");
        json!({
            "seconds": (secs * 10.0).round() / 10.0,
            "proposals_committed": proposals,
            "proposals_per_second": (proposals / secs).round(),
            "grpc_messages_received_by_method": grpc_by_method(d),
            "grpc_received_mib": (sum(d, "etcd_network_client_grpc_received_bytes_total") / 1048576.0 * 10.0).round() / 10.0,
            "grpc_sent_mib": (sum(d, "etcd_network_client_grpc_sent_bytes_total") / 1048576.0 * 10.0).round() / 10.0,
            "wal_fsyncs_leader": leader(d, "etcd_disk_wal_fsync_duration_seconds_count"),
        })
    };
    let idle_s = config.idle.as_secs_f64();
    let report = json!({
        "hosts": n,
        "clients": config.clients,
        "mode": if config.naive { "naive" } else { "seen" },
        "upgrade_ms": config.upgrade.as_millis() as u64,
        "check_ms": config.check.as_millis() as u64,
        "spread": config.spread,
        "max_unavailable": MAX_UNAVAILABLE,
        "waves": view.plan.waves.iter().map(|w| w.hosts.len()).collect::<Vec<_>>(),
        "register": {
            "seconds": (register_s * 10.0).round() / 10.0,
            "requests_per_host": per_host(&requests_registered, n),
            "etcd": phase_json(&d_register, register_s),
            "load": load_json("register"),
        },
        "idle": {
            "requests_per_host_per_second": per_host(&requests_idle, (n as f64 * idle_s) as usize),
            "etcd": phase_json(&d_idle, idle_s),
            "load": load_json("idle"),
        },
        "rollout": {
            "wall_seconds": (rollout_s * 10.0).round() / 10.0,
            "hosts_per_second": (n as f64 / rollout_s).round(),
            "requests": requests_rollout,
            "requests_per_host": per_host(&requests_rollout, n),
            "local_start_decisions": tally.local_start.load(Ordering::Relaxed),
            "tries": tally.tries.load(Ordering::Relaxed),
            "lost_races": tally.lost.load(Ordering::Relaxed),
            "errors": tally.errors.load(Ordering::Relaxed),
            "etcd": phase_json(&d_rollout, rollout_s),
            "load": load_json("rollout"),
            "state_versions": history.len(),
            "max_holders": max_holders,
            "state_bytes_max": state_bytes_max,
            "plan_bytes": plan_bytes,
        },
        "db_total_mib": (db(&metrics_rollout, "etcd_mvcc_db_total_size_in_bytes") / 1048576.0 * 10.0).round() / 10.0,
        "db_in_use_mib": (db(&metrics_rollout, "etcd_mvcc_db_total_size_in_use_in_bytes") / 1048576.0 * 10.0).round() / 10.0,
        "keys": db(&metrics_rollout, "etcd_debugging_mvcc_keys_total"),
    });
    let text = serde_json::to_string_pretty(&report).unwrap();
    println!("{text}");
    summary(&report);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fleet-scale.json");
    std::fs::write(&out, text + "\n").unwrap();
    println!("written to {}", out.display());
}

fn summary(r: &serde_json::Value) {
    let g = |p: &str| r.pointer(p).cloned().unwrap_or(json!(null));
    println!();
    println!("| what | figure |");
    println!("|---|---|");
    println!("| hosts / clients | {} / {} |", g("/hosts"), g("/clients"));
    println!("| registration | {} s |", g("/register/seconds"));
    println!(
        "| rollout wall time | {} s ({} hosts/s) |",
        g("/rollout/wall_seconds"),
        g("/rollout/hosts_per_second")
    );
    println!(
        "| requests per host (rollout) | {} |",
        g("/rollout/requests_per_host")
    );
    println!(
        "| CAS conflicts | {} |",
        g("/rollout/requests/cas_conflicts")
    );
    println!(
        "| etcd proposals (rollout) | {} ({}/s) |",
        g("/rollout/etcd/proposals_committed"),
        g("/rollout/etcd/proposals_per_second")
    );
    println!(
        "| keep-alives at rest | {} per host per s |",
        g("/idle/requests_per_host_per_second/keep_alive")
    );
    println!("| etcd load (rollout) | {} |", g("/rollout/load"));
    println!(
        "| db | {} MiB ({} MiB in use) |",
        g("/db_total_mib"),
        g("/db_in_use_mib")
    );
}
