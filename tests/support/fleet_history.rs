//! What the hosts' own journals say about a fleet: when each host was out of
//! service. Read with `duplex log --output json`, independent of whatever
//! semaphore the hosts used, so a test checks the limit from the hosts'
//! side and not from the semaphore's own bookkeeping.

use super::{duplex, run};
use std::path::Path;

/// One session's time out of service: from its first record out of Idle
/// to its last record (a superset of the real outage, so a limit that
/// holds for these intervals holds for the outages).
#[derive(Debug, Clone)]
pub struct OutOfService {
    pub host: String,
    pub from_ms: u64,
    pub to_ms: u64,
}

/// Every session of a state dir, oldest first.
pub fn out_of_service(host: &str, state_dir: &Path) -> Vec<OutOfService> {
    let mut cmd = duplex();
    cmd.arg("--state-dir")
        .arg(state_dir)
        .args(["history", "--output", "json"]);
    let history = run(&mut cmd);
    assert_eq!(history.code, 0, "{}", history.stderr);
    let sessions: serde_json::Value = serde_json::from_str(&history.stdout).unwrap();
    let ids: Vec<String> = sessions
        .as_array()
        .expect("history lists sessions")
        .iter()
        .filter_map(|s| s["session"].as_str().map(str::to_string))
        .collect();
    let mut found = Vec::new();
    for id in ids {
        let mut cmd = duplex();
        cmd.arg("--state-dir")
            .arg(state_dir)
            .args(["log", "--session", &id, "--output", "json"]);
        let log = run(&mut cmd);
        assert_eq!(log.code, 0, "{}", log.stderr);
        let records: Vec<serde_json::Value> = log
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let from = records
            .iter()
            .find(|r| r["state"] != "Idle")
            .and_then(|r| r["tsMs"].as_u64());
        let to = records.last().and_then(|r| r["tsMs"].as_u64());
        if let (Some(from_ms), Some(to_ms)) = (from, to) {
            found.push(OutOfService {
                host: host.to_string(),
                from_ms,
                to_ms,
            });
        }
    }
    found
}

/// The most intervals open at once.
pub fn most_at_once(intervals: &[OutOfService]) -> usize {
    let mut edges: Vec<(u64, i32)> = Vec::new();
    for i in intervals {
        edges.push((i.from_ms, 1));
        edges.push((i.to_ms, -1));
    }
    // At equal times an end comes before a start: a slot given back and
    // taken in the same millisecond is not two hosts out at once.
    edges.sort();
    let (mut open, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        open += d;
        most = most.max(open);
    }
    most as usize
}
