//! Which journal records are worth an event for the outside world, as
//! CloudEvents: session started, state entered, Broken, held, approval
//! needed, aborted, committed, finished; and the agent's own findings
//! (policy invalid, drift). Ids are derived from what they describe
//! (`<session>/<seq>/<kind>`), so the outbox drops one queued twice.

use super::webhooks::{CloudEvent, event_type};
use duplex_core::engine::sink::Recorded;
use duplex_core::engine::{Event, Outcome};
use duplex_core::model::{Command, UpgradeState};
use serde_json::json;

/// The CloudEvents `source` of this agent: the host and its state dir.
pub fn source(state_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("duplex://{host}{}", state_dir.display())
}

/// The events one record makes; `before` is the state before it.
pub fn of_record(
    source: &str,
    session: &str,
    r: &Recorded<'_>,
    before: Option<UpgradeState>,
) -> Vec<CloudEvent> {
    let s = r.session;
    let base = |kind: &str, ty: &str, data: serde_json::Value| {
        let mut data = data;
        if let Some(obj) = data.as_object_mut() {
            obj.insert("policy".into(), json!(s.policy));
            obj.insert("policyDigest".into(), json!(s.policy_digest));
            obj.insert("target".into(), json!(s.target));
            obj.insert("state".into(), json!(s.config.state));
            obj.insert("status".into(), json!(s.config.status()));
            obj.insert("partner".into(), json!(s.config.partner));
            obj.insert("seq".into(), json!(r.seq));
        }
        CloudEvent::new(
            format!("{session}/{}/{kind}", r.seq),
            source.to_string(),
            ty.to_string(),
            Some(session.to_string()),
            r.ts_ms,
            data,
        )
    };
    let mut out = Vec::new();
    match r.event {
        Event::SessionStarted { origin, .. } => out.push(base(
            "started",
            event_type::SESSION_STARTED,
            json!({ "origin": origin }),
        )),
        Event::Model { command } => {
            if before.is_some_and(|b| b != s.config.state) {
                out.push(base(
                    "entered",
                    event_type::STATE_ENTERED,
                    json!({ "from": before }),
                ));
                if s.config.state == UpgradeState::Abort {
                    out.push(base(
                        "aborted",
                        event_type::ABORTED,
                        json!({ "from": before }),
                    ));
                }
            }
            if let Command::Fail { reason, .. } = command {
                out.push(base(
                    "broken",
                    event_type::BROKEN,
                    json!({ "reason": reason }),
                ));
            }
        }
        Event::Held { reason } => {
            out.push(base("held", event_type::HELD, json!({ "reason": reason })))
        }
        Event::Drift { recorded, current } => out.push(base(
            "drift",
            event_type::DRIFT,
            json!({ "recorded": recorded, "current": current }),
        )),
        Event::SessionEnded { outcome } => {
            if *outcome == Outcome::Committed {
                out.push(base("committed", event_type::COMMITTED, json!({})));
            }
            out.push(base(
                "finished",
                event_type::FINISHED,
                json!({ "outcome": outcome }),
            ));
        }
        _ => {}
    }
    out
}

/// A session waits for an approval (a notice, not a record: its id names
/// the last record before the wait).
pub fn approval_needed(
    source: &str,
    session: &str,
    seq: u64,
    ts_ms: u64,
    what: &str,
) -> CloudEvent {
    CloudEvent::new(
        format!("{session}/{seq}/approval"),
        source.to_string(),
        event_type::APPROVAL_NEEDED.to_string(),
        Some(session.to_string()),
        ts_ms,
        json!({ "waiting": what }),
    )
}

/// The policy in the source does not load: its errors, placed.
pub fn policy_invalid(
    source: &str,
    digest: &str,
    revision: Option<&str>,
    errors: &[String],
    ts_ms: u64,
) -> CloudEvent {
    CloudEvent::new(
        format!("policy/{digest}/invalid"),
        source.to_string(),
        event_type::POLICY_INVALID.to_string(),
        None,
        ts_ms,
        json!({ "digest": digest, "revision": revision, "errors": errors }),
    )
}

/// The source changed while a session runs another policy.
pub fn drift(
    source: &str,
    session: &str,
    digest: &str,
    revision: Option<&str>,
    ts_ms: u64,
) -> CloudEvent {
    CloudEvent::new(
        format!("{session}/drift/{digest}"),
        source.to_string(),
        event_type::DRIFT.to_string(),
        Some(session.to_string()),
        ts_ms,
        json!({ "desiredDigest": digest, "revision": revision }),
    )
}
