//! `sim-duplex`: a simulated two-sided fault-tolerant server, the default target
//! of demos and tests.
//!
//! It implements every hardware operation and partner-state reporting over the
//! world of [`sim_world`] (kept in the granted `storage`, so it survives a runner
//! restart):
//!
//! - `split` isolates the Upgrade Side (disks no longer mirrored, the side reboots
//!   on its own); installs (installer `sim`) land only there, and only while split;
//! - `merge` restarts the applications on the Upgrade Side;
//! - `commit` resynchronises the disks from the upgraded side, `abort` restores the
//!   original configuration and resynchronises from the Production Side — both
//!   over twice as many calls, reporting progress;
//! - `finish` cleans up what the session left.
//!
//! Every operation is idempotent and resumable: each call advances it by one
//! step and returns `pending` with `retry-after-ms = delay-ms × time-scale`
//! (plugins get no clock), then `done`; calling again once done returns `done`.
//!
//! Parameters ([`SimParams`], the same for every operation, the installer and
//! the partner report) scale the pace and inject faults: fail an operation N
//! times (retryable or not), hang it (loop past the runner's deadline) N times,
//! crash the partner side during an operation.

use duplex_plugin_sdk::prelude::*;
use sim_world::{Health, Mode, Running, World};
use std::collections::BTreeMap;

/// What can be faulted: the hardware operations and the installer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Split,
    Merge,
    Commit,
    Abort,
    Finish,
    Install,
}

/// Injected faults (each counted per session, so a new session sees them again).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Faults {
    /// Fail these steps this many times before they work, e.g. `{split: 2}`.
    pub fail: BTreeMap<Step, u32>,
    /// Whether the injected failures are retryable.
    pub fail_retryable: bool,
    /// Hang these steps (never return; the runner's deadline ends the call)
    /// this many times, e.g. `{merge: 1}`.
    pub hang: BTreeMap<Step, u32>,
    /// The partner side crashes during this step (which then fails; only
    /// `abort` recovers the machine).
    pub crash_partner_at: Option<Step>,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            fail: BTreeMap::new(),
            fail_retryable: true,
            hang: BTreeMap::new(),
            crash_partner_at: None,
        }
    }
}

/// Parameters of every sim-duplex operation, installer and partner report.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct SimParams {
    /// Calls an operation or install takes (commit and abort take twice as many).
    #[schemars(range(max = 1000))]
    pub steps: u32,
    /// `retry-after-ms` returned while pending, before scaling.
    pub delay_ms: u32,
    /// Multiplies `delay-ms`: 0 makes the simulation instant (tests), 1 a demo pace.
    #[schemars(range(min = 0.0, max = 100.0))]
    pub time_scale: f64,
    pub faults: Faults,
}

impl Default for SimParams {
    fn default() -> SimParams {
        SimParams {
            steps: 3,
            delay_ms: 1000,
            time_scale: 1.0,
            faults: Faults::default(),
        }
    }
}

impl SimParams {
    fn retry_after_ms(&self) -> u32 {
        let ms = f64::from(self.delay_ms) * self.time_scale.clamp(0.0, 100.0);
        ms.round().clamp(0.0, f64::from(u32::MAX)) as u32
    }
}

pub struct SimDuplex;

impl Plugin for SimDuplex {
    fn manifest() -> Manifest {
        Manifest::new(
            "sim-duplex",
            env!("CARGO_PKG_VERSION"),
            "Simulated two-sided fault-tolerant server (needs the storage capability)",
        )
        .operation::<SimParams>(
            HardwareOp::Split,
            "Isolate the Upgrade Side (disks stop mirroring)",
        )
        .operation::<SimParams>(
            HardwareOp::Merge,
            "Restart the applications on the Upgrade Side",
        )
        .operation::<SimParams>(
            HardwareOp::Commit,
            "Resynchronise the disks from the upgraded side",
        )
        .operation::<SimParams>(
            HardwareOp::Abort,
            "Restore the original configuration and resynchronise",
        )
        .operation::<SimParams>(HardwareOp::Finish, "Clean up the session's resources")
        .installer::<SimParams>("sim", "Install an artifact on the (split) Upgrade Side")
        .reports_partner()
    }

    fn operate(cx: &mut Cx<'_>, op: HardwareOp) -> Progress {
        let step = match op {
            HardwareOp::Split => Step::Split,
            HardwareOp::Merge => Step::Merge,
            HardwareOp::Commit => Step::Commit,
            HardwareOp::Abort => Step::Abort,
            HardwareOp::Finish => Step::Finish,
        };
        run(cx, step, None).unwrap_or_else(|e| Progress::failed(e.to_string(), true))
    }

    fn install(cx: &mut Cx<'_>, artifact: &Artifact) -> Progress {
        run(cx, Step::Install, Some(artifact))
            .unwrap_or_else(|e| Progress::failed(e.to_string(), true))
    }

    fn partner(cx: &mut Cx<'_>) -> Result<PartnerState, Error> {
        let _: SimParams = cx.params()?;
        Ok(World::load(cx)?.partner.into())
    }
}

duplex_plugin_sdk::export_plugin!(SimDuplex);

fn step_name(s: Step) -> &'static str {
    match s {
        Step::Split => "split",
        Step::Merge => "merge",
        Step::Commit => "commit",
        Step::Abort => "abort",
        Step::Finish => "finish",
        Step::Install => "install",
    }
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Duplexed => "duplexed",
        Mode::Split => "split",
        Mode::Merged => "merged",
    }
}

/// One call of an operation or install.
fn run(cx: &mut Cx<'_>, step: Step, artifact: Option<&Artifact>) -> Result<Progress, Error> {
    let p: SimParams = match cx.params() {
        Ok(p) => p,
        Err(e) => return Ok(Progress::failed(e.to_string(), false)),
    };
    let mut w = World::load(cx)?;
    let session = cx.context().session_id.clone();
    let what = match artifact {
        Some(a) => format!("install of {} {}", a.name, a.version),
        None => step_name(step).to_string(),
    };
    let key = match artifact {
        Some(a) => format!("install/{}@{}", a.name, a.version),
        None => format!("op/{}", step_name(step)),
    };
    let done_key = format!("{session}/{key}");

    // Idempotent: once done in this session, done again.
    if w.faults.contains_key(&format!("{done_key}/done")) {
        return Ok(Progress::done(format!("{what} already done")));
    }

    // Preconditions (a real machine would refuse the same way).
    if !w.running.contains_key(&key)
        && let Some(reason) = refuse(&w, step, artifact)
    {
        return Ok(Progress::failed(
            format!("cannot start {what}: {reason}"),
            false,
        ));
    }

    // Injected faults.
    let f = &p.faults;
    if f.crash_partner_at == Some(step) && w.take_fault(&format!("{session}/crash/{key}"), 1) {
        w.partner = Health::Crashed;
        w.running.remove(&key);
        w.note(format!("partner side crashed during {what}"));
        w.save(cx)?;
        cx.error(format!("the partner side crashed during {what}"));
        return Ok(Progress::failed(
            format!("the partner side crashed during {what}"),
            false,
        ));
    }
    if let Some(&n) = f.hang.get(&step)
        && w.take_fault(&format!("{session}/hang/{key}"), n)
    {
        // Persist the counter first: the runner ends this instance.
        w.note(format!("{what} hangs (injected)"));
        w.save(cx)?;
        cx.warn(format!("{what}: hanging (injected fault)"));
        hang();
    }
    if let Some(&n) = f.fail.get(&step)
        && w.take_fault(&format!("{session}/fail/{key}"), n)
    {
        let k = w.faults[&format!("{session}/fail/{key}")];
        w.note(format!("{what} failed (injected {k}/{n})"));
        w.save(cx)?;
        return Ok(Progress::failed(
            format!("{what} failed (injected failure {k} of {n})"),
            f.fail_retryable,
        ));
    }

    // Advance by one call.
    let total = match step {
        Step::Commit | Step::Abort => p.steps.max(1) * 2,
        _ => p.steps.max(1),
    };
    let r = w.running.entry(key.clone()).or_insert(Running {
        what: what.clone(),
        session: session.clone(),
        calls: 0,
        total,
    });
    r.calls += 1;
    let (calls, total) = (r.calls, r.total);
    if calls == 1 {
        start(&mut w, step);
    }
    if calls < total {
        let percent = u8::try_from(calls * 100 / total).unwrap_or(99);
        let message = pending_message(step, &what, percent);
        cx.progress(percent, &message);
        w.save(cx)?;
        return Ok(Progress::pending(percent, message, p.retry_after_ms()));
    }
    w.running.remove(&key);
    let message = finish(&mut w, step, artifact, &session);
    w.faults.insert(format!("{done_key}/done"), 1);
    w.note(message.clone());
    w.save(cx)?;
    cx.info(&message);
    Ok(Progress::done(message))
}

/// Why `step` cannot start in this world, if it cannot.
fn refuse(w: &World, step: Step, artifact: Option<&Artifact>) -> Option<String> {
    let crashed = w.partner == Health::Crashed;
    match step {
        Step::Split if w.mode != Mode::Duplexed => Some(format!(
            "the machine is {}, not duplexed",
            mode_name(w.mode)
        )),
        Step::Split | Step::Merge | Step::Commit if crashed => {
            Some("the partner side has crashed (abort to recover)".into())
        }
        Step::Install if w.mode != Mode::Split => Some(format!(
            "installs land only on the isolated Upgrade Side, and the machine is {}",
            mode_name(w.mode)
        )),
        Step::Install if artifact.is_some_and(|a| a.size > w.free_bytes) => Some(format!(
            "not enough space on the Upgrade Side ({} bytes free)",
            w.free_bytes
        )),
        Step::Merge if w.mode != Mode::Split => {
            Some(format!("the machine is {}, not split", mode_name(w.mode)))
        }
        Step::Commit if w.mode != Mode::Merged => {
            Some(format!("the machine is {}, not merged", mode_name(w.mode)))
        }
        Step::Finish if !w.running.is_empty() => Some(format!(
            "{} still in progress",
            w.running
                .values()
                .map(|r| r.what.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Step::Finish if w.mode != Mode::Duplexed => Some(format!(
            "the machine is {}: commit or abort first",
            mode_name(w.mode)
        )),
        _ => None,
    }
}

/// Effects of the first call.
fn start(w: &mut World, step: Step) {
    match step {
        Step::Split => {
            w.disks_mirrored = false;
            w.partner = Health::Booting;
        }
        Step::Commit | Step::Abort => {
            w.partner = Health::Booting;
        }
        _ => {}
    }
}

fn pending_message(step: Step, what: &str, percent: u8) -> String {
    match step {
        Step::Split => format!("splitting: Upgrade Side rebooting on its own ({percent}%)"),
        Step::Merge => {
            format!("merging: stopping applications on the Production Side ({percent}%)")
        }
        Step::Commit => format!("resynchronising disks from the upgraded side ({percent}%)"),
        Step::Abort => {
            format!("restoring the original configuration, resynchronising disks ({percent}%)")
        }
        Step::Finish => format!("cleaning up ({percent}%)"),
        Step::Install => format!("{what} on the Upgrade Side ({percent}%)"),
    }
}

/// Effects of the last call; returns the done message.
fn finish(w: &mut World, step: Step, artifact: Option<&Artifact>, session: &str) -> String {
    match step {
        Step::Split => {
            w.mode = Mode::Split;
            w.upgrade.running.clear();
            w.partner = Health::Up;
            "split: the Upgrade Side is isolated, production continues on the Production Side"
                .into()
        }
        Step::Install => {
            let a = artifact.expect("install has an artifact");
            w.upgrade.software.insert(a.name.clone(), a.version.clone());
            w.free_bytes = w.free_bytes.saturating_sub(a.size);
            format!("installed {} {} on the Upgrade Side", a.name, a.version)
        }
        Step::Merge => {
            w.mode = Mode::Merged;
            w.upgrade.running = std::mem::take(&mut w.production.running);
            w.active = "upgrade".into();
            format!(
                "merged: applications restarted on the Upgrade Side ({})",
                w.upgrade.running.join(", ")
            )
        }
        Step::Commit => {
            w.mode = Mode::Duplexed;
            w.production.software = w.upgrade.software.clone();
            w.production.running = std::mem::take(&mut w.upgrade.running);
            w.active = "production".into();
            w.disks_mirrored = true;
            w.partner = Health::Up;
            "committed: disks resynchronised from the upgraded side, duplexed again".into()
        }
        Step::Abort => {
            let mut apps = std::mem::take(&mut w.upgrade.running);
            apps.extend(std::mem::take(&mut w.production.running));
            apps.sort();
            apps.dedup();
            w.production.running = apps;
            w.upgrade.software = w.production.software.clone();
            w.mode = Mode::Duplexed;
            w.active = "production".into();
            w.disks_mirrored = true;
            w.partner = Health::Up;
            w.running.clear();
            "aborted: original configuration restored, disks resynchronised".into()
        }
        Step::Finish => {
            // Forget every session's bookkeeping (earlier sessions are over)
            // except what makes this finish idempotent, so the world does not
            // grow with each session.
            let prefix = format!("{session}/");
            w.faults
                .retain(|k, _| k.starts_with(&prefix) && k.ends_with("/done"));
            "finished: session resources cleaned up".into()
        }
    }
}

#[cfg(target_arch = "wasm32")]
fn hang() -> ! {
    loop {
        std::hint::spin_loop();
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn hang() -> ! {
    panic!("sim-duplex: hanging (injected fault)");
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_plugin_sdk::testing::{TestHost, context};
    use serde_json::json;

    fn ctx(state: UpgradeState, params: serde_json::Value) -> CallContext {
        context(state, params)
    }

    fn instant() -> serde_json::Value {
        json!({"steps": 2, "time-scale": 0})
    }

    fn world(h: &TestHost) -> World {
        h.get_json(sim_world::WORLD_KEY).unwrap_or_default()
    }

    fn art(name: &str, version: &str) -> Artifact {
        Artifact {
            name: name.into(),
            version: version.into(),
            sha256: "0".repeat(64),
            size: 1 << 20,
            source: "file:///x".into(),
        }
    }

    fn settle(
        h: &mut TestHost,
        state: UpgradeState,
        op: HardwareOp,
        params: serde_json::Value,
    ) -> (Progress, u32) {
        h.operate_until_settled::<SimDuplex>(&ctx(state, params), op, 100)
    }

    #[test]
    fn a_full_upgrade_moves_the_world_through_every_operation() {
        let mut h = TestHost::new();
        let c = ctx(UpgradeState::Split, instant());
        assert_eq!(h.partner::<SimDuplex>(&c).unwrap(), PartnerState::Up);

        let first = h.operate::<SimDuplex>(&c, HardwareOp::Split);
        assert_eq!(
            first,
            Progress::pending(50, "splitting: Upgrade Side rebooting on its own (50%)", 0)
        );
        assert_eq!(h.partner::<SimDuplex>(&c).unwrap(), PartnerState::Booting);
        assert!(h.operate::<SimDuplex>(&c, HardwareOp::Split).is_done());
        assert_eq!(world(&h).mode, Mode::Split);
        assert!(!world(&h).disks_mirrored);
        // Idempotent once done.
        assert_eq!(
            h.operate::<SimDuplex>(&c, HardwareOp::Split),
            Progress::done("split already done")
        );

        assert!(matches!(
            h.install::<SimDuplex>(&c, &art("app", "2.0.0")),
            Progress::Pending(_)
        ));
        assert!(h.install::<SimDuplex>(&c, &art("app", "2.0.0")).is_done());
        assert_eq!(world(&h).upgrade.software["app"], "2.0.0");
        assert_eq!(world(&h).production.software["app"], "1.0.0");

        assert!(
            settle(&mut h, UpgradeState::Merge, HardwareOp::Merge, instant())
                .0
                .is_done()
        );
        assert_eq!(world(&h).active, "upgrade");
        assert_eq!(world(&h).upgrade.running, vec!["app".to_string()]);

        let (p, calls) = settle(&mut h, UpgradeState::Commit, HardwareOp::Commit, instant());
        assert!(p.is_done());
        assert_eq!(calls, 4, "resync takes twice the steps");
        let w = world(&h);
        assert_eq!(
            (w.mode, w.disks_mirrored, w.partner),
            (Mode::Duplexed, true, Health::Up)
        );
        assert_eq!(w.production.software["app"], "2.0.0");

        assert!(
            settle(&mut h, UpgradeState::Finish, HardwareOp::Finish, instant())
                .0
                .is_done()
        );
    }

    #[test]
    fn operations_refuse_what_the_machine_cannot_do() {
        let mut h = TestHost::new();
        let c = ctx(UpgradeState::Split, instant());
        let Progress::Failed(f) = h.install::<SimDuplex>(&c, &art("app", "2")) else {
            panic!()
        };
        assert!(
            f.message.contains("only on the isolated Upgrade Side") && !f.retryable,
            "{}",
            f.message
        );
        let Progress::Failed(f) = h.operate::<SimDuplex>(&c, HardwareOp::Commit) else {
            panic!()
        };
        assert!(f.message.contains("not merged"), "{}", f.message);
        let Progress::Failed(f) = h.operate::<SimDuplex>(
            &ctx(UpgradeState::Split, json!({"stpes": 1})),
            HardwareOp::Split,
        ) else {
            panic!()
        };
        assert!(f.message.contains("unknown field `stpes`"), "{}", f.message);
    }

    #[test]
    fn injected_failures_then_success_and_abort_restores() {
        let mut h = TestHost::new();
        let c = ctx(
            UpgradeState::Split,
            json!({"steps": 1, "time-scale": 0, "faults": {"fail": {"split": 2}}}),
        );
        for n in 1..=2 {
            let Progress::Failed(f) = h.operate::<SimDuplex>(&c, HardwareOp::Split) else {
                panic!()
            };
            assert!(f.retryable);
            assert!(
                f.message.contains(&format!("injected failure {n} of 2")),
                "{}",
                f.message
            );
        }
        assert!(h.operate::<SimDuplex>(&c, HardwareOp::Split).is_done());
        let (p, calls) = settle(
            &mut h,
            UpgradeState::Abort,
            HardwareOp::Abort,
            json!({"steps": 3, "time-scale": 0}),
        );
        assert!(p.is_done());
        assert_eq!(calls, 6);
        let w = world(&h);
        assert_eq!((w.mode, w.disks_mirrored), (Mode::Duplexed, true));
        assert_eq!(w.production.running, vec!["app".to_string()]);
    }

    #[test]
    fn a_crashed_partner_blocks_everything_but_abort() {
        let mut h = TestHost::new();
        let params = json!({"steps": 1, "time-scale": 0, "faults": {"crash-partner-at": "merge", "fail-retryable": false}});
        let c = ctx(UpgradeState::Merge, params.clone());
        assert!(h.operate::<SimDuplex>(&c, HardwareOp::Split).is_done());
        let Progress::Failed(f) = h.operate::<SimDuplex>(&c, HardwareOp::Merge) else {
            panic!()
        };
        assert!(!f.retryable && f.message.contains("crashed"));
        assert_eq!(h.partner::<SimDuplex>(&c).unwrap(), PartnerState::Crashed);
        let Progress::Failed(f) = h.operate::<SimDuplex>(&c, HardwareOp::Merge) else {
            panic!()
        };
        assert!(f.message.contains("abort to recover"), "{}", f.message);
        assert!(
            settle(&mut h, UpgradeState::Abort, HardwareOp::Abort, params)
                .0
                .is_done()
        );
        assert_eq!(h.partner::<SimDuplex>(&c).unwrap(), PartnerState::Up);
    }

    #[test]
    fn hang_is_counted_before_hanging() {
        let mut h = TestHost::new();
        let c = ctx(
            UpgradeState::Split,
            json!({"steps": 1, "faults": {"hang": {"split": 1}}}),
        );
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            h.operate::<SimDuplex>(&c, HardwareOp::Split)
        }));
        assert!(r.is_err());
        // The second call (a retry after the runner's deadline) works.
        assert!(h.operate::<SimDuplex>(&c, HardwareOp::Split).is_done());
    }

    #[test]
    fn pace_is_scaled() {
        let mut h = TestHost::new();
        let c = ctx(
            UpgradeState::Split,
            json!({"delay-ms": 400, "time-scale": 0.5}),
        );
        let Progress::Pending(p) = h.operate::<SimDuplex>(&c, HardwareOp::Split) else {
            panic!()
        };
        assert_eq!((p.percent, p.retry_after_ms), (33, 200));
        assert_eq!(h.progress.as_ref().unwrap().0, 33);
    }

    #[test]
    fn without_storage_it_says_so() {
        let mut h = TestHost::without_storage();
        let c = ctx(UpgradeState::Split, instant());
        let Progress::Failed(f) = h.operate::<SimDuplex>(&c, HardwareOp::Split) else {
            panic!()
        };
        assert!(
            f.message.contains("capability `storage` not granted"),
            "{}",
            f.message
        );
        assert!(h.partner::<SimDuplex>(&c).is_err());
    }
}
