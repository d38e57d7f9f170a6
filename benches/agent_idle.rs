//! `duplex agent` at rest: its resident memory and CPU while idle, after it
//! has committed a session (the plugin host, the API server, the watcher
//! and the webhook threads all exist). Targets: ≤ 20 MB RSS, ~0 % CPU.
//!
//!   cargo bench -p duplex --bench agent_idle
//!
//! A policy directory holds the demo policy; the agent commits it (~15 s),
//! settles for 5 s, then its RSS (VmRSS, and its anonymous and file-backed
//! parts: the latter is the binary's pages, shared with the page cache) and
//! its CPU time (utime + stime from /proc/PID/stat) over a 20 s window are
//! read. Whole process, no
//! criterion loop: there is nothing to repeat, only a process to watch.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `RssAnon`, `RssFile`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// utime + stime, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("agent_idle: bench");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let policies = work.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(root().join("policies/artifacts"))
        .arg(&policies)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(root().join("policies/demo.yaml"))
        .unwrap()
        .replace(
            "../plugins/dist/",
            &format!("{}/plugins/dist/", root().display()),
        );
    std::fs::write(policies.join("upgrade.yaml"), text).unwrap();
    let state = work.path().join("state");
    let mut agent = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .arg("--state-dir")
        .arg(&state)
        .args(["agent", "--dir"])
        .arg(&policies)
        .args(["--policy", "upgrade.yaml", "--fetch-interval", "60s"])
        .env("DUPLEX_CACHE_DIR", work.path().join("cache"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = agent.id();
    let started = Instant::now();
    let record = state.join("agent/reconcile.json");
    while !std::fs::read_to_string(&record).is_ok_and(|r| r.contains("\"achieved\": {")) {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the session never committed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(5));
    // SAFETY: sysconf has no preconditions.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let window = Duration::from_secs(20);
    let (cpu0, t0) = (cpu_ticks(pid), Instant::now());
    let mut rss = Vec::new();
    while t0.elapsed() < window {
        rss.push((
            status_kib(pid, "VmRSS"),
            status_kib(pid, "RssAnon"),
            status_kib(pid, "RssFile"),
        ));
        std::thread::sleep(Duration::from_secs(1));
    }
    let cpu1 = cpu_ticks(pid);
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_pct = (cpu1 - cpu0) as f64 / ticks_per_sec / seconds * 100.0;
    let peak = *rss.iter().max().unwrap();
    let _ = agent.kill();
    let _ = agent.wait();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "agent idle after a committed session: RSS {:.1} MiB (anonymous {:.1}, file-backed {:.1}; max over {seconds:.0} s), CPU {cpu_pct:.2} % ({} ticks)",
        mib(peak.0),
        mib(peak.1),
        mib(peak.2),
        cpu1 - cpu0
    );
}
