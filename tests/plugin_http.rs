//! The `http` capability against servers written here, on loopback: a
//! hand-written plugin (tests/data/plugins/http-get.wat) sends one GET per
//! check call, and each test makes the server misbehave in one way. Every
//! request outside the grant must be refused before any connection, every
//! request must end by its deadline, and nothing a server does may harm the
//! runner. The last tests drive `duplex validate` as an operator would.

mod support;
use support::*;

#[path = "support/wat.rs"]
mod wat;

use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// The http-get plugin (or the skeleton, `None`) granted `origins`.
fn load(
    snippet: Option<&str>,
    origins: &[String],
    timeout: Duration,
) -> Result<LoadedPlugin, PluginError> {
    let dir = tempfile::tempdir().unwrap();
    let (path, sha256) = wat::write(snippet, dir.path());
    shared_host().load(&PluginSpec {
        name: "prober".into(),
        path,
        sha256,
        capabilities: Capabilities {
            http: HttpGrant {
                origins: origins.to_vec(),
            },
            ..Capabilities::default()
        },
        limits: Limits {
            timeout,
            ..Limits::default()
        },
        param_schemas: Default::default(),
    })
}

fn prober(origins: &[String]) -> LoadedPlugin {
    load(Some("http-get"), origins, Duration::from_secs(10)).unwrap()
}

/// A GET of `url` through the plugin, with the request's own timeout when
/// `timeout_ms` is set.
fn get(
    p: &LoadedPlugin,
    url: &str,
    timeout_ms: Option<u32>,
) -> Result<CallOutcome<CheckResult>, CallError> {
    let mut ctx = CallContext::new("s-1", UpgradeState::PrepareSplit, "gate/probe");
    ctx.params = serde_json::json!({ "url": url });
    if let Some(ms) = timeout_ms {
        assert!(ms > 1);
        ctx.attempt = ms;
    }
    p.check(&ctx, "gate")
}

/// A loopback server: `answer` is called with each connection (after its
/// request head was read) until it returns false. Returns the origin and a
/// receiver of the request heads it saw.
struct Server {
    origin: String,
    port: u16,
    heads: mpsc::Receiver<String>,
    done: mpsc::Receiver<()>,
}

fn serve(mut answer: impl FnMut(usize, &str, &mut TcpStream) -> bool + Send + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, heads) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { break };
            let head = read_head(&mut conn);
            let _ = tx.send(head.clone());
            if !answer(i, &head, &mut conn) {
                break;
            }
        }
        let _ = done_tx.send(());
    });
    Server {
        origin: format!("http://127.0.0.1:{port}"),
        port,
        heads,
        done,
    }
}

fn read_head(conn: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A port with a listener that nobody serves: whether anything connected
/// to it is seen by accepting without blocking.
struct Untouched(TcpListener);

impl Untouched {
    fn new() -> Untouched {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        Untouched(l)
    }
    fn port(&self) -> u16 {
        self.0.local_addr().unwrap().port()
    }
    fn assert_untouched(&self) {
        match self.0.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Ok((_, from)) => panic!("a connection from {from} reached the listener"),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn message(outcome: &CallOutcome<CheckResult>) -> &str {
    &outcome.value.message
}

#[test]
fn a_get_to_a_granted_origin_returns_status_headers_and_body() {
    let server = serve(|_, _, conn| {
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nX-Probe: yes\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        false
    });
    // Written as an operator might: upper case, a trailing slash.
    let grant = format!("HTTP://127.0.0.1:{}/", server.port);
    let p = prober(&[grant]);
    let url = format!("{}/health", server.origin);
    let out = get(&p, &url, None).unwrap();
    assert_eq!(message(&out), format!("200 0 0000005 {url} hello"));
    assert!(
        out.value
            .observations
            .contains(&("x-probe".to_string(), "yes".to_string())),
        "{:?}",
        out.value.observations
    );
    let head = server.heads.recv().unwrap();
    assert!(head.starts_with("GET /health HTTP/1.1\r\n"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("cookie"), "{head}");
    let line = out
        .logs
        .iter()
        .find(|l| l.source == LogSource::Host && l.message.starts_with("http GET"))
        .unwrap_or_else(|| panic!("no request line in {:?}", out.logs));
    assert!(
        line.message
            .starts_with(&format!("http GET {url}: 200 in ")),
        "{}",
        line.message
    );
}

#[test]
fn another_port_of_a_granted_host_is_refused_without_connecting() {
    let granted = Untouched::new();
    let other = Untouched::new();
    let p = prober(&[format!("http://127.0.0.1:{}", granted.port())]);
    let url = format!("http://127.0.0.1:{}/health", other.port());
    let err = get(&p, &url, None).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "`{url}` is outside the origins granted to plugin `prober` (http://127.0.0.1:{}): its origin is http://127.0.0.1:{}",
            granted.port(),
            other.port()
        )),
        "{text}"
    );
    other.assert_untouched();
    granted.assert_untouched();
    // Not a URL at all, another scheme, credentials in the URL: refused too.
    for (bad, why) in [
        ("not a url", "`not a url` is not a URL"),
        ("/health", "`/health` has no scheme"),
        (
            &*format!("ftp://127.0.0.1:{}/", granted.port()),
            "scheme `ftp` is not supported",
        ),
        (
            &*format!("http://user:pw@127.0.0.1:{}/", granted.port()),
            "has user info",
        ),
    ] {
        let text = get(&p, bad, None).unwrap_err().to_string();
        assert!(text.contains(why), "{bad}: {text}");
    }
    granted.assert_untouched();
}

#[test]
fn a_redirect_out_of_the_grant_is_refused_and_never_followed() {
    let outside = Untouched::new();
    let location = format!("http://127.0.0.1:{}/elsewhere", outside.port());
    let server = serve(move |_, _, conn| {
        let _ = write!(
            conn,
            "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        false
    });
    let p = prober(std::slice::from_ref(&server.origin));
    let url = format!("{}/start", server.origin);
    let text = get(&p, &url, None).unwrap_err().to_string();
    assert!(
        text.contains(&format!(
            "redirect (302) from {url} refused: `http://127.0.0.1:{}/elsewhere` is outside the origins granted to plugin `prober`",
            outside.port()
        )),
        "{text}"
    );
    outside.assert_untouched();
}

#[test]
fn redirects_within_the_grant_are_followed() {
    let target = serve(|_, _, conn| {
        let _ = conn
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nmoved");
        false
    });
    let next = format!("{}/new", target.origin);
    // First a relative redirect on the same origin, then one to the other
    // granted origin.
    let first = serve(move |i, _, conn| {
        let answer = match i {
            0 => "HTTP/1.1 307 Temporary Redirect\r\nLocation: /step\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
            _ => format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: {next}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        };
        let _ = conn.write_all(answer.as_bytes());
        i == 0
    });
    let p = prober(&[first.origin.clone(), target.origin.clone()]);
    let url = format!("{}/old", first.origin);
    let out = get(&p, &url, None).unwrap();
    assert_eq!(
        message(&out),
        format!("200 0 0000005 {}/new moved", target.origin)
    );
    assert!(first.heads.recv().unwrap().starts_with("GET /old "));
    assert!(first.heads.recv().unwrap().starts_with("GET /step "));
    assert!(target.heads.recv().unwrap().starts_with("GET /new "));
}

/// A server that sends its head, then one byte of a long body a second,
/// until the client goes away; `done` fires when it noticed.
fn slow_loris() -> Server {
    serve(|_, _, conn| {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
        while conn.write_all(b"x").is_ok() {
            thread::sleep(Duration::from_secs(1));
        }
        false
    })
}

#[test]
fn a_slow_loris_server_ends_at_the_request_timeout_with_a_clear_reason() {
    let server = slow_loris();
    let p = prober(std::slice::from_ref(&server.origin));
    let url = format!("{}/trickle", server.origin);
    let text = get(&p, &url, Some(1500)).unwrap_err().to_string();
    assert!(
        text.contains(&format!(
            "{url} answered 200 but its body could not be read"
        )) && text.contains("the request's time ran out"),
        "{text}"
    );
    // The connection was closed, not left to the server: it noticed.
    server
        .done
        .recv_timeout(Duration::from_secs(60))
        .expect("the trickling connection was closed");
}

#[test]
fn a_slow_loris_server_ends_at_the_calls_deadline_and_the_runner_goes_on() {
    let server = slow_loris();
    let healthy = serve(|_, _, conn| {
        let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        false
    });
    let p = load(
        Some("http-get"),
        &[server.origin.clone(), healthy.origin.clone()],
        Duration::from_secs(2),
    )
    .unwrap();
    let err = get(&p, &format!("{}/trickle", server.origin), None).unwrap_err();
    assert!(
        matches!(err, CallError::Timeout { .. }),
        "{err}: not a timeout"
    );
    assert!(
        err.to_string().contains("exceeded its deadline of 2s"),
        "{err}"
    );
    server
        .done
        .recv_timeout(Duration::from_secs(60))
        .expect("the trickling connection was closed");
    // The same plugin, the next call: answered.
    let out = get(&p, &format!("{}/ok", healthy.origin), None).unwrap();
    assert!(
        message(&out).starts_with("204 0 0000000 "),
        "{}",
        message(&out)
    );
}

#[test]
fn a_huge_body_is_cut_at_the_cap_and_not_read_further() {
    const SENT: usize = 8 << 20;
    let (sent_tx, sent) = mpsc::channel();
    let server = serve(move |_, _, conn| {
        let _ = write!(
            conn,
            "HTTP/1.1 200 OK\r\nContent-Length: {SENT}\r\nConnection: close\r\n\r\n"
        );
        let chunk = [b'x'; 64 << 10];
        let mut n = 0;
        while n < SENT && conn.write_all(&chunk).is_ok() {
            n += chunk.len();
        }
        let _ = sent_tx.send(n);
        false
    });
    let p = prober(std::slice::from_ref(&server.origin));
    let url = format!("{}/big", server.origin);
    let out = get(&p, &url, None).unwrap();
    assert_eq!(
        message(&out),
        format!("200 1 {} {url} {}", MAX_HTTP_BODY_BYTES, "x".repeat(64))
    );
    // The client stopped reading and closed: the server could not send it all.
    let n = sent.recv_timeout(Duration::from_secs(60)).unwrap();
    assert!(n < SENT, "the whole body ({n} bytes) was taken");
}

#[test]
fn importing_http_without_a_grant_is_refused_at_load_and_a_grant_alone_is_fine() {
    let err = load(Some("http-get"), &[], Duration::from_secs(10)).unwrap_err();
    let PluginError::Grant { problems, .. } = &err else {
        panic!("{err}: not a grant problem")
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].at, "");
    assert!(
        problems[0].message.contains(
            "plugin `prober` imports duplex:plugin/http but the policy grants it no origin"
        ),
        "{}",
        problems[0].message
    );
    // A grant the plugin does not import does nothing, and is no problem.
    load(
        None,
        &["http://127.0.0.1:9".into()],
        Duration::from_secs(10),
    )
    .unwrap();
    // A malformed origin given to the host directly is refused at the grant.
    let err = load(
        Some("http-get"),
        &["http://127.0.0.1:9/path".into()],
        Duration::from_secs(10),
    )
    .unwrap_err();
    let PluginError::Grant { problems, .. } = &err else {
        panic!("{err}: not a grant problem")
    };
    assert_eq!(problems[0].at, "/capabilities/http/0");
}

/// A policy with the http-get plugin as a third entry, `capabilities` as
/// given; returns the 1-based line of the entry's `- name:`.
fn policy_with_prober(site: &Site, capabilities: &str) -> usize {
    let (path, digest) = wat::write(Some("http-get"), site.dir.path());
    let file = site.policy(
        "",
        &format!(
            "    - name: prober\n      source: {}\n      sha256: {digest}\n{capabilities}",
            path.display()
        ),
    );
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .position(|l| l == "    - name: prober")
        .unwrap()
        + 1
}

#[test]
fn validate_refuses_a_plugin_importing_http_without_a_grant_at_its_entry() {
    let site = Site::new();
    let line = policy_with_prober(&site, "");
    let out = site.duplex(&["validate", site.policy_path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "policy.yaml:{line}:7: spec.plugins[2]: plugin `prober` imports duplex:plugin/http but the policy grants it no origin"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn validate_places_a_malformed_origin_at_the_origin() {
    let site = Site::new();
    let line = policy_with_prober(
        &site,
        "      capabilities:\n        http:\n          - http://127.0.0.1:8080\n          - https://health.example/status\n",
    );
    let out = site.duplex(&["validate", site.policy_path().to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "policy.yaml:{}:13: spec.plugins[2].capabilities.http[1]: `https://health.example/status` has a path or query (`/status`)",
            line + 6
        )),
        "{}",
        out.stderr
    );
    // Fixed, it is valid.
    policy_with_prober(
        &site,
        "      capabilities:\n        http:\n          - http://127.0.0.1:8080\n          - https://health.example\n",
    );
    let out = site.duplex(&["validate", site.policy_path().to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn inspect_shows_the_imports_and_the_grant_each_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = wat::write(Some("http-get"), dir.path());
    // No policy grants it anything here: inspect still describes it.
    let out = duplex_run(&["plugin", "inspect", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(
            "imports:\n  duplex:plugin/host@0.1.0\n  duplex:plugin/storage@0.1.0  (needs `capabilities.storage` in the policy)\n  duplex:plugin/http@0.1.0  (needs `capabilities.http` in the policy)\n"
        ),
        "{}",
        out.stdout
    );
    let out = duplex_run(&[
        "--output",
        "json",
        "plugin",
        "inspect",
        path.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["imports"],
        serde_json::json!([
            {"name": "duplex:plugin/host@0.1.0", "grantedBy": null},
            {"name": "duplex:plugin/storage@0.1.0", "grantedBy": "storage"},
            {"name": "duplex:plugin/http@0.1.0", "grantedBy": "http"},
        ])
    );
}

#[test]
fn plan_and_validate_show_what_each_plugin_is_granted() {
    let site = Site::new();
    policy_with_prober(
        &site,
        "      capabilities:\n        http: [\"HTTP://127.0.0.1:8080/\", \"https://health.example\"]\n        env: {TOKEN: s3cret}\n",
    );
    let file = site.policy_path();
    let file = file.to_str().unwrap();
    let shown = "  sim-duplex:
      storage: key-value store, namespace `sim`
  sim-checks:
      storage: key-value store, namespace `sim`
  prober:
      env: environment variable TOKEN
      http: http://127.0.0.1:8080
      http: https://health.example:443
";
    let out = site.duplex(&["validate", file]);
    // The env grant is refused (the plugin imports no WASI): the grants are
    // shown with a valid policy only.
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("cannot use `env`"), "{}", out.stderr);
    let out = site.duplex(&["plan", file]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains(&format!(
            "\nPlugins and what the policy grants them:\n{shown}"
        )),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("s3cret"), "{}", out.stdout);
    let out = site.duplex(&["--output", "json", "plan", file]);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        plan["plugins"][2],
        serde_json::json!({"plugin": "prober", "grants": [
            {"capability": "env", "detail": "environment variable TOKEN"},
            {"capability": "http", "detail": "http://127.0.0.1:8080"},
            {"capability": "http", "detail": "https://health.example:443"},
        ]})
    );

    policy_with_prober(
        &site,
        "      capabilities:\n        http: [\"http://127.0.0.1:8080\"]\n",
    );
    let out = site.duplex(&["validate", file]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .ends_with("  prober:\n      http: http://127.0.0.1:8080\n"),
        "{}",
        out.stdout
    );
    let out = site.duplex(&["--output", "json", "validate", file]);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        report["files"][0]["plugins"][2],
        serde_json::json!({"plugin": "prober", "grants": [
            {"capability": "http", "detail": "http://127.0.0.1:8080"},
        ]})
    );
}

/// A session whose PrepareSplit gate asks `url` through the prober plugin,
/// granted `origin`; runs `duplex apply --until Split`.
fn apply_with_health_gate(site: &Site, origin: &str, url: &str) -> Run {
    let (path, digest) = wat::write(Some("http-get"), site.dir.path());
    site.policy(
        "",
        &format!(
            "    - name: prober
      source: {}
      sha256: {digest}
      capabilities: {{http: [\"{origin}\"]}}
  retries: {{default: {{limit: 0}}}}
  gates:
    prepareSplit:
      - {{name: health, plugin: prober, check: gate, failureLimit: 1, interval: 10ms, with: {{url: \"{url}\"}}}}
",
            path.display()
        ),
    );
    site.apply(&["--until", "Split"])
}

#[test]
fn a_session_gate_asks_a_health_endpoint_and_logs_the_request() {
    let server = serve(|_, _, conn| {
        let _ =
            conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nup");
        true
    });
    let site = Site::new();
    let url = format!("{}/health", server.origin);
    let out = apply_with_health_gate(&site, &server.origin, &url);
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(log.contains(&format!("http GET {url}: 200 in ")), "{log}");
    assert!(log.contains(&format!("200 0 0000002 {url} up")), "{log}");
}

#[test]
fn a_session_gate_asking_outside_its_grant_fails_with_the_reason_and_holds() {
    let granted = Untouched::new();
    let other = Untouched::new();
    let site = Site::new();
    let origin = format!("http://127.0.0.1:{}", granted.port());
    let url = format!("http://127.0.0.1:{}/health", other.port());
    let out = apply_with_health_gate(&site, &origin, &url);
    assert_eq!(out.code, 5, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains(&format!(
            "`{url}` is outside the origins granted to plugin `prober` ({origin})"
        )),
        "{log}"
    );
    other.assert_untouched();
    granted.assert_untouched();
}
