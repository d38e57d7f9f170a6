//! The `exec` capability's cost: a readiness gate that runs `/bin/true`
//! through the `command` plugin (a fresh instance, one `check` call, the host
//! starting the program in its own process group with its output drained,
//! waiting for its exit and writing it to the call's log), vs the same gate
//! done by an in-plugin check (sim-checks `duplexed`, which reads its world
//! from storage), vs the floor: `/bin/true` started with `std::process`.
//!
//! `cargo bench -p duplex-core --bench exec` (results: benches/RESULTS.md).

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
use timing::median_of;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn spec(name: &str, capabilities: Capabilities) -> PluginSpec {
    let path: PathBuf = Path::new(ROOT).join(format!("plugins/dist/{name}.wasm"));
    let bytes = std::fs::read(&path).unwrap();
    PluginSpec {
        name: name.into(),
        path,
        sha256: sha256_hex(&bytes),
        capabilities,
        limits: Limits::default(),
        param_schemas: Default::default(),
    }
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let h = PluginHost::new(HostConfig {
        cache_dir: Some(tmp.path().join("cache")),
        ..HostConfig::default()
    })
    .unwrap();
    let command = h
        .load(&spec(
            "command",
            Capabilities {
                exec: ExecGrant {
                    programs: vec![ProgramGrant {
                        program: "/bin/true".into(),
                        args: Vec::new(),
                        env: Vec::new(),
                    }],
                },
                ..Capabilities::default()
            },
        ))
        .unwrap();
    let checks = h
        .load(&spec(
            "sim-checks",
            Capabilities {
                storage: StorageGrant {
                    dir: Some(tmp.path().join("storage")),
                },
                ..Capabilities::default()
            },
        ))
        .unwrap();
    let exec_ctx = CallContext::new("bench", UpgradeState::PrepareSplit, "check/true")
        .with_params(serde_json::json!({"run": ["/bin/true"]}));
    let plain_ctx = CallContext::new("bench", UpgradeState::PrepareSplit, "check/duplexed");
    let exec_gate = || {
        let out = command.check(black_box(&exec_ctx), "run").unwrap();
        assert_eq!(out.value.verdict, Verdict::Pass, "{}", out.value.message);
    };
    let plugin_gate = || {
        let out = checks.check(black_box(&plain_ctx), "duplexed").unwrap();
        assert_eq!(out.value.verdict, Verdict::Pass);
    };
    let floor = || {
        let st = Command::new("/bin/true").status().unwrap();
        assert!(st.success());
    };
    // What a `pre_exec` hook (exec's PR_SET_PDEATHSIG) costs by itself:
    // std forks instead of using posix_spawn, copying the page tables of a
    // runner whose plugin host has reserved a lot of address space.
    let forked = || {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new("/bin/true");
        // SAFETY: the hook does nothing.
        unsafe {
            c.pre_exec(|| Ok(()));
        }
        assert!(c.status().unwrap().success());
    };

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("gate");
        g.bench_function("exec-bin-true", |b| b.iter(exec_gate));
        g.bench_function("in-plugin-check", |b| b.iter(plugin_gate));
        g.bench_function("std-process-bin-true", |b| b.iter(floor));
        g.bench_function("std-process-bin-true-forked", |b| b.iter(forked));
        g.finish();
    }
    c.final_summary();

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let exec = median_of(500, exec_gate);
    let plugin = median_of(2000, plugin_gate);
    let raw = median_of(500, floor);
    let fork = median_of(500, forked);
    println!("\nsummary (medians, this run)");
    println!(
        "  gate through exec (/bin/true): {:8.1} µs   in-plugin check: {:8.1} µs   ({:.0}× the in-plugin check)",
        us(exec),
        us(plugin),
        exec.as_secs_f64() / plugin.as_secs_f64()
    );
    println!(
        "  /bin/true by std::process alone: {:8.1} µs   (exec's overhead over it: {:.1} µs)",
        us(raw),
        us(exec.saturating_sub(raw))
    );
    println!(
        "  /bin/true by std::process with a pre_exec hook (fork): {:8.1} µs   (exec's overhead over it: {:.1} µs)",
        us(fork),
        us(exec.saturating_sub(fork))
    );
}
