//! The agent's Prometheus metrics, served at `/metrics` as OpenMetrics text
//! ([`CONTENT_TYPE`]). Everything about a session comes from the records the
//! engine shows its sink ([`Metrics::observe`]), so the metrics tell what
//! the journal tells; the rest (policy source, webhooks) the agent's loop
//! reports as it goes. A scrape sees whole updates: the three axes of the
//! NEC state model always have exactly one series at 1 each.
//!
//! | metric | type | labels | what it is |
//! |---|---|---|---|
//! | `duplex_agent_info` | gauge | `version` | always 1: the agent's version |
//! | `duplex_upgrade_state` | gauge | `state` | 1 for the session's upgrade state, 0 for the 7 others (`Idle` … `Finish`; `Idle` when there is no session) |
//! | `duplex_operational_status` | gauge | `status` | 1 for the operational status (`Ready`, `Busy`, `Broken`), 0 for the others |
//! | `duplex_partner_state` | gauge | `partner` | 1 for the partner side's state (`Unknown`, `Off`, `Booting`, `Up`, `Hung`, `Crashed`), 0 for the others |
//! | `duplex_session_held` | gauge | | 1 while the session is held for a person |
//! | `duplex_request_attempt` | gauge | | how many times the current state's request has run (0 before it starts) |
//! | `duplex_sessions_started_total` | counter | | sessions started |
//! | `duplex_sessions_ended_total` | counter | `outcome` | sessions ended, `committed` or `aborted` |
//! | `duplex_auto_abort_rules_fired_total` | counter | `rule`, `action` | auto-abort rules that fired (`retriesExhausted`, `checkFailing`, `deadline`, `windowClosing`, `partnerUnhealthy`) and what they did (`abort`, `hold`: an abort where the model cannot abort holds) |
//! | `duplex_holds_total` | counter | `kind` | times the session stopped for a person: `rule` (an auto-abort rule held it), `failure` (a failure a person must decide: an inconclusive check, a fault of the host), `no_rule` (retries used up or a final failure, and no rule applies), `other` |
//! | `duplex_retries_total` | counter | `state`, `trigger` | failed requests run again, by state: `automatic` (the policy's retries) or `operator` (`duplex retry`) |
//! | `duplex_retries_scheduled_total` | counter | `state` | automatic retries scheduled (a stop during the backoff leaves one scheduled but not run) |
//! | `duplex_plugin_call_duration_seconds` | histogram | `plugin`, `kind` | plugin calls as journaled (ms resolution), by request kind: `op`, `install`, `check`, `partner`; buckets 100 µs … 60 s |
//! | `duplex_plugin_calls_total` | counter | `plugin`, `kind`, `result` | plugin calls, `ok` or `error`, counting the identical pending polls a record stands for |
//! | `duplex_check_verdicts_total` | counter | `check`, `verdict` | gate and verification check verdicts: `pass`, `fail`, `inconclusive` |
//! | `duplex_approvals_total` | counter | `point` | approvals given, before `Merge` or `Commit` |
//! | `duplex_abort_requests_total` | counter | `source` | aborts asked for: by an `operator` (`duplex abort`) or by the `policy` (`action: abort`) |
//! | `duplex_journal_records_total` | counter | `event` | journal records, by event (`model`, `pluginCall`, `checkRan`, `resumed`, `interrupted`, `drift`, `commandKilled`, …) |
//! | `duplex_journal_append_seconds` | histogram | | appending one record to the journal, its fsync included (host time); buckets 50 µs … 1 s |
//! | `duplex_policy_source_info` | gauge | `revision`, `digest`, `path` | 1 for the policy the source last gave (`revision` empty for a plain directory); only the current one |
//! | `duplex_policy_source_last_fetch_timestamp_seconds` | gauge | | when the source was last fetched successfully (Unix time; 0 until the first fetch) |
//! | `duplex_policy_source_failures_total` | counter | `kind` | source failures: `fetch` (could not be read) or `invalid` (a policy that does not validate) |
//! | `duplex_webhook_outbox_pending` | gauge | | webhook deliveries waiting in the outbox |
//! | `duplex_webhook_deliveries_total` | counter | `outcome` | webhook delivery attempts: `delivered`, `retried`, `gave_up` |

use duplex_core::engine::sink::Recorded;
use duplex_core::engine::{Event, Outcome, RequestId, Session};
use duplex_core::model::{
    Command, Configuration, Disposition, OpStatus, PartnerState, UpgradeState,
};
use duplex_core::policy::{ApprovalPoint, RuleAction};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Plugin calls: from a local check (well under a millisecond, though the
/// journal keeps milliseconds) to a hardware operation polled for a minute.
const PLUGIN_CALL_BUCKETS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// An append and its fsync: tens of microseconds on tmpfs or a battery-backed
/// cache, milliseconds on a disk, a second when the disk is in trouble.
const JOURNAL_APPEND_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

const STATUSES: [OpStatus; 3] = [OpStatus::Ready, OpStatus::Busy, OpStatus::Broken];
const SOURCE_FAILURES: [&str; 2] = ["fetch", "invalid"];
const DELIVERY_OUTCOMES: [&str; 3] = ["delivered", "retried", "gave_up"];
const HOLD_KINDS: [&str; 4] = ["rule", "failure", "no_rule", "other"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartnerLabels {
    partner: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    rule: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    state: String,
    trigger: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginResultLabels {
    plugin: String,
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
    verdict: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PointLabels {
    point: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceKindLabels {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    revision: String,
    digest: String,
    path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn plugin_call_histogram() -> Histogram {
    Histogram::new(PLUGIN_CALL_BUCKETS)
}

/// The agent's metrics: `Send + Sync`, updated through `&self`.
pub struct Metrics {
    registry: Registry,
    /// Taken by every update that spans several series and by `encode`, so
    /// a scrape never sees half of one.
    track: Mutex<Track>,
    upgrade_state: Family<StateLabels, Gauge>,
    operational_status: Family<StatusLabels, Gauge>,
    partner_state: Family<PartnerLabels, Gauge>,
    held: Gauge,
    attempt: Gauge,
    sessions_started: Counter,
    sessions_ended: Family<OutcomeLabels, Counter>,
    rules_fired: Family<RuleLabels, Counter>,
    holds: Family<KindLabels, Counter>,
    retries: Family<RetryLabels, Counter>,
    retries_scheduled: Family<StateLabels, Counter>,
    plugin_call_duration: HistogramFamily<PluginLabels>,
    plugin_calls: Family<PluginResultLabels, Counter>,
    check_verdicts: Family<CheckLabels, Counter>,
    approvals: Family<PointLabels, Counter>,
    abort_requests: Family<SourceKindLabels, Counter>,
    journal_records: Family<EventLabels, Counter>,
    journal_append: Histogram,
    source_info: Family<SourceLabels, Gauge>,
    source_last_fetch: Gauge<f64, AtomicU64>,
    source_failures: Family<KindLabels, Counter>,
    outbox_pending: Gauge,
    deliveries: Family<OutcomeLabels, Counter>,
}

/// What one record needs to know of the records before it.
#[derive(Default)]
struct Track {
    /// The previous record, as far as it tells what the next one means.
    previous: Previous,
    /// The labels of the one `duplex_policy_source_info` series.
    source: Option<SourceLabels>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Previous {
    /// The engine retries right after it records `retryScheduled`; a retry
    /// after anything else is an operator's `duplex retry`.
    RetryScheduled,
    /// A rule that holds is recorded right before the `held` it causes.
    RuleHeld,
    #[default]
    Other,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            track: Mutex::new(Track::default()),
            upgrade_state: Family::default(),
            operational_status: Family::default(),
            partner_state: Family::default(),
            held: Gauge::default(),
            attempt: Gauge::default(),
            sessions_started: Counter::default(),
            sessions_ended: Family::default(),
            rules_fired: Family::default(),
            holds: Family::default(),
            retries: Family::default(),
            retries_scheduled: Family::default(),
            plugin_call_duration: Family::new_with_constructor(plugin_call_histogram),
            plugin_calls: Family::default(),
            check_verdicts: Family::default(),
            approvals: Family::default(),
            abort_requests: Family::default(),
            journal_records: Family::default(),
            journal_append: Histogram::new(JOURNAL_APPEND_BUCKETS),
            source_info: Family::default(),
            source_last_fetch: Gauge::default(),
            source_failures: Family::default(),
            outbox_pending: Gauge::default(),
            deliveries: Family::default(),
        };
        let agent_info = Family::<VersionLabels, Gauge>::default();
        agent_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        let r = &mut m.registry;
        r.register(
            "duplex_agent_info",
            "The agent's version (always 1)",
            agent_info,
        );
        r.register(
            "duplex_upgrade_state",
            "1 for the session's upgrade state, 0 for the others",
            m.upgrade_state.clone(),
        );
        r.register(
            "duplex_operational_status",
            "1 for the session's operational status, 0 for the others",
            m.operational_status.clone(),
        );
        r.register(
            "duplex_partner_state",
            "1 for the partner side's state, 0 for the others",
            m.partner_state.clone(),
        );
        r.register(
            "duplex_session_held",
            "1 while the session is held for a person",
            m.held.clone(),
        );
        r.register(
            "duplex_request_attempt",
            "Times the current state's request has run",
            m.attempt.clone(),
        );
        r.register(
            "duplex_sessions_started",
            "Sessions started",
            m.sessions_started.clone(),
        );
        r.register(
            "duplex_sessions_ended",
            "Sessions ended, by outcome",
            m.sessions_ended.clone(),
        );
        r.register(
            "duplex_auto_abort_rules_fired",
            "Auto-abort rules that fired, by rule and what they did",
            m.rules_fired.clone(),
        );
        r.register(
            "duplex_holds",
            "Times the session stopped for a person, by why",
            m.holds.clone(),
        );
        r.register(
            "duplex_retries",
            "Failed requests run again, by state and by what ran them again",
            m.retries.clone(),
        );
        r.register(
            "duplex_retries_scheduled",
            "Automatic retries scheduled, by state",
            m.retries_scheduled.clone(),
        );
        r.register_with_unit(
            "duplex_plugin_call_duration",
            "Plugin calls as journaled (ms resolution), by plugin and request kind",
            Unit::Seconds,
            m.plugin_call_duration.clone(),
        );
        r.register(
            "duplex_plugin_calls",
            "Plugin calls, by plugin, request kind and result",
            m.plugin_calls.clone(),
        );
        r.register(
            "duplex_check_verdicts",
            "Gate and verification check verdicts, by check",
            m.check_verdicts.clone(),
        );
        r.register(
            "duplex_approvals",
            "Approvals given, by approval point",
            m.approvals.clone(),
        );
        r.register(
            "duplex_abort_requests",
            "Aborts asked for, by an operator or by the policy",
            m.abort_requests.clone(),
        );
        r.register(
            "duplex_journal_records",
            "Journal records, by event",
            m.journal_records.clone(),
        );
        r.register_with_unit(
            "duplex_journal_append",
            "Appending one record to the journal, its fsync included",
            Unit::Seconds,
            m.journal_append.clone(),
        );
        r.register(
            "duplex_policy_source_info",
            "The policy the source last gave (always 1)",
            m.source_info.clone(),
        );
        r.register_with_unit(
            "duplex_policy_source_last_fetch_timestamp",
            "When the policy source was last fetched successfully (Unix time)",
            Unit::Seconds,
            m.source_last_fetch.clone(),
        );
        r.register(
            "duplex_policy_source_failures",
            "Policy source failures: fetch (unreadable) or invalid (does not validate)",
            m.source_failures.clone(),
        );
        r.register(
            "duplex_webhook_outbox_pending",
            "Webhook deliveries waiting in the outbox",
            m.outbox_pending.clone(),
        );
        r.register(
            "duplex_webhook_deliveries",
            "Webhook delivery attempts, by outcome",
            m.deliveries.clone(),
        );
        // The series whose labels are known up front start at 0, so a rate
        // over them is defined from the first scrape.
        for outcome in [Outcome::Committed, Outcome::Aborted] {
            zero(&m.sessions_ended, outcome_labels(outcome.name()));
        }
        for kind in HOLD_KINDS {
            zero(&m.holds, kind_labels(kind));
        }
        for point in [ApprovalPoint::Merge, ApprovalPoint::Commit] {
            zero(
                &m.approvals,
                PointLabels {
                    point: point_name(point).into(),
                },
            );
        }
        for source in ["operator", "policy"] {
            zero(
                &m.abort_requests,
                SourceKindLabels {
                    source: source.into(),
                },
            );
        }
        for kind in SOURCE_FAILURES {
            zero(&m.source_failures, kind_labels(kind));
        }
        for outcome in DELIVERY_OUTCOMES {
            zero(&m.deliveries, outcome_labels(outcome));
        }
        m.set_session(None);
        m
    }

    fn track(&self) -> MutexGuard<'_, Track> {
        // Metrics never fail the agent: a panic elsewhere leaves counters
        // that are still counters.
        self.track.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything a recorded event changes.
    pub fn observe(&self, r: &Recorded<'_>) {
        let mut track = self.track();
        self.set_axes(&r.session.config, r.session.held.is_some());
        self.journal_records
            .get_or_create(&EventLabels {
                event: r.event.name().into(),
            })
            .inc();
        if let Some(append) = r.append {
            self.journal_append.observe(append.as_secs_f64());
        }
        let state = r.session.config.state.name();
        let previous = std::mem::take(&mut track.previous);
        match r.event {
            Event::SessionStarted { .. } => {
                self.sessions_started.inc();
            }
            Event::SessionEnded { outcome } => {
                self.sessions_ended
                    .get_or_create(&outcome_labels(outcome.name()))
                    .inc();
            }
            Event::Model {
                command: Command::Retry,
            } => {
                let trigger = if previous == Previous::RetryScheduled {
                    "automatic"
                } else {
                    "operator"
                };
                self.retries
                    .get_or_create(&RetryLabels {
                        state: state.into(),
                        trigger: trigger.into(),
                    })
                    .inc();
            }
            Event::RetryScheduled { .. } => {
                self.retries_scheduled
                    .get_or_create(&StateLabels {
                        state: state.into(),
                    })
                    .inc();
                track.previous = Previous::RetryScheduled;
            }
            Event::AutoAbort { rule, action, .. } => {
                self.rules_fired
                    .get_or_create(&RuleLabels {
                        rule: rule.clone(),
                        action: action_name(*action).into(),
                    })
                    .inc();
                if *action == RuleAction::Hold {
                    track.previous = Previous::RuleHeld;
                }
            }
            Event::Held { .. } => {
                let kind = if previous == Previous::RuleHeld {
                    "rule"
                } else {
                    match r.session.disposition() {
                        Some(Disposition::Hold) => "failure",
                        Some(Disposition::Retryable | Disposition::Final) => "no_rule",
                        None => "other",
                    }
                };
                self.holds.get_or_create(&kind_labels(kind)).inc();
            }
            Event::PluginCall {
                request,
                plugin,
                ok,
                duration_ms,
                repeats,
                ..
            } => {
                let kind = request_kind(request);
                self.plugin_call_duration
                    .get_or_create(&PluginLabels {
                        plugin: plugin.clone(),
                        kind: kind.into(),
                    })
                    .observe(*duration_ms as f64 / 1000.0);
                self.plugin_calls
                    .get_or_create(&PluginResultLabels {
                        plugin: plugin.clone(),
                        kind: kind.into(),
                        result: if *ok { "ok" } else { "error" }.into(),
                    })
                    .inc_by(repeats.saturating_add(1));
            }
            Event::CheckRan { check, verdict, .. } => {
                self.check_verdicts
                    .get_or_create(&CheckLabels {
                        check: check.clone(),
                        verdict: verdict.to_string(),
                    })
                    .inc();
            }
            Event::Approved { before, .. } => {
                self.approvals
                    .get_or_create(&PointLabels {
                        point: point_name(*before).into(),
                    })
                    .inc();
            }
            Event::AbortRequested { by } => {
                let source = if by == "policy" { "policy" } else { "operator" };
                self.abort_requests
                    .get_or_create(&SourceKindLabels {
                        source: source.into(),
                    })
                    .inc();
            }
            Event::Model { .. }
            | Event::CommandKilled { .. }
            | Event::Drift { .. }
            | Event::NotRetryable
            | Event::Resumed { .. }
            | Event::Asked { .. }
            | Event::Released { .. }
            | Event::Interrupted { .. } => {}
        }
    }

    /// Set the axis gauges from a session read at start-up (a resumed or
    /// finished session), or to Idle/Ready (partner Unknown) when there is
    /// none.
    pub fn set_session(&self, session: Option<&Session>) {
        let _track = self.track();
        match session {
            Some(s) => self.set_axes(&s.config, s.held.is_some()),
            None => self.set_axes(&Configuration::idle(), false),
        }
    }

    /// The three axes (one series at 1 each), the hold and the attempt.
    /// The caller holds `track`.
    fn set_axes(&self, config: &Configuration, held: bool) {
        for state in UpgradeState::ALL {
            self.upgrade_state
                .get_or_create(&StateLabels {
                    state: state.name().into(),
                })
                .set((state == config.state).into());
        }
        let status = config.status();
        for s in STATUSES {
            self.operational_status
                .get_or_create(&StatusLabels {
                    status: s.to_string(),
                })
                .set((s == status).into());
        }
        for p in PartnerState::ALL {
            self.partner_state
                .get_or_create(&PartnerLabels {
                    partner: p.to_string(),
                })
                .set((p == config.partner).into());
        }
        self.held.set(held.into());
        self.attempt.set(config.attempt.into());
    }

    /// The policy the source gave (the only `duplex_policy_source_info`
    /// series from now on) and when it was fetched.
    pub fn source_fetched(
        &self,
        revision: Option<&str>,
        digest: &str,
        path: &str,
        at_unix_secs: f64,
    ) {
        let mut track = self.track();
        let labels = SourceLabels {
            revision: revision.unwrap_or_default().into(),
            digest: digest.into(),
            path: path.into(),
        };
        if let Some(old) = track.source.take()
            && old != labels
        {
            self.source_info.remove(&old);
        }
        self.source_info.get_or_create(&labels).set(1);
        self.source_last_fetch.set(at_unix_secs);
        track.source = Some(labels);
    }

    /// The source could not be fetched (`"fetch"`) or gave a policy that
    /// does not validate (`"invalid"`); anything else counts as `other`.
    pub fn source_failed(&self, kind: &str) {
        let kind = SOURCE_FAILURES
            .into_iter()
            .find(|k| *k == kind)
            .unwrap_or("other");
        self.source_failures.get_or_create(&kind_labels(kind)).inc();
    }

    pub fn set_outbox_pending(&self, n: usize) {
        self.outbox_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A webhook delivery attempt: `"delivered"`, `"retried"` or
    /// `"gave_up"`; anything else counts as `other`.
    pub fn delivery(&self, outcome: &str) {
        let outcome = DELIVERY_OUTCOMES
            .into_iter()
            .find(|o| *o == outcome)
            .unwrap_or("other");
        self.deliveries
            .get_or_create(&outcome_labels(outcome))
            .inc();
    }

    /// The OpenMetrics text exposition, ending in `# EOF`; serve it with
    /// [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let _track = self.track();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// Create a counter's series at 0.
fn zero<L: Clone + Eq + std::hash::Hash>(family: &Family<L, Counter>, labels: L) {
    drop(family.get_or_create(&labels));
}

fn outcome_labels(outcome: &str) -> OutcomeLabels {
    OutcomeLabels {
        outcome: outcome.into(),
    }
}

fn kind_labels(kind: &str) -> KindLabels {
    KindLabels { kind: kind.into() }
}

fn action_name(action: RuleAction) -> &'static str {
    match action {
        RuleAction::Abort => "abort",
        RuleAction::Hold => "hold",
    }
}

fn point_name(point: ApprovalPoint) -> &'static str {
    match point {
        ApprovalPoint::Merge => "Merge",
        ApprovalPoint::Commit => "Commit",
    }
}

/// What a plugin call was for, as its request id's prefix reads.
fn request_kind(request: &RequestId) -> &'static str {
    match request {
        RequestId::Partner => "partner",
        RequestId::Operation(_) => "op",
        RequestId::Install(_) => "install",
        RequestId::Check(_) => "check",
    }
}

#[cfg(test)]
#[path = "../../../tests/support/prometheus.rs"]
mod prometheus_text;

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
