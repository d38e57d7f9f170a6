#![allow(dead_code)]
//! A fleet on one machine, as the fleet tests and an operator's trial run
//! it: a real etcd cluster (Debian's etcd, three members on loopback, via
//! `duplex_fleet::local_cluster`), and `duplex agent --fleet` processes,
//! each with its own state dir and sim target.

use crate::support::agent::{free_port, policy_repo_of};
use crate::support::{Run, duplex, run};
use duplex_fleet::local_cluster::LocalCluster;
use duplex_fleet::{Fleet, FleetConfig};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

pub struct Etcd {
    pub cluster: LocalCluster,
    pub rt: tokio::runtime::Runtime,
}

impl Etcd {
    pub fn start(dir: &Path) -> Etcd {
        let rt = runtime();
        let cluster = rt
            .block_on(LocalCluster::start(3, &dir.join("etcd")))
            .expect(
                "a local etcd cluster starts (scripts/install-test-deps.sh installs etcd-server)",
            );
        Etcd { cluster, rt }
    }

    pub fn endpoints(&self) -> String {
        self.cluster.endpoints().join(",")
    }

    /// Start every host's agent and wait until each has registered.
    pub fn start_registered(&self, fleet: &Fleet, hosts: &mut [Host]) {
        let endpoints = self.endpoints();
        for h in hosts.iter_mut() {
            h.start(&endpoints);
        }
        let n = hosts.len();
        let started = Instant::now();
        loop {
            // The API port was free when chosen, but another test may take
            // it before the agent binds it (CI saw "Address already in
            // use"): an agent that exited at start gets a fresh port.
            for h in hosts.iter_mut() {
                if h.exited() {
                    h.port = free_port();
                    h.start(&endpoints);
                }
            }
            let registered = self
                .rt
                .block_on(fleet.hosts())
                .is_ok_and(|h| h.iter().filter(|(_, alive)| *alive).count() == n);
            if registered {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                wait_until("every host registered", Duration::ZERO, || false, hosts);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A client of the fleet's keys, as the agents see them.
    pub fn fleet(&self) -> Fleet {
        self.rt
            .block_on(Fleet::connect(FleetConfig::new(self.cluster.endpoints())))
            .unwrap()
    }
}

/// One host: its agent process, state dir and API port.
pub struct Host {
    pub name: String,
    pub dir: PathBuf,
    pub port: u16,
    pub labels: Vec<String>,
    child: Option<Child>,
}

impl Host {
    pub fn new(root: &Path, name: &str, labels: &[&str]) -> Host {
        let dir = root.join("hosts").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        Host {
            name: name.to_string(),
            dir,
            port: free_port(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            child: None,
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn start(&mut self, endpoints: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("agent.log"))
            .unwrap();
        let mut cmd = duplex();
        cmd.arg("--state-dir")
            .arg(self.state())
            .args([
                "agent", "--fleet", "--etcd", endpoints, "--host", &self.name,
            ])
            .args(["--fetch-interval", "2s"])
            .args(["--listen", &format!("127.0.0.1:{}", self.port)]);
        for l in &self.labels {
            cmd.args(["--label", l]);
        }
        cmd.stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().unwrap());
    }

    /// SIGKILL: no chance to say anything.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the agent started here has exited on its own.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn status(&self) -> Option<serde_json::Value> {
        let mut response = ureq::get(&format!("http://127.0.0.1:{}/v1/status", self.port))
            .call()
            .ok()?;
        serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.state().join("agent/token"))
            .unwrap()
            .trim()
            .to_string()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A directory with `policies/p.yaml` (from `example`, with the plugins by
/// absolute path and a short soak) and its artifacts, for a rollout file
/// beside it to name by path.
pub fn policy_dir(root: &Path, example: &str, delay_ms: u32) -> PathBuf {
    let repo = policy_repo_of(root, example);
    let p = repo.join("policies/p.yaml");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("delay-ms: 500", &format!("delay-ms: {delay_ms}"));
    std::fs::write(&p, text).unwrap();
    repo.join("policies")
}

/// `duplex` with the fleet's endpoints.
pub fn duplex_fleet(endpoints: &str, args: &[&str]) -> Run {
    let mut cmd = duplex();
    cmd.args(args)
        .env("DUPLEX_ETCD", endpoints)
        .env("DUPLEX_OPERATOR", "ops");
    run(&mut cmd)
}

pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool, hosts: &[Host]) {
    let started = Instant::now();
    while !ok() {
        if started.elapsed() > within {
            for h in hosts {
                eprintln!("--- {} ---\n{}", h.name, h.log());
            }
            panic!("never: {what}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
