//! `duplex status`, `duplex history` and `duplex log` against the size of a
//! state dir: 1, 200 and 10,000 finished sessions, and one session in flight
//! with 1,000, 10,000 and 40,000 records. Each command is timed as a whole
//! process (start-up included, output to `/dev/null`), paired run by run
//! with a floor in the same run: `cat` of the journal the command reads (the
//! newest session's). The summary prints, per command and state dir, the
//! medians of both, the median of the pairwise ratios, and the command's
//! peak RSS (the child's `ru_maxrss`).
//!
//! The state dirs are written by the real code: one session is run through
//! the application layer (sim-duplex, as in the session bench) and finished;
//! the finished-session dirs hold copies of it under successive ids (its
//! files byte for byte, the plugin copy hard-linked) and, newest, one more
//! session run through the application layer; the in-flight dirs are
//! a real session stopped at `Split`, then carried to N records through the
//! engine's `Recorder` (partner reports and check results, as a long soak
//! writes them).
//!
//! ```sh
//! cargo build --release -p duplex
//! cargo bench -p duplex-core --bench status_scaling            # generate, measure
//! cargo bench -p duplex-core --bench status_scaling -- --generate DIR   # only generate
//! ```
//!
//! Other options: `--duplex PATH` (default `target/release/duplex`), `--runs
//! N` pairs per figure (default 15), `--base DIR` (default under `/dev/shm`,
//! removed at the end; a given one is kept and reused), `--pairs-only` (no
//! criterion runs, only the paired summary).
//! Results: benches/RESULTS.md.

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

#[path = "support/sim_policy.rs"]
mod sim_policy;
#[path = "support/timing.rs"]
mod timing;

use criterion::Criterion;
use duplex_core::app::{App, AppConfig, RunOptions};
use duplex_core::cancel::Cancel;
use duplex_core::clock::SystemClock;
use duplex_core::engine::sink::NoSink;
use duplex_core::engine::{Event, Pacing, Recorder, RequestId, Session};
use duplex_core::journal::StateDir;
use duplex_core::model::UpgradeState;
use duplex_core::plugins::Verdict;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use timing::{median, run_process};

const SESSION_COUNTS: [usize; 3] = [1, 200, 10_000];
const RECORD_COUNTS: [u64; 3] = [1_000, 10_000, 40_000];

/// One whole session (or one stopped at `until`) in `state`.
fn run_session(work: &Path, state: &Path, until: Option<UpgradeState>) {
    let policy = sim_policy::policy_file(work);
    let loaded = duplex_core::policy::load_file(&policy).unwrap();
    let app = App::new(AppConfig {
        state_dir: state.to_path_buf(),
        cache_dir: Some(work.join("cache")),
        clock: SystemClock::shared(),
        pacing: Pacing {
            min_poll_wait: Duration::ZERO,
            ..Pacing::default()
        },
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(app.apply(
        loaded,
        RunOptions {
            until,
            ..Default::default()
        },
        Box::new(NoSink),
        Cancel::new(),
    ))
    .unwrap();
}

/// Copy `from` into `to`: small files copied, large ones (plugin copies)
/// hard-linked.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            copy_tree(&entry.path(), &target);
        } else if meta.len() > 64 * 1024 {
            std::fs::hard_link(entry.path(), &target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A state dir of `count` finished sessions: copies of `template`'s only
/// session under successive ids, then one more session run as usual (so
/// the newest is created by the code under test, as it always is).
fn finished_sessions(work: &Path, template: &Path, to: &Path, count: usize) {
    let sessions = template.join("sessions");
    let only = std::fs::read_dir(&sessions)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|n| !n.starts_with('.'))
        .unwrap();
    // `000001-<time>-<hex>`: keep the time and the hex, renumber.
    let rest = &only[only.find('-').unwrap()..];
    std::fs::create_dir_all(to.join("sessions")).unwrap();
    for n in 1..count {
        copy_tree(
            &sessions.join(&only),
            &to.join("sessions").join(format!("{n:06}{rest}")),
        );
    }
    run_session(work, to, None);
}

/// A state dir whose one session is in flight (stopped at `Split`, no
/// runner) with `records` records, the later ones appended by the engine's
/// recorder as a long soak appends them.
fn in_flight(work: &Path, to: &Path, records: u64) {
    run_session(work, to, Some(UpgradeState::Split));
    let dir = StateDir::lock(to).unwrap();
    let info = dir.current_session().unwrap().unwrap();
    let (writer, report) = dir.open_session::<Event>(&info.id).unwrap();
    let session = Session::fold(report.records.iter().map(|r| (r.seq, r.ts_ms, &r.event))).unwrap();
    let mut rec = Recorder::new(writer, session, Box::new(NoSink), SystemClock::shared());
    let mut seq = report.records.len() as u64;
    while seq < records {
        let event = if seq.is_multiple_of(2) {
            Event::PluginCall {
                request: RequestId::Partner,
                plugin: "sim-duplex".into(),
                ok: true,
                outcome: "partner: Simplexed, healthy".into(),
                duration_ms: 1,
                logs: Vec::new(),
                repeats: 4,
            }
        } else {
            Event::CheckRan {
                check: "duplexed".into(),
                verdict: Verdict::Pass,
                message: "both sides report the same software, partner healthy".into(),
                consecutive_failures: 0,
            }
        };
        seq = rec.record(event).unwrap();
    }
}

/// Every state dir, under `base`: `(label, state dir)`.
fn state_dirs(base: &Path) -> Vec<(String, PathBuf)> {
    let sessions =
        SESSION_COUNTS.map(|n| (format!("{n} sessions"), base.join(format!("sessions-{n}"))));
    let records =
        RECORD_COUNTS.map(|n| (format!("{n} records"), base.join(format!("records-{n}"))));
    sessions.into_iter().chain(records).collect()
}

/// Write every state dir that is not there yet.
fn generate(base: &Path) {
    let work = base.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let template = base.join("template");
    if !template.join("sessions").is_dir() {
        run_session(&work, &template, None);
    }
    for (count, (_, dir)) in SESSION_COUNTS.iter().zip(state_dirs(base)) {
        if !dir.is_dir() {
            finished_sessions(&work, &template, &dir, *count);
        }
    }
    for (records, (_, dir)) in RECORD_COUNTS.iter().zip(state_dirs(base).split_off(3)) {
        if !dir.is_dir() {
            in_flight(&work, &dir, *records);
        }
    }
}

/// The newest session's journal.
fn newest_journal(state: &Path) -> PathBuf {
    let mut names: Vec<String> = std::fs::read_dir(state.join("sessions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    state
        .join("sessions")
        .join(names.last().unwrap())
        .join("journal")
}

struct Figure {
    command: &'static str,
    label: String,
    duplex: Duration,
    floor: Duration,
    ratio: f64,
    rss_kib: u64,
}

fn duplex_cmd(duplex: &Path, state: &Path, verb: &str) -> Command {
    let mut cmd = Command::new(duplex);
    cmd.arg("--state-dir").arg(state).arg(verb);
    cmd
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    if let Some(dir) = option("--generate") {
        generate(Path::new(&dir));
        for (label, dir) in state_dirs(Path::new(&dir)) {
            println!("{label}: {}", dir.display());
        }
        return;
    }
    let duplex = option("--duplex")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(sim_policy::ROOT).join("target/release/duplex"));
    assert!(
        duplex.is_file(),
        "{} is missing: `cargo build --release -p duplex` first",
        duplex.display()
    );
    let runs: usize = option("--runs").map_or(15, |n| n.parse().unwrap());
    let base = option("--base").map(PathBuf::from).unwrap_or_else(|| {
        let shm = Path::new("/dev/shm");
        let parent = if shm.is_dir() {
            shm.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        parent.join(format!("duplex-status-bench-{}", std::process::id()))
    });
    let keep = option("--base").is_some();
    // Only the paired runs of the summary (criterion's own runs of the
    // slow "before" figures take minutes).
    let pairs_only = args.iter().any(|a| a == "--pairs-only");
    // Generated by a child process: a child's peak RSS counts what it had
    // before its `exec`, so the measuring process stays small.
    let generated = Command::new(std::env::current_exe().unwrap())
        .arg("--generate")
        .arg(&base)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(generated.success());
    let dirs = state_dirs(&base);

    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let mut figures = Vec::new();
    // What the binary's own start-up costs against the same floor: the
    // most any of its commands can get near `cat`.
    for verb in ["--version", "status", "history", "log"] {
        for (label, state) in &dirs {
            if verb == "--version" && label != "1 sessions" {
                continue;
            }
            let journal = newest_journal(state);
            if !pairs_only {
                c.bench_function(&format!("{verb}/{label}"), |b| {
                    b.iter_custom(|iters| {
                        (0..iters)
                            .map(|_| run_process(&mut duplex_cmd(&duplex, state, verb)).0)
                            .sum()
                    })
                });
            }
            // Pairs, A then B, in turn: the ratio is taken pair by pair.
            let mut pairs = Vec::new();
            for _ in 0..runs {
                let a = run_process(&mut duplex_cmd(&duplex, state, verb));
                let b = run_process(Command::new("cat").arg(&journal));
                pairs.push((a, b));
            }
            figures.push(Figure {
                command: verb,
                label: label.clone(),
                duplex: median(pairs.iter().map(|p| p.0.0).collect()),
                floor: median(pairs.iter().map(|p| p.1.0).collect()),
                ratio: median(
                    pairs
                        .iter()
                        .map(|p| p.0.0.as_secs_f64() / p.1.0.as_secs_f64())
                        .collect(),
                ),
                rss_kib: median(pairs.iter().map(|p| p.0.1).collect()),
            });
        }
    }
    c.final_summary();
    if !keep {
        let _ = std::fs::remove_dir_all(&base);
    }
    println!(
        "\n| command | state dir | duplex (median) | floor: cat of the journal | ratio (median of pairs) | peak RSS |"
    );
    println!("|---|---|---|---|---|---|");
    for f in figures {
        println!(
            "| {} | {} | {:.2} ms | {:.2} ms | {:.2}× | {:.1} MiB |",
            f.command,
            f.label,
            f.duplex.as_secs_f64() * 1e3,
            f.floor.as_secs_f64() * 1e3,
            f.ratio,
            f.rss_kib as f64 / 1024.0
        );
    }
}
