//! The plugin host against hand-written WAT components (tests/data/plugins):
//! a well-behaved one and one per way a plugin can misbehave. Each misbehaviour
//! must end the call with a clear `CallError`, never the runner, and leave other
//! plugins working.

use duplex_core::cancel::Cancel;
use duplex_core::model::UpgradeState;
use duplex_core::plugins::code_limits::MAX_FUNCTION_BODY_BYTES;
use duplex_core::plugins::schema_limits::MAX_SCHEMA_EXPANSION;
use duplex_core::plugins::*;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

mod support;
#[path = "support/wat.rs"]
mod wat;
use support::plugin_cache_dir;
use wat::assemble;

fn host() -> &'static PluginHost {
    static HOST: OnceLock<PluginHost> = OnceLock::new();
    HOST.get_or_init(|| {
        PluginHost::new(HostConfig {
            cache_dir: Some(plugin_cache_dir()),
            // big-memory is loaded with a limit of 256 MiB.
            max_memory_bytes: 256 << 20,
            ..HostConfig::default()
        })
        .unwrap()
    })
}

/// Writes the assembled component to a file and returns its spec.
fn spec(snippet: Option<&str>, dir: &Path) -> PluginSpec {
    let wat = assemble(snippet);
    let path = dir.join(format!("{}.wat", snippet.unwrap_or("good")));
    std::fs::write(&path, &wat).unwrap();
    PluginSpec {
        name: "hostile".into(),
        path,
        sha256: sha256_hex(wat.as_bytes()),
        capabilities: Capabilities::default(),
        limits: Limits::default(),
        param_schemas: Default::default(),
    }
}

fn load_with(
    snippet: Option<&str>,
    f: impl FnOnce(&mut PluginSpec),
) -> Result<LoadedPlugin, PluginError> {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec(snippet, dir.path());
    f(&mut s);
    host().load(&s)
}

fn load(snippet: &str) -> LoadedPlugin {
    load_with(Some(snippet), |_| {}).unwrap_or_else(|e| panic!("{snippet}: {e}"))
}

fn ctx() -> CallContext {
    CallContext::new("s-1", UpgradeState::PrepareSplit, "gate/gate")
}

#[test]
fn a_well_behaved_plugin_describes_itself_and_answers_every_call() {
    let p = load_with(None, |_| {}).unwrap();
    let info = p.info();
    assert_eq!(info.name, "hostile");
    assert_eq!(info.version, "0.0.0");
    assert_eq!(info.checks[0].name, "gate");
    assert_eq!(info.checks[0].params_schema, serde_json::json!({}));
    assert_eq!(info.operations[0].op, HardwareOp::Split);
    assert_eq!(info.installers[0].name, "sim");
    assert!(info.reports_partner);

    let c = p.check(&ctx(), "gate").unwrap();
    assert_eq!(c.value.verdict, Verdict::Pass);
    assert_eq!(c.value.message, "ok");

    let o = p.operate(&ctx(), HardwareOp::Split).unwrap();
    assert_eq!(
        o.value,
        Progress::Done {
            message: "done".into()
        }
    );
    assert_eq!(
        o.progress,
        Some(ProgressReport {
            percent: 100,
            message: "done".into()
        })
    );

    let art = Artifact {
        name: "app".into(),
        version: "1.2.3".into(),
        sha256: "0".repeat(64),
        size: 42,
        source: "file:///dev/null".into(),
    };
    assert!(matches!(
        p.install(&ctx(), &art).unwrap().value,
        Progress::Done { .. }
    ));
    assert_eq!(p.partner(&ctx()).unwrap().value, PartnerState::Up);

    // What the plugin does not describe is refused without calling it.
    let e = p.check(&ctx(), "nope").unwrap_err();
    assert!(matches!(e, CallError::NotProvided { .. }), "{e}");
    let e = p.operate(&ctx(), HardwareOp::Merge).unwrap_err();
    assert!(e.to_string().contains("no operation `merge`"), "{e}");
}

#[test]
fn every_call_gets_a_fresh_instance() {
    let p = load("counter");
    for _ in 0..3 {
        assert_eq!(
            p.check(&ctx(), "gate").unwrap().value.verdict,
            Verdict::Pass
        );
    }
}

/// The pooling allocator keeps the pages a call dirtied resident and zeroes
/// them in place (up to `KEEP_RESIDENT_BYTES`), returning the rest to the
/// kernel: either way the next call in the same slot (a pool of one) must
/// start from a fresh instance. `leak` fails when it finds anything an
/// earlier call left: its markers in memory below and above the resident
/// part, memory still grown, a data segment overwritten, a global set, a
/// table slot filled.
#[test]
fn nothing_a_call_leaves_in_its_pooled_slot_reaches_the_next_call() {
    let dir = tempfile::tempdir().unwrap();
    let tunings = [
        PoolTuning::default(),
        PoolTuning {
            keep_resident: Some(0),
            decommit_batch_size: 4,
            pagemap_scan: false,
        },
        PoolTuning {
            keep_resident: Some(Limits::DEFAULT_MEMORY_BYTES),
            decommit_batch_size: 1,
            pagemap_scan: false,
        },
        PoolTuning {
            keep_resident: Some(Limits::DEFAULT_MEMORY_BYTES),
            ..PoolTuning::default()
        },
    ];
    for tuning in tunings {
        let host = PluginHost::new(HostConfig {
            pool_size: 1,
            pool_tuning: tuning,
            ..HostConfig::default()
        })
        .unwrap();
        let p = host.load(&spec(Some("leak"), dir.path())).unwrap();
        for call in 0..4 {
            let out = p.check(&ctx(), "gate").unwrap().value;
            assert_eq!(
                (out.verdict, out.message.as_str()),
                (Verdict::Pass, "aa"),
                "{tuning:?}, call {call}"
            );
        }
    }
}

#[test]
fn a_digest_mismatch_names_both_digests_and_loads_nothing() {
    let wrong = "ab".repeat(32);
    let e = load_with(None, |s| s.sha256 = wrong.clone()).unwrap_err();
    let actual = sha256_hex(assemble(None).as_bytes());
    let msg = e.to_string();
    assert!(matches!(e, PluginError::DigestMismatch { .. }));
    assert!(msg.contains(&wrong) && msg.contains(&actual), "{msg}");

    let e = load_with(None, |s| s.sha256 = "123".into()).unwrap_err();
    assert!(matches!(e, PluginError::BadDigest { .. }), "{e}");
    // The policy's rule: lower case only (the host used to accept either).
    let e = load_with(None, |s| s.sha256 = actual.to_uppercase()).unwrap_err();
    assert!(matches!(e, PluginError::BadDigest { .. }), "{e}");
    assert!(
        e.to_string().contains("expected 64 lower-case hex digits"),
        "{e}"
    );

    let e = load_with(None, |s| s.path = s.path.with_extension("missing")).unwrap_err();
    assert!(matches!(e, PluginError::Unreadable { .. }), "{e}");
}

#[test]
fn files_that_are_not_components_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        ("garbage", &b"\x00asm\x0d\x00\x01\x00garbage"[..]),
        ("text", &b"hello"[..]),
        ("core-module", &b"(module)"[..]),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let s = PluginSpec {
            name: name.into(),
            path,
            sha256: sha256_hex(bytes),
            capabilities: Capabilities::default(),
            limits: Limits::default(),
            param_schemas: Default::default(),
        };
        let e = host().load(&s).unwrap_err();
        assert!(matches!(e, PluginError::Invalid { .. }), "{name}: {e}");
    }
    // A component importing something the runner does not provide.
    let path = dir.path().join("alien.wat");
    let wat = r#"(component (import "acme:evil/net" (instance (export "open" (func)))))"#;
    std::fs::write(&path, wat).unwrap();
    let s = PluginSpec {
        name: "alien".into(),
        path,
        sha256: sha256_hex(wat.as_bytes()),
        capabilities: Capabilities::default(),
        limits: Limits::default(),
        param_schemas: Default::default(),
    };
    let e = host().load(&s).unwrap_err();
    assert!(matches!(e, PluginError::Incompatible { .. }), "{e}");
}

#[test]
fn a_trap_is_a_clear_call_error() {
    let e = load("trap").check(&ctx(), "gate").unwrap_err();
    assert!(matches!(e, CallError::Trap { .. }), "{e}");
    assert!(e.to_string().contains("check `gate` trapped"), "{e}");

    let e = load("panic").check(&ctx(), "gate").unwrap_err();
    let CallError::Trap { plugin_said, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(plugin_said.as_deref(), Some("panicked at src/lib.rs:1:1"));
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    for snippet in ["loop", "log-forever"] {
        let p = load_with(Some(snippet), |s| {
            s.limits.timeout = Duration::from_millis(200)
        })
        .unwrap();
        // A loop that never ends can only end by its deadline: the kind of
        // error says it did (no stopwatch needed).
        let e = p.check(&ctx(), "gate").unwrap_err();
        assert!(matches!(e, CallError::Timeout { .. }), "{snippet}: {e}");
        assert!(
            e.to_string().contains("exceeded its deadline of 200ms"),
            "{e}"
        );
    }
}

#[test]
fn memory_is_capped() {
    let e = load("memory-bomb").check(&ctx(), "gate").unwrap_err();
    let CallError::MemoryLimit {
        limit, requested, ..
    } = e
    else {
        panic!("{e}")
    };
    assert_eq!(limit, Limits::DEFAULT_MEMORY_BYTES);
    assert!(requested > limit);

    // Even instantiation is capped: 125 MiB of initial memory.
    let e = load_with(Some("big-memory"), |_| {}).unwrap_err();
    assert!(
        matches!(&e, PluginError::Describe { source, .. } if matches!(**source, CallError::MemoryLimit { .. })),
        "{e}"
    );
    load_with(Some("big-memory"), |s| s.limits.memory_bytes = 256 << 20).unwrap();
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let e = load("recursion").check(&ctx(), "gate").unwrap_err();
    assert!(matches!(e, CallError::StackOverflow { .. }), "{e}");
}

#[test]
fn garbage_output_is_refused() {
    for snippet in ["bad-pointer", "bad-utf8", "bad-tag"] {
        let e = load(snippet).check(&ctx(), "gate").unwrap_err();
        assert!(
            matches!(e, CallError::InvalidOutput { .. }),
            "{snippet}: {e}"
        );
    }
    let e = load("bad-percent")
        .operate(&ctx(), HardwareOp::Split)
        .unwrap_err();
    assert!(e.to_string().contains("150%"), "{e}");

    let e = load_with(Some("bad-schema"), |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("describe returned invalid data") && msg.contains("not JSON"),
        "{msg}"
    );
}

#[test]
fn oversized_output_is_refused_unless_the_limit_allows_it() {
    let e = load("huge-output").check(&ctx(), "gate").unwrap_err();
    let CallError::OutputTooLarge { size, limit, .. } = e else {
        panic!("{e}")
    };
    assert_eq!((size, limit), (2 << 20, 1 << 20));
    let p = load_with(Some("huge-output"), |s| s.limits.max_output_bytes = 4 << 20).unwrap();
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.message.len(),
        2 << 20
    );
}

#[test]
fn logs_are_capped_and_the_drop_is_reported() {
    let out = load("log-spam").check(&ctx(), "gate").unwrap();
    assert_eq!(out.value.verdict, Verdict::Pass);
    let kept: Vec<_> = out
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Plugin)
        .collect();
    let bytes: u64 = kept
        .iter()
        .map(|l| l.message.len() as u64 + ENTRY_OVERHEAD_BYTES)
        .sum();
    assert!(bytes <= Limits::DEFAULT_MAX_LOG_BYTES);
    let note = out.logs.last().unwrap();
    assert_eq!(note.source, LogSource::Host);
    assert!(note.message.contains("dropped"), "{}", note.message);
}

#[test]
fn every_output_channel_is_capped_by_count_not_only_by_bytes() {
    // A million empty log lines: kept up to the line cap, the rest counted.
    let out = load("log-empty").check(&ctx(), "gate").unwrap();
    assert_eq!(out.value.verdict, Verdict::Pass);
    let plugin_lines = out
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Plugin)
        .count();
    assert!(plugin_lines <= MAX_LOG_LINES, "{plugin_lines} lines kept");
    let note = &out.logs.last().unwrap().message;
    assert!(note.contains("log line(s) (0 bytes) dropped"), "{note}");
    let dropped: usize = note.split(' ').next().unwrap().parse().unwrap();
    assert_eq!(dropped + plugin_lines, 1_000_000, "{note}");

    // A hundred thousand progress reports: the first 1024 count.
    let out = load("progress-spam").check(&ctx(), "gate").unwrap();
    assert!(out.progress.is_some());
    assert!(
        out.logs
            .iter()
            .any(|l| l.message == format!("{} progress report(s) dropped: over the limit of {MAX_PROGRESS_REPORTS} per call (the last one kept is report {MAX_PROGRESS_REPORTS})", 100_000 - MAX_PROGRESS_REPORTS)),
        "{:?}",
        out.logs
    );

    // Two million empty observations: the first ones kept, the rest noted.
    let out = load("observations-spam").check(&ctx(), "gate").unwrap();
    assert_eq!(out.value.observations.len(), MAX_OBSERVATIONS);
    let note = &out.logs.last().unwrap().message;
    assert!(
        note.starts_with(&format!(
            "{} observation(s) (0 bytes) dropped",
            2_000_000 - MAX_OBSERVATIONS
        )),
        "{note}"
    );

    // 128 KiB of stdout lines: the call is not failed for it; lines and
    // bytes over the caps are dropped and noted.
    let out = load("stdout-spam").check(&ctx(), "gate").unwrap();
    assert_eq!(out.value.verdict, Verdict::Pass);
    let lines = out
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Stdout)
        .count();
    assert!(lines > 0 && lines <= MAX_LOG_LINES, "{lines}");
    let notes: Vec<&str> = out
        .logs
        .iter()
        .filter(|l| l.source == LogSource::Host)
        .map(|l| l.message.as_str())
        .collect();
    assert!(
        notes.iter().any(|n| n.starts_with(&format!(
            "{} bytes of stdout dropped",
            (128 << 10) - Limits::DEFAULT_MAX_LOG_BYTES
        ))),
        "{notes:?}"
    );
    assert!(notes.iter().any(|n| n.contains("log line(s)")), "{notes:?}");
}

#[test]
fn storage_is_refused_unless_granted() {
    let e = load("storage").check(&ctx(), "gate").unwrap_err();
    assert!(matches!(e, CallError::CapabilityDenied { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("capability `storage` not granted to plugin `hostile` by the policy"),
        "{e}"
    );

    let dir = tempfile::tempdir().unwrap();
    // A runner killed mid-write left a temp file in the store: opening the
    // store at load removes it.
    let kv = dir.path().join("kv");
    std::fs::create_dir(&kv).unwrap();
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = kv.join(format!(".tmp-{dead}-0"));
    std::fs::write(&stale, b"half a value").unwrap();
    let p = load_with(Some("storage"), |s| {
        s.capabilities.storage.dir = Some(kv.clone())
    })
    .unwrap();
    assert!(
        !stale.exists(),
        "the killed writer's temp file is still there"
    );
    let out = p.check(&ctx(), "gate").unwrap();
    assert_eq!(out.value.verdict, Verdict::Pass);
}

#[test]
fn misbehaving_plugins_do_not_disturb_others() {
    let good = load_with(None, |_| {}).unwrap();
    let bad: Vec<_> = ["loop", "memory-bomb", "recursion", "trap", "log-forever"]
        .into_iter()
        .map(|s| load_with(Some(s), |s| s.limits.timeout = Duration::from_millis(300)).unwrap())
        .collect();
    std::thread::scope(|scope| {
        for p in &bad {
            scope.spawn(move || assert!(p.check(&ctx(), "gate").is_err()));
        }
        for _ in 0..20 {
            assert_eq!(
                good.check(&ctx(), "gate").unwrap().value.verdict,
                Verdict::Pass
            );
        }
    });
    assert_eq!(
        good.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
}

/// A host with a cache of its own, and the well-behaved plugin (the temporary
/// dirs live as long as the caller keeps them). The host keeps no loaded
/// component in memory, so that every load goes to the cache on disk.
fn fresh_cache() -> (PluginHost, tempfile::TempDir, tempfile::TempDir, PluginSpec) {
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        loaded_components: 0,
        ..HostConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s = spec(None, dir.path());
    (host, cache, dir, s)
}

#[test]
fn precompiled_artifacts_are_cached_and_corrupt_entries_rebuilt() {
    let (host, _cache, _dir, s) = fresh_cache();
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Miss);
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Hit);

    let entry = host.cache_entry(&s.sha256).unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let p = host.load(&s).unwrap();
    assert_eq!(p.cache_status(), CacheStatus::Rebuilt);
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Hit);

    std::fs::remove_file(entry.with_extension("sum")).unwrap();
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Rebuilt);
}

/// What `describe` returned is recorded next to the compiled code, with a
/// checksum, for the limits it ran under: a later load takes it from there
/// (so a record is believed exactly as much as the compiled code beside
/// it); a damaged record, or one made under other limits, is described
/// again and replaced.
#[test]
fn describe_is_recorded_in_the_cache_and_a_bad_record_described_again() {
    let (host, _cache, _dir, s) = fresh_cache();
    assert_eq!(host.load(&s).unwrap().info().name, "hostile");
    let record = host
        .cache_entry(&s.sha256)
        .unwrap()
        .with_extension("describe");
    let text = std::fs::read_to_string(&record).unwrap();
    let (_, json) = text.split_once('\n').unwrap();
    assert!(json.contains(r#""name":"hostile""#), "{json}");

    // The record is what a load believes: one saying another name (with a
    // matching checksum) is taken as it is.
    let renamed = json.replace(r#""name":"hostile""#, r#""name":"recorded""#);
    let write = |json: &str, sum: u32| {
        std::fs::write(&record, format!("crc32:{sum:08x}\n{json}")).unwrap();
    };
    write(&renamed, crc32fast::hash(renamed.as_bytes()));
    assert_eq!(host.load(&s).unwrap().info().name, "recorded");
    // A damaged one is not: described again, and the record replaced.
    write(&renamed, crc32fast::hash(json.as_bytes()));
    assert_eq!(host.load(&s).unwrap().info().name, "hostile");
    assert_eq!(std::fs::read_to_string(&record).unwrap(), text);
    // Nor one made under other limits.
    write(&renamed, crc32fast::hash(renamed.as_bytes()));
    let mut other = s.clone();
    other.limits.max_log_bytes += 1;
    assert_eq!(host.load(&other).unwrap().info().name, "hostile");
}

#[test]
#[ignore = "prints the error messages for review"]
fn show_messages() {
    for s in [
        "trap",
        "panic",
        "loop",
        "memory-bomb",
        "recursion",
        "bad-pointer",
        "bad-utf8",
        "bad-tag",
        "huge-output",
        "storage",
    ] {
        let p = load_with(Some(s), |s| s.limits.timeout = Duration::from_millis(200)).unwrap();
        println!("{s}: {}", p.check(&ctx(), "gate").unwrap_err());
    }
    println!("{}", load_with(Some("bad-schema"), |_| {}).unwrap_err());
    println!("{}", load_with(Some("big-memory"), |_| {}).unwrap_err());
    println!(
        "{}",
        load_with(None, |s| s.sha256 = "ab".repeat(32)).unwrap_err()
    );
}

#[test]
fn wasi_is_linked_with_nothing_granted_unless_the_policy_says_so() {
    // No environment by default; the granted one is visible.
    let p = load("wasi-env");
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
    let p = load_with(Some("wasi-env"), |s| {
        s.capabilities.wasi.env = vec![("SITE".into(), "lab".into())]
    })
    .unwrap();
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Fail
    );

    // A frozen clock by default; the real one when granted.
    let p = load("wasi-clock");
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
    let p = load_with(Some("wasi-clock"), |s| s.capabilities.wasi.clocks = true).unwrap();
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Fail
    );
}

#[test]
fn a_wasi_wait_ends_at_the_deadline() {
    // No grant needed: a monotonic-clock pollable for 8 s against 300 ms.
    let p = load_with(Some("wasi-sleep"), |s| {
        s.limits.timeout = Duration::from_millis(300)
    })
    .unwrap();
    let e = p.check(&ctx(), "gate").unwrap_err();
    assert!(matches!(e, CallError::Timeout { .. }), "{e}");
    assert!(
        e.to_string().contains("exceeded its deadline of 300ms"),
        "{e}"
    );

    // The same wait in `describe`: the load fails instead of waiting.
    let e = load_with(Some("wasi-sleep-describe"), |s| {
        s.limits.timeout = Duration::from_millis(300)
    })
    .unwrap_err();
    assert!(
        matches!(&e, PluginError::Describe { source, .. } if matches!(**source, CallError::Timeout { .. })),
        "{e}"
    );
}

#[test]
fn a_cancelled_run_ends_a_running_call_at_once() {
    // Cancelled before it starts: an endless loop ends at the first epoch
    // tick, as Cancelled (not at its 2-minute deadline).
    let p = load_with(Some("loop"), |s| {
        s.limits.timeout = Duration::from_secs(120)
    })
    .unwrap();
    let cancel = Cancel::new();
    cancel.cancel("test");
    let e = p
        .check(&ctx().with_cancel(cancel.flag()), "gate")
        .unwrap_err();
    assert!(matches!(e, CallError::Cancelled { .. }), "{e}");
    assert!(e.to_string().contains("was cancelled"), "{e}");

    // Cancelled before a WASI wait of 8 s: the wait does not start (a
    // plugin returning right after it would never meet an epoch check).
    let p = load_with(Some("wasi-sleep"), |s| {
        s.limits.timeout = Duration::from_secs(120)
    })
    .unwrap();
    let e = p
        .check(&ctx().with_cancel(cancel.flag()), "gate")
        .unwrap_err();
    assert!(matches!(e, CallError::Cancelled { .. }), "{e}");

    // Cancelled while it runs: after it stored its marker, in that host call
    // or in its WASI wait, the call ends at once.
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("kv");
    let p = load_with(Some("wasi-sleep-marked"), |s| {
        s.capabilities.storage.dir = Some(kv.clone());
        s.limits.timeout = Duration::from_secs(120);
    })
    .unwrap();
    let cancel = Cancel::new();
    let ctx = ctx().with_cancel(cancel.flag());
    std::thread::scope(|scope| {
        let call = scope.spawn(|| p.check(&ctx, "gate"));
        // The marker is the plugin's last step before its 30 s wait.
        while !kv.join("blocked.v").exists() {
            assert!(!call.is_finished(), "the call ended before its marker");
            std::thread::yield_now();
        }
        cancel.cancel("test");
        let e = call.join().unwrap().unwrap_err();
        assert!(matches!(e, CallError::Cancelled { .. }), "{e}");
    });
}

#[test]
fn a_parameter_schema_that_explodes_is_refused_at_describe() {
    // 2.5 KB of text, 2^40 nodes with its references followed.
    let e = load_with(Some("schema-bomb"), |_| {}).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, PluginError::Describe { source, .. } if matches!(**source, CallError::InvalidOutput { .. })),
        "{msg}"
    );
    assert!(
        msg.contains("check `gate`: params-schema expands to"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("limit of {MAX_SCHEMA_EXPANSION}")),
        "{msg}"
    );
    // A session in flight loads its pinned plugins ignoring their parameter
    // schemas: a resume, a retry or an abort never depends on them.
    let plugin = load_with(Some("schema-bomb"), |s| {
        s.param_schemas = ParamSchemas::Ignored;
    })
    .unwrap();
    assert_eq!(
        plugin.info().checks[0].params_schema,
        serde_json::json!(true)
    );
}

#[test]
fn plugin_files_are_checked_before_they_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |path: PathBuf| PluginSpec {
        name: "odd".into(),
        path,
        sha256: "0".repeat(64),
        capabilities: Capabilities::default(),
        limits: Limits::default(),
        param_schemas: Default::default(),
    };
    // A sparse file over the cap: refused by its size, nothing read (it
    // would otherwise be read whole before its digest is compared).
    let big = dir.path().join("big.wasm");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_PLUGIN_BYTES + 1)
        .unwrap();
    let e = host().load(&spec(big)).unwrap_err();
    assert!(
        matches!(
            &e,
            PluginError::Unreadable {
                source: SourceError::TooLarge { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("more than the limit of 64 MiB for a plugin"),
        "{e}"
    );
    // Not regular files.
    for (path, kind) in [
        (dir.path().to_path_buf(), "a directory"),
        (PathBuf::from("/dev/zero"), "a character device"),
    ] {
        let e = host().load(&spec(path)).unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("it is {kind}, not a regular file")),
            "{e}"
        );
    }
}

#[test]
fn plugins_too_costly_to_compile_are_refused_before_compiling() {
    for (snippet, needle) in [
        (
            "many-locals",
            "core module 1, function 5 declares 40000 locals, more than the limit of 4096 per function",
        ),
        (
            "locals-times-code",
            "core module 1, function 5 has 2000 locals over 40",
        ),
    ] {
        let e = load_with(Some(snippet), |_| {}).unwrap_err();
        assert!(
            matches!(e, PluginError::OverCompileLimits { .. }),
            "{snippet}: {e}"
        );
        assert!(e.to_string().contains(needle), "{snippet}: {e}");
        assert!(
            e.to_string().contains("is refused before compiling"),
            "{snippet}: {e}"
        );
    }
    // One function of more than 1 MiB of code.
    let wat = assemble(None).replace(
        ";;@begin extra\n",
        &format!(
            ";;@begin extra\n(func $big {} )\n",
            "nop ".repeat((MAX_FUNCTION_BODY_BYTES + 1) as usize)
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.wat");
    std::fs::write(&path, &wat).unwrap();
    let e = host()
        .load(&PluginSpec {
            name: "big".into(),
            path,
            sha256: sha256_hex(wat.as_bytes()),
            capabilities: Capabilities::default(),
            limits: Limits::default(),
            param_schemas: Default::default(),
        })
        .unwrap_err();
    assert!(
        e.to_string().contains(&format!(
            "core module 1, function 5 has {} bytes of code, more than the limit of {MAX_FUNCTION_BODY_BYTES} per function",
            MAX_FUNCTION_BODY_BYTES + 3
        )),
        "{e}"
    );
}

#[test]
fn a_cache_others_can_write_is_refused_and_their_entries_are_never_run() {
    use std::os::unix::fs::{PermissionsExt, chown};
    // The tests run as root: user 65534 and mode bits play the other user.
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    let refusal = |dir: &Path| match PluginHost::new(HostConfig {
        cache_dir: Some(dir.to_path_buf()),
        ..HostConfig::default()
    }) {
        Ok(_) => panic!("{} was accepted as the cache", dir.display()),
        Err(e) => e.to_string(),
    };
    let base = tempfile::tempdir().unwrap();

    // A cache dir every user can write.
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    mode(&open, 0o777);
    let e = refusal(&open);
    assert!(
        e.contains(&format!(
            "cannot use {} as the plugin cache: it is writable by every user (mode 0777)",
            open.display()
        )) && e.contains("chmod go-w"),
        "{e}"
    );
    // One owned by another user.
    let theirs = base.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    chown(&theirs, Some(65534), Some(65534)).unwrap();
    let e = refusal(&theirs);
    assert!(e.contains("it is owned by user 65534"), "{e}");
    // One inside a directory every user can write (and rename things in).
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    mode(&shared, 0o777);
    let e = refusal(&shared.join("cache"));
    assert!(
        e.contains(&format!(
            "{} above it: it is writable by every user",
            shared.display()
        )),
        "{e}"
    );

    // Another user's compiled code planted under the pinned plugin's name,
    // with a matching checksum: not run, rebuilt.
    let cache = base.path().join("cache");
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.clone()),
        loaded_components: 0,
        ..HostConfig::default()
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = spec(None, dir.path());
    let evil = spec(Some("trap"), dir.path());
    host.load(&evil).unwrap();
    let planted = host.cache_entry(&good.sha256).unwrap();
    let plant = |owner: u32, m: u32| {
        let from = host.cache_entry(&evil.sha256).unwrap();
        for (f, t) in [
            (from.clone(), planted.clone()),
            (from.with_extension("sum"), planted.with_extension("sum")),
        ] {
            let _ = std::fs::remove_file(&t);
            std::fs::copy(&f, &t).unwrap();
            chown(&t, Some(owner), Some(owner)).unwrap();
            mode(&t, m);
        }
    };
    plant(65534, 0o644);
    let p = host.load(&good).unwrap();
    assert_eq!(p.cache_status(), CacheStatus::Rebuilt);
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass,
        "the planted code ran"
    );
    assert_eq!(host.load(&good).unwrap().cache_status(), CacheStatus::Hit);
    // Ours, but writable by others: not run either.
    plant(0, 0o666);
    let p = host.load(&good).unwrap();
    assert_eq!(p.cache_status(), CacheStatus::Rebuilt);
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
}

#[test]
fn grants_a_plugin_cannot_use_or_must_not_have_are_refused_at_the_grant() {
    let dir = tempfile::tempdir().unwrap();
    // Directories work for a plugin that imports WASI preopens.
    let p = load("wasi-preopens");
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Fail
    );
    let p = load_with(Some("wasi-preopens"), |s| {
        s.capabilities.wasi.dirs = vec![DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/data".into(),
            read_only: true,
        }]
    })
    .unwrap();
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );

    // The skeleton imports no WASI: environment and directories granted to
    // it would do nothing.
    let e = load_with(None, |s| {
        s.capabilities.wasi.env = vec![("SITE".into(), "lab".into())];
        s.capabilities.wasi.dirs = vec![DirGrant {
            host: dir.path().to_path_buf(),
            guest: "/data".into(),
            read_only: true,
        }];
    })
    .unwrap_err();
    let PluginError::Grant { problems, .. } = &e else {
        panic!("{e}")
    };
    let places: Vec<(&str, bool)> = problems.iter().map(|p| (p.at.as_str(), p.key)).collect();
    assert_eq!(
        places,
        [("/capabilities/env", true), ("/capabilities/dirs", true)],
        "{e}"
    );
    assert!(
        problems[0].message.starts_with(
            "plugin `hostile` cannot use `env`: it does not import wasi:cli/environment (it imports no WASI at all"
        ),
        "{e}"
    );

    // A directory that holds a protected path, or is inside one.
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("storage/x")).unwrap();
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let protected = [ProtectedPath {
        path: state.clone(),
        what: "the state dir".into(),
        readable: false,
    }];
    for (grant, read_only, how) in [
        (dir.path().to_path_buf(), true, "which holds"),
        (state.join("storage/x"), false, "which is inside"),
    ] {
        let mut s = spec(Some("wasi-preopens"), dir.path());
        s.capabilities.wasi.dirs = vec![DirGrant {
            host: grant.clone(),
            guest: "/data".into(),
            read_only,
        }];
        let e = host.load_guarded(&s, &protected).unwrap_err();
        let PluginError::Grant { problems, .. } = &e else {
            panic!("{e}")
        };
        assert_eq!(problems[0].at, "/capabilities/dirs/0/host");
        assert!(
            problems[0].message.contains(&format!(
                "{}, {how} the state dir ({})",
                grant.display(),
                state.display()
            )),
            "{e}"
        );
    }
}

#[test]
fn each_way_to_fail_is_named_for_what_it_is() {
    // A table grown past the sandbox's limit: not "invalid data".
    let e = load("table-grow").check(&ctx(), "gate").unwrap_err();
    assert!(matches!(e, CallError::TableLimit { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "check `gate` exceeded the limit of {MAX_TABLE_ELEMENTS} table elements (asked for 100001)"
        )),
        "{e}"
    );
    // WASI exit instead of a result: not "invalid data".
    let e = load("wasi-exit").check(&ctx(), "gate").unwrap_err();
    assert!(matches!(e, CallError::Exited { status: 1, .. }), "{e}");
    assert!(
        e.to_string()
            .contains("check `gate` called WASI exit with status 1 instead of returning a result"),
        "{e}"
    );
    // More memories than an instance may have: refused at load, not a
    // host error at every call.
    let e = load_with(Some("many-memories"), |_| {}).unwrap_err();
    assert!(matches!(e, PluginError::OverSandboxLimits { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "it defines 18 memories, more than the limit of {MAX_MEMORIES}"
        )),
        "{e}"
    );
    // A storage key of 256 `/`: refused at `set` naming the limit (not the
    // file system's "File name too long"), the plugin's fault, not the host's.
    let dir = tempfile::tempdir().unwrap();
    let p = load_with(Some("storage-long-key"), |s| {
        s.capabilities.storage.dir = Some(dir.path().join("kv"))
    })
    .unwrap();
    let e = p.check(&ctx(), "gate").unwrap_err();
    let CallError::Plugin { message, .. } = &e else {
        panic!("{e}")
    };
    assert!(
        message.contains(&format!(
            "a key of 256 bytes is 768 bytes once stored as a file name (each byte other than A-Z, a-z, 0-9, `_` and `-` takes 3), more than the limit of {MAX_KEY_BYTES}"
        )),
        "{e}"
    );
    // A memory limit above what the host reserves: refused at load.
    let small = PluginHost::new(HostConfig::default()).unwrap();
    let mut s = spec(None, dir.path());
    s.limits.memory_bytes = 256 << 20;
    let e = small.load(&s).unwrap_err();
    assert!(matches!(e, PluginError::Limits { .. }), "{e}");
    assert!(
        e.to_string().contains(
            "its memory limit of 256 MiB is more than this plugin host reserves per memory (64 MiB)"
        ),
        "{e}"
    );
}

#[test]
fn a_store_failing_on_the_host_side_is_a_host_fault_whatever_the_plugin_returns() {
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("kv");
    let p = load_with(Some("storage-set-ignored"), |s| {
        s.capabilities.storage.dir = Some(kv.clone())
    })
    .unwrap();
    // Works while the store does.
    assert_eq!(
        p.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
    // The store is damaged under the plugin (the key's file is now a
    // directory): the write fails on the host's side; the plugin ignores
    // the error and passes, the call is still the host's fault.
    std::fs::remove_file(kv.join("world.v")).unwrap();
    std::fs::create_dir(kv.join("world.v")).unwrap();
    let e = p.check(&ctx(), "gate").unwrap_err();
    let CallError::HostFault {
        capability,
        message,
        ..
    } = &e
    else {
        panic!("{e}")
    };
    assert_eq!(capability, "storage");
    assert!(
        message.starts_with("storage: cannot write key `world`: "),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("check `gate`: the runner's `storage` capability failed on the host"),
        "{e}"
    );
}

/// A host with a cache of its own keeping at most `loaded` components in
/// memory.
fn table_host(loaded: usize) -> (PluginHost, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        loaded_components: loaded,
        ..HostConfig::default()
    })
    .unwrap();
    (host, cache)
}

/// A component loaded once is taken from the host's table on the next
/// load (no cache entry read), but the file is still verified against the
/// pin every time: changed bytes under the same pin are refused, and the
/// table does not make a plugin loadable once its file is gone.
#[test]
fn a_loaded_component_is_reused_and_its_file_still_verified_every_load() {
    let (host, _cache) = table_host(4);
    let dir = tempfile::tempdir().unwrap();
    let s = spec(None, dir.path());
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Miss);
    assert_eq!(host.loaded_components(), 1);
    let again = host.load(&s).unwrap();
    assert_eq!(again.cache_status(), CacheStatus::Memory);
    assert_eq!(again.info().name, "hostile");
    assert_eq!(
        again.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );
    // The session's copy is written from the bytes that were verified.
    assert_eq!(again.component_bytes(), std::fs::read(&s.path).unwrap());
    // The cache entry is not what a reuse reads: removing it changes nothing.
    std::fs::remove_file(host.cache_entry(&s.sha256).unwrap()).unwrap();
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Memory);

    // Other bytes under the same pin: refused before the table is looked at.
    let good = std::fs::read(&s.path).unwrap();
    let mut changed = good.clone();
    changed.extend_from_slice(b"\n;; changed\n");
    std::fs::write(&s.path, &changed).unwrap();
    match host.load(&s) {
        Err(PluginError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, s.sha256);
            assert_eq!(actual, sha256_hex(&changed));
        }
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    std::fs::remove_file(&s.path).unwrap();
    assert!(
        matches!(host.load(&s), Err(PluginError::Unreadable { .. })),
        "a plugin whose file is gone loaded from the table"
    );
    std::fs::write(&s.path, &good).unwrap();
    assert_eq!(host.load(&s).unwrap().cache_status(), CacheStatus::Memory);
}

/// The table holds the component, never a policy's grants or limits: the
/// same bytes loaded under another policy's grants get that policy's checks
/// and nothing of the first's.
#[test]
fn a_reused_component_gets_the_grants_and_limits_of_the_load_that_asks() {
    let (host, _cache) = table_host(4);
    let dir = tempfile::tempdir().unwrap();
    let kv = dir.path().join("kv");
    let mut granted = spec(Some("storage"), dir.path());
    granted.capabilities.storage.dir = Some(kv.clone());
    let with_storage = host.load(&granted).unwrap();
    assert_eq!(
        with_storage.check(&ctx(), "gate").unwrap().value.verdict,
        Verdict::Pass
    );

    // The same bytes under a policy that grants nothing.
    let bare = PluginSpec {
        capabilities: Capabilities::default(),
        ..granted.clone()
    };
    let p = host.load(&bare).unwrap();
    assert_eq!(p.cache_status(), CacheStatus::Memory);
    let e = p.check(&ctx(), "gate").unwrap_err();
    assert!(
        e.to_string()
            .contains("capability `storage` not granted to plugin `hostile` by the policy"),
        "{e}"
    );

    // Grants are checked against the component on a reuse as on a first
    // load: the skeleton imports no WASI, so WASI environment granted to it
    // is refused, even right after a load that had it in the table.
    let skeleton = spec(None, dir.path());
    assert!(host.load(&skeleton).is_ok());
    let mut with_env = skeleton.clone();
    with_env.capabilities.wasi.env = vec![("SITE".into(), "lab".into())];
    let e = host.load(&with_env).unwrap_err();
    assert!(matches!(e, PluginError::Grant { .. }), "{e}");
    assert_eq!(
        host.load(&skeleton).unwrap().cache_status(),
        CacheStatus::Memory
    );

    // Another policy's limits: its memory cap, not the first load's.
    let dir2 = tempfile::tempdir().unwrap();
    let bomb = spec(Some("memory-bomb"), dir2.path());
    let e = host.load(&bomb).unwrap().check(&ctx(), "gate").unwrap_err();
    assert!(
        matches!(e, CallError::MemoryLimit { limit, .. } if limit == Limits::DEFAULT_MEMORY_BYTES),
        "{e}"
    );
    let small = PluginSpec {
        limits: Limits {
            memory_bytes: 2 << 20,
            ..Limits::default()
        },
        ..bomb.clone()
    };
    let p = host.load(&small).unwrap();
    assert_eq!(p.cache_status(), CacheStatus::Memory);
    let e = p.check(&ctx(), "gate").unwrap_err();
    assert!(
        matches!(e, CallError::MemoryLimit { limit, .. } if limit == 2 << 20),
        "the 2 MiB limit did not hold on a reused component: {e}"
    );
}

/// The table is bounded: beyond its capacity the least recently used
/// component is dropped (and loads from the cache on disk again), and a
/// host told to keep none keeps none.
#[test]
fn the_table_of_loaded_components_keeps_at_most_its_capacity() {
    let (host, _cache) = table_host(2);
    let dir = tempfile::tempdir().unwrap();
    let a = spec(None, dir.path());
    let b = spec(Some("trap"), dir.path());
    let c = spec(Some("storage"), dir.path());
    for s in [&a, &b, &c] {
        assert_eq!(host.load(s).unwrap().cache_status(), CacheStatus::Miss);
    }
    assert_eq!(host.loaded_components(), 2);
    // `a` was the least recently used: gone from the table, still cached.
    assert_eq!(host.load(&a).unwrap().cache_status(), CacheStatus::Hit);
    // Now `b` was: `c` stays.
    assert_eq!(host.load(&c).unwrap().cache_status(), CacheStatus::Memory);
    assert_eq!(host.load(&b).unwrap().cache_status(), CacheStatus::Hit);
    assert_eq!(host.loaded_components(), 2);
    // Forty distinct components later, still two.
    for i in 0..40 {
        // A comment: other file bytes, so another digest, same code.
        let wat = format!("{}\n;; {i}\n", assemble(None));
        let path = dir.path().join(format!("many-{i}.wat"));
        std::fs::write(&path, &wat).unwrap();
        let s = PluginSpec {
            path,
            sha256: sha256_hex(wat.as_bytes()),
            ..a.clone()
        };
        host.load(&s).unwrap();
        assert!(host.loaded_components() <= 2);
    }

    let (none, _cache) = table_host(0);
    assert_eq!(none.load(&a).unwrap().cache_status(), CacheStatus::Miss);
    assert_eq!(none.load(&a).unwrap().cache_status(), CacheStatus::Hit);
    assert_eq!(none.loaded_components(), 0);
}
