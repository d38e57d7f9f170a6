//! A real service on this host, upgraded through the `duplex` binary with
//! `policies/real-host.yaml` and the `ab-service` plugin: acme-service
//! (examples/acme-service) runs from a temporary home on two loopback ports,
//! controlled by the repository's `acme-ctl` through the `exec` capability.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Run, duplex, repo_root, run};

/// One host: the service's home with 1.0.0 installed and serving.
struct Host {
    dir: tempfile::TempDir,
    port: u16,
    test_port: u16,
}

const V1: &str = "1.0.0";
const V2: &str = "2.0.0";

/// A free port below the kernel's ephemeral range (32768–60999 here): the
/// prober's thousands of connections take their local ports from that range,
/// and one of them could take a port picked there before the service binds it.
fn free_port() -> u16 {
    loop {
        let port = fastrand::u16(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn ctl_path() -> PathBuf {
    repo_root().join("examples/acme-service/acme-ctl")
}

impl Host {
    fn new() -> Host {
        // The ports are free when picked, not when the service binds them:
        // under a loaded suite another process can take one in between.
        // Three tries with fresh ports, each failure shown.
        for attempt in 1..=3 {
            match Host::try_new() {
                Ok(host) => return host,
                Err(why) if attempt < 3 => {
                    eprintln!("production did not start, trying new ports: {why}")
                }
                Err(why) => panic!("production did not start three times: {why}"),
            }
        }
        unreachable!()
    }

    fn try_new() -> Result<Host, String> {
        let dir = tempfile::tempdir().unwrap();
        let host = Host {
            dir,
            port: free_port(),
            test_port: free_port(),
        };
        let v1 = host.home().join("releases").join(V1);
        std::fs::create_dir_all(&v1).unwrap();
        let untar = Command::new("tar")
            .arg("-xzf")
            .arg(repo_root().join("policies/artifacts/acme-service-1.0.0.tar.gz"))
            .arg("-C")
            .arg(&v1)
            .status()
            .unwrap();
        assert!(untar.success());
        std::os::unix::fs::symlink("releases/1.0.0", host.home().join("current")).unwrap();
        let started = host.ctl("start", "production");
        if !started.status.success() {
            let log =
                std::fs::read_to_string(host.home().join("run/production.log")).unwrap_or_default();
            return Err(format!("{started:?}; production.log: {log:?}"));
        }
        Ok(host)
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("acme")
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn ctl(&self, verb: &str, instance: &str) -> std::process::Output {
        Command::new(ctl_path())
            .args([verb, instance])
            .env_clear()
            .env("ACME_HOME", self.home())
            .env("ACME_PORT", self.port.to_string())
            .env("ACME_TEST_PORT", self.test_port.to_string())
            .output()
            .unwrap()
    }

    /// `policies/real-host.yaml` with its four host-specific values replaced
    /// (as scripts/demo-real-host.sh does), then `edit`.
    fn policy(&self, edit: impl Fn(String) -> String) -> PathBuf {
        let root = repo_root();
        let text = std::fs::read_to_string(root.join("policies/real-host.yaml")).unwrap();
        let text = text
            .replace("/srv/acme", self.home().to_str().unwrap())
            .replace("/usr/local/bin/acme-ctl", ctl_path().to_str().unwrap())
            .replace("127.0.0.1:8080", &format!("127.0.0.1:{}", self.port))
            .replace("\"8080\"", &format!("\"{}\"", self.port))
            .replace("127.0.0.1:8081", &format!("127.0.0.1:{}", self.test_port))
            .replace("\"8081\"", &format!("\"{}\"", self.test_port))
            .replace(
                "../plugins/dist/",
                &format!("{}/", root.join("plugins/dist").display()),
            )
            .replace(
                "source: artifacts/",
                &format!("source: {}/", root.join("policies/artifacts").display()),
            );
        let path = self.dir.path().join("real-host.yaml");
        std::fs::write(&path, edit(text)).unwrap();
        path
    }

    fn duplex_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = duplex();
        cmd.arg("--state-dir").arg(self.state_dir()).args(args);
        cmd.env("DUPLEX_OPERATOR", "tester");
        cmd
    }

    fn duplex(&self, args: &[&str]) -> Run {
        run(&mut self.duplex_cmd(args))
    }

    fn apply(&self, policy: &Path, extra: &[&str]) -> Run {
        let mut args = vec!["apply", policy.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.duplex(&args)
    }

    fn link(&self, name: &str) -> Option<String> {
        std::fs::read_link(self.home().join(name))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn releases(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.home().join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Every file under the home except the control command's run dir, with
    /// its content or link target: what "nothing changed" compares.
    fn snapshot(&self) -> Vec<(String, String)> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<(String, String)>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let e = e.unwrap();
                let p = e.path();
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                let ft = e.file_type().unwrap();
                if rel == "run" {
                    continue;
                } else if ft.is_symlink() {
                    out.push((
                        rel,
                        format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                    ));
                } else if ft.is_dir() {
                    out.push((rel.clone(), "dir".into()));
                    walk(&p, base, out);
                } else {
                    out.push((
                        rel,
                        String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into(),
                    ));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.home(), &self.home(), &mut out);
        out.sort();
        out
    }

    /// What production serves now (`None`: no answer).
    fn serves(&self) -> Option<String> {
        http_get(self.port, "/version")
    }

    /// Exactly one version serves, from the release every link agrees on,
    /// with nothing of an Upgrade Side left. Returns that version.
    fn assert_converged(&self, context: &str) -> String {
        let served = self
            .serves()
            .unwrap_or_else(|| panic!("{context}: production does not answer"));
        let release = format!("releases/{served}");
        assert_eq!(
            self.link("current").as_deref(),
            Some(release.as_str()),
            "{context}"
        );
        // No known-good link: no session ever split this host.
        let known_good = self.link("known-good");
        assert!(
            known_good.is_none() || known_good.as_deref() == Some(release.as_str()),
            "{context}: known-good is {known_good:?}, production runs {release}"
        );
        assert_eq!(
            self.link("upgrade"),
            None,
            "{context}: an Upgrade Side is left"
        );
        let releases = self.releases();
        assert!(
            releases.iter().all(|r| !r.starts_with('.')),
            "{context}: temporaries left: {releases:?}"
        );
        let expected: Vec<String> = if served == V1 {
            vec![V1.into()]
        } else {
            vec![V1.into(), V2.into()]
        };
        assert_eq!(releases, expected, "{context}");
        assert_eq!(
            self.ctl("status", "test").status.code(),
            Some(3),
            "{context}: the test instance still runs"
        );
        assert_eq!(http_get(self.test_port, "/version"), None, "{context}");
        served
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.ctl("stop", "test");
        self.ctl("stop", "production");
    }
}

/// `GET path` on loopback: the body of a 200, else `None`.
fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    (status.split_whitespace().nth(1) == Some("200")).then(|| body.trim().to_string())
}

/// The repository's prober (examples/acme-service/prober.py) on production.
struct Prober {
    child: Child,
}

impl Prober {
    fn start(host: &Host) -> Prober {
        let ready = host.dir.path().join("probing");
        let child = Command::new("/usr/bin/python3")
            .arg(repo_root().join("examples/acme-service/prober.py"))
            .args(["--port", &host.port.to_string(), "--ready"])
            .arg(&ready)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !ready.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the prober did not start"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        Prober { child }
    }

    fn finish(mut self) -> serde_json::Value {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child.wait().unwrap();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("prober said {out:?}: {e}"))
    }
}

/// Faster pacing for the tests that run many sessions.
fn quick(text: String) -> String {
    text.replace("soak: 2s", "soak: 300ms")
        .replace("interval: 500ms", "interval: 100ms")
        .replace("interval: 200ms", "interval: 50ms")
        .replace("initial: 500ms", "initial: 100ms")
}

#[test]
fn the_policy_rendered_for_this_host_is_valid_and_plan_shows_the_grants() {
    let host = Host::new();
    let policy = host.policy(|t| t);
    let out = host.duplex(&["validate", policy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let out = host.duplex(&["plan", policy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    for granted in [
        ctl_path().to_str().unwrap().to_string(),
        format!("http://127.0.0.1:{}", host.port),
        host.home().to_str().unwrap().to_string(),
    ] {
        assert!(
            out.stdout.contains(&granted),
            "plan does not show {granted}:\n{}",
            out.stdout
        );
    }
}

#[test]
fn upgrades_v1_to_v2_while_production_serves_throughout() {
    let host = Host::new();
    let policy = host.policy(|t| t);
    let prober = Prober::start(&host);
    let out = host.apply(&policy, &[]);
    let seen = prober.finish();
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let versions: Vec<&str> = seen["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [V1, V2], "{seen}");
    assert_eq!(seen["outside_switch"], 0, "{seen}");
    assert_eq!(seen["final"], V2);
    // The switch happened at Merge: the log says so, in order.
    let log = host.duplex(&["log"]).stdout;
    let merge = log
        .find("production switched to releases/2.0.0")
        .expect(&log);
    assert!(
        log[..merge].contains("installed in releases/2.0.0"),
        "{log}"
    );
    eprintln!(
        "real host: {} requests, {} failed inside the Merge switch, outage {} ms",
        seen["requests"], seen["failed"], seen["outage_ms"]
    );
    assert_eq!(host.assert_converged("after the upgrade"), V2);
}

#[test]
fn abort_from_each_abortable_state_leaves_v1_serving_from_its_slot() {
    for state in ["PrepareSplit", "Split", "PrepareMerge", "Merge"] {
        let host = Host::new();
        let before = host.snapshot();
        let policy = host.policy(quick);
        let out = host.apply(&policy, &["--until", state]);
        assert_eq!(
            out.code, 6,
            "--until {state}: {}\n{}",
            out.stdout, out.stderr
        );
        if state == "Merge" {
            assert_eq!(
                host.serves().as_deref(),
                Some(V2),
                "Merge switched production"
            );
        }
        let out = host.duplex(&["abort"]);
        assert_eq!(
            out.code, 3,
            "abort from {state}: {}\n{}",
            out.stdout, out.stderr
        );
        assert_eq!(host.assert_converged(&format!("aborted from {state}")), V1);
        // Only the known-good link is new (the Split records it).
        let mut after = host.snapshot();
        after.retain(|(p, _)| p != "known-good");
        assert_eq!(after, before, "aborted from {state}");
    }
}

/// kill -9 of the runner at a random moment, then `duplex resume`: the host
/// always ends with exactly one version serving and consistent slots.
fn kill_and_resume(runs: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut committed = 0;
    let mut aborted = 0;
    for n in 0..runs {
        let host = Host::new();
        let policy = host.policy(quick);
        let mut runner = host
            .duplex_cmd(&["apply", policy.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // A whole quick session takes about 2.5 s here.
        let delay = Duration::from_millis(rng.u64(0..2_500));
        std::thread::sleep(delay);
        let _ = runner.kill();
        runner.wait().unwrap();
        let context = format!("run {n} (seed {seed}), killed after {delay:?}");
        let out = host.duplex(&["resume"]);
        assert!(
            [0, 3].contains(&out.code) || out.stderr.contains("no upgrade session is in progress"),
            "{context}: resume exit {}\n{}\n{}",
            out.code,
            out.stdout,
            out.stderr
        );
        match host.assert_converged(&context).as_str() {
            V2 => committed += 1,
            _ => aborted += 1,
        }
    }
    eprintln!("{runs} kill -9 runs: {committed} ended on 2.0.0, {aborted} on 1.0.0");
}

#[test]
fn kill_9_at_random_points_then_resume_always_converges() {
    let seed = std::env::var("DUPLEX_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    // Two hosts at a time: 2 × 25 = 50 kills.
    let a = std::thread::spawn(move || kill_and_resume(25, seed));
    kill_and_resume(25, seed.wrapping_add(1));
    a.join().unwrap();
}

#[test]
#[ignore = "soak: 500 kill -9 runs (about 25 minutes); cargo test -p duplex --test real_host -- --ignored"]
fn kill_9_soak() {
    let seed = fastrand::u64(..);
    let a = std::thread::spawn(move || kill_and_resume(250, seed));
    kill_and_resume(250, seed.wrapping_add(1));
    a.join().unwrap();
}

/// A refused session or call leaves the host as it was: production serves
/// 1.0.0 from its slot and no file under the home changed.
fn assert_untouched(host: &Host, before: &[(String, String)], context: &str) {
    assert_eq!(host.serves().as_deref(), Some(V1), "{context}");
    let mut after = host.snapshot();
    after.retain(|(p, _)| p != "known-good");
    assert_eq!(after, before, "{context}");
    assert_eq!(
        host.link("current").as_deref(),
        Some("releases/1.0.0"),
        "{context}"
    );
}

#[test]
fn an_artifact_whose_digest_does_not_match_is_refused_before_anything_runs() {
    let host = Host::new();
    let before = host.snapshot();
    let policy = host.policy(|t| {
        t.replace(
            "f75fb3ab5e6ae7b134f369d61a659fd260215f6caab1d14313471014b4659fd2",
            &"ab".repeat(32),
        )
    });
    let out = host.apply(&policy, &[]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("acme-service"), "{}", out.stderr);
    assert!(out.stderr.contains(&"ab".repeat(32)), "{}", out.stderr);
    assert_untouched(&host, &before, "digest mismatch");
    assert!(
        !host.state_dir().join("sessions").exists()
            || host.duplex(&["history"]).stdout.lines().count() <= 1
    );
}

#[test]
fn a_command_outside_the_grant_is_refused_and_changes_nothing() {
    let host = Host::new();
    let before = host.snapshot();
    // The plugin is told to run a program the policy does not grant.
    let policy = host.policy(|t| {
        let ctl = ctl_path();
        let ctl = ctl.to_str().unwrap();
        t.replacen(&format!("ctl: {ctl}"), "ctl: /usr/bin/env", 1)
            .replace("limit: 3", "limit: 0")
    });
    let out = host.apply(&policy, &[]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let log = host.duplex(&["log"]).stdout;
    assert!(
        log.contains(
            "exec of `/usr/bin/env` refused for plugin `ab-service`: not a granted program"
        ),
        "{log}"
    );
    assert_untouched(&host, &before, "ungranted program");
}

#[test]
fn an_origin_outside_the_allow_list_is_refused_and_changes_nothing() {
    let host = Host::new();
    let before = host.snapshot();
    // Production's health is asked on a port the grant does not list.
    let other = free_port();
    let policy = host.policy(|t| {
        t.replacen(
            &format!("with: {{ url: \"http://127.0.0.1:{}\" }}", host.port),
            &format!("with: {{ url: \"http://127.0.0.1:{other}\" }}"),
            1,
        )
        .replace("limit: 3", "limit: 0")
    });
    let out = host.apply(&policy, &[]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let log = host.duplex(&["log"]).stdout;
    assert!(log.contains(&format!("127.0.0.1:{other}")), "{log}");
    assert!(
        log.contains("is outside the origins granted to plugin `ab-service`"),
        "{log}"
    );
    assert_untouched(&host, &before, "origin outside the allow-list");
}

#[test]
fn a_path_escaping_the_granted_dir_is_refused_and_changes_nothing_outside() {
    let host = Host::new();
    // `releases` planted as a link out of the grant: installing through it
    // would write outside the home.
    let outside = host.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::rename(host.home().join("releases"), outside.join("releases")).unwrap();
    std::os::unix::fs::symlink(outside.join("releases"), host.home().join("releases")).unwrap();
    let listed_before: Vec<_> = std::fs::read_dir(outside.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let policy = host.policy(|t| t.replace("limit: 3", "limit: 0"));
    let out = host.apply(&policy, &[]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let log = host.duplex(&["log"]).stdout;
    assert!(log.contains("releases"), "{log}");
    let listed_after: Vec<_> = std::fs::read_dir(outside.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        listed_after, listed_before,
        "something was written outside the grant"
    );
    assert_eq!(host.serves().as_deref(), Some(V1));
}
