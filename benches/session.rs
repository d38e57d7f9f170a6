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
//! The time is `App::apply` alone (the policy's load included): the
//! bench's own teardown (removing the state dir) and its count of the
//! records (reading the journal back) are done outside it.
//!
//! `cargo bench -p duplex-core --bench session` (results: benches/RESULTS.md).

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

#[path = "support/sim_policy.rs"]
mod sim_policy;

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

use sim_policy::{ROOT, policy_file};

/// What one session cost.
struct Run {
    /// `App::apply`, the policy's load included: what `duplex apply` does
    /// once its process is up. Not the bench's own setup and teardown.
    took: Duration,
    /// The process's CPU time (user + system, every thread) over the same
    /// span: the runner's own work, whatever else the machine runs (wall
    /// time on a shared machine includes waiting for a core).
    cpu: Duration,
    fsyncs: u64,
    state: PathBuf,
}

/// User + system CPU time of this process so far, all threads.
fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// One whole session in a fresh state dir, through the application layer
/// (plugins loaded from the shared host's cache, artifacts verified, the
/// session created with its policy and plugin copies, run and finished).
fn session(
    base: &Path,
    n: usize,
    policy: &Path,
    host: &PluginHost,
    rt: &tokio::runtime::Runtime,
) -> Run {
    let state = base.join(format!("state-{n}"));
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
    let fsyncs = fsync_count();
    let cpu = process_cpu();
    let start = Instant::now();
    let loaded = duplex_core::policy::load_file(policy).unwrap();
    let report = rt
        .block_on(app.apply(
            loaded,
            RunOptions::default(),
            Box::new(NoSink),
            Cancel::new(),
        ))
        .unwrap();
    let took = start.elapsed();
    let cpu = process_cpu() - cpu;
    let fsyncs = fsync_count() - fsyncs;
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
    Run {
        took,
        cpu,
        fsyncs,
        state,
    }
}

/// The records of a state dir's only session (counted outside the timing).
fn records(state: &Path) -> u64 {
    let journal = std::fs::read_dir(state.join("sessions"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("journal");
    std::fs::read(journal)
        .unwrap()
        .iter()
        .filter(|b| **b == b'\n')
        .count() as u64
}

/// `loaded_components`: the host's table of loaded components (0: none,
/// every session reads, checks, maps and links the cache entry again).
fn bench_on(c: &mut Criterion, label: &str, base: &Path, loaded_components: usize) -> Duration {
    std::fs::create_dir_all(base).unwrap();
    let policy = policy_file(base);
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(base.join("shared/cache")),
        loaded_components,
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
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let run = session(base, n, &policy, &host, &rt);
                took += run.took;
                // Teardown, not timed.
                let _ = std::fs::remove_dir_all(&run.state);
            }
            took
        })
    });
    let mut runs: Vec<Run> = (0..31)
        .map(|_| {
            n += 1;
            let run = session(base, n, &policy, &host, &rt);
            let _ = std::fs::remove_dir_all(&run.state);
            run
        })
        .collect();
    let mut cpu: Vec<Duration> = runs.iter().map(|r| r.cpu).collect();
    cpu.sort();
    runs.sort_by_key(|r| r.took);
    let last = session(base, n + 1, &policy, &host, &rt);
    let records = records(&last.state);
    let _ = std::fs::remove_dir_all(&last.state);
    println!(
        "{label}: median {:?} a session ({:?} of CPU); {records} records, {} fsyncs (the same in every run: {})",
        runs[15].took,
        cpu[15],
        last.fsyncs,
        runs.iter().all(|r| r.fsyncs == last.fsyncs)
    );
    runs[15].took
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
    // The same sessions with the host's table of loaded components turned
    // off: what each session cost before the table (same build, same run).
    let without = bench_on(&mut c, "tmpfs-no-table", &fast_base.join("no-table"), 0);
    let on_tmpfs = bench_on(&mut c, "tmpfs", &fast_base, 16);
    let on_disk = bench_on(&mut c, "disk", &disk_base, 16);
    let _ = std::fs::remove_dir_all(&fast_base);
    let _ = std::fs::remove_dir_all(&disk_base);
    c.final_summary();
    println!(
        "\nSummary: a whole session takes {on_tmpfs:?} on tmpfs (the runner's own cost, target ≤ 5 ms; {without:?} without the table of loaded components) and {on_disk:?} on disk (fsyncs included)."
    );
}
