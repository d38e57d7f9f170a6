//! Where a session's events go under the agent: the metrics, the live
//! stream the API serves (server-sent events), the webhook outbox, and the
//! agent's own log on stderr (journald keeps it). The engine must never
//! wait on any of them: the outbox is written by its own thread, the live
//! stream drops what a slow reader misses.

use super::events;
use super::metrics::Metrics;
use super::webhooks::CloudEvent;
use duplex_core::engine::Event;
use duplex_core::engine::sink::{
    EventSink, Notice, ProgressUpdate, Recorded, clock_time, describe,
};
use duplex_core::model::UpgradeState;
use std::sync::Arc;
use tokio::sync::broadcast;

/// What the live stream carries: one JSON object per record, progress or
/// notice of a run, and `{"kind": "agent"}` when the agent's own view
/// (desired, achieved, drift, an invalid policy, …) changed.
pub type Live = broadcast::Sender<serde_json::Value>;

/// What the loop learns from a run as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionNews {
    /// The run opened its session (new or taken up): the agent's view
    /// names it at once.
    Opened { session: String },
    /// Held (by a rule or a person), or released: the loop marks its
    /// policy abandoned, or takes the mark back.
    Hold {
        session: String,
        /// The reason when held; `None` when released.
        held: Option<String>,
    },
}

pub struct AgentSink {
    pub metrics: Arc<Metrics>,
    pub live: Live,
    pub events: std::sync::mpsc::Sender<CloudEvent>,
    pub news: tokio::sync::mpsc::UnboundedSender<SessionNews>,
    pub source: String,
    session: String,
    last_seq: u64,
    last_ts: u64,
    state: Option<UpgradeState>,
}

impl AgentSink {
    pub fn new(
        metrics: Arc<Metrics>,
        live: Live,
        events: std::sync::mpsc::Sender<CloudEvent>,
        news: tokio::sync::mpsc::UnboundedSender<SessionNews>,
        source: String,
    ) -> AgentSink {
        AgentSink {
            metrics,
            live,
            events,
            news,
            source,
            session: String::new(),
            last_seq: 0,
            last_ts: 0,
            state: None,
        }
    }
}

impl EventSink for AgentSink {
    fn record(&mut self, r: &Recorded<'_>) {
        self.session = r.session_id.to_string();
        self.metrics.observe(r);
        for event in events::of_record(&self.source, &self.session, r, self.state) {
            let _ = self.events.send(event);
        }
        let held = match r.event {
            Event::Held { reason } => Some(Some(reason.clone())),
            Event::Released { .. } => Some(None),
            _ => None,
        };
        if let Some(held) = held {
            let _ = self.news.send(SessionNews::Hold {
                session: self.session.clone(),
                held,
            });
        }
        self.state = Some(r.session.config.state);
        self.last_seq = r.seq;
        self.last_ts = r.ts_ms;
        let text = describe(r.event);
        super::log(&format!(
            "{} {} {:<12} {:<6} {text}",
            self.session,
            clock_time(r.ts_ms),
            r.session.config.state.name(),
            format!("{:?}", r.session.config.status())
        ));
        let _ = self.live.send(serde_json::json!({
            "kind": "record",
            "session": self.session,
            "seq": r.seq,
            "tsMs": r.ts_ms,
            "state": r.session.config.state,
            "status": r.session.config.status(),
            "partner": r.session.config.partner,
            "text": text,
            "event": r.event,
        }));
    }

    fn progress(&mut self, p: &ProgressUpdate) {
        let _ = self.live.send(serde_json::json!({
            "kind": "progress",
            "session": self.session,
            "label": p.label,
            "percent": p.percent,
            "message": p.message,
        }));
    }

    fn notice(&mut self, notice: &Notice) {
        let text = notice_text(notice);
        match notice {
            Notice::Opened { session, at, .. } => {
                self.session = session.clone();
                self.state = Some(at.state);
                let _ = self.news.send(SessionNews::Opened {
                    session: session.clone(),
                });
            }
            Notice::Waiting { what } => {
                super::log(&format!("{} {text}", self.session));
                if what.starts_with("waiting for an approval") {
                    let _ = self.events.send(events::approval_needed(
                        &self.source,
                        &self.session,
                        self.last_seq,
                        self.last_ts,
                        what,
                    ));
                }
            }
            Notice::Compiling { .. } | Notice::TornTailCut(_) | Notice::Stopping { .. } => {
                super::log(&text)
            }
        }
        let _ = self.live.send(serde_json::json!({
            "kind": "notice",
            "session": self.session,
            "text": text,
        }));
    }
}

/// A notice in words, for the agent's log and the live stream's readers
/// (the web console shows it as it comes).
pub fn notice_text(notice: &Notice) -> String {
    match notice {
        Notice::Opened {
            session,
            resumed,
            policy,
            target,
            at,
        } => format!(
            "{} session {session} of policy {policy} on {target} in {at}",
            if *resumed { "resuming" } else { "starting" }
        ),
        Notice::Waiting { what } => what.clone(),
        Notice::Compiling { plugin } => {
            format!("compiling plugin `{plugin}` (first use with this cache)")
        }
        Notice::TornTailCut(torn) => format!("warning: {torn}"),
        Notice::Stopping { why } => format!("stopping at the next safe point: {why}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_as_sentences_not_as_rust_values() {
        let waiting = Notice::Waiting {
            what: "waiting for an approval before Commit".into(),
        };
        assert_eq!(
            notice_text(&waiting),
            "waiting for an approval before Commit"
        );
        let stopping = Notice::Stopping {
            why: "SIGTERM".into(),
        };
        assert_eq!(
            notice_text(&stopping),
            "stopping at the next safe point: SIGTERM"
        );
        let compiling = Notice::Compiling {
            plugin: "sim-duplex".into(),
        };
        assert_eq!(
            notice_text(&compiling),
            "compiling plugin `sim-duplex` (first use with this cache)"
        );
    }
}
