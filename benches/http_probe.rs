//! The `http` capability's cost (criterion): one GET through a plugin call
//! (the hand-written `http-get` WAT plugin: a fresh instance, one `send`, the
//! response copied into the guest) against a keep-alive server on loopback,
//! beside the same call without the request and the same GET sent natively
//! with the same client (ureq). The summary at the end gives medians of this
//! run and what the capability adds to a call.
//!
//! `cargo bench -p duplex-core --bench http_probe` (results: benches/RESULTS.md).

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

#[path = "../tests/support/wat.rs"]
mod wat;

#[path = "support/timing.rs"]
mod timing;
use criterion::Criterion;
use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use std::hint::black_box;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;
use timing::median_of;

/// A keep-alive HTTP/1.1 server answering every request with a small body,
/// one thread per connection.
fn serve() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { break };
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut w = conn.try_clone().unwrap();
                let mut r = BufReader::new(conn);
                let mut line = String::new();
                loop {
                    // The request head, to its empty line.
                    let mut seen = false;
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" && seen {
                            break;
                        }
                        seen = true;
                    }
                    // One write: a head and a body in two segments would
                    // meet Nagle and delayed ACKs (40 ms a request).
                    let body = "{\"status\":\"up\"}";
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if w.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn spec(snippet: Option<&str>, dir: &std::path::Path, origins: Vec<String>) -> PluginSpec {
    let (path, sha256) = wat::write(snippet, dir);
    PluginSpec {
        name: "probe".into(),
        path,
        sha256,
        capabilities: Capabilities {
            http: HttpGrant { origins },
            ..Capabilities::default()
        },
        limits: Limits::default(),
        param_schemas: Default::default(),
    }
}

fn main() {
    let port = serve();
    let origin = format!("http://127.0.0.1:{port}");
    let url = format!("{origin}/health");
    let tmp = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(tmp.path().join("cache")),
        ..HostConfig::default()
    })
    .unwrap();
    let probe = host
        .load(&spec(Some("http-get"), tmp.path(), vec![origin.clone()]))
        .unwrap();
    let bare = host.load(&spec(None, tmp.path(), vec![])).unwrap();
    let mut ctx = CallContext::new("bench", UpgradeState::PrepareSplit, "gate/health");
    ctx.params = serde_json::json!({ "url": url });
    let call = |p: &LoadedPlugin| {
        let out = p.check(black_box(&ctx), "gate").unwrap();
        assert_eq!(out.value.verdict, Verdict::Pass);
    };
    assert!(
        probe
            .check(&ctx, "gate")
            .unwrap()
            .value
            .message
            .starts_with("200 0 0000015 ")
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    let native = || {
        let mut r = agent.get(&url).call().unwrap();
        assert_eq!(r.status(), 200);
        black_box(r.body_mut().read_to_vec().unwrap());
    };

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("http-probe");
        g.bench_function("plugin-call-with-get", |b| b.iter(|| call(&probe)));
        g.bench_function("plugin-call-without-request", |b| b.iter(|| call(&bare)));
        g.bench_function("native-ureq-get", |b| b.iter(native));
        g.finish();
    }
    c.final_summary();

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let with = median_of(2000, || call(&probe));
    let without = median_of(2000, || call(&bare));
    let get = median_of(2000, native);
    println!("\nsummary (medians, this run)");
    println!(
        "  plugin call with one GET: {:8.1} µs   the call alone: {:8.1} µs   the GET natively: {:8.1} µs",
        us(with),
        us(without),
        us(get)
    );
    println!(
        "  the capability adds {:.1} µs to a call ({:.1} µs beyond the request itself)",
        us(with.saturating_sub(without)),
        us(with.saturating_sub(without).saturating_sub(get))
    );
}
