//! `duplex agent` driven as an operator runs it: a git repository on the
//! local disk, a state dir, the agent's API on loopback. A committed policy
//! runs to the end; an invalid one is reported and starts nothing; writes
//! without the token or with a malformed body are refused; the metrics
//! parse.

mod support;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

struct Agent {
    child: Child,
    port: u16,
    state: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> (u16, String) {
        let mut response = ureq::get(&self.url(path))
            .config()
            .http_status_as_error(false)
            .build()
            .call()
            .expect("the agent answers");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_string().unwrap())
    }

    fn post(&self, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
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

    fn wait_for(&self, what: &str, ok: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let started = Instant::now();
        loop {
            let answer = ureq::get(&self.url("/v1/status")).call();
            if let Ok(mut response) = answer {
                let body = response.body_mut().read_to_string().unwrap();
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                if ok(&v) {
                    return v;
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "never: {what}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn git(repo: &Path, args: &[&str]) {
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
fn policy_repo(dir: &Path) -> PathBuf {
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
    write_policy(&repo, "");
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "the demo policy"]);
    repo
}

fn write_policy(repo: &Path, extra_comment: &str) {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("policies/demo.yaml"))
        .unwrap()
        .replace(
            "../plugins/dist/",
            &format!("{}/plugins/dist/", root.display()),
        );
    std::fs::write(
        repo.join("policies/p.yaml"),
        format!("{text}{extra_comment}"),
    )
    .unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_agent(dir: &Path, repo: &Path) -> Agent {
    let port = free_port();
    let state = dir.join("state");
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(&state)
        .args(["agent", "--git"])
        .arg(repo)
        .args(["--policy", "policies/p.yaml", "--fetch-interval", "1s"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Agent {
        child: cmd.spawn().unwrap(),
        port,
        state,
    }
}

#[test]
fn a_committed_policy_runs_to_the_end_and_an_invalid_one_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo(dir.path());
    let agent = start_agent(dir.path(), &repo);
    let done = agent.wait_for("the committed policy is achieved", |v| {
        !v["agent"]["achieved"].is_null()
    });
    let desired = &done["agent"]["desired"];
    assert_eq!(done["agent"]["achieved"]["digest"], desired["digest"]);
    let ended = done["status"]["session"]["session"]["ended"]
        .as_str()
        .unwrap_or_default();
    assert!(ended.eq_ignore_ascii_case("committed"), "{done}");
    // The session records where its policy came from.
    let origin = &done["status"]["session"]["session"]["origin"];
    assert_eq!(origin["revision"], desired["revision"], "{done}");
    assert_eq!(origin["path"], "policies/p.yaml");

    // The metrics parse, and say what happened.
    let (code, text) = agent.get("/metrics");
    assert_eq!(code, 200);
    let metrics = prometheus::parse(&text).expect("the exposition parses");
    assert_eq!(
        prometheus::value(
            &metrics.samples,
            "duplex_sessions_ended_total",
            &[("outcome", "committed")]
        ),
        Some(1.0)
    );
    assert_eq!(
        prometheus::value(
            &metrics.samples,
            "duplex_upgrade_state",
            &[("state", "Idle")]
        ),
        Some(1.0)
    );

    // Writes need the token; a malformed body is refused; nothing changes.
    let token = std::fs::read_to_string(agent.state.join("agent/token")).unwrap();
    let token = token.trim();
    let (code, body) = agent.post("/v1/commands/abort", None, "{}");
    assert_eq!(code, 401, "{body}");
    let (code, body) = agent.post("/v1/commands/abort", Some("wrong"), "{}");
    assert_eq!(code, 401, "{body}");
    let (code, body) = agent.post("/v1/commands/abort", Some(token), "{\"by\": 7}");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("not a command"), "{body}");
    let (code, body) = agent.post("/v1/commands/explode", Some(token), "{}");
    assert_eq!(code, 404, "{body}");
    let (code, body) = agent.post("/v1/commands/abort", Some(token), "{\"by\": \"alice\"}");
    assert_eq!(code, 409, "nothing in flight: {body}");
    let (code, _) = agent.get("/v1/sessions");
    assert_eq!(code, 200);

    // An invalid policy: reported with its position, nothing started.
    let sessions_before = std::fs::read_dir(agent.state.join("sessions"))
        .unwrap()
        .count();
    std::fs::write(
        repo.join("policies/p.yaml"),
        "apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\nmetadata: {name: broken}\nspec: {target: 3}\n",
    )
    .unwrap();
    git(&repo, &["commit", "-qam", "a broken policy"]);
    let v = agent.wait_for("the invalid policy is reported", |v| {
        v["agent"]["invalid"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    let first = v["agent"]["invalid"][0].as_str().unwrap();
    assert!(first.contains("policies/p.yaml:4:"), "{first}");
    assert_eq!(
        std::fs::read_dir(agent.state.join("sessions"))
            .unwrap()
            .count(),
        sessions_before
    );
}
