//! The engine through the application layer, as a front end uses it, on a
//! simulated clock: durations that would take minutes take none, and the
//! wall clock can be stepped as NTP or an operator would, to show which
//! rules follow it and which do not.

mod support;
use duplex_core::app::{App, AppConfig, RunOptions, RunReport};
use duplex_core::cancel::Cancel;
use duplex_core::clock::{Clock, SharedClock, SimulatedClock, Sleep};
use duplex_core::engine::sink::NoSink;
use duplex_core::engine::{Outcome, Pacing, Stop};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::*;

const START_MS: u64 = 1_800_000_000_000;

fn app(site: &Site, clock: SharedClock, pacing: Pacing) -> App {
    App::new(AppConfig {
        state_dir: site.state_dir(),
        cache_dir: Some(plugin_cache_dir()),
        clock,
        pacing,
    })
}

fn apply(app: &App, policy: &Path) -> RunReport {
    let loaded = duplex_core::policy::load_file(policy).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(app.apply(
        loaded,
        RunOptions::default(),
        Box::new(NoSink),
        Cancel::new(),
    ))
    .unwrap()
}

/// The journal's records as JSON events.
fn events(site: &Site) -> Vec<serde_json::Value> {
    site.records()
        .lines()
        .map(|l| {
            let body = l.splitn(3, ' ').nth(2).unwrap();
            serde_json::from_str::<serde_json::Value>(body).unwrap()["event"].clone()
        })
        .collect()
}

fn checks_ran(site: &Site, name: &str) -> usize {
    events(site)
        .iter()
        .filter(|e| e["event"] == "checkRan" && e["check"] == name)
        .count()
}

/// A clock that does something once, on its `at`-th sleep.
struct Twist {
    inner: Arc<SimulatedClock>,
    sleeps: AtomicU32,
    at: u32,
    twist: Box<dyn Fn(&SimulatedClock) + Send + Sync>,
}

impl Clock for Twist {
    fn wall_ms(&self) -> u64 {
        self.inner.wall_ms()
    }
    fn monotonic(&self) -> Duration {
        self.inner.monotonic()
    }
    fn sleep(&self, d: Duration) -> Sleep<'_> {
        if self.sleeps.fetch_add(1, Ordering::SeqCst) + 1 == self.at {
            (self.twist)(&self.inner);
        }
        self.inner.sleep(d)
    }
}

fn twisted(at: u32, twist: impl Fn(&SimulatedClock) + Send + Sync + 'static) -> SharedClock {
    Arc::new(Twist {
        inner: SimulatedClock::starting_at(START_MS),
        sleeps: AtomicU32::new(0),
        at,
        twist: Box::new(twist),
    })
}

#[test]
fn a_ten_minute_soak_takes_no_time_and_runs_every_round() {
    let site = Site::new();
    let policy = site.policy(
        "",
        "  verification:\n    soak: 10m\n    interval: 1m\n    checks: [{name: soak, plugin: sim-checks, check: services-running}]\n",
    );
    let report = apply(
        &app(
            &site,
            SimulatedClock::starting_at(START_MS),
            Pacing::default(),
        ),
        &policy,
    );
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
    // A round at the start, then one a minute for ten minutes.
    assert_eq!(checks_ran(&site, "soak"), 11);
}

#[test]
fn a_stopped_runner_does_not_shorten_the_soak() {
    // SIGSTOP for six seconds during a four-second soak: the time is up
    // after two rounds, but a soak also needs its rounds.
    let site = Site::new();
    let policy = site.policy(
        "",
        "  verification:\n    soak: 4s\n    interval: 1s\n    checks: [{name: soak, plugin: sim-checks, check: services-running}]\n",
    );
    let clock = twisted(1, |c| c.advance(Duration::from_secs(6)));
    let report = apply(&app(&site, clock, Pacing::default()), &policy);
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
    assert_eq!(checks_ran(&site, "soak"), 5);
}

#[test]
fn a_wall_clock_step_back_does_not_stretch_the_soak() {
    let site = Site::new();
    let policy = site.policy(
        "",
        "  verification:\n    soak: 3s\n    interval: 1s\n    checks: [{name: soak, plugin: sim-checks, check: services-running}]\n",
    );
    let clock = twisted(1, |c| c.step_wall(-3_600_000));
    let report = apply(&app(&site, clock, Pacing::default()), &policy);
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
    assert_eq!(checks_ran(&site, "soak"), 4);
}

#[test]
fn a_wall_clock_step_forward_fires_neither_a_gate_timeout_nor_the_deadline() {
    // The gate fails twice, a minute apart, then passes; its timeout is five
    // minutes and the deadline ten. The wall clock jumps five hours after
    // the first failure.
    let site = Site::new();
    let policy = site.policy(
        "",
        "  gates:\n    prepareSplit: [{name: g, plugin: sim-checks, check: duplexed, interval: 1m, timeout: 5m, failureLimit: 5, with: {fail-times: 2}}]\n  autoAbort: [{when: deadline, commitWithin: 10m, action: abort}]\n",
    );
    let clock = twisted(1, |c| c.step_wall(5 * 3_600_000));
    let report = apply(&app(&site, clock, Pacing::default()), &policy);
    assert_eq!(
        report.stop,
        Stop::Ended(Outcome::Committed),
        "{:?}",
        events(&site)
    );
    assert_eq!(checks_ran(&site, "g"), 3);
}

#[test]
fn the_deadline_fires_when_the_session_really_takes_too_long() {
    let site = Site::new();
    let policy = site.policy(
        "",
        "  gates:\n    prepareSplit: [{name: g, plugin: sim-checks, check: duplexed, interval: 1m, timeout: 1h, failureLimit: 99, with: {fail-times: 30}}]\n  autoAbort: [{when: deadline, commitWithin: 10m, action: abort}]\n",
    );
    let report = apply(
        &app(
            &site,
            SimulatedClock::starting_at(START_MS),
            Pacing::default(),
        ),
        &policy,
    );
    assert_eq!(report.stop, Stop::Ended(Outcome::Aborted));
    assert!(
        events(&site)
            .iter()
            .any(|e| e["event"] == "autoAbort" && e["rule"] == "deadline"),
        "{:?}",
        events(&site)
    );
    // It fired after ten minutes of gate rounds, not before.
    assert!(checks_ran(&site, "g") >= 10);
}

#[test]
fn a_plugin_that_grows_the_journal_without_bound_is_held() {
    let site = Site::new();
    // Every poll of the split answers a new percentage.
    let policy = site.policy(", steps: 1000", "");
    let pacing = Pacing {
        journal_limit_bytes: 20_000,
        ..Pacing::default()
    };
    let report = apply(
        &app(&site, SimulatedClock::starting_at(START_MS), pacing),
        &policy,
    );
    match &report.stop {
        Stop::Held(reason) => assert!(
            reason.contains("the session's journal reached")
                && reason.contains("a plugin is making it grow without bound"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    let bytes = std::fs::metadata(journal_path(&site)).unwrap().len();
    assert!(bytes < 30_000, "{bytes}");
}

fn journal_path(site: &Site) -> PathBuf {
    std::fs::read_dir(site.state_dir().join("sessions"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap()
        .join("journal")
}

#[test]
fn a_run_can_be_spawned_as_a_task() {
    fn spawnable<T: Send + 'static>(_: &T) {}
    let site = Site::new();
    let policy = site.policy("", "");
    let app = Arc::new(app(
        &site,
        SimulatedClock::starting_at(START_MS),
        Pacing::default(),
    ));
    let loaded = duplex_core::policy::load_file(&policy).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let task = {
        let app = app.clone();
        async move {
            app.apply(
                loaded,
                RunOptions::default(),
                Box::new(NoSink),
                Cancel::new(),
            )
            .await
        }
    };
    spawnable(&task);
    let report = rt.block_on(rt.spawn(task)).unwrap().unwrap();
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
}

#[test]
fn a_cancelled_run_records_why_and_stops_at_a_safe_point() {
    let site = Site::new();
    let policy = site.policy("", GATES);
    let app = app(
        &site,
        SimulatedClock::starting_at(START_MS),
        Pacing::default(),
    );
    let loaded = duplex_core::policy::load_file(&policy).unwrap();
    let cancel = Cancel::new();
    cancel.cancel("operator request");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Cancelled before it starts: nothing is written.
    let err = rt
        .block_on(app.apply(
            loaded.clone(),
            RunOptions::default(),
            Box::new(NoSink),
            cancel,
        ))
        .unwrap_err();
    assert!(err.to_string().contains("nothing was written"), "{err}");
    // Cancelled in flight: recorded, and a resume carries on.
    let report = rt
        .block_on(app.apply(
            loaded,
            RunOptions {
                until: Some(duplex_core::model::UpgradeState::Split),
                ..Default::default()
            },
            Box::new(NoSink),
            Cancel::new(),
        ))
        .unwrap();
    assert_eq!(
        report.stop,
        Stop::Reached(duplex_core::model::UpgradeState::Split)
    );
    // The front end cancels once the run has taken the session up again.
    let cancel = Cancel::new();
    let sink = CancelOn {
        needle: "resumed",
        cancel: cancel.clone(),
    };
    let report = rt
        .block_on(app.resume(RunOptions::default(), Box::new(sink), cancel))
        .unwrap();
    assert_eq!(
        report.stop,
        Stop::Interrupted {
            why: "shutdown".into()
        }
    );
    assert!(
        site.records()
            .contains(r#""event":"interrupted","why":"shutdown""#)
    );
    let report = rt
        .block_on(app.resume(RunOptions::default(), Box::new(NoSink), Cancel::new()))
        .unwrap();
    assert_eq!(report.stop, Stop::Ended(Outcome::Committed));
}

/// A sink that cancels the run when it sees a record of a kind.
struct CancelOn {
    needle: &'static str,
    cancel: Cancel,
}

impl duplex_core::engine::sink::EventSink for CancelOn {
    fn record(&mut self, r: &duplex_core::engine::sink::Recorded<'_>) {
        if serde_json::to_value(r.event).unwrap()["event"] == self.needle {
            self.cancel.cancel("shutdown");
        }
    }
    fn progress(&mut self, _: &duplex_core::engine::sink::ProgressUpdate) {}
    fn notice(&mut self, _: &duplex_core::engine::sink::Notice) {}
}
