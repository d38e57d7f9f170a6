//! Staging a 100 MiB artifact in the state dir (copy while hashing, fsync,
//! rename), re-verifying an already staged copy, and `sha256sum` of the same
//! file in the same run for comparison.
//!
//! `cargo bench -p duplex-core --bench artifact_staging` (results:
//! benches/RESULTS.md). The file is in the page cache for every run (it is
//! written just before), so the figures compare hashing and copying, not the
//! disk's read speed.

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

use criterion::{BatchSize, Criterion, Throughput};
use duplex_core::artifact;
use duplex_core::policy::Sha256;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

const SIZE: u64 = 100 << 20;

fn main() {
    let dir = tempfile::tempdir_in(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")).unwrap();
    let source = dir.path().join("app.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        let mut rng = fastrand::Rng::with_seed(7);
        let mut chunk = vec![0u8; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            rng.fill(&mut chunk);
            f.write_all(&chunk).unwrap();
        }
    }
    let pin = Sha256::of_reader(std::fs::File::open(&source).unwrap())
        .unwrap()
        .0;
    let text = format!(
        "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata: {{name: bench}}
spec:
  target: {{name: t, plugin: p}}
  software:
    - {{name: app, version: '1', source: app.bin, sha256: {pin}}}
  plugins:
    - {{name: p, source: p.wasm, sha256: {zero}}}
",
        zero = "0".repeat(64)
    );
    let policy_path = dir.path().join("policy.yaml");
    std::fs::write(&policy_path, &text).unwrap();
    let policy = duplex_core::policy::load_text(&text, &policy_path).unwrap();
    let software = &policy.policy.spec.software[0];
    let state = dir.path().join("state");
    let staged = artifact::staged_path(&state, &pin);
    let unstage = || {
        let _ = std::fs::remove_file(&staged);
    };

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("artifact-100MiB");
    g.throughput(Throughput::Bytes(SIZE));
    g.bench_function("stage (copy + sha256 + fsync + rename)", |b| {
        b.iter_batched(
            unstage,
            |()| assert!(!artifact::stage(&policy, software, &state).unwrap().reused),
            BatchSize::PerIteration,
        )
    });
    artifact::stage(&policy, software, &state).unwrap();
    g.bench_function("reuse (re-hash the staged copy)", |b| {
        b.iter(|| assert!(artifact::stage(&policy, software, &state).unwrap().reused))
    });
    g.bench_function("sha256sum (coreutils)", |b| b.iter(|| sha256sum(&source)));
    g.finish();

    // A summary of medians measured here, one after the other.
    let runs = 5;
    let median = |f: &mut dyn FnMut()| {
        let mut t: Vec<f64> = (0..runs)
            .map(|_| {
                let s = Instant::now();
                f();
                s.elapsed().as_secs_f64()
            })
            .collect();
        t.sort_by(f64::total_cmp);
        t[runs / 2]
    };
    let mib = (SIZE >> 20) as f64;
    let stage = median(&mut || {
        unstage();
        artifact::stage(&policy, software, &state).unwrap();
    });
    let reuse = median(&mut || {
        artifact::stage(&policy, software, &state).unwrap();
    });
    let sum = median(&mut || sha256sum(&source));
    println!("\nsummary (medians of {runs}, 100 MiB from the page cache):");
    println!(
        "  stage:     {:7.1} ms  {:6.0} MiB/s",
        stage * 1e3,
        mib / stage
    );
    println!(
        "  reuse:     {:7.1} ms  {:6.0} MiB/s",
        reuse * 1e3,
        mib / reuse
    );
    println!("  sha256sum: {:7.1} ms  {:6.0} MiB/s", sum * 1e3, mib / sum);
    println!("  stage / sha256sum: {:.2}x the time", stage / sum);
}

fn sha256sum(path: &Path) {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .unwrap();
    assert!(out.status.success());
}
