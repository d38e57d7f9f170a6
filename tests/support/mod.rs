//! Helpers shared by the black-box tests: run the `duplex` binary as an
//! operator would and look at what it printed.
#![allow(dead_code)]

pub mod agent;
pub mod fleet_history;
pub mod fleetlock;
pub mod prometheus;
pub mod registry;
pub mod webdriver;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The states a committed session passes through, in order.
pub const FORWARD: [&str; 8] = [
    "Idle",
    "PrepareSplit",
    "Split",
    "PrepareMerge",
    "Merge",
    "Commit",
    "Finish",
    "Idle",
];

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The compiled-plugin cache every test shares: each plugin compiles once
/// for the whole test run, not once per state dir or test.
pub fn plugin_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// One plugin host for a test binary, over the shared cache.
pub fn shared_host() -> &'static duplex_core::plugins::PluginHost {
    static HOST: std::sync::OnceLock<duplex_core::plugins::PluginHost> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        duplex_core::plugins::PluginHost::new(duplex_core::plugins::HostConfig {
            cache_dir: Some(plugin_cache_dir()),
            ..Default::default()
        })
        .unwrap()
    })
}

pub fn duplex() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_duplex"));
    cmd.current_dir(repo_root());
    cmd.env("DUPLEX_CACHE_DIR", plugin_cache_dir());
    cmd
}

/// `duplex apply` of the simulated system committed: exit 0, the closing
/// line, and every state of the forward path in order.
#[track_caller]
pub fn assert_committed(site: &Site, out: &Run) {
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Upgrade committed and finished: sim-ft-01 runs acme-app 2.4.1."),
        "{}",
        out.stdout
    );
    assert_eq!(site.states(), FORWARD);
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("duplex runs");
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(stderr).expect("stderr is UTF-8"),
    }
}

pub fn duplex_run(args: &[&str]) -> Run {
    run(duplex().args(args))
}

/// Compare against a golden file; `UPDATE_GOLDEN=1` rewrites it instead.
pub fn assert_golden(path: &Path, actual: &str) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|_| {
        panic!(
            "missing golden file {}; run with UPDATE_GOLDEN=1 to create it",
            path.display()
        )
    });
    assert_eq!(
        actual,
        expected,
        "output differs from {} (run with UPDATE_GOLDEN=1 if the change is intended)",
        path.display()
    );
}

/// The sha256 of a built plugin, from plugins/dist/SHA256SUMS.
pub fn plugin_digest(name: &str) -> String {
    let sums = std::fs::read_to_string(repo_root().join("plugins/dist/SHA256SUMS")).unwrap();
    sums.lines()
        .find(|l| l.ends_with(&format!(" {name}.wasm")))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("{name} is not in SHA256SUMS"))
        .to_string()
}

/// A scratch place for one test: a state dir and a policy file.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        Site {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    /// Write a policy on the simulated system, instant (no delays), with
    /// `target_with` for sim-duplex and `spec` appended to its `spec:`.
    pub fn policy(&self, target_with: &str, spec: &str) -> PathBuf {
        let root = repo_root();
        let app = root.join("policies/artifacts/acme-app-2.4.1.pkg");
        let text = format!(
            "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata:
  name: test-upgrade
spec:
  target:
    name: sim-test
    plugin: sim-duplex
    with: {{time-scale: 0{target_with}}}
  software:
    - name: acme-app
      version: \"2.4.1\"
      source: {app}
      sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5
  plugins:
    - name: sim-duplex
      source: {dist}/sim-duplex.wasm
      sha256: {d}
      capabilities: {{storage: true, storageNamespace: sim}}
    - name: sim-checks
      source: {dist}/sim-checks.wasm
      sha256: {c}
      capabilities: {{storage: true, storageNamespace: sim}}
{spec}",
            app = app.display(),
            dist = root.join("plugins/dist").display(),
            d = plugin_digest("sim-duplex"),
            c = plugin_digest("sim-checks"),
        );
        std::fs::write(self.policy_path(), text).unwrap();
        self.policy_path()
    }

    /// Run `duplex --state-dir <state> ARGS...`.
    pub fn duplex(&self, args: &[&str]) -> Run {
        let mut cmd = duplex();
        cmd.arg("--state-dir").arg(self.state_dir()).args(args);
        cmd.env("DUPLEX_OPERATOR", "tester");
        run(&mut cmd)
    }

    /// Run `duplex --state-dir <state> ARGS...` as another operator.
    pub fn duplex_as(&self, operator: &str, args: &[&str]) -> Run {
        let mut cmd = duplex();
        cmd.arg("--state-dir").arg(self.state_dir()).args(args);
        cmd.env("DUPLEX_OPERATOR", operator);
        run(&mut cmd)
    }

    /// The journal of the latest session, as text (empty when there is none).
    pub fn records(&self) -> String {
        let sessions = self.state_dir().join("sessions");
        std::fs::read_dir(&sessions)
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                    .max()
            })
            .and_then(|dir| std::fs::read_to_string(dir.join("journal")).ok())
            .unwrap_or_default()
    }

    pub fn apply(&self, extra: &[&str]) -> Run {
        let policy = self.policy_path();
        let mut args = vec!["apply", policy.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.duplex(&args)
    }

    /// The states the session passed through, from `duplex log --output json`.
    pub fn states(&self) -> Vec<String> {
        let out = self.duplex(&["log", "--output", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let mut states: Vec<String> = Vec::new();
        for line in out.stdout.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let s = v["state"].as_str().unwrap().to_string();
            if states.last() != Some(&s) {
                states.push(s);
            }
        }
        states
    }

    pub fn status_json(&self) -> serde_json::Value {
        let out = self.duplex(&["status", "--output", "json"]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).unwrap()
    }

    pub fn log_text(&self) -> String {
        self.duplex(&["log"]).stdout
    }
}

pub const GATES: &str = "  gates:
    prepareSplit:
      - {name: duplexed, plugin: sim-checks, check: duplexed, interval: 10ms}
    prepareMerge:
      - {name: services, plugin: sim-checks, check: services-running, interval: 10ms, consecutiveSuccesses: 2}
  verification:
    soak: 30ms
    interval: 10ms
    checks:
      - {name: after-merge, plugin: sim-checks, check: services-running}
";

/// The sha256 of some bytes, as policies pin it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    duplex_core::plugins::sha256_hex(bytes)
}
