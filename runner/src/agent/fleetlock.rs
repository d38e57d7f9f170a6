//! A client of the FleetLock protocol (coreos/airlock,
//! `docs/protocol-specs.md`), for sites that already run a FleetLock server
//! as their fleet's semaphore: the agent asks for a slot (`POST
//! /v1/pre-reboot`) before a session may leave Idle and gives it back
//! (`POST /v1/steady-state`) once the session has ended. Locks are owned by
//! the client's id and recursive, so asking again after a restart is safe;
//! a holder that dies keeps its slot until it comes back (or an operator
//! frees it on the server), as the protocol intends.
//!
//! Blocking (ureq): call it off the async loop.

use std::time::Duration;

/// How long one request may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct FleetLock {
    base: String,
    id: String,
    group: String,
    http: ureq::Agent,
}

/// What the server answered, when it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the lock is held (pre-reboot) or given back (steady-state).
    Ok,
    /// Any other status: the server's reason (its `{kind, value}` error
    /// body when it sent one).
    Refused(String),
}

impl FleetLock {
    /// `base`: the server's URL (`http://fleetlock.example:3333`); `id`:
    /// this host's id; `group`: the lock group (`default` in airlock).
    pub fn new(base: &str, id: &str, group: &str) -> FleetLock {
        FleetLock {
            base: base.trim_end_matches('/').to_string(),
            id: id.to_string(),
            group: group.to_string(),
            http: ureq::Agent::config_builder()
                .proxy(None)
                .max_redirects(0)
                .http_status_as_error(false)
                .timeout_global(Some(ANSWER_TIMEOUT))
                .user_agent(concat!("duplex-agent/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent(),
        }
    }

    /// The server's URL, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Take (or keep: locks are recursive) a slot.
    pub fn pre_reboot(&self) -> Result<Answer, String> {
        self.post("/v1/pre-reboot")
    }

    /// Give the slot back (a no-op for the server when not held).
    pub fn steady_state(&self) -> Result<Answer, String> {
        self.post("/v1/steady-state")
    }

    fn post(&self, path: &str) -> Result<Answer, String> {
        let url = format!("{}{path}", self.base);
        let body = serde_json::json!({
            "client_params": { "id": self.id, "group": self.group }
        })
        .to_string();
        let mut response = self
            .http
            .post(&url)
            .header("fleet-lock-protocol", "true")
            .content_type("application/json")
            .send(body)
            .map_err(|e| format!("FleetLock server {url}: {e}"))?;
        let status = response.status().as_u16();
        if status == 200 {
            return Ok(Answer::Ok);
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(64 * 1024)
            .read_to_string()
            .unwrap_or_default();
        Ok(Answer::Refused(refusal(status, &text)))
    }
}

/// airlock answers an error as `{"kind": "...", "value": "..."}`.
fn refusal(status: u16, body: &str) -> String {
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let kind = parsed.as_ref().and_then(|v| v["kind"].as_str());
    let value = parsed.as_ref().and_then(|v| v["value"].as_str());
    match (kind, value) {
        (Some(kind), Some(value)) => format!("HTTP {status}: {kind}: {value}"),
        _ if body.trim().is_empty() => format!("HTTP {status}"),
        _ => format!("HTTP {status}: {}", body.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    #[test]
    fn refusals_carry_the_servers_reason() {
        assert_eq!(
            refusal(
                409,
                r#"{"kind":"failed_lock","value":"all 2 semaphore slots currently locked"}"#
            ),
            "HTTP 409: failed_lock: all 2 semaphore slots currently locked"
        );
        assert_eq!(refusal(500, ""), "HTTP 500");
        assert_eq!(refusal(502, "bad gateway\n"), "HTTP 502: bad gateway");
    }
}
