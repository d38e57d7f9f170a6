//! The fleet verbs' output and refusals, locked by golden files (one test
//! per file), against a real etcd (one member on loopback) whose keys the
//! test writes through `duplex-fleet` as agents would.

#[path = "support/fleet_agents.rs"]
mod fleet_agents;
mod support;

use duplex_fleet::local_cluster::LocalCluster;
use duplex_fleet::{Fleet, FleetConfig, HostRecord, Outcome};
use fleet_agents::{duplex_fleet, runtime};
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{assert_golden, repo_root};

fn golden(name: &str) -> PathBuf {
    repo_root().join("tests/data/fleet").join(name)
}

/// What varies between runs, made stable: the checkout's path, etcd's
/// port, and durations in seconds.
fn masked(text: &str, endpoint: &str) -> String {
    let root = repo_root().display().to_string();
    let mut out = text.replace(&root, "<repo>").replace(endpoint, "<etcd>");
    // Digests of documents that name the checkout's path.
    let mut hex = 0;
    let mut kept = String::new();
    for c in out.chars() {
        kept.push(c);
        hex = if c.is_ascii_hexdigit() { hex + 1 } else { 0 };
        if hex == 64 {
            kept.truncate(kept.len() - 64);
            kept.push_str("<sha256>");
            hex = 0;
        }
    }
    out = kept;
    while let Some(i) = out.find(" for ") {
        let rest = &out[i + 5..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 || !rest[digits..].starts_with('s') {
            break;
        }
        out = format!("{} for Ns{}", &out[..i], &rest[digits + 1..]);
    }
    out
}

struct Fixture {
    _dir: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    _cluster: LocalCluster,
    endpoint: String,
    fleet: Fleet,
}

/// One etcd member; six sim hosts registered as their agents would
/// (ft-06 no longer alive); the example rollout applied.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let cluster = rt
        .block_on(LocalCluster::start(1, &dir.path().join("etcd")))
        .unwrap();
    let endpoint = cluster.endpoint(0);
    let fleet = rt
        .block_on(Fleet::connect(FleetConfig::new(vec![endpoint.clone()])))
        .unwrap();
    for i in 1..=6 {
        let record = HostRecord {
            name: format!("ft-0{i}"),
            labels: [("fleet".to_string(), "sim".to_string())].into(),
            version: "0.1.0".into(),
            state: Some("Idle".into()),
            status: Some("Ready".into()),
            partner: Some("Up".into()),
            last_event: Some("registered".into()),
            ..Default::default()
        };
        let registration = rt
            .block_on(fleet.register(record, Duration::from_secs(30)))
            .unwrap();
        if i == 6 {
            rt.block_on(registration.close()).unwrap();
        } else {
            std::mem::forget(registration);
        }
    }
    Fixture {
        _dir: dir,
        rt,
        _cluster: cluster,
        endpoint,
        fleet,
    }
}

fn example() -> String {
    repo_root()
        .join("policies/fleet-rollout.yaml")
        .display()
        .to_string()
}

#[test]
fn rollout_apply_says_what_it_stored() {
    let f = fixture();
    let applied = duplex_fleet(&f.endpoint, &["rollout", "apply", &example()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let again = duplex_fleet(&f.endpoint, &["rollout", "apply", &example()]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_golden(
        &golden("apply.expected"),
        &masked(&format!("{}{}", applied.stdout, again.stdout), &f.endpoint),
    );
}

#[test]
fn rollout_status_shows_waves_slots_budget_and_releases() {
    let f = fixture();
    assert_eq!(
        duplex_fleet(&f.endpoint, &["rollout", "apply", &example()]).code,
        0
    );
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    // The canary commits; in the next wave two hosts take slots, one of
    // them is released by an operator; the rollout is paused.
    let r = "fleet-demo";
    f.rt.block_on(f.fleet.try_start(r, "ft-01", now(), true))
        .unwrap();
    f.rt.block_on(
        f.fleet
            .end(r, "ft-01", Outcome::Committed, Some("000001-s"), now()),
    )
    .unwrap();
    let later = now() + 10_000; // past the 5 s pause between waves
    f.rt.block_on(f.fleet.try_start(r, "ft-02", later, true))
        .unwrap();
    f.rt.block_on(f.fleet.try_start(r, "ft-03", later, true))
        .unwrap();
    f.rt.block_on(f.fleet.record_session(r, "ft-02", "000007-s"))
        .unwrap();
    let released = duplex_fleet(
        &f.endpoint,
        &[
            "fleet",
            "release",
            "ft-03",
            "--reason",
            "ft-03 was replaced",
        ],
    );
    let paused = duplex_fleet(
        &f.endpoint,
        &["rollout", "pause", r, "--reason", "change freeze"],
    );
    let status = duplex_fleet(&f.endpoint, &["rollout", "status", &example()]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_golden(
        &golden("status.expected"),
        &masked(
            &format!("{}{}{}", released.stdout, paused.stdout, status.stdout),
            &f.endpoint,
        ),
    );
}

#[test]
fn fleet_status_lists_every_host() {
    let f = fixture();
    assert_eq!(
        duplex_fleet(&f.endpoint, &["rollout", "apply", &example()]).code,
        0
    );
    let status = duplex_fleet(&f.endpoint, &["fleet", "status"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    assert_golden(
        &golden("fleet-status.expected"),
        &masked(&status.stdout, &f.endpoint),
    );
}

#[test]
fn fleet_refusals_name_what_is_wrong() {
    let f = fixture();
    let mut out = String::new();
    let mut case = |what: &str, endpoint: &str, args: &[&str]| {
        let r = duplex_fleet(endpoint, args);
        out.push_str(&format!(
            "$ {what}\nexit {}\n{}",
            r.code,
            masked(&r.stderr, &f.endpoint)
        ));
    };
    case(
        "status of a rollout nobody applied",
        &f.endpoint,
        &["rollout", "status", "no-such-rollout"],
    );
    case(
        "release of a host holding no slot",
        &f.endpoint,
        &["fleet", "release", "ft-01", "--reason", "gone"],
    );
    case(
        "release without a reason",
        &f.endpoint,
        &["fleet", "release", "ft-01", "--reason", " "],
    );
    case(
        "an endpoint that is not a URL",
        "127.0.0.1:2379",
        &["fleet", "status"],
    );
    case(
        "a rollout file that does not exist",
        &f.endpoint,
        &["rollout", "apply", "no/such/rollout.yaml"],
    );
    let applied = duplex_fleet(&f.endpoint, &["rollout", "apply", &example()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    // The same name, another document: refused, naming both digests.
    let other = Path::new(&f._dir.path()).join("fleet-rollout.yaml");
    std::fs::write(
        &other,
        std::fs::read_to_string(example())
            .unwrap()
            .replace("maxUnavailable: 2", "maxUnavailable: 3")
            .replace(
                "path: fleet-demo.yaml",
                &format!(
                    "path: {}",
                    repo_root().join("policies/fleet-demo.yaml").display()
                ),
            ),
    )
    .unwrap();
    let r = duplex_fleet(&f.endpoint, &["rollout", "apply", other.to_str().unwrap()]);
    out.push_str(&format!(
        "$ another document under an applied rollout's name\nexit {}\n{}",
        r.code,
        masked(&r.stderr, &f.endpoint)
    ));
    assert_golden(&golden("refusals.expected"), &out);
}
