//! The metrics of a session folded record by record, as the engine shows
//! them to its sink, read back through the test suite's exposition parser.

use super::prometheus_text::{Exposition, Sample, histogram, matching, parse, value};
use super::*;
use duplex_core::engine::JOURNAL_FORMAT;
use duplex_core::plugins::{HardwareOp, Verdict};
use std::time::Duration;

/// A session fed to the metrics one record at a time.
struct Feed {
    metrics: Metrics,
    session: Session,
    seq: u64,
}

impl Feed {
    fn start() -> Feed {
        let first = Event::SessionStarted {
            policy: "demo".into(),
            policy_file: "/etc/duplex/policy.yaml".into(),
            policy_digest: "ab".repeat(32),
            target: "sim".into(),
            format: JOURNAL_FORMAT,
            hardware: None,
            origin: None,
        };
        let session = Session::start(&first, 1_000).unwrap();
        let metrics = Metrics::new();
        // The first record is written when the session is created and only
        // announced: it has no append time.
        metrics.observe(&Recorded {
            session_id: &session_id(),
            seq: 1,
            ts_ms: 1_000,
            event: &first,
            session: &session,
            append: None,
        });
        Feed {
            metrics,
            session,
            seq: 1,
        }
    }

    /// Record `event` as the recorder does: fold, then show. Every append
    /// takes 200 µs.
    fn record(&mut self, event: Event) {
        self.seq += 1;
        let ts = 1_000 + self.seq;
        self.session.apply_at(self.seq, ts, &event).unwrap();
        self.metrics.observe(&Recorded {
            session_id: &session_id(),
            seq: self.seq,
            ts_ms: ts,
            event: &event,
            session: &self.session,
            append: Some(Duration::from_micros(200)),
        });
    }

    fn model(&mut self, command: Command) {
        self.record(Event::Model { command });
    }

    fn call(&mut self, request: RequestId, plugin: &str, ok: bool, ms: u64, repeats: u64) {
        self.record(Event::PluginCall {
            request,
            plugin: plugin.into(),
            ok,
            outcome: if ok { "done" } else { "failed" }.into(),
            duration_ms: ms,
            logs: Vec::new(),
            repeats,
        });
    }

    fn check(&mut self, check: &str, verdict: Verdict, consecutive_failures: u32) {
        self.record(Event::CheckRan {
            check: check.into(),
            verdict,
            message: "m".into(),
            consecutive_failures,
        });
    }

    fn scrape(&self) -> Exposition {
        let text = self.metrics.encode();
        parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
}

/// The one series of a one-hot gauge family at 1, checking the others are 0.
fn one_hot(samples: &[Sample], name: &str, label: &str, values: usize) -> String {
    let series = matching(samples, name, &[]);
    assert_eq!(series.len(), values, "{name}: {series:?}");
    let on: Vec<&&Sample> = series.iter().filter(|s| s.value == 1.0).collect();
    assert_eq!(on.len(), 1, "{name}: {series:?}");
    assert!(series.iter().all(|s| s.value == 0.0 || s.value == 1.0));
    on[0].labels[label].clone()
}

fn axes(e: &Exposition) -> (String, String, String) {
    (
        one_hot(&e.samples, "duplex_upgrade_state", "state", 8),
        one_hot(&e.samples, "duplex_operational_status", "status", 3),
        one_hot(&e.samples, "duplex_partner_state", "partner", 6),
    )
}

fn axes_are(e: &Exposition, state: &str, status: &str, partner: &str) {
    assert_eq!(axes(e), (state.into(), status.into(), partner.into()));
}

#[test]
fn a_committed_session_with_a_retry_a_failed_gate_and_a_rule_that_held() {
    let mut f = Feed::start();
    let e = f.scrape();
    assert!(e.eof);
    axes_are(&e, "Idle", "Ready", "Unknown");
    assert_eq!(
        value(&e.samples, "duplex_sessions_started_total", &[]),
        Some(1.0)
    );

    // PrepareSplit: the partner is up, the gate passes.
    f.model(Command::Start);
    f.model(Command::Begin);
    f.call(RequestId::Partner, "sim-duplex", true, 3, 0);
    f.model(Command::ObservePartner {
        partner: PartnerState::Up,
    });
    f.call(
        RequestId::Check("duplexed".into()),
        "sim-checks",
        true,
        2,
        0,
    );
    f.check("duplexed", Verdict::Pass, 0);
    axes_are(&f.scrape(), "PrepareSplit", "Busy", "Up");
    f.model(Command::Complete);
    f.model(Command::Advance);

    // Split: the operation fails once, is retried after a backoff, then
    // succeeds after two identical pending polls; the install follows.
    f.model(Command::Begin);
    f.call(
        RequestId::Operation(HardwareOp::Split),
        "sim-duplex",
        false,
        1_500,
        0,
    );
    f.model(Command::Fail {
        reason: "split timed out".into(),
        disposition: Disposition::Retryable,
    });
    axes_are(&f.scrape(), "Split", "Broken", "Up");
    f.record(Event::RetryScheduled {
        attempt: 2,
        delay_ms: 1_000,
    });
    f.model(Command::Retry);
    f.call(
        RequestId::Operation(HardwareOp::Split),
        "sim-duplex",
        true,
        1_200,
        2,
    );
    f.call(
        RequestId::Install("acme-app".into()),
        "sim-duplex",
        true,
        250,
        0,
    );
    f.model(Command::Complete);
    f.model(Command::Advance);

    // PrepareMerge: the gate fails twice, the checkFailing rule holds the
    // session for a person.
    f.model(Command::Begin);
    f.call(
        RequestId::Check("services".into()),
        "sim-checks",
        true,
        4,
        0,
    );
    f.check("services", Verdict::Fail, 1);
    f.call(
        RequestId::Check("services".into()),
        "sim-checks",
        true,
        4,
        0,
    );
    f.check("services", Verdict::Fail, 2);
    f.model(Command::Fail {
        reason: "gate `services` failed".into(),
        disposition: Disposition::Retryable,
    });
    let reason = "check `services` failed 2 time(s) in a row";
    f.record(Event::AutoAbort {
        rule: "checkFailing".into(),
        action: RuleAction::Hold,
        reason: reason.into(),
    });
    f.record(Event::Held {
        reason: reason.into(),
    });
    let held = f.scrape();
    axes_are(&held, "PrepareMerge", "Broken", "Up");
    assert_eq!(value(&held.samples, "duplex_session_held", &[]), Some(1.0));
    assert_eq!(
        value(&held.samples, "duplex_request_attempt", &[]),
        Some(1.0)
    );

    // An operator retries; the gate passes; merge, approval, commit.
    f.record(Event::Resumed {
        pid: 42,
        at: "PrepareMerge (Broken)".into(),
    });
    f.model(Command::Retry);
    f.call(
        RequestId::Check("services".into()),
        "sim-checks",
        true,
        3,
        0,
    );
    f.check("services", Verdict::Pass, 0);
    f.model(Command::Complete);
    let retried = f.scrape();
    assert_eq!(
        value(&retried.samples, "duplex_session_held", &[]),
        Some(0.0)
    );
    assert_eq!(
        value(&retried.samples, "duplex_request_attempt", &[]),
        Some(2.0)
    );
    f.model(Command::Advance);
    for (op, next) in [
        (HardwareOp::Merge, Command::Advance),
        (HardwareOp::Commit, Command::Finish),
        (HardwareOp::Finish, Command::Advance),
    ] {
        f.model(Command::Begin);
        f.call(RequestId::Operation(op), "sim-duplex", true, 800, 0);
        f.model(Command::Complete);
        if op == HardwareOp::Merge {
            f.record(Event::Approved {
                before: ApprovalPoint::Commit,
                by: "alice".into(),
            });
        }
        f.model(next);
    }
    f.record(Event::SessionEnded {
        outcome: Outcome::Committed,
    });

    let e = f.scrape();
    let s = &e.samples;
    axes_are(&e, "Idle", "Ready", "Up");
    assert_eq!(value(s, "duplex_sessions_started_total", &[]), Some(1.0));
    let ended = |outcome| value(s, "duplex_sessions_ended_total", &[("outcome", outcome)]);
    assert_eq!(
        (ended("committed"), ended("aborted")),
        (Some(1.0), Some(0.0))
    );
    let retries = |state, trigger| {
        value(
            s,
            "duplex_retries_total",
            &[("state", state), ("trigger", trigger)],
        )
    };
    assert_eq!(retries("Split", "automatic"), Some(1.0));
    assert_eq!(retries("PrepareMerge", "operator"), Some(1.0));
    assert_eq!(matching(s, "duplex_retries_total", &[]).len(), 2);
    assert_eq!(
        value(s, "duplex_retries_scheduled_total", &[("state", "Split")]),
        Some(1.0)
    );
    assert_eq!(
        value(
            s,
            "duplex_auto_abort_rules_fired_total",
            &[("rule", "checkFailing"), ("action", "hold")]
        ),
        Some(1.0)
    );
    let holds = |kind| value(s, "duplex_holds_total", &[("kind", kind)]);
    assert_eq!(
        [
            holds("rule"),
            holds("failure"),
            holds("no_rule"),
            holds("other")
        ],
        [Some(1.0), Some(0.0), Some(0.0), Some(0.0)]
    );
    let verdicts = |check, verdict| {
        value(
            s,
            "duplex_check_verdicts_total",
            &[("check", check), ("verdict", verdict)],
        )
    };
    assert_eq!(verdicts("services", "fail"), Some(2.0));
    assert_eq!(verdicts("services", "pass"), Some(1.0));
    assert_eq!(verdicts("duplexed", "pass"), Some(1.0));
    assert_eq!(verdicts("duplexed", "fail"), None);
    assert_eq!(
        value(s, "duplex_approvals_total", &[("point", "Commit")]),
        Some(1.0)
    );
    assert_eq!(
        value(s, "duplex_approvals_total", &[("point", "Merge")]),
        Some(0.0)
    );

    // Plugin calls: one histogram series per plugin and request kind.
    let calls = |plugin, kind| {
        histogram(
            s,
            "duplex_plugin_call_duration_seconds",
            &[("plugin", plugin), ("kind", kind)],
        )
        .unwrap()
    };
    let ops = calls("sim-duplex", "op");
    // split failed (1.5 s), split (1.2 s), merge, commit, finish (0.8 s).
    assert_eq!(ops.count, 5.0);
    assert!((ops.sum - 5.1).abs() < 1e-9, "{ops:?}");
    let le = |h: &super::prometheus_text::Histogram, bound: f64| {
        h.buckets.iter().find(|(le, _)| *le == bound).unwrap().1
    };
    assert_eq!(
        (le(&ops, 1.0), le(&ops, 2.5), le(&ops, 60.0)),
        (3.0, 5.0, 5.0)
    );
    assert_eq!(ops.buckets.first().unwrap().0, 0.0001);
    assert_eq!(calls("sim-checks", "check").count, 4.0);
    assert_eq!(calls("sim-duplex", "install").count, 1.0);
    assert_eq!(calls("sim-duplex", "partner").count, 1.0);
    let ok = |kind, result| {
        value(
            s,
            "duplex_plugin_calls_total",
            &[("plugin", "sim-duplex"), ("kind", kind), ("result", result)],
        )
    };
    // The successful split record stands for three polls.
    assert_eq!((ok("op", "ok"), ok("op", "error")), (Some(6.0), Some(1.0)));

    // Every record but the announced first one was appended.
    let records: f64 = matching(s, "duplex_journal_records_total", &[])
        .iter()
        .map(|r| r.value)
        .sum();
    assert_eq!(records, f.seq as f64);
    assert_eq!(
        value(s, "duplex_journal_records_total", &[("event", "resumed")]),
        Some(1.0)
    );
    let append = histogram(s, "duplex_journal_append_seconds", &[]).unwrap();
    assert_eq!(append.count, (f.seq - 1) as f64);
    assert_eq!(append.buckets.first().unwrap(), &(0.00005, 0.0));
    assert_eq!(le(&append, 0.00025), append.count);
    assert_eq!(e.types["duplex_journal_append_seconds"], "histogram");
    assert_eq!(e.units["duplex_journal_append_seconds"], "seconds");
}

#[test]
fn holds_are_counted_by_why_and_an_operator_abort_by_who() {
    let mut f = Feed::start();
    f.model(Command::Start);
    f.model(Command::Begin);
    // A check that cannot tell: a person must decide.
    f.model(Command::Fail {
        reason: "inconclusive".into(),
        disposition: Disposition::Hold,
    });
    f.record(Event::Held {
        reason: "inconclusive".into(),
    });
    f.record(Event::AbortRequested { by: "bob".into() });
    f.model(Command::Abort);
    f.model(Command::Begin);
    f.call(RequestId::Operation(HardwareOp::Abort), "hw", true, 10, 0);
    f.model(Command::Complete);
    axes_are(&f.scrape(), "Abort", "Ready", "Unknown");
    f.model(Command::Finish);
    f.model(Command::Begin);
    f.model(Command::Complete);
    f.model(Command::Advance);
    f.record(Event::SessionEnded {
        outcome: Outcome::Aborted,
    });
    let e = f.scrape();
    let s = &e.samples;
    axes_are(&e, "Idle", "Ready", "Unknown");
    assert_eq!(
        value(s, "duplex_holds_total", &[("kind", "failure")]),
        Some(1.0)
    );
    assert_eq!(
        value(s, "duplex_holds_total", &[("kind", "rule")]),
        Some(0.0)
    );
    assert_eq!(
        value(s, "duplex_abort_requests_total", &[("source", "operator")]),
        Some(1.0)
    );
    assert_eq!(
        value(s, "duplex_sessions_ended_total", &[("outcome", "aborted")]),
        Some(1.0)
    );
}

#[test]
fn set_session_sets_the_axes_from_a_session_read_at_start_up() {
    let m = Metrics::new();
    let mut session = Feed::start().session;
    for command in [
        Command::Start,
        Command::Begin,
        Command::ObservePartner {
            partner: PartnerState::Hung,
        },
    ] {
        session.apply(&Event::Model { command }).unwrap();
    }
    m.set_session(Some(&session));
    axes_are(&parse(&m.encode()).unwrap(), "PrepareSplit", "Busy", "Hung");
    m.set_session(None);
    axes_are(&parse(&m.encode()).unwrap(), "Idle", "Ready", "Unknown");
}

#[test]
fn the_policy_source_has_one_info_series_and_the_agent_its_version() {
    let m = Metrics::new();
    let e = parse(&m.encode()).unwrap();
    assert_eq!(
        value(
            &e.samples,
            "duplex_agent_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
    assert!(matching(&e.samples, "duplex_policy_source_info", &[]).is_empty());

    // A path with a quote, a backslash and a newline survives the escaping.
    let odd = "/srv/po\"li\\cy\nx.yaml";
    m.source_fetched(Some("abc123"), "sha256:01", odd, 1_700_000_000.5);
    m.source_failed("fetch");
    m.source_failed("invalid");
    m.source_failed("invalid");
    m.source_fetched(None, "sha256:02", "/srv/policy.yaml", 1_700_000_060.0);
    m.set_outbox_pending(3);
    m.delivery("delivered");
    m.delivery("retried");
    m.delivery("retried");
    let e = parse(&m.encode()).unwrap();
    let s = &e.samples;
    let info = matching(s, "duplex_policy_source_info", &[]);
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(
        value(
            s,
            "duplex_policy_source_info",
            &[
                ("revision", ""),
                ("digest", "sha256:02"),
                ("path", "/srv/policy.yaml")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(s, "duplex_policy_source_last_fetch_timestamp_seconds", &[]),
        Some(1_700_000_060.0)
    );
    let failures = |kind| value(s, "duplex_policy_source_failures_total", &[("kind", kind)]);
    assert_eq!(
        (failures("fetch"), failures("invalid")),
        (Some(1.0), Some(2.0))
    );
    assert_eq!(value(s, "duplex_webhook_outbox_pending", &[]), Some(3.0));
    let deliveries = |o| value(s, "duplex_webhook_deliveries_total", &[("outcome", o)]);
    assert_eq!(
        (
            deliveries("delivered"),
            deliveries("retried"),
            deliveries("gave_up")
        ),
        (Some(1.0), Some(2.0), Some(0.0))
    );

    // Back to the odd path: the label reads back as it was given.
    m.source_fetched(Some("abc123"), "sha256:01", odd, 1_700_000_120.0);
    let e = parse(&m.encode()).unwrap();
    assert_eq!(
        value(
            &e.samples,
            "duplex_policy_source_info",
            &[
                ("revision", "abc123"),
                ("digest", "sha256:01"),
                ("path", odd)
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        matching(&e.samples, "duplex_policy_source_info", &[]).len(),
        1
    );
}

#[test]
fn the_exposition_is_openmetrics_and_the_parser_refuses_what_is_not() {
    let m = Metrics::new();
    let text = m.encode();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(CONTENT_TYPE.starts_with("application/openmetrics-text; version=1.0.0"));
    let e = parse(&text).unwrap();
    // Every family is documented and typed, and named for Duplex.
    for (family, kind) in &e.types {
        assert!(family.starts_with("duplex_"), "{family}");
        assert!(e.help.contains_key(family), "{family} has no HELP");
        assert!(["gauge", "counter", "histogram"].contains(&kind.as_str()));
    }
    for bad in [
        "a 1\n# EOF\nb 2\n",
        "# TYPE a counter\na_sum 1\n",
        "a{k=\"v} 1\n",
        "a{k=\"v\\q\"} 1\n",
        "a 1\na 1\n",
        "a one\n",
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}

/// `Metrics` is shared by the agent's tasks.
#[test]
fn metrics_are_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Metrics>();
}

fn session_id() -> duplex_core::journal::SessionId {
    "000001-20261126T000000Z-abcd".parse().unwrap()
}
