//! Where the console's data comes from, and where its commands go: a state
//! dir on this machine (read-only: the status, and the journal followed
//! record by record into an activity tree; commands as the CLI's verbs
//! give them) or an agent's API (`/v1/status`, the session's activity,
//! the live stream as the signal to read again; commands by
//! `POST /v1/commands/{verb}` with the token).

use super::model::Snapshot;
use duplex_core::app::activity::ActivityTree;
use duplex_core::app::{App, OperatorVerb, StatusReport};
use duplex_core::engine::Event;
use duplex_core::engine::sink::ProgressUpdate;
use duplex_core::journal::{Follower, SessionId};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

/// A state dir read in place.
pub struct LocalSource {
    pub app: Arc<App>,
    /// The session followed, its journal's follower and the tree so far.
    followed: Option<(SessionId, Follower<Event>, ActivityTree)>,
}

impl LocalSource {
    pub fn new(app: Arc<App>) -> LocalSource {
        LocalSource {
            app,
            followed: None,
        }
    }

    /// The status now, and the tree with the records appended since the
    /// last read.
    pub fn read(&mut self) -> Result<Snapshot, String> {
        let status = self
            .app
            .status()
            .map_err(|e| crate::cli::errors::message(&e))?;
        let id = status.session.as_ref().map(|s| s.id.clone());
        if self.followed.as_ref().map(|f| &f.0) != id.as_ref() {
            self.followed = match id {
                Some(id) => {
                    let follower = self
                        .app
                        .follow(&id)
                        .map_err(|e| crate::cli::errors::message(&e))?;
                    Some((id, follower, ActivityTree::new()))
                }
                None => None,
            };
        }
        let tree = match &mut self.followed {
            Some((id, follower, tree)) => {
                let records = follower
                    .poll()
                    .map_err(|e| crate::cli::errors::journal(&e))?;
                for r in records {
                    tree.push(r.seq, r.ts_ms, &r.event)
                        .map_err(|e| format!("session {id}: {e}"))?;
                }
                tree.clone()
            }
            None => ActivityTree::new(),
        };
        let revision = status
            .session
            .as_ref()
            .and_then(|s| s.session.origin.as_ref())
            .and_then(|o| o.revision.clone());
        Ok(Snapshot {
            status,
            revision,
            tree,
        })
    }
}

/// What the agent's live stream says, for the loop.
pub enum Live {
    /// A record or a notice: read the status and the tree again.
    Changed,
    Progress(ProgressUpdate),
}

/// An agent's API over HTTP(S).
#[derive(Clone)]
pub struct AgentSource {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    token: Arc<String>,
    http: ureq::Agent,
}

/// The longest an answer to a read or a command may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

impl AgentSource {
    pub fn new(base: &str, token: String) -> AgentSource {
        AgentSource {
            base: base.trim_end_matches('/').to_string(),
            token: Arc::new(token),
            http: ureq::Agent::config_builder()
                .proxy(None)
                .max_redirects(0)
                .http_status_as_error(false)
                .timeout_connect(Some(ANSWER_TIMEOUT))
                .user_agent(concat!("duplex-watch/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent(),
        }
    }

    fn get_json(&self, path: &str) -> Result<serde_json::Value, String> {
        let url = format!("{}{path}", self.base);
        let mut response = self
            .http
            .get(&url)
            .config()
            .timeout_global(Some(ANSWER_TIMEOUT))
            .build()
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{url}: {e}"))?;
        if status != 200 {
            return Err(format!("{url}: HTTP {status}: {}", error_message(&body)));
        }
        serde_json::from_str(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    /// The status and the session's tree (blocking: call off the loop).
    pub fn read(&self) -> Result<Snapshot, String> {
        let mut answer = self.get_json("/v1/status")?;
        let status: StatusReport = serde_json::from_value(answer["status"].take())
            .map_err(|e| format!("{}/v1/status: unexpected answer: {e}", self.base))?;
        let tree = match &status.session {
            Some(s) => {
                let mut activity = self.get_json(&format!("/v1/sessions/{}/activity", s.id))?;
                serde_json::from_value(activity["activity"].take())
                    .map_err(|e| format!("{}: unexpected activity: {e}", self.base))?
            }
            None => ActivityTree::new(),
        };
        let revision = status
            .session
            .as_ref()
            .and_then(|s| s.session.origin.as_ref())
            .and_then(|o| o.revision.clone())
            .or_else(|| {
                answer["agent"]["desired"]["revision"]
                    .as_str()
                    .map(str::to_string)
            });
        Ok(Snapshot {
            status,
            revision,
            tree,
        })
    }

    /// `POST /v1/commands/{verb}`: `Ok` with what was accepted, `Err` with
    /// the agent's reason (blocking: call off the loop).
    pub fn send(
        &self,
        verb: OperatorVerb,
        by: &str,
        reason: Option<&str>,
    ) -> Result<String, String> {
        let url = format!("{}/v1/commands/{verb}", self.base);
        let body = serde_json::json!({ "by": by, "reason": reason }).to_string();
        let mut response = self
            .http
            .post(&url)
            .config()
            .timeout_global(Some(ANSWER_TIMEOUT * 4))
            .build()
            .header("Authorization", &format!("Bearer {}", self.token))
            .content_type("application/json")
            .send(body)
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap_or_default();
        if status != 200 {
            return Err(error_message(&text));
        }
        let answer: crate::api::commands::CommandAnswer = serde_json::from_str(&text)
            .map_err(|_| "the agent sent an answer that is not one".to_string())?;
        let a = answer.accepted;
        Ok(format!(
            "{} accepted by the agent for session {} (in {}); it takes effect at the run's next safe point",
            a.verb, a.session, a.at
        ))
    }

    /// Read the live stream (`/v1/events`) until `tell` says the console is
    /// gone, connecting again after a pause when it breaks. Blocking: runs
    /// on a thread of its own.
    pub fn stream(&self, tell: impl Fn(Live) -> bool) {
        let url = format!("{}/v1/events", self.base);
        loop {
            if let Ok(response) = self.http.get(&url).call()
                && response.status().as_u16() == 200
            {
                let reader = std::io::BufReader::new(response.into_body().into_reader());
                for line in reader.lines() {
                    let Ok(line) = line else { break };
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    if !tell(live_message(data.trim())) {
                        return;
                    }
                }
            }
            // Broken, or the agent restarted: say so (a read shows what is
            // wrong), then try again.
            if !tell(Live::Changed) {
                return;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }
}

fn live_message(data: &str) -> Live {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(data) else {
        return Live::Changed;
    };
    if v["kind"] != "progress" {
        return Live::Changed;
    }
    Live::Progress(ProgressUpdate {
        label: v["label"].as_str().unwrap_or_default().to_string(),
        percent: v["percent"].as_u64().map(|p| p.min(100) as u8).unwrap_or(0),
        message: v["message"].as_str().unwrap_or_default().to_string(),
    })
}

/// The message of an API error body (`{"error": {code, message}}`), else
/// the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<crate::api::error::ErrorBody>(body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| body.chars().take(200).collect())
}
