//! `duplex agent` driven as an operator runs it: a git repository on the
//! local disk, a state dir, the agent's API on loopback. A committed policy
//! runs to the end; an invalid one is reported and starts nothing; writes
//! without the token or with a malformed body are refused; the metrics
//! parse; SIGTERM stops a session at a safe point and the next agent takes
//! it up.

mod support;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::agent::*;
use support::*;

#[test]
fn a_committed_policy_runs_to_the_end_and_an_invalid_one_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo(dir.path());
    let agent = start_agent(dir.path(), &repo);
    let done = agent.wait_for("the committed policy is achieved", |v| {
        !v["agent"]["achieved"].is_null()
    });
    // `duplex` handed the agent to `duplex-full` in the same process: the
    // pid the operator started (and signals) is the agent's.
    let exe = std::fs::read_link(format!("/proc/{}/exe", agent.child.id())).unwrap();
    assert_eq!(exe.file_name().unwrap(), "duplex-full", "{}", exe.display());
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
    // `duplex status` asks the agent for desired and achieved.
    let mut cmd = duplex();
    cmd.arg("--state-dir").arg(&agent.state).arg("status");
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let revision = desired["revision"].as_str().unwrap();
    for needle in [
        format!(
            "Desired   sha256 {} at revision {revision}",
            desired["digest"].as_str().unwrap()
        ),
        format!(
            "Achieved  sha256 {} at revision {revision}",
            desired["digest"].as_str().unwrap()
        ),
        format!(
            "Source    git+{}@main:policies/p.yaml at revision {revision}",
            repo.display()
        ),
    ] {
        assert!(
            out.stdout.contains(&needle),
            "no `{needle}` in:\n{}",
            out.stdout
        );
    }

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
    let (code, body) = agent.get("/v1/sessions");
    assert_eq!(code, 200, "{body}");
    let sessions: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = sessions["sessions"][0]["session"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = agent.get(&format!("/v1/sessions/{id}/log"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("session ended: Committed"), "{body}");
    let (code, body) = agent.get("/v1/sessions/not-a-session/log");
    assert_eq!(code, 400, "{body}");
    // The activity tree: one node per state the session went through.
    let (code, body) = agent.get(&format!("/v1/sessions/{id}/activity"));
    assert_eq!(code, 200, "{body}");
    let activity: serde_json::Value = serde_json::from_str(&body).unwrap();
    let states: Vec<&str> = activity["activity"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "state")
        .map(|n| n["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "PrepareSplit",
            "Split",
            "PrepareMerge",
            "Merge",
            "Commit",
            "Finish"
        ],
        "{body}"
    );
    let (code, body) = agent.get("/v1/sessions/20991231T000000Z-0000/activity");
    assert_eq!(code, 404, "{body}");
    let (code, body) = agent.get("/v1/plan");
    assert_eq!(code, 200, "{body}");
    let plan: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["digest"], desired["digest"]);
    assert!(plan["plan"].is_object(), "{plan}");
    let (code, body) = agent.get("/v1/nothing-here");
    assert_eq!(code, 404, "{body}");

    // An invalid policy: reported with its position, nothing started.
    let sessions_before = std::fs::read_dir(agent.state.join("sessions"))
        .unwrap()
        .count();
    commit_an_invalid_policy(&repo);
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

/// A webhook receiver on loopback: records every body in arrival order.
struct Receiver {
    bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Receiver {
    fn start(port: u16) -> Receiver {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = bodies.clone();
        std::thread::spawn(move || {
            use std::io::{BufRead, BufReader, Read, Write};
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok()
                    && let Ok(v) = serde_json::from_slice(&body)
                {
                    seen.lock().unwrap().push(v);
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Receiver { bodies }
    }

    fn types(&self) -> Vec<String> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| b["type"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// A policy committed before its maintenance window opens starts nothing
/// and says why, then starts by itself when the window opens and runs to
/// the end (it was refused for good before: nothing started until the
/// source changed).
#[test]
fn a_policy_waits_for_its_maintenance_window_and_starts_when_it_opens() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo(dir.path());
    let opens = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(12);
    let opens_text = opens.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    write_policy(
        &repo,
        "policies/demo.yaml",
        &format!("  window:\n    start: \"{opens_text}\"\n    end: \"2099-12-31T23:59:59Z\"\n"),
    );
    git(
        &repo,
        &["commit", "-qam", "the demo, in a window that opens soon"],
    );
    let agent = start_agent(dir.path(), &repo);
    let waiting = agent.wait_for("the policy waits for its window", |v| {
        v["agent"]["idleBecause"]
            .as_str()
            .is_some_and(|why| why.contains("waiting for its maintenance window, which opens at"))
    });
    assert!(waiting["agent"]["running"].is_null(), "{waiting}");
    assert!(
        !agent.state.join("sessions").exists()
            || std::fs::read_dir(agent.state.join("sessions"))
                .unwrap()
                .count()
                == 0,
        "a session started before the window opened"
    );
    let done = agent.wait_for("the policy is achieved once its window opens", |v| {
        !v["agent"]["achieved"].is_null()
    });
    assert!(
        jiff::Timestamp::now() >= opens,
        "achieved before the window opened: {done}"
    );
    let ended = done["status"]["session"]["session"]["ended"]
        .as_str()
        .unwrap_or_default();
    assert!(ended.eq_ignore_ascii_case("committed"), "{done}");
    assert!(
        agent.log().contains("waits for its maintenance window"),
        "{}",
        agent.log()
    );
}

fn waiting_for(v: &serde_json::Value) -> Option<String> {
    v["status"]["session"]["waitingFor"]["point"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn commands_drift_a_declared_abort_kill_9_and_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo_of(dir.path(), "policies/approvals.yaml");
    let hook_port = free_port();
    let hook = format!("http://127.0.0.1:{hook_port}/hooks");
    let api_port = free_port();
    let extra = ["--webhook", hook.as_str()];
    let mut agent = start_agent_with(dir.path(), &repo, api_port, &extra);
    // The receiver is down while the session starts.
    let v = agent.wait_for("waiting for approval before Merge", |v| {
        waiting_for(v).as_deref() == Some("Merge")
    });
    let first_digest = v["agent"]["running"]["digest"].clone();
    assert!(!first_digest.is_null(), "{v}");
    agent.wait_for("the agent names the session it started", |v| {
        v["agent"]["running"]["session"] == v["status"]["session"]["id"]
    });

    // kill -9 while it waits; a new agent takes the session up by itself.
    let _ = agent.child.kill();
    let _ = agent.child.wait();
    let agent = start_agent_with(dir.path(), &repo, api_port, &extra);
    agent.wait_for("resumed, waiting again", |v| {
        waiting_for(v).as_deref() == Some("Merge") && !v["agent"]["running"].is_null()
    });
    let receiver = Receiver::start(hook_port);
    // The live activity log, as server-sent events.
    let live = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let live = live.clone();
        let url = agent.url("/v1/events");
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut response = ureq::get(&url).call().unwrap();
            let reader = std::io::BufReader::new(response.body_mut().as_reader());
            for line in reader.lines().map_while(Result::ok) {
                if let Some(data) = line.strip_prefix("data:") {
                    live.lock().unwrap().push(data.trim().to_string());
                }
            }
        });
    }
    std::thread::sleep(Duration::from_millis(300));
    let token = std::fs::read_to_string(agent.state.join("agent/token")).unwrap();
    let token = token.trim().to_string();

    // Approve through the API: only the policy's approver may.
    let (code, body) = agent.post("/v1/commands/approve", Some(&token), r#"{"by": "mallory"}"#);
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("may not approve before Merge"), "{body}");
    let (code, body) = agent.post(
        "/v1/commands/approve",
        Some(&token),
        r#"{"by": "ops-oncall", "reason": "CHG-17 window open"}"#,
    );
    assert_eq!(code, 200, "{body}");
    agent.wait_for("waiting for approval before Commit", |v| {
        waiting_for(v).as_deref() == Some("Commit")
    });

    // Hold through the CLI (the control socket), release through the API.
    let mut hold = duplex();
    hold.arg("--state-dir")
        .arg(&agent.state)
        .args(["hold", "--reason", "a look at the soak results"])
        .env("DUPLEX_OPERATOR", "alice");
    let out = run(&mut hold);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("hold accepted"), "{}", out.stdout);
    // While held, its policy is abandoned: should the session end some
    // other way than by a release, nothing runs that policy again.
    let held_digest = |v: &serde_json::Value| {
        v["agent"]["abandoned"]
            .as_array()
            .is_some_and(|a| a.len() == 1 && a[0] == v["agent"]["running"]["digest"])
    };
    agent.wait_for("held, its policy abandoned", |v| {
        v["status"]["session"]["session"]["held"]
            .as_str()
            .is_some_and(|h| h.contains("alice"))
            && held_digest(v)
    });
    let (code, body) = agent.post("/v1/commands/release", Some(&token), r#"{"by": "bob"}"#);
    assert_eq!(code, 200, "{body}");
    agent.wait_for("released, its policy no longer abandoned", |v| {
        v["status"]["session"]["session"]["held"].is_null()
            && waiting_for(v).is_some()
            && v["agent"]["abandoned"]
                .as_array()
                .is_some_and(|a| a.is_empty())
    });

    // The other way round: hold through the API, release through the CLI;
    // a refused approval through the CLI says why.
    let (code, body) = agent.post(
        "/v1/commands/hold",
        Some(&token),
        r#"{"by": "bob", "reason": "second look"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let cli = |operator: &str, args: &[&str]| {
        let mut cmd = duplex();
        cmd.arg("--state-dir")
            .arg(&agent.state)
            .args(args)
            .env("DUPLEX_OPERATOR", operator);
        run(&mut cmd)
    };
    let out = cli("mallory", &["approve"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("nothing to approve"), "{}", out.stderr);
    let out = cli("alice", &["release", "--reason", "looked"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    agent.wait_for("released again", |v| {
        v["status"]["session"]["session"]["held"].is_null() && waiting_for(v).is_some()
    });

    // A change in flight is drift: reported, not applied.
    write_policy(
        &repo,
        "policies/approvals.yaml",
        "# a comment changes the digest\n",
    );
    git(
        &repo,
        &["commit", "-qam", "a change while the session runs"],
    );
    let v = agent.wait_for("drift reported", |v| !v["agent"]["drift"].is_null());
    assert_eq!(v["agent"]["running"]["digest"], first_digest);
    assert_eq!(waiting_for(&v).as_deref(), Some("Commit"));

    // A declared abort is the one change applied.
    let text = std::fs::read_to_string(repo.join("policies/p.yaml")).unwrap();
    std::fs::write(
        repo.join("policies/p.yaml"),
        text.replacen("spec:\n", "spec:\n  action: abort\n", 1),
    )
    .unwrap();
    git(&repo, &["commit", "-qam", "abort the upgrade"]);
    let v = agent.wait_for("aborted and abandoned", |v| {
        v["agent"]["abandoned"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
    });
    assert_eq!(v["agent"]["abandoned"][0], first_digest);

    // The abandoned policy committed again is not run again on its own.
    // One commit: `git revert HEAD HEAD~1` makes two, and an agent that
    // fetched between them would rightly start a session for the policy in
    // between (the comment kept, the abort gone), which is not the case
    // this checks.
    git(&repo, &["revert", "--no-commit", "HEAD", "HEAD~1"]);
    git(&repo, &["commit", "-qm", "back to the abandoned policy"]);
    agent.wait_for("the abandoned digest is desired again, and idle", |v| {
        v["agent"]["desired"]["digest"] == first_digest
            && v["agent"]["idleBecause"]
                .as_str()
                .is_some_and(|w| w.starts_with("abandoned"))
    });
    let sessions = std::fs::read_dir(agent.state.join("sessions"))
        .unwrap()
        .count();
    assert_eq!(sessions, 1, "no new session");
    let log = {
        let mut cmd = duplex();
        cmd.arg("--state-dir").arg(&agent.state).arg("log");
        run(&mut cmd).stdout
    };
    for needle in [
        "runner resumed",
        "ops-oncall asked to approve: CHG-17 window open",
        "alice asked to hold: a look at the soak results",
        "hold released by bob",
        "asked to abort: the policy source declares `action: abort`",
        "session ended: Aborted",
    ] {
        assert!(log.contains(needle), "log lacks `{needle}`:\n{log}");
    }

    // The live stream carried the records as they were written.
    let live = live.lock().unwrap().clone();
    let texts: Vec<String> = live
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    for needle in [
        "ops-oncall asked to approve",
        "hold released by bob",
        "session ended: Aborted",
    ] {
        assert!(
            texts.iter().any(|t| t.contains(needle)),
            "the live stream lacks `{needle}`: {texts:?}"
        );
    }

    // Every event reached the receiver that was down at first, in order.
    let started = Instant::now();
    while !receiver
        .types()
        .iter()
        .any(|t| t.ends_with("session.finished"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "webhooks: {:?}",
            receiver.types()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let types = receiver.types();
    assert_eq!(types[0], "dev.duplex.session.started", "{types:?}");
    for t in [
        "dev.duplex.session.approval_needed",
        "dev.duplex.session.held",
        "dev.duplex.session.aborted",
    ] {
        assert!(types.iter().any(|x| x == t), "no {t}: {types:?}");
    }
    let bodies = receiver.bodies.lock().unwrap().clone();
    let seqs: Vec<u64> = bodies
        .iter()
        .filter(|b| b["subject"].is_string() && b["data"]["seq"].is_u64())
        .map(|b| b["data"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] <= w[1]), "in order: {seqs:?}");
    let mut ids: Vec<&str> = bodies.iter().map(|b| b["id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event delivered twice");
}

#[test]
fn the_api_is_served_over_tls_when_a_certificate_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("p.yaml"), "not: a policy\n").unwrap();
    let port = free_port();
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(dir.path().join("state"))
        .args(["agent", "--dir"])
        .arg(&policies)
        .args([
            "--policy",
            "p.yaml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let agent = Agent {
        child: cmd.spawn().unwrap(),
        port,
        state: dir.path().join("state"),
    };
    let pem = std::fs::read(&cert).unwrap();
    let trusted = ureq::tls::Certificate::from_pem(&pem).unwrap().to_owned();
    let client: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                    trusted,
                ])))
                .build(),
        )
        .build()
        .into();
    let url = format!("https://127.0.0.1:{}/v1/status", agent.port);
    let started = Instant::now();
    let body = loop {
        match client.get(&url).call() {
            Ok(mut r) => break r.body_mut().read_to_string().unwrap(),
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(30), "{e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The policy in the source is invalid: reported over TLS like anything else.
    assert!(v["agent"].is_object(), "{v}");
    // Plain HTTP on the TLS port gets no answer.
    assert!(
        ureq::get(&format!("http://127.0.0.1:{}/v1/status", agent.port))
            .call()
            .is_err()
    );
}

/// SIGTERM while a session waits for an approval: the agent stops at the
/// safe point it is at, records why, exits 0 and removes its control
/// socket; the next agent takes the session up where it was.
#[test]
fn sigterm_stops_the_session_at_a_safe_point_and_the_next_agent_takes_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = policy_repo_of(dir.path(), "policies/approvals.yaml");
    let port = free_port();
    let mut agent = start_agent_with(dir.path(), &repo, port, &[]);
    let v = agent.wait_for("waiting for approval before Merge", |v| {
        waiting_for(v).as_deref() == Some("Merge")
    });
    let session = v["status"]["session"]["id"].as_str().unwrap().to_string();
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(agent.child.id() as i32, libc::SIGTERM) };
    let started = Instant::now();
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the agent did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0), "a graceful stop");
    assert!(!agent.state.join("duplex.sock").exists(), "socket removed");
    let journal =
        std::fs::read_to_string(agent.state.join("sessions").join(&session).join("journal"))
            .unwrap_or_default();
    assert!(
        journal.contains(r#""event":"interrupted","why":"SIGTERM""#),
        "{journal}"
    );

    let agent = start_agent_with(dir.path(), &repo, port, &[]);
    let v = agent.wait_for("taken up, waiting again", |v| {
        waiting_for(v).as_deref() == Some("Merge") && !v["agent"]["running"].is_null()
    });
    assert_eq!(v["status"]["session"]["id"], session.as_str());
}
