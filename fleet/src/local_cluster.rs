//! A real etcd cluster on loopback, for tests, the demo and measurements:
//! `members` processes of Debian's `/usr/bin/etcd` (3.4), each on free
//! loopback ports (client and peer) with its own data dir under `dir`,
//! logging to `dir/<member>.log`. Members can be killed (SIGKILL) and
//! restarted on the same data dir and ports. Dropping the cluster kills
//! every member. It never uses an etcd service the system may run.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

/// What went wrong starting or restarting a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error("cannot start etcd ({program}): {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("local cluster: {0}")]
    Io(#[from] std::io::Error),
    #[error("etcd at {endpoints} was not healthy within {after:?} (last: {last}; logs in {dir})")]
    Unhealthy {
        endpoints: String,
        after: Duration,
        last: String,
        dir: PathBuf,
    },
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running local etcd cluster.
pub struct LocalCluster {
    dir: PathBuf,
    program: PathBuf,
    token: String,
    members: Vec<Member>,
}

/// How long a start or restart may take to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

impl LocalCluster {
    /// Starts `members` etcd processes (`etcd` from `/usr/bin`, or the PATH)
    /// as a new cluster and waits until a put and a get succeed.
    pub async fn start(members: usize, dir: &Path) -> Result<LocalCluster, LocalClusterError> {
        let program = ["/usr/bin/etcd"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .unwrap_or_else(|| PathBuf::from("etcd"));
        std::fs::create_dir_all(dir)?;
        let ports = free_ports(members * 2)?;
        let members = (0..members)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.join(format!("m{i}.etcd")),
                log: dir.join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let mut cluster = LocalCluster {
            dir: dir.to_owned(),
            program,
            token: format!("duplex-{}", fastrand::u64(..)),
            members,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn(i, "new")?;
        }
        cluster.wait_healthy(&cluster.endpoints()).await?;
        Ok(cluster)
    }

    /// Every member's client URL (`http://127.0.0.1:<port>`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| url(m.client_port)).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        url(self.members[i].client_port)
    }

    /// Each member's process id, `None` for a member that is not running.
    pub fn pids(&self) -> Vec<Option<u32>> {
        self.members
            .iter()
            .map(|m| m.child.as_ref().map(Child::id))
            .collect()
    }

    /// Where the members' data and logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether member `i` runs (as far as this process knows).
    pub fn is_running(&mut self, i: usize) -> bool {
        match &mut self.members[i].child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills member `i` with SIGKILL and reaps it.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts member `i` on its data dir and ports (`existing` cluster),
    /// and waits until it answers (a read through it alone; it needs a
    /// quorum of members running).
    pub async fn restart_member(&mut self, i: usize) -> Result<(), LocalClusterError> {
        self.kill_member(i);
        self.spawn(i, "existing")?;
        self.wait_healthy(&[self.endpoint(i)]).await
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    /// Restarts every member that is not running and waits until the
    /// cluster is healthy.
    pub async fn restart_all(&mut self) -> Result<(), LocalClusterError> {
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                self.members[i].child = None;
                self.spawn(i, "existing")?;
            }
        }
        self.wait_healthy(&self.endpoints()).await
    }

    fn spawn(&mut self, i: usize, state: &str) -> Result<(), LocalClusterError> {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, url(m.peer_port)))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let log = OpenOptions::new().create(true).append(true).open(&m.log)?;
        let client = url(m.client_port);
        let peer = url(m.peer_port);
        let child = Command::new(&self.program)
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client])
            .args(["--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            // Loopback: fast heartbeats, elections within a second.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .env_remove("ETCDCTL_API")
            .spawn()
            .map_err(|source| LocalClusterError::Spawn {
                program: self.program.display().to_string(),
                source,
            })?;
        self.members[i].child = Some(child);
        Ok(())
    }

    /// Waits until a put and a get through `endpoints` succeed.
    async fn wait_healthy(&self, endpoints: &[String]) -> Result<(), LocalClusterError> {
        let started = Instant::now();
        let mut last = String::from("no answer");
        while started.elapsed() < HEALTHY_WITHIN {
            let attempt = async {
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(2));
                let mut client = Client::connect(endpoints, Some(options)).await?;
                client.put("/local-cluster/health", "ok", None).await?;
                client.get("/local-cluster/health", None).await?;
                Ok::<_, etcd_client::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(3), attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e.to_string(),
                Err(_) => last = "timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(LocalClusterError::Unhealthy {
            endpoints: endpoints.join(","),
            after: HEALTHY_WITHIN,
            last,
            dir: self.dir.clone(),
        })
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// `n` distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}
