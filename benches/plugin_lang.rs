//! Plugins by language: the same four figures for a first-party plugin in
//! each language Duplex plugins are written in, side by side (component size,
//! cold load = compile, cached load = the compiled-plugin cache, warm call =
//! a fresh instance + one `check`).
//!
//! - Rust: plugins/dist/sim-checks.wasm, `duplexed` (a storage read).
//! - JavaScript: plugins/dist/js-file-checks.wasm (componentize-js),
//!   `release-version` (reads a version file through `files`).
//!
//! Add a language as one more row of `ROWS`. No criterion: each figure is a
//! median of its own runs (compiling a JS component takes seconds).
//!
//! `cargo bench -p duplex-core --bench plugin_lang` (results: benches/RESULTS.md,
//! "Plugins by language").

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

#[path = "support/timing.rs"]
mod timing;
use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use std::path::{Path, PathBuf};
use std::time::Duration;
use timing::median_of;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One language's plugin and the check the warm call runs.
struct Row {
    lang: &'static str,
    plugin: &'static str,
    check: &'static str,
    params: fn(&Path) -> serde_json::Value,
    capabilities: fn(&Path) -> Capabilities,
    compiles: usize,
}

const ROWS: &[Row] = &[
    Row {
        lang: "Rust",
        plugin: "sim-checks",
        check: "duplexed",
        params: |_| serde_json::json!({}),
        capabilities: |dir| Capabilities {
            storage: StorageGrant {
                dir: Some(dir.join("storage")),
            },
            ..Capabilities::default()
        },
        compiles: 10,
    },
    Row {
        lang: "JavaScript",
        plugin: "js-file-checks",
        check: "release-version",
        params: |_| serde_json::json!({ "root": "release", "version": "2.4.1" }),
        capabilities: |dir| Capabilities {
            files: FilesGrant {
                roots: vec![FileRoot {
                    name: "release".into(),
                    path: dir.join("release"),
                    read_only: true,
                }],
            },
            ..Capabilities::default()
        },
        compiles: 3,
    },
];

fn spec(row: &Row, dir: &Path) -> PluginSpec {
    let path = PathBuf::from(ROOT).join(format!("plugins/dist/{}.wasm", row.plugin));
    let bytes = std::fs::read(&path).unwrap();
    PluginSpec {
        name: row.plugin.into(),
        path,
        sha256: sha256_hex(&bytes),
        capabilities: (row.capabilities)(dir),
        limits: Limits {
            memory_bytes: 128 << 20,
            ..Limits::default()
        },
        param_schemas: Default::default(),
    }
}

fn host(cache: Option<&Path>) -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: cache.map(Path::to_path_buf),
        ..HostConfig::default()
    })
    .unwrap()
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir_all(dir.join("release/current")).unwrap();
    std::fs::write(dir.join("release/current/VERSION"), "2.4.1\n").unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("plugins by language (medians, this run)");
    println!(
        "  {:<11} {:<15} {:>10} {:>12} {:>12} {:>11}",
        "language", "plugin", "size", "cold load", "cached load", "warm call"
    );
    for row in ROWS {
        let spec = spec(row, dir);
        let size = std::fs::metadata(&spec.path).unwrap().len();
        let cached_host = host(Some(&dir.join(format!("cache-{}", row.plugin))));
        let plugin = cached_host.load(&spec).unwrap();
        let ctx = CallContext::new("bench", UpgradeState::PrepareMerge, "gate/bench")
            .with_params((row.params)(dir));
        let call = || {
            let out = plugin.check(&ctx, row.check).unwrap();
            assert_eq!(out.value.verdict, Verdict::Pass, "{}", out.value.message);
        };
        for _ in 0..20 {
            call();
        }
        let warm = median_of(500, call);
        let cached = median_of(50, || drop(cached_host.load(&spec).unwrap()));
        let uncached = host(None);
        let cold = median_of(row.compiles, || drop(uncached.load(&spec).unwrap()));
        println!(
            "  {:<11} {:<15} {:>7.1} MB {:>9.0} ms {:>9.2} ms {:>8.0} µs",
            row.lang,
            row.plugin,
            size as f64 / 1e6,
            ms(cold),
            ms(cached),
            us(warm)
        );
    }
}
