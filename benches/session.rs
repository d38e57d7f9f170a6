//! A whole upgrade session, Idle → … → Finish → Idle, through the
//! application layer, the real engine, journal and plugin host, with near
//! no-op plugins (sim-duplex with
//! no delays and one call per operation, no gates): the runner's own cost.
//!
//! - on tmpfs (`/dev/shm`), where an fsync costs next to nothing: the
//!   runner's overhead per session and per record (target: ≤ 5 ms a session
//!   beyond fsync time);
//! - on the project's disk, for the cost the fsyncs add;
//! - the fsyncs per session against the records it writes (target: one per
//!   record, plus the few that make the session's files and folders durable).
//!
//! `cargo bench -p duplex-core --bench session` (results: benches/RESULTS.md).

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

use criterion::Criterion;
use duplex_core::app::{App, AppConfig, RunOptions};
use duplex_core::cancel::Cancel;
use duplex_core::clock::SystemClock;
use duplex_core::engine::sink::NoSink;
use duplex_core::engine::{Outcome, Pacing, Stop};
use duplex_core::journal::fsync_count;
use duplex_core::plugins::{HostConfig, PluginHost};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn policy_file(dir: &Path) -> PathBuf {
    let root = Path::new(ROOT);
    let sums = std::fs::read_to_string(root.join("plugins/dist/SHA256SUMS")).unwrap();
    let digest = |name: &str| {
        sums.lines()
            .find(|l| l.ends_with(&format!(" {name}.wasm")))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let text = format!(
        "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata: {{name: bench}}
spec:
  target: {{name: bench, plugin: sim-duplex, with: {{time-scale: 0, steps: 1}}}}
  software:
    - {{name: acme-app, version: '2.4.1', source: {app}, sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5}}
  plugins:
    - {{name: sim-duplex, source: {dist}/sim-duplex.wasm, sha256: {d}, capabilities: {{storage: true}}}}
",
        app = root.join("policies/artifacts/acme-app-2.4.1.pkg").display(),
        dist = root.join("plugins/dist").display(),
        d = digest("sim-duplex"),
    );
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// One whole session in a fresh state dir, through the application layer
/// (plugins loaded from the shared host's cache, artifacts verified, the
/// session created with its policy and plugin copies); returns (records,
/// fsyncs).
fn session(
    base: &Path,
    n: usize,
    policy: &Path,
    host: &PluginHost,
    rt: &tokio::runtime::Runtime,
) -> (u64, u64) {
    let state = base.join(format!("state-{n}"));
    let fsyncs = fsync_count();
    let loaded = duplex_core::policy::load_file(policy).unwrap();
    let app = App::with_host(
        AppConfig {
            state_dir: state.clone(),
            cache_dir: None,
            clock: SystemClock::shared(),
            // Commit and abort answer `pending` once: the engine's minimum
            // wait between polls (a deliberate 20 ms) is not the runner's
            // cost, so it is not counted here.
            pacing: Pacing {
                min_poll_wait: Duration::ZERO,
                ..Pacing::default()
            },
        },
        host.clone(),
    );
    let report = rt
        .block_on(app.apply(
            loaded,
            RunOptions::default(),
            Box::new(NoSink),
            Cancel::new(),
        ))
        .unwrap();
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
    let journal = std::fs::read_dir(state.join("sessions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("journal");
    let records = std::fs::read(journal)
        .unwrap()
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64;
    let _ = std::fs::remove_dir_all(&state);
    (records, fsync_count() - fsyncs)
}

fn bench_on(c: &mut Criterion, label: &str, base: &Path) -> Duration {
    std::fs::create_dir_all(base).unwrap();
    let policy = policy_file(base);
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(base.join("shared/cache")),
        ..HostConfig::default()
    })
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut n = 0;
    c.bench_function(&format!("session/{label}"), |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                n += 1;
                session(base, n, &policy, &host, &rt);
            }
            t.elapsed()
        })
    });
    let mut times: Vec<Duration> = (0..31)
        .map(|_| {
            n += 1;
            let t = Instant::now();
            session(base, n, &policy, &host, &rt);
            t.elapsed()
        })
        .collect();
    times.sort();
    let (records, fsyncs) = session(base, n + 1, &policy, &host, &rt);
    println!(
        "{label}: median {:?} a session; {records} records, {fsyncs} fsyncs",
        times[15]
    );
    times[15]
}

fn main() {
    let mut c = Criterion::default().configure_from_args().sample_size(20);
    let tmpfs = Path::new("/dev/shm");
    let fast_base = if tmpfs.is_dir() {
        tmpfs.join(format!("duplex-bench-{}", std::process::id()))
    } else {
        std::env::temp_dir().join("duplex-bench-tmpfs")
    };
    let disk_base = Path::new(ROOT).join("target").join("bench-session");
    let on_tmpfs = bench_on(&mut c, "tmpfs", &fast_base);
    let on_disk = bench_on(&mut c, "disk", &disk_base);
    let _ = std::fs::remove_dir_all(&fast_base);
    let _ = std::fs::remove_dir_all(&disk_base);
    c.final_summary();
    println!(
        "\nSummary: a whole session takes {on_tmpfs:?} on tmpfs (the runner's own cost, target ≤ 5 ms) and {on_disk:?} on disk (fsyncs included)."
    );
}
