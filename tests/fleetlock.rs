//! Agents of three hosts sharing a FleetLock server (coreos/airlock's
//! protocol) with one slot, as a site that already runs airlock sets them
//! up: while the server cannot be reached nothing starts; then the hosts
//! upgrade one at a time; a holder killed with SIGKILL mid-session keeps
//! its slot (the others wait) until it comes back, finishes and gives the
//! slot back. The limit is checked twice: from the server's history and
//! from the hosts' own journals.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::agent::{free_port, policy_repo};
use support::fleet_history::{most_at_once, out_of_service};
use support::fleetlock::{Change, FleetLockServer};
use support::*;

struct Host {
    name: String,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Host {
    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn start(&mut self, repo: &Path, server: &FleetLockServer) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let mut cmd = duplex();
        cmd.arg("--state-dir")
            .arg(self.state())
            .args(["agent", "--git"])
            .arg(repo)
            .args(["--policy", "policies/p.yaml", "--fetch-interval", "1s"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--fleetlock", &server.url(), "--host", &self.name])
            .stdout(Stdio::null())
            .stderr(log);
        self.child = Some(cmd.spawn().unwrap());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn status(&self) -> Option<serde_json::Value> {
        let mut response = ureq::get(&format!("http://127.0.0.1:{}/v1/status", self.port))
            .call()
            .ok()?;
        serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

fn wait_until(what: &str, hosts: &[Host], ok: impl Fn(&[Host]) -> bool) {
    let started = Instant::now();
    while !ok(hosts) {
        if started.elapsed() > Duration::from_secs(180) {
            for h in hosts {
                eprintln!("--- {} ---\n{}", h.name, h.log());
            }
            panic!("never: {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn achieved(h: &Host) -> bool {
    h.status()
        .is_some_and(|v| !v["agent"]["achieved"].is_null() && v["agent"]["running"].is_null())
}

#[test]
fn hosts_take_turns_under_a_fleetlock_server_and_a_dead_holder_keeps_its_slot() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo(dir.path());
    let server = FleetLockServer::start(1);
    // The server cannot be reached (its database is down): nothing starts.
    server.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut hosts: Vec<Host> = ["ft-01", "ft-02", "ft-03"]
        .iter()
        .map(|name| {
            let dir = dir.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            Host {
                name: name.to_string(),
                dir,
                port: free_port(),
                child: None,
            }
        })
        .collect();
    for h in &mut hosts {
        h.start(&repo, &server);
    }
    wait_until("every host waits for a slot", &hosts, |hosts| {
        hosts.iter().all(|h| {
            h.status().is_some_and(|v| {
                v["agent"]["idleBecause"]
                    .as_str()
                    .is_some_and(|w| w.contains("no fleet slot") && w.contains("503"))
            })
        })
    });
    for h in &hosts {
        assert!(
            !h.state().join("sessions").exists()
                || std::fs::read_dir(h.state().join("sessions"))
                    .unwrap()
                    .next()
                    .is_none(),
            "{} started a session without a slot",
            h.name
        );
    }

    // The server is back: one host at a time.
    server
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_until("a host holds the slot and runs", &hosts, |hosts| {
        hosts.iter().any(|h| {
            h.status()
                .is_some_and(|v| v["status"]["session"]["session"]["config"]["state"] == "Split")
        })
    });
    // Kill the holder mid-session: it keeps its slot, and nobody else starts.
    let holder = server.holders().into_iter().next().expect("a holder");
    let index = hosts.iter().position(|h| h.name == holder).unwrap();
    hosts[index].kill();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        server.holders().into_iter().collect::<Vec<_>>(),
        vec![holder.clone()],
        "a dead holder keeps its slot"
    );
    for h in hosts.iter().filter(|h| h.name != holder) {
        let v = h.status().expect("the others answer");
        assert!(
            v["agent"]["running"].is_null(),
            "{} started while {holder} held the only slot: {v}",
            h.name
        );
    }
    // It comes back, takes its session up, finishes and gives the slot back.
    hosts[index].start(&repo, &server);
    wait_until("every host achieved the policy", &hosts, |hosts| {
        hosts.iter().all(achieved)
    });
    wait_until("the slot is free", &hosts, |_| server.holders().is_empty());

    // The server's side: never more than one holder; each host locked once
    // (the returning holder's lock was its own, recursive) and unlocked once.
    let history = server.history();
    assert!(history.iter().all(|h| h.holders <= 1), "{history:?}");
    for h in &hosts {
        let of = |c: Change| {
            history
                .iter()
                .filter(|e| e.id == h.name && e.change == c)
                .count()
        };
        assert_eq!(
            (of(Change::Locked), of(Change::Unlocked)),
            (1, 1),
            "{}: {history:?}",
            h.name
        );
    }
    // The hosts' side: their journals never overlap out of service.
    let intervals: Vec<_> = hosts
        .iter()
        .flat_map(|h| out_of_service(&h.name, &h.state()))
        .collect();
    assert_eq!(intervals.len(), 3, "{intervals:?}");
    assert_eq!(most_at_once(&intervals), 1, "{intervals:?}");
    assert!(
        hosts[index].log().contains("gave the fleet slot back"),
        "{}",
        hosts[index].log()
    );
}
