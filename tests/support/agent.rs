//! The agent as the black-box tests run it: a git repository of policies
//! on the local disk, a state dir, the agent's API on loopback.

use super::{duplex, repo_root};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    pub child: Child,
    pub port: u16,
    pub state: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// What the agent wrote on stderr (every agent started on this state
    /// dir, in order).
    pub fn log(&self) -> String {
        std::fs::read_to_string(log_path(&self.state)).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut response = ureq::get(&self.url(path))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("the agent answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    pub fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
        let mut request = ureq::post(&self.url(path))
            .config()
            .http_status_as_error(false)
            .build()
            .header("content-type", "application/json");
        if let Some(t) = token {
            request = request.header("authorization", &format!("Bearer {t}"));
        }
        let mut response = request.send(body).expect("the agent answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    pub fn wait_for(
        &self,
        what: &str,
        ok: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let started = Instant::now();
        let mut last = serde_json::Value::Null;
        loop {
            let answer = ureq::get(&self.url("/v1/status")).call();
            if let Ok(mut response) = answer {
                let body = response.body_mut().read_to_string().unwrap();
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if ok(&v) {
                    return v;
                }
                last = v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "never: {what}\nlast status: {last}\nthe agent's log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub fn git(repo: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .current_dir(repo)
        .args(["-c", "user.email=ops@example.com", "-c", "user.name=ops"])
        .args(args)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// A policy repository holding the demo policy, its artifacts, and the
/// first-party plugins by absolute path.
pub fn policy_repo(dir: &Path) -> PathBuf {
    policy_repo_of(dir, "policies/demo.yaml")
}

/// A policy repository holding `example` (a policy of this repository) as
/// `policies/p.yaml`.
pub fn policy_repo_of(dir: &Path, example: &str) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(repo.join("policies")).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let root = repo_root();
    let cp = Command::new("cp")
        .args(["-r"])
        .arg(root.join("policies/artifacts"))
        .arg(repo.join("policies/"))
        .status()
        .unwrap();
    assert!(cp.success());
    write_policy(&repo, example, "");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "the demo policy"]);
    repo
}

pub fn write_policy(repo: &Path, example: &str, extra_comment: &str) {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join(example))
        .unwrap()
        .replace(
            "../plugins/dist/",
            &format!("{}/plugins/dist/", root.display()),
        )
        // Tests do not wait a minute for the soak.
        .replace("soak: 1m", "soak: 2s")
        .replace("interval: 10s", "interval: 1s");
    std::fs::write(
        repo.join("policies/p.yaml"),
        format!("{text}{extra_comment}"),
    )
    .unwrap();
}

/// Where the agents of a state dir log: beside it.
fn log_path(state: &Path) -> PathBuf {
    state.with_file_name("agent.log")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_agent(dir: &Path, repo: &Path) -> Agent {
    start_agent_with(dir, repo, free_port(), &[])
}

pub fn start_agent_with(dir: &Path, repo: &Path, port: u16, extra: &[&str]) -> Agent {
    let state = dir.join("state");
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(&state)
        .args(["agent", "--git"])
        .arg(repo)
        .args(["--policy", "policies/p.yaml", "--fetch-interval", "1s"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path(&state))
                .unwrap(),
        );
    Agent {
        child: cmd.spawn().unwrap(),
        port,
        state,
    }
}

/// Commit, as the policy, one that does not load: its `spec.target` (line
/// 4) is not a target.
pub fn commit_an_invalid_policy(repo: &Path) {
    std::fs::write(
        repo.join("policies/p.yaml"),
        "apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\nmetadata: {name: broken}\nspec: {target: 3}\n",
    )
    .unwrap();
    git(repo, &["commit", "-qam", "a broken policy"]);
}
