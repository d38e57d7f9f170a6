//! Plugins by language: what a component costs the host, per language that
//! builds one (benches/RESULTS.md, "Plugins by language"):
//!
//! - size of the component file;
//! - cold load: verify, compile (no cache), link, describe;
//! - cached load: the same from the compiled-plugin cache;
//! - loaded again: the same bytes from the host's table of loaded
//!   components (the file still read and checked against its pin);
//! - warm `describe`: a fresh instance and one call returning the plugin's
//!   description (the same work in every language);
//! - warm check: a fresh instance and one real check call (the Rust SDK's
//!   sim-checks `duplexed` reads its storage; py-http-health's `http-health`
//!   asks a health server on loopback through the `http` capability;
//!   js-file-checks' `release-version` reads a version file through `files`).
//!
//! Add a language as one more row of `ROWS`. No criterion: each figure is a
//! median of its own runs.
//!
//! `cargo bench -p duplex-core --bench plugin_languages` (release build; a
//! Python or JavaScript component's compile takes seconds, so cold loads are
//! few).

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

#[path = "support/timing.rs"]
mod timing;
use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;
use timing::median_of;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// One language's component and the check the bench calls.
struct Row {
    language: &'static str,
    file: &'static str,
    check: &'static str,
    /// The check's `with:`; `{origin}` is the loopback health server.
    params: &'static str,
    capabilities: fn(&Path, &str) -> Capabilities,
    cold_samples: usize,
}

fn storage(dir: &Path, _: &str) -> Capabilities {
    Capabilities {
        storage: StorageGrant {
            dir: Some(dir.to_path_buf()),
        },
        ..Capabilities::default()
    }
}

/// `release` → DIR/release (holding `current/VERSION`), read-only.
fn files(dir: &Path, _: &str) -> Capabilities {
    Capabilities {
        files: FilesGrant {
            roots: vec![FileRoot {
                name: "release".into(),
                path: dir.join("release"),
                read_only: true,
            }],
        },
        ..Capabilities::default()
    }
}

fn http(_: &Path, origin: &str) -> Capabilities {
    Capabilities {
        http: HttpGrant {
            origins: vec![origin.to_string()],
        },
        ..Capabilities::default()
    }
}

const ROWS: &[Row] = &[
    Row {
        language: "Rust (SDK)",
        file: "plugins/dist/sim-checks.wasm",
        check: "duplexed",
        params: "{}",
        capabilities: storage,
        cold_samples: 10,
    },
    Row {
        language: "Python (componentize-py)",
        file: "plugins/dist/py-http-health.wasm",
        check: "http-health",
        params: r#"{"url": "{origin}/health", "json-field": "status", "json-equals": "ok"}"#,
        capabilities: http,
        cold_samples: 3,
    },
    Row {
        language: "JavaScript (componentize-js)",
        file: "plugins/dist/js-file-checks.wasm",
        check: "release-version",
        params: r#"{"root": "release", "version": "2.4.1"}"#,
        capabilities: files,
        cold_samples: 3,
    },
];

/// A keep-alive-free health server on loopback, answering forever.
fn health_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let body = r#"{"status": "ok"}"#;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    origin
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let origin = health_server();
    // Without the host's table of loaded components, so that a load is what
    // its column says (a compile, or the compiled-plugin cache); the table's
    // hit is the last load column.
    let cached_host = PluginHost::new(HostConfig {
        cache_dir: Some(tmp.path().join("cache")),
        loaded_components: 0,
        ..HostConfig::default()
    })
    .unwrap();
    let uncached = PluginHost::new(HostConfig {
        loaded_components: 0,
        ..HostConfig::default()
    })
    .unwrap();
    let table_host = PluginHost::new(HostConfig::default()).unwrap();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let us = |d: Duration| d.as_secs_f64() * 1e6;

    println!(
        "| component | language | size | cold load (compile) | cached load | loaded again (the host's table) | warm describe | warm check |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for row in ROWS {
        let path = PathBuf::from(ROOT).join(row.file);
        let bytes = std::fs::read(&path).unwrap();
        let dir = tmp.path().join(row.language.replace(' ', "-"));
        std::fs::create_dir_all(dir.join("release/current")).unwrap();
        std::fs::write(dir.join("release/current/VERSION"), "2.4.1\n").unwrap();
        let spec = PluginSpec {
            name: "bench".into(),
            path: path.clone(),
            sha256: sha256_hex(&bytes),
            capabilities: (row.capabilities)(&dir, &origin),
            // Every row under the same, default limits (64 MiB of memory).
            limits: Limits::default(),
            param_schemas: Default::default(),
        };
        let cold = median_of(row.cold_samples, || {
            drop(uncached.load(&spec).unwrap());
        });
        drop(cached_host.load(&spec).unwrap()); // fills the cache
        let cached = median_of(50, || drop(cached_host.load(&spec).unwrap()));
        // Calls go to a plugin of the default host, as `duplex` runs them.
        let plugin = table_host.load(&spec).unwrap(); // compiles once, into the table
        let again = median_of(50, || drop(table_host.load(&spec).unwrap()));
        let describe = median_of(500, || {
            plugin.describe().unwrap();
        });
        let params: serde_json::Value =
            serde_json::from_str(&row.params.replace("{origin}", &origin)).unwrap();
        let ctx =
            CallContext::new("bench", UpgradeState::PrepareSplit, "gate/bench").with_params(params);
        let check = median_of(500, || {
            let out = plugin.check(&ctx, row.check).unwrap();
            assert_eq!(out.value.verdict, Verdict::Pass, "{}", out.value.message);
        });
        println!(
            "| `{}` | {} | {:.1} MB | {:.0} ms | {:.2} ms | {:.2} ms | {:.0} µs | {:.0} µs |",
            path.file_name().unwrap().to_string_lossy(),
            row.language,
            bytes.len() as f64 / 1e6,
            ms(cold),
            ms(cached),
            ms(again),
            us(describe),
            us(check),
        );
    }
    let cold_samples: Vec<String> = ROWS.iter().map(|r| r.cold_samples.to_string()).collect();
    println!(
        "\n(medians: cold loads {} samples, cached loads 50, calls 500; warm check of \
         py-http-health includes one HTTP request to loopback)",
        cold_samples.join(" / ")
    );
}
