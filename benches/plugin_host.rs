//! Plugin host benchmarks (criterion), each summarised as a ratio at the end:
//!
//! - warm gate call: a fresh instance from the `InstancePre` + one `check` call
//!   with the call-context record, vs the same trivial check as `sh -c true`
//!   (fork/exec). Targets: ≤ 10 µs median, ≥ 100× faster than the shell.
//! - load: a cached precompiled plugin (verify digest, checksum and map the
//!   cache entry, deserialize, link, the recorded `describe`) vs compiling it.
//!   Targets: ≤ 5 ms, ≥ 50× faster.
//! - the pooling allocator's keep-resident size and decommit batching, swept
//!   (`HostConfig::pool_tuning`): the WAT gate and the SDK gate at each.
//!
//! `cargo bench -p duplex-core --bench plugin_host` (results: benches/RESULTS.md).

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

#[path = "support/timing.rs"]
mod timing;
use criterion::Criterion;
use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use timing::{median, median_of};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn spec(name: &str, path: PathBuf, storage: Option<PathBuf>) -> PluginSpec {
    let bytes = std::fs::read(&path).unwrap();
    PluginSpec {
        name: name.into(),
        path,
        sha256: sha256_hex(&bytes),
        capabilities: Capabilities {
            storage: StorageGrant { dir: storage },
            ..Capabilities::default()
        },
        limits: Limits::default(),
        param_schemas: Default::default(),
    }
}

fn host(cache: Option<&Path>, pooling: bool) -> PluginHost {
    tuned(cache, pooling, PoolTuning::default())
}

fn tuned(cache: Option<&Path>, pooling: bool, pool_tuning: PoolTuning) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: cache.map(Path::to_path_buf),
        pooling,
        pool_tuning,
        ..HostConfig::default()
    })
    .unwrap()
}

fn shell_gate() {
    let st = Command::new("sh").args(["-c", "true"]).status().unwrap();
    assert!(st.success());
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let storage = tmp.path().join("storage");
    let skeleton = spec(
        "gate",
        Path::new(ROOT).join("tests/data/plugins/skeleton.wat"),
        None,
    );
    let sim_checks = spec(
        "sim-checks",
        Path::new(ROOT).join("plugins/dist/sim-checks.wasm"),
        Some(storage),
    );
    let sim_duplex = spec(
        "sim-duplex",
        Path::new(ROOT).join("plugins/dist/sim-duplex.wasm"),
        None,
    );
    // The default configuration (pooling allocator), and the on-demand one.
    let h = host(Some(&cache), true);
    let hod = host(Some(&tmp.path().join("cache-on-demand")), false);
    let gate = h.load(&skeleton).unwrap();
    let gate_od = hod.load(&skeleton).unwrap();
    let checks = h.load(&sim_checks).unwrap();
    let ctx = CallContext::new("bench", UpgradeState::PrepareSplit, "gate/duplexed");
    let call = |p: &LoadedPlugin, name: &str| {
        let out = p.check(black_box(&ctx), name).unwrap();
        assert_eq!(out.value.verdict, Verdict::Pass);
    };
    h.load(&sim_duplex).unwrap(); // warm the cache
    let uncached = host(None, true);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("gate-call");
        g.bench_function("wasm-wat-gate", |b| b.iter(|| call(&gate, "gate")));
        g.bench_function("wasm-wat-gate-on-demand", |b| {
            b.iter(|| call(&gate_od, "gate"))
        });
        g.bench_function("wasm-sim-checks-duplexed", |b| {
            b.iter(|| call(&checks, "duplexed"))
        });
        g.bench_function("sh-c-true", |b| b.iter(shell_gate));
        g.finish();
    }
    {
        let mut g = c.benchmark_group("load-sim-duplex");
        g.bench_function("cached", |b| {
            b.iter(|| h.load(black_box(&sim_duplex)).unwrap())
        });
        g.sample_size(10);
        g.bench_function("compile", |b| {
            b.iter(|| uncached.load(black_box(&sim_duplex)).unwrap())
        });
        g.finish();
    }
    c.final_summary();

    // The ratios, measured in this run.
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let wasm = median_of(5000, || call(&gate, "gate"));
    let od = median_of(5000, || call(&gate_od, "gate"));
    let real = median_of(2000, || call(&checks, "duplexed"));
    let sh = median_of(500, shell_gate);
    let cached = median_of(200, || drop(h.load(&sim_duplex).unwrap()));
    let compiled = median_of(10, || drop(uncached.load(&sim_duplex).unwrap()));
    println!("\nsummary (medians, this run)");
    println!(
        "  warm gate call (WAT gate, pooling): {:8.1} µs   sh -c true: {:8.1} µs   {:6.0}× faster (target ≤ 10 µs, ≥ 100×)",
        us(wasm),
        us(sh),
        sh.as_secs_f64() / wasm.as_secs_f64()
    );
    println!(
        "  warm gate call, on-demand allocator: {:7.1} µs   {:6.0}× faster",
        us(od),
        sh.as_secs_f64() / od.as_secs_f64()
    );
    println!(
        "  sim-checks `duplexed` (SDK, storage read): {:8.1} µs   {:6.0}× faster",
        us(real),
        sh.as_secs_f64() / real.as_secs_f64()
    );
    println!(
        "  load sim-duplex: cached {:8.2} ms   compile {:8.2} ms   {:6.0}× faster (target ≤ 5 ms, ≥ 50×)",
        ms(cached),
        ms(compiled),
        compiled.as_secs_f64() / cached.as_secs_f64()
    );

    // The pooling allocator's reset, swept: keep-resident sizes (memories;
    // tables likewise, at most their 160 KiB) with decommits unbatched, then
    // batching alone and both. Three rounds, configurations interleaved; the
    // median of the rounds' medians.
    let mib = |n: u64| n << 20;
    let tuning = |k: u64, b: usize, scan: bool| PoolTuning {
        keep_resident: Some(k),
        decommit_batch_size: b,
        pagemap_scan: scan,
    };
    let mut sweep: Vec<(String, PoolTuning)> = [0, 64 << 10, 256 << 10, mib(1), mib(4), mib(16)]
        .into_iter()
        .chain([Limits::DEFAULT_MEMORY_BYTES])
        .map(|k| {
            (
                format!("keep-resident {:>5} KiB, scan", k >> 10),
                tuning(k, 1, true),
            )
        })
        .collect();
    for k in [mib(1), mib(4)] {
        sweep.push((
            format!("keep-resident {:>5} KiB, no scan", k >> 10),
            tuning(k, 1, false),
        ));
    }
    for (k, b) in [(0, 8), (0, 32), (mib(4), 8)] {
        sweep.push((
            format!("keep-resident {:>5} KiB, batch {b}", k >> 10),
            tuning(k, b, true),
        ));
    }
    sweep.push(("default (the rule)".into(), PoolTuning::default()));
    let loaded: Vec<(LoadedPlugin, LoadedPlugin)> = sweep
        .iter()
        .map(|(_, t)| {
            let h = tuned(Some(&cache), true, *t);
            (h.load(&skeleton).unwrap(), h.load(&sim_checks).unwrap())
        })
        .collect();
    let mut rounds = vec![(Vec::new(), Vec::new()); sweep.len()];
    for _ in 0..3 {
        for (i, (g, c)) in loaded.iter().enumerate() {
            rounds[i].0.push(median_of(3000, || call(g, "gate")));
            rounds[i].1.push(median_of(1000, || call(c, "duplexed")));
        }
    }
    println!("\npooling reset sweep (median of 3 rounds' medians)");
    for ((name, _), (g, c)) in sweep.iter().zip(rounds) {
        println!(
            "  {name:<34} WAT gate {:7.1} µs   SDK gate {:7.1} µs",
            us(median(g)),
            us(median(c))
        );
    }
}
