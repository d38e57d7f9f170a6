//! The first-party plugins as built and committed in plugins/dist, driven
//! through the plugin host: a whole upgrade, a runner restart in the middle of
//! a resync, injected faults, and the refusal of ungranted storage.

use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DIST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/dist");

/// The digest plugins/dist/SHA256SUMS records for `file`.
fn pinned(file: &str) -> String {
    let sums = std::fs::read_to_string(Path::new(DIST).join("SHA256SUMS")).unwrap();
    sums.lines()
        .find_map(|l| l.strip_suffix(&format!("  {file}")).map(str::to_string))
        .unwrap_or_else(|| panic!("{file} not in SHA256SUMS"))
}

fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        cache_dir: Some(Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")),
        ..HostConfig::default()
    })
    .unwrap()
}

fn spec(name: &str, storage: Option<PathBuf>) -> PluginSpec {
    let file = format!("{name}.wasm");
    PluginSpec {
        name: name.into(),
        path: Path::new(DIST).join(&file),
        sha256: pinned(&file),
        capabilities: Capabilities {
            storage: StorageGrant { dir: storage },
            ..Capabilities::default()
        },
        limits: Limits {
            timeout: Duration::from_millis(500),
            ..Limits::default()
        },
        param_schemas: Default::default(),
    }
}

struct Sim {
    duplex: LoadedPlugin,
    checks: LoadedPlugin,
}

impl Sim {
    fn load(host: &PluginHost, storage: &Path) -> Sim {
        Sim {
            duplex: host
                .load(&spec("sim-duplex", Some(storage.into())))
                .unwrap(),
            checks: host
                .load(&spec("sim-checks", Some(storage.into())))
                .unwrap(),
        }
    }

    fn gate(&self, state: UpgradeState, name: &str, params: serde_json::Value) -> CheckResult {
        let ctx = CallContext::new("session-1", state, format!("gate/{name}")).with_params(params);
        self.checks.check(&ctx, name).unwrap().value
    }

    /// Calls the operation until it settles; returns the outcome and the calls made.
    fn op(
        &self,
        state: UpgradeState,
        op: HardwareOp,
        params: serde_json::Value,
    ) -> (Progress, u32) {
        let ctx = CallContext::new("session-1", state, format!("op/{op}")).with_params(params);
        for n in 1..=50 {
            let out = self.duplex.operate(&ctx, op).unwrap();
            if !matches!(out.value, Progress::Pending { .. }) {
                return (out.value, n);
            }
        }
        panic!("{op} never settled");
    }
}

fn instant() -> serde_json::Value {
    json!({"steps": 2, "time-scale": 0})
}

#[test]
fn the_committed_components_describe_what_they_provide() {
    let host = host();
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::load(&host, dir.path());
    let d = sim.duplex.info();
    assert_eq!(d.name, "sim-duplex");
    assert_eq!(d.operations.len(), 5);
    assert!(d.reports_partner);
    assert_eq!(d.installers[0].name, "sim");
    let schema = &d.operation(HardwareOp::Split).unwrap().params_schema;
    assert!(schema["properties"]["time-scale"].is_object(), "{schema}");
    let c = sim.checks.info();
    let names: Vec<_> = c.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "duplexed",
            "disks-mirrored",
            "services-running",
            "free-space",
            "software-version"
        ]
    );
}

#[test]
fn a_whole_upgrade_survives_a_runner_restart_in_the_middle_of_commit() {
    let storage = tempfile::tempdir().unwrap();
    let sim = Sim::load(&host(), storage.path());
    use UpgradeState::*;
    for (name, params) in [
        ("duplexed", json!({})),
        ("disks-mirrored", json!({})),
        ("free-space", json!({"min-free-bytes": 1 << 30})),
    ] {
        let r = sim.gate(PrepareSplit, name, params);
        assert_eq!(r.verdict, Verdict::Pass, "{name}: {}", r.message);
    }
    assert!(matches!(
        sim.op(Split, HardwareOp::Split, instant()).0,
        Progress::Done { .. }
    ));
    assert_eq!(
        sim.gate(Split, "disks-mirrored", json!({})).verdict,
        Verdict::Fail
    );

    let art = Artifact {
        name: "app".into(),
        version: "2.0.0".into(),
        sha256: "ab".repeat(32),
        size: 1 << 20,
        source: "policies/artifacts/app-2.0.0.pkg".into(),
    };
    let ctx = CallContext::new("session-1", Split, "install/app").with_params(instant());
    let first = sim.duplex.install(&ctx, &art).unwrap();
    assert!(
        matches!(first.value, Progress::Pending { percent: 50, .. }),
        "{:?}",
        first.value
    );
    assert_eq!(first.progress.unwrap().percent, 50);
    assert!(matches!(
        sim.duplex.install(&ctx, &art).unwrap().value,
        Progress::Done { .. }
    ));
    let v = json!({"name": "app", "version": "2.0.0", "side": "upgrade"});
    assert_eq!(
        sim.gate(PrepareMerge, "software-version", v).verdict,
        Verdict::Pass
    );

    assert!(matches!(
        sim.op(Merge, HardwareOp::Merge, instant()).0,
        Progress::Done { .. }
    ));
    let r = sim.gate(Merge, "services-running", json!({"services": ["app"]}));
    assert_eq!(r.message, "running on the upgrade side: app");

    // Commit takes 4 calls (resync); the runner dies after the first.
    let ctx = CallContext::new("session-1", Commit, "op/commit").with_params(instant());
    let out = sim.duplex.operate(&ctx, HardwareOp::Commit).unwrap();
    assert!(
        matches!(out.value, Progress::Pending { percent: 25, .. }),
        "{:?}",
        out.value
    );
    let c = CallContext::new("session-1", Commit, "partner");
    assert_eq!(sim.duplex.partner(&c).unwrap().value, PartnerState::Booting);
    drop(sim);

    let sim = Sim::load(&host(), storage.path());
    let (done, calls) = sim.op(Commit, HardwareOp::Commit, instant());
    assert!(matches!(done, Progress::Done { .. }), "{done:?}");
    assert_eq!(calls, 3, "the resync resumed where it was");
    assert!(matches!(
        sim.op(Finish, HardwareOp::Finish, instant()).0,
        Progress::Done { .. }
    ));
    assert_eq!(sim.gate(Idle, "duplexed", json!({})).verdict, Verdict::Pass);
    let v = json!({"name": "app", "version": "2.0.0", "side": "production"});
    assert_eq!(sim.gate(Idle, "software-version", v).verdict, Verdict::Pass);
}

#[test]
fn injected_faults_reach_the_runner_as_clear_outcomes() {
    let storage = tempfile::tempdir().unwrap();
    let sim = Sim::load(&host(), storage.path());
    use UpgradeState::*;

    let r = sim.gate(PrepareSplit, "duplexed", json!({"fail-times": 1}));
    assert_eq!(
        (r.verdict, r.message.as_str()),
        (Verdict::Fail, "duplexed: injected failure 1 of 1")
    );
    assert_eq!(
        sim.gate(PrepareSplit, "duplexed", json!({"fail-times": 1}))
            .verdict,
        Verdict::Pass
    );

    let p = json!({"steps": 1, "time-scale": 0, "faults": {"fail": {"split": 1}, "fail-retryable": true}});
    let (out, _) = sim.op(Split, HardwareOp::Split, p.clone());
    assert_eq!(
        out,
        Progress::Failed {
            message: "split failed (injected failure 1 of 1)".into(),
            retryable: true
        }
    );
    assert!(matches!(
        sim.op(Split, HardwareOp::Split, p).0,
        Progress::Done { .. }
    ));

    // A hang is ended by the deadline; the retry goes on.
    let p = json!({"steps": 1, "time-scale": 0, "faults": {"hang": {"merge": 1}}});
    let ctx = CallContext::new("session-1", Merge, "op/merge").with_params(p.clone());
    let e = sim.duplex.operate(&ctx, HardwareOp::Merge).unwrap_err();
    assert!(matches!(e, CallError::Timeout { .. }), "{e}");
    assert!(matches!(
        sim.op(Merge, HardwareOp::Merge, p).0,
        Progress::Done { .. }
    ));

    // A crashed partner: the op fails for good, the partner says so, abort recovers.
    let p = json!({"steps": 1, "time-scale": 0, "faults": {"crash-partner-at": "commit"}});
    let (out, _) = sim.op(Commit, HardwareOp::Commit, p.clone());
    assert!(
        matches!(
            out,
            Progress::Failed {
                retryable: false,
                ..
            }
        ),
        "{out:?}"
    );
    let c = CallContext::new("session-1", Commit, "partner");
    assert_eq!(sim.duplex.partner(&c).unwrap().value, PartnerState::Crashed);
    assert!(matches!(
        sim.op(Abort, HardwareOp::Abort, p).0,
        Progress::Done { .. }
    ));
    assert_eq!(sim.duplex.partner(&c).unwrap().value, PartnerState::Up);
}

#[test]
fn without_the_storage_grant_the_simulator_refuses_clearly() {
    let host = host();
    let duplex = host.load(&spec("sim-duplex", None)).unwrap();
    let ctx = CallContext::new("s", UpgradeState::Split, "op/split");
    let e = duplex.operate(&ctx, HardwareOp::Split).unwrap_err();
    assert!(matches!(e, CallError::CapabilityDenied { .. }), "{e}");
    assert!(
        e.to_string()
            .contains("capability `storage` not granted to plugin `sim-duplex` by the policy")
    );
}
