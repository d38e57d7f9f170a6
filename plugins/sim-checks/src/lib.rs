//! `sim-checks`: readiness and verification checks against the simulated
//! server of `sim-duplex` — duplexed, disks mirrored, services running, free
//! space, software version — so the example policies have real gates.
//!
//! It reads the world `sim-duplex` keeps in storage ([`sim_world::WORLD_KEY`]):
//! the policy must grant both plugins the **same storage namespace**. A missing
//! world is a fresh machine (duplexed, `app` 1.0.0 running, 50 GiB free).
//!
//! Every check takes `fail-times: N` to inject a readiness failure: the check
//! fails its first N calls in each session, then tells the truth.

use duplex_plugin_sdk::prelude::*;
use sim_world::{Health, Mode, World};

#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Basic {
    /// Inject a failure: fail the first N calls of each session.
    pub fail_times: u32,
    /// Inject doubt: answer "inconclusive" to the first N calls of each
    /// session (after any injected failures).
    pub inconclusive_times: u32,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Services {
    /// Applications that must be running on the side that runs production.
    pub services: Vec<String>,
    /// Inject a failure: fail the first N calls of each session.
    pub fail_times: u32,
}

impl Default for Services {
    fn default() -> Services {
        Services {
            services: vec!["app".into()],
            fail_times: 0,
        }
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FreeSpace {
    /// Free bytes required on the Upgrade Side.
    pub min_free_bytes: u64,
    /// Inject a failure: fail the first N calls of each session.
    #[serde(default)]
    pub fail_times: u32,
}

/// Which side a software check looks at.
#[derive(Debug, Default, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Which {
    /// The side that runs the applications.
    #[default]
    Active,
    Production,
    Upgrade,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SoftwareVersion {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub side: Which,
    /// Inject a failure: fail the first N calls of each session.
    #[serde(default)]
    pub fail_times: u32,
}

pub struct SimChecks;

impl Plugin for SimChecks {
    fn manifest() -> Manifest {
        Manifest::new(
            "sim-checks",
            env!("CARGO_PKG_VERSION"),
            "Readiness checks against sim-duplex's simulated server (same storage namespace as sim-duplex)",
        )
        .check::<Basic>("duplexed", "Both sides in lockstep, partner up, nothing in progress")
        .check::<Basic>("disks-mirrored", "Disks mirrored (not split, not resynchronising)")
        .check::<Services>("services-running", "The listed applications run on the active side")
        .check::<FreeSpace>("free-space", "Enough free space on the Upgrade Side")
        .check::<SoftwareVersion>("software-version", "A side runs the expected version of a package")
    }

    fn check(cx: &mut Cx<'_>, name: &str) -> Result<CheckResult, Error> {
        let mut inconclusive_times = 0;
        let (fail_times, result) = {
            let w = World::load(cx)?;
            match name {
                "duplexed" => {
                    let p: Basic = cx.params()?;
                    inconclusive_times = p.inconclusive_times;
                    (p.fail_times, duplexed(&w))
                }
                "disks-mirrored" => {
                    let p: Basic = cx.params()?;
                    inconclusive_times = p.inconclusive_times;
                    let r = if w.disks_mirrored && w.running.is_empty() {
                        CheckResult::pass("disks are mirrored")
                    } else if let Some(r) = w
                        .running
                        .values()
                        .find(|r| r.what == "commit" || r.what == "abort")
                    {
                        CheckResult::fail(format!(
                            "disks are resynchronising ({}/{} steps)",
                            r.calls, r.total
                        ))
                    } else {
                        CheckResult::fail("disks are not mirrored (the machine is split)")
                    };
                    (p.fail_times, r.observe("disks-mirrored", w.disks_mirrored))
                }
                "services-running" => {
                    let p: Services = cx.params()?;
                    let side = w.active_side();
                    let missing: Vec<&str> = p
                        .services
                        .iter()
                        .filter(|s| !side.running.contains(s))
                        .map(String::as_str)
                        .collect();
                    let r = if missing.is_empty() {
                        CheckResult::pass(format!(
                            "running on the {} side: {}",
                            w.active,
                            p.services.join(", ")
                        ))
                    } else {
                        CheckResult::fail(format!(
                            "not running on the {} side: {}",
                            w.active,
                            missing.join(", ")
                        ))
                    };
                    (
                        p.fail_times,
                        r.observe("active-side", &w.active)
                            .observe("running", side.running.join(",")),
                    )
                }
                "free-space" => {
                    let p: FreeSpace = cx.params()?;
                    let r = if w.free_bytes >= p.min_free_bytes {
                        CheckResult::pass(format!(
                            "{} bytes free (need {})",
                            w.free_bytes, p.min_free_bytes
                        ))
                    } else {
                        CheckResult::fail(format!(
                            "only {} bytes free, need {}",
                            w.free_bytes, p.min_free_bytes
                        ))
                    };
                    (p.fail_times, r.observe("free-bytes", w.free_bytes))
                }
                "software-version" => {
                    let p: SoftwareVersion = cx.params()?;
                    let (label, side) = match p.side {
                        Which::Active => (w.active.as_str(), w.active_side()),
                        Which::Production => ("production", &w.production),
                        Which::Upgrade => ("upgrade", &w.upgrade),
                    };
                    let have = side.software.get(&p.name).cloned();
                    let r = match &have {
                        Some(v) if *v == p.version => {
                            CheckResult::pass(format!("{} {} on the {label} side", p.name, v))
                        }
                        Some(v) => CheckResult::fail(format!(
                            "{} is {v} on the {label} side, expected {}",
                            p.name, p.version
                        )),
                        None => CheckResult::fail(format!(
                            "{} is not installed on the {label} side",
                            p.name
                        )),
                    };
                    (
                        p.fail_times,
                        r.observe("installed", have.unwrap_or_else(|| "-".into())),
                    )
                }
                other => return Err(Error::unknown_check(other)),
            }
        };
        if let Some(k) = injected(cx, "check", name, fail_times)? {
            return Ok(CheckResult::fail(format!(
                "{name}: injected failure {k} of {fail_times}"
            )));
        }
        if let Some(k) = injected(cx, "inconclusive", name, inconclusive_times)? {
            return Ok(CheckResult::inconclusive(format!(
                "{name}: cannot tell (injected doubt {k} of {inconclusive_times})"
            )));
        }
        Ok(result)
    }
}

/// Counts an injected fault of `kind` for check `name` in this session:
/// `Some(n)` (the n-th time) while fewer than `times` have been injected.
fn injected(cx: &mut Cx<'_>, kind: &str, name: &str, times: u32) -> Result<Option<u32>, Error> {
    if times == 0 {
        return Ok(None);
    }
    let mut w = World::load(cx)?;
    let key = format!("{}/{kind}/{name}", cx.context().session_id);
    if !w.take_fault(&key, times) {
        return Ok(None);
    }
    let n = w.faults[&key];
    w.save(cx)?;
    Ok(Some(n))
}

fn duplexed(w: &World) -> CheckResult {
    let r = if w.mode == Mode::Duplexed
        && w.partner == Health::Up
        && w.disks_mirrored
        && w.running.is_empty()
    {
        CheckResult::pass("duplexed: both sides in lockstep")
    } else if w.partner != Health::Up {
        CheckResult::fail(format!("partner side is {:?}", w.partner).to_lowercase())
    } else if !w.running.is_empty() {
        CheckResult::fail(format!(
            "in progress: {}",
            w.running
                .values()
                .map(|r| r.what.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        CheckResult::fail(format!("the machine is {:?}, not duplexed", w.mode).to_lowercase())
    };
    r.observe("mode", format!("{:?}", w.mode).to_lowercase())
        .observe("partner", format!("{:?}", w.partner).to_lowercase())
}

duplex_plugin_sdk::export_plugin!(SimChecks);

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_plugin_sdk::testing::{TestHost, context};
    use serde_json::json;

    fn check(h: &mut TestHost, name: &str, params: serde_json::Value) -> CheckResult {
        h.check::<SimChecks>(&context(UpgradeState::PrepareSplit, params), name)
            .unwrap()
    }

    #[test]
    fn a_fresh_machine_passes_every_readiness_check() {
        let mut h = TestHost::new();
        for (name, params) in [
            ("duplexed", json!({})),
            ("disks-mirrored", json!({})),
            ("services-running", json!({"services": ["app"]})),
            ("free-space", json!({"min-free-bytes": 1024})),
            (
                "software-version",
                json!({"name": "app", "version": "1.0.0"}),
            ),
        ] {
            let r = check(&mut h, name, params);
            assert_eq!(r.verdict, Verdict::Pass, "{name}: {}", r.message);
        }
    }

    #[test]
    fn checks_see_what_sim_duplex_did() {
        let mut h = TestHost::new();
        let w = World {
            mode: Mode::Split,
            disks_mirrored: false,
            free_bytes: 10,
            ..World::default()
        };
        h.set_json(sim_world::WORLD_KEY, &w);
        assert_eq!(check(&mut h, "duplexed", json!({})).verdict, Verdict::Fail);
        let r = check(&mut h, "disks-mirrored", json!({}));
        assert_eq!(r.message, "disks are not mirrored (the machine is split)");
        let r = check(&mut h, "free-space", json!({"min-free-bytes": 11}));
        assert_eq!(
            (r.verdict, r.observations[0].1.as_str()),
            (Verdict::Fail, "10")
        );
        let r = check(
            &mut h,
            "services-running",
            json!({"services": ["app", "db"]}),
        );
        assert_eq!(r.message, "not running on the production side: db");
    }

    #[test]
    fn injected_failures_then_the_truth() {
        let mut h = TestHost::new();
        for n in 1..=2 {
            let r = check(&mut h, "duplexed", json!({"fail-times": 2}));
            assert_eq!(r.message, format!("duplexed: injected failure {n} of 2"));
        }
        assert_eq!(
            check(&mut h, "duplexed", json!({"fail-times": 2})).verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn bad_params_and_unknown_checks_are_errors() {
        let mut h = TestHost::new();
        let c = context(UpgradeState::PrepareSplit, json!({}));
        let e = h.check::<SimChecks>(&c, "free-space").unwrap_err();
        assert!(
            e.message().contains("missing field `min-free-bytes`"),
            "{e}"
        );
        let e = h.check::<SimChecks>(&c, "nope").unwrap_err();
        assert_eq!(e.message(), "no check named `nope`");
        let mut h = TestHost::without_storage();
        let e = h.check::<SimChecks>(&c, "duplexed").unwrap_err();
        assert!(e.message().contains("not granted"), "{e}");
    }

    #[test]
    fn schemas_are_exported() {
        let info = duplex_plugin_sdk::describe::<SimChecks>();
        let free = info.checks.iter().find(|c| c.name == "free-space").unwrap();
        let schema: serde_json::Value = serde_json::from_str(&free.params_schema).unwrap();
        assert_eq!(schema["required"], json!(["min-free-bytes"]));
        assert_eq!(schema["additionalProperties"], json!(false));
    }
}
