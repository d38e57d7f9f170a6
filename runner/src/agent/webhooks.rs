//! Webhooks: events as CloudEvents 1.0 in structured JSON mode, signed with
//! HMAC-SHA256, one HTTP POST per delivery attempt. The durable queue and the
//! retries around it are in [`super::outbox`].

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The event types the agent sends (CloudEvents `type`, reverse-DNS under
/// the policy's `duplex.dev` API group).
pub mod event_type {
    pub const SESSION_STARTED: &str = "dev.duplex.session.started";
    pub const STATE_ENTERED: &str = "dev.duplex.session.state_entered";
    pub const BROKEN: &str = "dev.duplex.session.broken";
    pub const HELD: &str = "dev.duplex.session.held";
    pub const APPROVAL_NEEDED: &str = "dev.duplex.session.approval_needed";
    pub const ABORTED: &str = "dev.duplex.session.aborted";
    pub const COMMITTED: &str = "dev.duplex.session.committed";
    pub const FINISHED: &str = "dev.duplex.session.finished";
    pub const POLICY_INVALID: &str = "dev.duplex.policy.invalid";
    pub const DRIFT: &str = "dev.duplex.drift";
}

/// A CloudEvents 1.0 event in structured JSON mode: the whole event is the
/// request body (`Content-Type: application/cloudevents+json`), so no `ce-*`
/// headers are sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    /// Always `"1.0"`.
    pub specversion: String,
    /// Unique per `source`; also the outbox's idempotency key.
    pub id: String,
    /// A URI-reference naming the producer (e.g. `duplex://<host>/<state dir>`).
    pub source: String,
    /// One of [`event_type`].
    #[serde(rename = "type")]
    pub ty: String,
    /// What the event is about within the source (e.g. the session id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// When it happened, RFC 3339 in UTC.
    pub time: String,
    /// Always `"application/json"`.
    pub datacontenttype: String,
    pub data: serde_json::Value,
}

impl CloudEvent {
    /// An event that happened at `time_ms` (milliseconds since the Unix epoch).
    pub fn new(
        id: String,
        source: String,
        ty: String,
        subject: Option<String>,
        time_ms: u64,
        data: serde_json::Value,
    ) -> Self {
        CloudEvent {
            specversion: "1.0".into(),
            id,
            source,
            ty,
            subject,
            time: rfc3339_ms(time_ms),
            datacontenttype: "application/json".into(),
            data,
        }
    }
}

/// `ms` since the epoch as RFC 3339 UTC (`2023-11-14T22:13:20.5Z`); past
/// year 9999 it is clamped.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let ms = i64::try_from(ms).unwrap_or(i64::MAX);
    jiff::Timestamp::from_millisecond(ms)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

/// The request header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Duplex-Signature";
/// The request header carrying the signing time.
pub const TIMESTAMP_HEADER: &str = "X-Duplex-Timestamp";

/// The value of `X-Duplex-Signature` for `body` sent at `timestamp`.
///
/// Every delivery attempt to a target with a secret carries two headers:
///
/// ```text
/// X-Duplex-Timestamp: <unix seconds when this attempt was sent, decimal>
/// X-Duplex-Signature: sha256=<lowercase hex of HMAC-SHA256(secret, timestamp + "." + body)>
/// ```
///
/// where `timestamp` is the exact text of the `X-Duplex-Timestamp` header
/// and `body` the exact bytes of the request body (the CloudEvent JSON, not
/// re-serialized). A receiver verifies by computing the same HMAC with its
/// copy of the secret, comparing it to the header in constant time, and
/// rejecting a timestamp too far from its own clock (e.g. more than 5
/// minutes) to refuse replays. Each retry is signed afresh with its own
/// timestamp; the event's `id` stays the same, so receivers de-duplicate by
/// `id`. Targets without a secret get neither header.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex(&mac.finalize().into_bytes()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// What an attempt's result means for the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: the receiver has it.
    Delivered,
    /// 4xx other than 408 and 429: the receiver refuses it; retrying won't help.
    Refused,
    /// Anything else (5xx, 408, 429, 3xx, connection errors, timeouts).
    Retry,
}

pub(crate) fn verdict(result: &Result<u16, String>) -> Verdict {
    match result {
        Ok(200..=299) => Verdict::Delivered,
        Ok(408 | 429) => Verdict::Retry,
        Ok(400..=499) => Verdict::Refused,
        _ => Verdict::Retry,
    }
}

/// The client one delivery thread uses: no proxy (the agent reads no
/// environment), no redirects followed (a redirect is retried, then given
/// up), statuses as values, the whole exchange bounded by `timeout`.
pub(crate) fn client(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("duplex/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// Answers bigger than this are not read (only their status matters).
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// POSTs `body` (a CloudEvent's JSON) to `url`, signed with `secret` if
/// there is one, at `now_secs`: the answer's status, or why there was none.
pub(crate) fn post(
    agent: &ureq::Agent,
    url: &str,
    secret: Option<&[u8]>,
    body: &[u8],
    now_secs: u64,
) -> Result<u16, String> {
    let mut request = agent
        .post(url)
        .header("Content-Type", "application/cloudevents+json");
    if let Some(secret) = secret {
        request = request
            .header(TIMESTAMP_HEADER, now_secs.to_string())
            .header(SIGNATURE_HEADER, signature(secret, now_secs, body));
    }
    match request.send(body) {
        Ok(response) => {
            let status = response.status().as_u16();
            // Drained (up to a bound) so the connection can be reused; the
            // content does not matter.
            let _ = response
                .into_body()
                .with_config()
                .limit(MAX_ANSWER_BYTES)
                .read_to_vec();
            Ok(status)
        }
        Err(ureq::Error::Timeout(_)) => Err("no answer in time (timed out)".into()),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231 test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block size is hashed first.
        let mut mac = Hmac::<Sha256>::new_from_slice(&[0xaa; 131]).unwrap();
        mac.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex(&mac.finalize().into_bytes()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn signature_covers_timestamp_dot_body() {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let want = format!("sha256={}", hex(&mac.finalize().into_bytes()));
        assert_eq!(signature(b"k", 1_700_000_000, b"{\"a\":1}"), want);
        assert_ne!(signature(b"k", 1_700_000_001, b"{\"a\":1}"), want);
    }

    #[test]
    fn cloud_event_is_structured_json() {
        let e = CloudEvent::new(
            "e1".into(),
            "duplex://host/var/lib/duplex".into(),
            event_type::STATE_ENTERED.into(),
            Some("s-1".into()),
            1_700_000_000_500,
            serde_json::json!({"state": "Committed"}),
        );
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "specversion": "1.0",
                "id": "e1",
                "source": "duplex://host/var/lib/duplex",
                "type": "dev.duplex.session.state_entered",
                "subject": "s-1",
                "time": "2023-11-14T22:13:20.5Z",
                "datacontenttype": "application/json",
                "data": {"state": "Committed"},
            })
        );
        let no_subject = CloudEvent::new(
            "e2".into(),
            "s".into(),
            "t".into(),
            None,
            0,
            serde_json::Value::Null,
        );
        let v = serde_json::to_value(&no_subject).unwrap();
        assert!(v.get("subject").is_none());
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert_eq!(serde_json::from_value::<CloudEvent>(v).unwrap(), no_subject);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict(&Ok(200)), Verdict::Delivered);
        assert_eq!(verdict(&Ok(204)), Verdict::Delivered);
        assert_eq!(verdict(&Ok(400)), Verdict::Refused);
        assert_eq!(verdict(&Ok(410)), Verdict::Refused);
        assert_eq!(verdict(&Ok(408)), Verdict::Retry);
        assert_eq!(verdict(&Ok(429)), Verdict::Retry);
        assert_eq!(verdict(&Ok(503)), Verdict::Retry);
        assert_eq!(verdict(&Ok(302)), Verdict::Retry);
        assert_eq!(verdict(&Err("refused".into())), Verdict::Retry);
    }
}
