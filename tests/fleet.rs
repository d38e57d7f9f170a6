//! The fleet on a real etcd cluster (three members on loopback) with
//! `duplex agent --fleet` processes on sim targets, driven as an operator
//! drives it: `duplex rollout apply`, `duplex fleet status`, `duplex fleet
//! release`. The limit is checked at every revision of the rollout's state
//! in etcd and, independently, from the hosts' own journals; agents and
//! etcd members are killed with SIGKILL along the way.

#[path = "support/fleet_agents.rs"]
mod fleet_agents;
mod support;

use duplex_fleet::{Outcome, RolloutState};
use fleet_agents::*;
use std::collections::BTreeMap;
use std::time::Duration;
use support::fleet_history::{most_at_once, out_of_service};

fn write_rollout(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("rollout.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn twenty_hosts_roll_out_in_waves_within_the_limit_through_kills_of_agents_and_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints();
    let fleet = etcd.fleet();
    let policies = policy_dir(dir.path(), "policies/demo.yaml", 100);
    let mut hosts: Vec<Host> = (1..=20)
        .map(|i| Host::new(dir.path(), &format!("ft-{i:02}"), &["site=lab"]))
        .collect();
    etcd.start_registered(&fleet, &mut hosts);
    let rollout = write_rollout(
        &policies,
        "apiVersion: duplex.dev/v1alpha1
kind: Rollout
metadata: { name: lab-2-4-1 }
spec:
  policy: { path: p.yaml }
  hosts:
    selectors: [ { matchLabels: { site: lab } } ]
  waves:
    - { name: canary, count: 1 }
    - { name: half, percent: 50 }
    - { name: rest }
  maxUnavailable: 3
  errorBudget: 2
",
    );
    let applied = duplex_fleet(&endpoints, &["rollout", "apply", rollout.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert!(
        applied
            .stdout
            .contains("20 hosts in 3 waves (canary 1, half 10, rest 9)"),
        "{}",
        applied.stdout
    );

    let results = |etcd: &Etcd| {
        etcd.rt
            .block_on(fleet.results("lab-2-4-1"))
            .unwrap_or_default()
    };
    let holders = |etcd: &Etcd| {
        etcd.rt
            .block_on(fleet.rollout("lab-2-4-1"))
            .ok()
            .flatten()
            .map(|v| v.state.holders.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // An agent killed mid-upgrade in the second wave keeps its slot while
    // it is away, and finishes when it is back.
    wait_until(
        "a host of the second wave holds a slot",
        Duration::from_secs(120),
        || results(&etcd).len() == 1 && !holders(&etcd).is_empty(),
        &hosts,
    );
    let victim = holders(&etcd)[0].clone();
    let v = hosts.iter().position(|h| h.name == victim).unwrap();
    hosts[v].kill();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        holders(&etcd).contains(&victim),
        "a dead holder keeps its slot"
    );
    hosts[v].start(&endpoints);

    // One etcd member dies and comes back.
    etcd.cluster.kill_member(0);
    std::thread::sleep(Duration::from_secs(3));
    etcd.rt.block_on(etcd.cluster.restart_member(0)).unwrap();

    // The whole cluster dies for a while: hosts in flight go on, nothing
    // starts; when it is back the rollout goes on.
    wait_until(
        "half the hosts ended",
        Duration::from_secs(180),
        || results(&etcd).len() >= 10,
        &hosts,
    );
    etcd.cluster.kill_all();
    // Another agent killed while etcd is away.
    hosts[15].kill();
    std::thread::sleep(Duration::from_secs(6));
    hosts[15].start(&endpoints);
    etcd.rt.block_on(etcd.cluster.restart_all()).unwrap();

    // Until the end: every few seconds an agent at random is killed with
    // SIGKILL, wherever it is (waiting, taking a slot, mid-session,
    // reporting its end), and started again a moment later.
    let seed = fastrand::u64(..);
    eprintln!("chaos seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let started = std::time::Instant::now();
    let mut killed = 0;
    while results(&etcd).len() < 20 {
        if started.elapsed() > Duration::from_secs(300) {
            for h in &hosts {
                eprintln!("--- {} ---\n{}", h.name, h.log());
            }
            panic!("never: every host ended ({} did)", results(&etcd).len());
        }
        std::thread::sleep(Duration::from_millis(rng.u64(2000..5000)));
        let k = rng.usize(..hosts.len());
        hosts[k].kill();
        killed += 1;
        std::thread::sleep(Duration::from_millis(rng.u64(200..1500)));
        hosts[k].start(&endpoints);
    }
    eprintln!("{killed} agents killed at random");
    let results = results(&etcd);
    assert!(
        results.values().all(|r| r.outcome == Outcome::Committed),
        "{results:?}"
    );

    // The limit and the waves, at every revision of the state in etcd.
    let history: Vec<(i64, RolloutState)> =
        etcd.rt.block_on(fleet.state_history("lab-2-4-1")).unwrap();
    let view = etcd
        .rt
        .block_on(fleet.rollout("lab-2-4-1"))
        .unwrap()
        .unwrap();
    let plan = view.plan;
    assert!(history.len() > 40, "{} revisions", history.len());
    let mut slots_taken: BTreeMap<String, u32> = BTreeMap::new();
    let mut before: Option<&RolloutState> = None;
    for (revision, state) in &history {
        assert!(
            state.holders.len() <= 3,
            "revision {revision}: {} holders",
            state.holders.len()
        );
        for (host, holder) in &state.holders {
            assert!(
                (0..holder.wave).all(|w| state.wave_ended(&plan, w)),
                "revision {revision}: {host} of wave {} holds a slot before the waves before it ended",
                holder.wave
            );
            if before.is_none_or(|b| !b.holders.contains_key(host)) {
                *slots_taken.entry(host.clone()).or_default() += 1;
            }
        }
        before = Some(state);
    }
    assert_eq!(slots_taken.len(), 20, "{slots_taken:?}");
    assert!(
        slots_taken.values().all(|n| *n == 1),
        "a slot taken twice: {slots_taken:?}"
    );

    // The hosts' own journals: never more than 3 out of service at once,
    // and each host out of service only while it held its slot.
    let mut intervals = Vec::new();
    for h in &hosts {
        let mine = out_of_service(&h.name, &h.state());
        assert_eq!(mine.len(), 1, "{}: {mine:?}", h.name);
        let taken = history
            .iter()
            .find_map(|(_, s)| s.holders.get(&h.name).map(|x| x.since_ms))
            .unwrap();
        let freed = results[&h.name].at_ms;
        assert!(
            taken <= mine[0].from_ms && mine[0].to_ms <= freed,
            "{} was out of service ({}..{}) outside its slot ({taken}..{freed})",
            h.name,
            mine[0].from_ms,
            mine[0].to_ms
        );
        intervals.extend(mine);
    }
    let most = most_at_once(&intervals);
    assert!((1..=3).contains(&most), "{most} out of service at once");

    // `duplex fleet status` shows every host in the rollout (an agent just
    // started again says so once it has read the fleet).
    wait_until(
        "fleet status shows every host in the rollout",
        Duration::from_secs(30),
        || {
            let status = duplex_fleet(&endpoints, &["fleet", "status"]);
            assert_eq!(status.code, 0, "{}", status.stderr);
            hosts.iter().all(|h| {
                status
                    .stdout
                    .lines()
                    .any(|l| l.starts_with(&format!("{} ", h.name)) && l.contains("lab-2-4-1"))
            })
        },
        &hosts,
    );
    let shown = duplex_fleet(&endpoints, &["rollout", "status", "lab-2-4-1"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    assert!(
        shown.stdout.contains("20: 20 committed, 0 aborted"),
        "{}",
        shown.stdout
    );
}

#[test]
fn the_error_budget_halts_a_rollout_and_an_operator_release_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints();
    let fleet = etcd.fleet();
    // The policy waits for an approval after the split: a host holds its
    // slot until someone acts.
    let policies = policy_dir(dir.path(), "policies/approvals.yaml", 100);
    let mut hosts: Vec<Host> = (1..=5)
        .map(|i| Host::new(dir.path(), &format!("db-{i}"), &[]))
        .collect();
    for h in &mut hosts {
        h.start(&endpoints);
    }
    let rollout = write_rollout(
        &policies,
        "apiVersion: duplex.dev/v1alpha1
kind: Rollout
metadata: { name: db-upgrade }
spec:
  policy: { path: p.yaml }
  hosts: { names: [db-1, db-2, db-3, db-4, db-5] }
  maxUnavailable: 1
  errorBudget: 2
",
    );
    let applied = duplex_fleet(&endpoints, &["rollout", "apply", rollout.to_str().unwrap()]);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let holders = || {
        etcd.rt
            .block_on(fleet.rollout("db-upgrade"))
            .ok()
            .flatten()
            .map(|v| v.state)
            .unwrap_or_default()
    };
    wait_until(
        "a host holds the slot",
        Duration::from_secs(60),
        || !holders().holders.is_empty(),
        &hosts,
    );
    // Its agent dies (its session waiting for an approval); an operator
    // frees its slot, with a reason.
    let first = holders().holders.keys().next().unwrap().clone();
    let i = hosts.iter().position(|h| h.name == first).unwrap();
    wait_until(
        "the first host's session waits for its approval",
        Duration::from_secs(60),
        || {
            hosts[i]
                .status()
                .is_some_and(|v| !v["status"]["session"]["waitingFor"].is_null())
        },
        &hosts,
    );
    hosts[i].kill();
    let refused = duplex_fleet(&endpoints, &["fleet", "release", &first, "--reason", ""]);
    assert_ne!(refused.code, 0, "an empty reason is refused");
    let released = duplex_fleet(
        &endpoints,
        &[
            "fleet",
            "release",
            &first,
            "--reason",
            "the host was replaced",
        ],
    );
    assert_eq!(released.code, 0, "{}", released.stderr);
    let state = holders();
    assert_eq!(state.releases.len(), 1);
    assert_eq!(state.releases[0].host, first);
    assert_eq!(state.releases[0].reason, "the host was replaced");
    let result = &etcd.rt.block_on(fleet.results("db-upgrade")).unwrap()[&first];
    assert_eq!(result.outcome, Outcome::Released);

    // The next host takes the slot; its session is aborted by a person:
    // the budget (a release and an abort) is spent and the rollout halts.
    wait_until(
        "a second host holds the slot",
        Duration::from_secs(60),
        || holders().holders.keys().any(|h| h != &first),
        &hosts,
    );
    let second = holders().holders.keys().next().unwrap().clone();
    let j = hosts.iter().position(|h| h.name == second).unwrap();
    wait_until(
        "the second host waits for its approval",
        Duration::from_secs(60),
        || {
            hosts[j].status().is_some_and(|v| {
                v["status"]["session"]["waitingFor"].is_object()
                    || !v["status"]["session"]["waitingFor"].is_null()
            })
        },
        &hosts,
    );
    let token = hosts[j].token();
    let aborted = ureq::post(&format!(
        "http://127.0.0.1:{}/v1/commands/abort",
        hosts[j].port
    ))
    .header("authorization", &format!("Bearer {token}"))
    .header("content-type", "application/json")
    .send(r#"{"by":"ops","reason":"the database looks wrong"}"#);
    assert!(aborted.is_ok(), "{aborted:?}");
    wait_until(
        "the rollout halts",
        Duration::from_secs(60),
        || holders().halted.is_some() && holders().holders.is_empty(),
        &hosts,
    );
    // Nobody else starts.
    std::thread::sleep(Duration::from_secs(4));
    let results = etcd.rt.block_on(fleet.results("db-upgrade")).unwrap();
    assert_eq!(results.len(), 2, "{results:?}");
    assert_eq!(results[&second].outcome, Outcome::Aborted);
    for h in hosts.iter().filter(|h| h.name != first && h.name != second) {
        let v = h.status().unwrap();
        assert!(v["agent"]["running"].is_null(), "{}: {v}", h.name);
        assert!(
            v["agent"]["idleBecause"]
                .as_str()
                .unwrap_or_default()
                .contains("halted")
                || v["agent"]["idleBecause"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("no rollout"),
            "{}: {v}",
            h.name
        );
    }
    let shown = duplex_fleet(&endpoints, &["rollout", "status", "db-upgrade"]);
    assert!(shown.stdout.contains("halted"), "{}", shown.stdout);
    assert!(
        shown.stdout.contains(&format!("Released   {first} by")),
        "{}",
        shown.stdout
    );

    // The released host comes back: its session is its own, untouched by
    // the release; it goes on (here: waits for its approval) and its
    // result stays `released`.
    hosts[i].start(&endpoints);
    wait_until(
        "the released host took its session up",
        Duration::from_secs(60),
        || {
            hosts[i]
                .status()
                .is_some_and(|v| !v["status"]["session"].is_null())
        },
        &hosts,
    );
    let again = &etcd.rt.block_on(fleet.results("db-upgrade")).unwrap()[&first];
    assert_eq!(again.outcome, Outcome::Released);
}

#[test]
fn operators_pause_resume_approve_and_abort_a_rollout_and_a_closed_window_starts_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(dir.path());
    let endpoints = etcd.endpoints();
    let fleet = etcd.fleet();
    let policies = policy_dir(dir.path(), "policies/demo.yaml", 500);
    // A long soak after the merge: the rollout's abort reaches h2's session
    // before its commit however loaded the machine is.
    let p = policies.join("p.yaml");
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("soak: 3s"));
    std::fs::write(&p, text.replace("soak: 3s", "soak: 20s")).unwrap();
    // A rollout whose only window is never open today: its host waits.
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    // 1970-01-01 was a Thursday; the day after tomorrow, in UTC.
    let day = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][((days + 2) % 7) as usize];
    std::fs::write(
        policies.join("later.yaml"),
        format!(
            "apiVersion: duplex.dev/v1alpha1
kind: Rollout
metadata: {{ name: a-later }}
spec:
  policy: {{ path: p.yaml }}
  hosts: {{ names: [h4] }}
  windows:
    - {{ days: [{day}], start: \"00:00\", length: 1h, timeZone: UTC }}
"
        ),
    )
    .unwrap();
    let rollout = write_rollout(
        &policies,
        "apiVersion: duplex.dev/v1alpha1
kind: Rollout
metadata: { name: b-managed }
spec:
  policy: { path: p.yaml }
  hosts: { names: [h1, h2, h3] }
  waves:
    - { name: first, hosts: [h1] }
    - { name: second, hosts: [h2] }
    - { name: third, hosts: [h3] }
  maxUnavailable: 1
  errorBudget: 1
  betweenWaves: { approval: true }
",
    );
    for file in ["later.yaml", "rollout.yaml"] {
        let applied = duplex_fleet(
            &endpoints,
            &["rollout", "apply", policies.join(file).to_str().unwrap()],
        );
        assert_eq!(applied.code, 0, "{}", applied.stderr);
    }
    let again = duplex_fleet(&endpoints, &["rollout", "apply", rollout.to_str().unwrap()]);
    assert!(again.stdout.contains("unchanged"), "{}", again.stdout);
    // Paused before any host runs: nobody starts.
    let paused = duplex_fleet(
        &endpoints,
        &["rollout", "pause", "b-managed", "--reason", "change freeze"],
    );
    assert_eq!(paused.code, 0, "{}", paused.stderr);
    let mut hosts: Vec<Host> = ["h1", "h2", "h3", "h4"]
        .iter()
        .map(|n| Host::new(dir.path(), n, &[]))
        .collect();
    for h in &mut hosts {
        h.start(&endpoints);
    }
    let idle = |h: &Host, needle: &str| {
        h.status().is_some_and(|v| {
            v["agent"]["idleBecause"]
                .as_str()
                .is_some_and(|w| w.contains(needle))
        })
    };
    wait_until(
        "h1 waits for the pause and h4 for its window",
        Duration::from_secs(60),
        || {
            idle(&hosts[0], "paused by")
                && idle(&hosts[0], "change freeze")
                && idle(&hosts[3], "no maintenance window is open")
        },
        &hosts,
    );
    // Resumed: the first wave runs; the second waits for an approval.
    let resumed = duplex_fleet(
        &endpoints,
        &["rollout", "resume", rollout.to_str().unwrap()],
    );
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    assert!(resumed.stdout.contains("resumed"), "{}", resumed.stdout);
    let results = || {
        etcd.rt
            .block_on(fleet.results("b-managed"))
            .unwrap_or_default()
    };
    wait_until(
        "h1 committed and h2 waits for an approval",
        Duration::from_secs(90),
        || results().len() == 1 && idle(&hosts[1], "waits for an operator's approval"),
        &hosts,
    );
    let shown = duplex_fleet(&endpoints, &["rollout", "status", "b-managed"]);
    assert!(
        shown
            .stdout
            .contains("second: 0 of 1 ended, needs approval"),
        "{}",
        shown.stdout
    );
    let approved = duplex_fleet(&endpoints, &["rollout", "resume", "b-managed"]);
    assert!(
        approved.stdout.contains("wave 2 approved"),
        "{}",
        approved.stdout
    );
    let shown = duplex_fleet(&endpoints, &["rollout", "status", "b-managed"]);
    assert!(
        shown
            .stdout
            .contains("second: 0 of 1 ended, approved by ops"),
        "{}",
        shown.stdout
    );
    // h2 starts; the rollout is aborted under it: its session is asked to
    // abort, and nobody starts after it.
    wait_until(
        "h2 holds the slot",
        Duration::from_secs(60),
        || {
            etcd.rt
                .block_on(fleet.rollout("b-managed"))
                .ok()
                .flatten()
                .is_some_and(|v| v.state.holders.contains_key("h2"))
        },
        &hosts,
    );
    let aborted = duplex_fleet(
        &endpoints,
        &["rollout", "abort", "b-managed", "--reason", "bad build"],
    );
    assert_eq!(aborted.code, 0, "{}", aborted.stderr);
    wait_until(
        "h2's session ended",
        Duration::from_secs(90),
        || results().contains_key("h2"),
        &hosts,
    );
    assert_eq!(results()["h2"].outcome, Outcome::Aborted, "{:?}", results());
    assert!(
        hosts[1].log().contains("rollout b-managed aborted"),
        "{}",
        hosts[1].log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(!results().contains_key("h3"));
    assert!(idle(&hosts[2], "aborted by"), "{:?}", hosts[2].status());
    // h4 never started: its window never opened.
    assert!(hosts[3].status().unwrap()["agent"]["running"].is_null());
    let later = etcd.rt.block_on(fleet.results("a-later")).unwrap();
    assert!(later.is_empty(), "{later:?}");

    // Bad input: a name the fleet does not know, an etcd that does not
    // answer, an endpoint that is not a URL.
    let unknown = duplex_fleet(&endpoints, &["rollout", "status", "no-such-rollout"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown
            .stderr
            .contains("no rollout named `no-such-rollout`"),
        "{}",
        unknown.stderr
    );
    let mut cmd = support::duplex();
    cmd.args(["fleet", "status", "--etcd", "http://127.0.0.1:1"]);
    let unreachable = support::run(&mut cmd);
    assert_eq!(unreachable.code, 1);
    assert!(
        unreachable.stderr.contains("http://127.0.0.1:1"),
        "{}",
        unreachable.stderr
    );
    let mut cmd = support::duplex();
    cmd.args(["fleet", "status", "--etcd", "127.0.0.1:2379"]);
    let not_a_url = support::run(&mut cmd);
    assert_eq!(not_a_url.code, 2);
    assert!(
        not_a_url.stderr.contains("not an etcd member's URL"),
        "{}",
        not_a_url.stderr
    );
}
