//! `duplex validate` against `duplex plan` on the demo policy, both with a
//! warm compiled-plugin cache, as whole processes (exec to exit), with
//! `duplex --version` as the floor (process start, no policy). `validate`
//! loads every plugin the policy pins (from the cache) and asks each for
//! its operations and schemas; `plan` reads the policy and the state dir.
//! Target: validate ≤ 3× plan.
//!
//! `cargo bench -p duplex --bench validate` (results: benches/RESULTS.md).

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

use criterion::Criterion;
use std::path::Path;
#[path = "support/timing.rs"]
mod timing;

use std::process::Command;
use std::time::Duration;
use timing::{median, run_process};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const DUPLEX: &str = env!("CARGO_BIN_EXE_duplex");

fn duplex(cache: &Path, state: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(DUPLEX);
    cmd.current_dir(ROOT)
        .env("DUPLEX_CACHE_DIR", cache)
        .arg("--state-dir")
        .arg(state)
        .args(args);
    cmd
}

/// One whole run of `cmd`: its wall time.
fn once(cmd: &mut Command) -> Duration {
    run_process(cmd).0
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let state = tmp.path().join("state");
    let validate = || duplex(&cache, &state, &["validate", "policies/demo.yaml"]);
    let plan = || duplex(&cache, &state, &["plan", "policies/demo.yaml"]);
    let floor = || duplex(&cache, &state, &["--version"]);
    // Warm the cache (the first validate compiles every plugin).
    once(&mut validate());

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    c.bench_function("validate demo (warm cache)", |b| {
        b.iter(|| once(&mut validate()))
    });
    c.bench_function("plan demo", |b| b.iter(|| once(&mut plan())));
    c.bench_function("duplex --version (floor)", |b| {
        b.iter(|| once(&mut floor()))
    });
    c.final_summary();

    // Interleaved, so a drift in the machine's speed hits all three alike.
    let (mut v, mut p, mut f) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..40 {
        v.push(once(&mut validate()));
        p.push(once(&mut plan()));
        f.push(once(&mut floor()));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (v, p, f) = (median(v), median(p), median(f));
    println!("\nsummary (medians of 40 interleaved runs, this run)");
    println!(
        "  validate: {:6.1} ms   plan: {:6.1} ms   --version: {:6.1} ms",
        ms(v),
        ms(p),
        ms(f)
    );
    println!(
        "  validate / plan: {:.2}× (target ≤ 3×)",
        v.as_secs_f64() / p.as_secs_f64()
    );
}
