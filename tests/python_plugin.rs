//! A plugin written in Python, end to end with the `duplex` binary:
//! `policies/python-plugin.yaml` as shipped (its 127.0.0.1:8080 replaced by
//! a health server this test runs on loopback) gates the simulated upgrade
//! on plugins/dist/py-http-health.wasm (componentize-py, CPython inside).
//!
//! The component is 18 MB: the debug-built duplex compiles it in about 40 s
//! (cranelift at opt-level 2, two busy cores). Every test here shares the
//! compiled-plugin cache of the test run (support::plugin_cache_dir), which
//! the first test to get there fills while the others wait, so the suite
//! pays for the compile once. `the_python_sdks_unit_tests_pass` runs the SDK's
//! native unit tests (tests/python_sdk) over bindings componentize-py generates.

mod support;
use support::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// An HTTP server on loopback answering every request with `answer`
/// (status line, JSON body); counts the requests to `/health`.
struct Health {
    origin: String,
    answer: Arc<Mutex<(u16, String)>>,
    asked: Arc<Mutex<usize>>,
}

impl Health {
    fn start(status: u16, body: &str) -> Health {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new((status, body.to_string())));
        let asked = Arc::new(Mutex::new(0));
        let (a, n) = (answer.clone(), asked.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                serve(conn, &a, &n);
            }
        });
        Health {
            origin,
            answer,
            asked,
        }
    }

    fn asked(&self) -> usize {
        *self.asked.lock().unwrap()
    }

    fn answer(&self, status: u16, body: &str) {
        *self.answer.lock().unwrap() = (status, body.to_string());
    }
}

fn serve(mut conn: TcpStream, answer: &Mutex<(u16, String)>, asked: &Mutex<usize>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let (status, body) = if head.starts_with("GET /health ") {
        // Counted and answered under one lock: whoever sees the count sees
        // the answer that request got.
        let mut n = asked.lock().unwrap();
        *n += 1;
        answer.lock().unwrap().clone()
    } else {
        (404, "{}".to_string())
    };
    let reason = if status == 200 { "OK" } else { "Not OK" };
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// policies/python-plugin.yaml with its origin replaced by `origin` and its
/// relative paths made absolute, written into `site`.
fn render_policy(site: &Site, origin: &str) -> PathBuf {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("policies/python-plugin.yaml")).unwrap();
    assert!(text.contains("http://127.0.0.1:8080"), "{text}");
    let text = text
        .replace("http://127.0.0.1:8080", origin)
        .replace(
            "source: ../plugins/dist/",
            &format!("source: {}/", root.join("plugins/dist").display()),
        )
        .replace(
            "source: artifacts/",
            &format!("source: {}/", root.join("policies/artifacts").display()),
        );
    let path = site.policy_path();
    std::fs::write(&path, text).unwrap();
    path
}

/// Fills the shared plugin cache with the Python component once, so tests
/// running in parallel do not each compile 18 MB.
fn compiled_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = duplex_run(&["validate", "policies/python-plugin.yaml"]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    });
}

fn apply(site: &Site, policy: &std::path::Path) -> Run {
    compiled_once();
    site.duplex(&["apply", policy.to_str().unwrap()])
}

#[test]
fn a_healthy_service_passes_the_python_gate_and_the_upgrade_commits() {
    let health = Health::start(200, r#"{"status": "ok", "version": "2.4.1"}"#);
    let site = Site::new();
    let policy = render_policy(&site, &health.origin);
    let out = apply(&site, &policy);
    assert_committed(&site, &out);
    let log = site.log_text();
    let url = format!("{}/health", health.origin);
    assert!(
        log.contains(&format!(
            "check `service-healthy`: pass: GET {url} answered 200"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "check `service-after-merge`: pass: GET {url} answered 200"
        )),
        "{log}"
    );
    // The gate once, then verification rounds over its 1 s soak.
    assert!(health.asked() >= 3, "asked {} times", health.asked());
}

#[test]
fn an_unhealthy_service_fails_the_python_gate_and_the_session_aborts() {
    let health = Health::start(503, r#"{"status": "degraded", "version": "2.4.0"}"#);
    let site = Site::new();
    let policy = render_policy(&site, &health.origin);
    let out = apply(&site, &policy);
    // The gate fails three times in a row, is retried once (the policy's
    // limit), and retriesExhausted aborts: production never moved.
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let url = format!("{}/health", health.origin);
    let log = site.log_text();
    assert!(
        log.contains(&format!(
            "check `service-healthy`: fail (3 in a row): GET {url} answered 503, not 200"
        )),
        "{log}"
    );
    assert!(
        log.contains("gate `service-healthy` failed 3 time(s) in a row"),
        "{log}"
    );
    assert!(
        log.contains("auto-abort rule `retriesExhausted` fired (abort)"),
        "{log}"
    );
    let states = site.states();
    assert!(states.contains(&"Abort".to_string()), "{states:?}");
    assert!(!states.contains(&"Split".to_string()), "{states:?}");
    assert_eq!(health.asked(), 6, "3 failures, then 3 more after the retry");
}

#[test]
fn a_service_that_becomes_healthy_passes_the_gate_after_failing_it() {
    let health = Arc::new(Health::start(503, r#"{"status": "starting"}"#));
    let site = Site::new();
    let policy = render_policy(&site, &health.origin);
    compiled_once();
    let h = health.clone();
    let flip = std::thread::spawn(move || {
        while h.asked() < 1 {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        h.answer(200, r#"{"status": "ok", "version": "2.4.1"}"#);
    });
    let out = apply(&site, &policy);
    flip.join().unwrap();
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains("check `service-healthy`: fail (1 in a row): GET "),
        "{log}"
    );
    assert!(log.contains("check `service-healthy`: pass: GET "), "{log}");
    assert_eq!(site.states(), FORWARD);
}

#[test]
fn a_wrong_json_field_fails_with_what_the_field_was() {
    let health = Health::start(200, r#"{"status": "starting"}"#);
    let site = Site::new();
    let policy = render_policy(&site, &health.origin);
    let out = apply(&site, &policy);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains(&format!(
            "fail: GET {}/health: `status` is \"starting\", not \"ok\"",
            health.origin
        )),
        "{log}"
    );
}

#[test]
fn inspect_shows_that_the_python_plugin_imports_only_host_and_http_of_the_contract() {
    compiled_once();
    let out = duplex_run(&[
        "--output",
        "json",
        "plugin",
        "inspect",
        "plugins/dist/py-http-health.wasm",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let duplex: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .filter(|n| n.starts_with("duplex:"))
        .collect();
    assert_eq!(
        duplex,
        [
            "duplex:plugin/types@0.1.0",
            "duplex:plugin/host@0.1.0",
            "duplex:plugin/http@0.1.0"
        ]
    );
    assert_eq!(v["plugin"]["name"], "py-http-health");
    let check = &v["plugin"]["checks"][0];
    assert_eq!(check["name"], "http-health");
    assert_eq!(
        check["paramsSchema"]["required"],
        serde_json::json!(["url"])
    );
    assert_eq!(
        check["paramsSchema"]["additionalProperties"],
        serde_json::json!(false)
    );
}

#[test]
fn validate_refuses_a_parameter_the_python_check_does_not_describe() {
    compiled_once();
    let site = Site::new();
    let policy = render_policy(&site, "http://127.0.0.1:9");
    let text = std::fs::read_to_string(&policy)
        .unwrap()
        .replace("timeout-ms: 1000", "timeout-ms: 1000\n          retries: 3");
    std::fs::write(&policy, text).unwrap();
    let out = site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("retries"), "{}", out.stderr);
    assert!(out.stderr.contains("policy.yaml:"), "{}", out.stderr);
}

/// A scratch directory that is not inside this repository.
fn outside_the_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root().canonicalize().unwrap();
    assert!(
        !dir.path().canonicalize().unwrap().starts_with(&root),
        "the temporary directory {} is inside the repository",
        dir.path().display()
    );
    dir
}

/// `duplex ARGS...` run from `dir`, as someone working there would.
fn duplex_in(dir: &std::path::Path, args: &[&str]) -> Run {
    let mut cmd = duplex();
    cmd.current_dir(dir).args(args);
    run(&mut cmd)
}

#[test]
fn a_vendor_scaffolds_builds_inspects_pins_and_applies_a_python_plugin_outside_the_repository() {
    let work = outside_the_repository();
    let out = duplex_in(
        work.path(),
        &["plugin", "new", "acme-health", "--lang", "python"],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Created the Python plugin `acme-health`"),
        "{}",
        out.stdout
    );
    let project = work.path().join("acme-health");
    for file in [
        "duplex-plugin.toml",
        "app.py",
        "README.md",
        "wit/world.wit",
        "wit/deps/duplex-plugin/plugin.wit",
        "vendor/duplex_plugin/__init__.py",
    ] {
        assert!(project.join(file).is_file(), "no {file}");
    }
    // The contract in the project is the one this duplex speaks, unchanged.
    assert_eq!(
        std::fs::read_to_string(project.join("wit/deps/duplex-plugin/plugin.wit")).unwrap(),
        std::fs::read_to_string(repo_root().join("plugin-sdk/wit/plugin.wit")).unwrap()
    );

    // Build, from the project directory, as its README says.
    let out = duplex_in(&project, &["--output", "json", "plugin", "build"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let built: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(built["file"], "dist/acme-health.wasm");
    assert_eq!(built["language"], "python");
    assert_eq!(built["componentizer"], "componentize-py 0.25.1");
    let wasm = project.join("dist/acme-health.wasm");
    let sha256 = sha256_hex(&std::fs::read(&wasm).unwrap());
    assert_eq!(built["sha256"], sha256.as_str());

    let out = duplex_in(&project, &["plugin", "inspect", "dist/acme-health.wasm"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("acme-health 0.1.0"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("  service-up  The service answers its URL"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("duplex:plugin/http@0.1.0  (needs `capabilities.http` in the policy)"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("duplex:plugin/storage"),
        "{}",
        out.stdout
    );

    // Pinned in a policy beside it, gating the simulated upgrade.
    let health = Health::start(200, r#"{"status": "ok"}"#);
    let site = Site::new();
    site.policy(
        "",
        &format!(
            "    - name: acme-health
      source: {}
      sha256: {sha256}
      capabilities: {{http: [\"{origin}\"]}}
  gates:
    prepareSplit:
      - {{name: service-up, plugin: acme-health, check: service-up, interval: 10ms, with: {{url: \"{origin}/health\", body-contains: ok}}}}
",
            wasm.display(),
            origin = health.origin
        ),
    );
    let policy = site.policy_path();
    let out = site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(site.states(), FORWARD);
    assert!(
        site.log_text().contains(&format!(
            "check `service-up`: pass: GET {}/health answered 200",
            health.origin
        )),
        "{}",
        site.log_text()
    );
    assert_eq!(health.asked(), 1);
}

#[test]
fn building_a_python_plugin_without_componentize_py_names_the_install_script() {
    let work = outside_the_repository();
    let out = duplex_in(
        work.path(),
        &["plugin", "new", "no-tools", "--lang", "python"],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let empty = work.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = duplex();
    cmd.current_dir(work.path().join("no-tools"))
        .args(["plugin", "build"])
        .env("DUPLEX_TOOLCHAINS", &empty)
        .env("PATH", &empty);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "componentize-py, which builds Python plugins, is neither in {} nor on the PATH: install it with scripts/install-plugin-toolchain-python.sh",
            empty.join("python/bin/componentize-py").display()
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("pip install componentize-py==0.25.1"),
        "{}",
        out.stderr
    );
    assert!(!work.path().join("no-tools/dist").exists());
}

#[test]
fn a_marker_with_an_unknown_language_is_refused_at_its_line() {
    let work = outside_the_repository();
    std::fs::write(
        work.path().join("duplex-plugin.toml"),
        "name = \"x\"\nlanguage = \"cobol\"\n",
    )
    .unwrap();
    let out = duplex_in(work.path(), &["plugin", "build"]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "duplex-plugin.toml: `language = \"cobol\"` is not a language `duplex plugin build` builds (one of: python;"
        ),
        "{}",
        out.stderr
    );
}

/// componentize-py as `duplex plugin build` finds it (the toolchain
/// directory, else the PATH), and the Python beside it.
fn python_toolchain() -> (PathBuf, PathBuf) {
    let base = std::env::var_os("DUPLEX_TOOLCHAINS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/duplex/toolchains")
        });
    let installed = base.join("python/bin/componentize-py");
    if installed.is_file() {
        return (installed, base.join("python/bin/python"));
    }
    (PathBuf::from("componentize-py"), PathBuf::from("python3"))
}

/// The SDK's own logic (tests/python_sdk/test_sdk.py), natively, over the
/// bindings componentize-py generates for the contract's world (every
/// capability imported, so the storage and files helpers are there).
#[test]
fn the_python_sdks_unit_tests_pass() {
    let (componentize_py, python) = python_toolchain();
    let root = repo_root();
    let bindings = tempfile::tempdir().unwrap();
    let out = run(std::process::Command::new(&componentize_py)
        .arg("-d")
        .arg(root.join("plugin-sdk/wit"))
        .args(["-w", "plugin", "bindings"])
        .arg(bindings.path()));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let tests = root.join("tests/python_sdk");
    let path = std::env::join_paths([
        bindings.path().to_path_buf(),
        root.join("plugin-sdk/python"),
    ])
    .unwrap();
    let out = run(std::process::Command::new(&python)
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(&tests)
        .arg("-t")
        .arg(&tests)
        .env("PYTHONPATH", path)
        .env("PYTHONDONTWRITEBYTECODE", "1"));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("Ran 13 tests"), "{}", out.stderr);
    assert!(out.stderr.ends_with("OK\n"), "{}", out.stderr);
}
