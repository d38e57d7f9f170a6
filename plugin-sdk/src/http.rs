//! The `http` capability: requests to the origins the policy grants
//! (`capabilities.http: ["http://127.0.0.1:8080", …]`).
//!
//! ```
//! use duplex_plugin_sdk::prelude::*;
//! use duplex_plugin_sdk::http::{Method, Response};
//! use duplex_plugin_sdk::testing::{context, TestHost};
//!
//! fn healthy(cx: &mut Cx<'_>) -> Result<CheckResult, Error> {
//!     let r = cx.http().get("http://127.0.0.1:8080/health").timeout_ms(2_000).send()?;
//!     Ok(if r.is_success() {
//!         CheckResult::pass(r.text())
//!     } else {
//!         CheckResult::fail(format!("health answered {}", r.status))
//!     }
//!     .observe("status", r.status))
//! }
//!
//! // Natively: a fake runner granting one origin and answering one route.
//! let mut host = TestHost::new().with_http(["http://127.0.0.1:8080"]);
//! host.on_http(Method::Get, "http://127.0.0.1:8080/health", Response::new(200, "up"));
//! let ctx = context(UpgradeState::PrepareSplit, serde_json::json!({}));
//! let r = healthy(&mut Cx::new(&ctx, &mut host)).unwrap();
//! assert_eq!(r.message, "up");
//! assert_eq!(host.http.requests[0].url, "http://127.0.0.1:8080/health");
//! ```
//!
//! The runner checks every URL (and every redirect, which it follows for the
//! plugin) against the grant, ends each request by its timeout or the call's
//! remaining time, whichever comes first, and cuts the body at
//! [`MAX_BODY_BYTES`] (`truncated` then says so). No answer — refused
//! connection, timeout, TLS failure, a URL outside the grant — is an
//! [`Error`] with the reason.

use crate::Error;
use crate::host::Host;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::duplex::plugin::http::{Method, Request, Response};

/// Most bytes of a body the runner hands over (the rest is cut).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// `cx.http()`: builds requests.
pub struct Http<'a> {
    pub(crate) host: &'a mut dyn Host,
}

impl<'a> Http<'a> {
    /// A request with any method.
    pub fn request(self, method: Method, url: impl Into<String>) -> RequestBuilder<'a> {
        RequestBuilder {
            host: self.host,
            req: Request {
                method,
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
            },
        }
    }

    pub fn get(self, url: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Get, url)
    }

    pub fn head(self, url: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Head, url)
    }

    pub fn post(self, url: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Post, url)
    }

    pub fn put(self, url: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Put, url)
    }

    pub fn patch(self, url: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Patch, url)
    }

    pub fn delete(self, url: impl Into<String>) -> RequestBuilder<'a> {
        self.request(Method::Delete, url)
    }
}

/// One request being built; [`RequestBuilder::send`] sends it.
pub struct RequestBuilder<'a> {
    host: &'a mut dyn Host,
    req: Request,
}

impl RequestBuilder<'_> {
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.req.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.req.body = body.into();
        self
    }

    /// `value` as a JSON body, with `content-type: application/json`.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Result<Self, Error> {
        let body = serde_json::to_vec(value)
            .map_err(|e| Error(format!("http: cannot encode the JSON body: {e}")))?;
        Ok(self.header("content-type", "application/json").body(body))
    }

    /// Ends the request after this long (the call's remaining time bounds
    /// it anyway).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.req.timeout_ms = Some(ms);
        self
    }

    /// The request as it will be sent.
    pub fn request(&self) -> &Request {
        &self.req
    }

    /// Sends it; `Err` when there was no answer (with the reason). Any
    /// status is an answer: check [`Response::is_success`].
    pub fn send(self) -> Result<Response, Error> {
        crate::host::http_send(&mut *self.host, &self.req).map_err(Error)
    }
}

impl Response {
    /// An answer with `status` and `body` (for [`crate::testing::TestHost`]).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            truncated: false,
            url: String::new(),
        }
    }

    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A status in 200..=299.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        if self.truncated {
            return Err(Error(format!(
                "http: the body from {} is longer than {MAX_BODY_BYTES} bytes and was cut: it cannot be parsed as JSON",
                self.url
            )));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            Error(format!(
                "http: the body from {} is not the expected JSON: {e}",
                self.url
            ))
        })
    }
}

impl Method {
    /// As HTTP spells it: `GET`, `POST`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// `scheme://host:port` of an absolute `http(s)` URL, normalised (lower
/// case, the port explicit), as the runner compares them.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))] // used by the native TestHost
pub(crate) fn origin(url: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` has no scheme: write `http://…` or `https://…`"))?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        other => {
            return Err(format!(
                "`{url}`: scheme `{other}` is not supported, only `http` and `https`"
            ));
        }
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(format!(
            "`{url}` has user info (`…@`): credentials do not belong in a URL; send an `Authorization` header"
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (
            h,
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{url}`: `{p}` is not a port (1 to 65535)"))?,
        ),
        _ => (authority, default),
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(format!("{scheme}://{}:{port}", host.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestHost, context};
    use crate::{Cx, UpgradeState};

    fn with<T>(host: &mut TestHost, f: impl FnOnce(&mut Cx<'_>) -> T) -> T {
        let ctx = context(UpgradeState::PrepareSplit, serde_json::json!({}));
        f(&mut Cx::new(&ctx, host))
    }

    #[test]
    fn origins_normalise_as_the_runner_does() {
        assert_eq!(
            origin("HTTP://Host.Example/x").unwrap(),
            "http://host.example:80"
        );
        assert_eq!(
            origin("https://h.example:8443?q").unwrap(),
            "https://h.example:8443"
        );
        assert_eq!(origin("http://[::1]:9/").unwrap(), "http://[::1]:9");
        assert_eq!(origin("http://[::1]/").unwrap(), "http://[::1]:80");
        assert!(
            origin("ftp://h.example")
                .unwrap_err()
                .contains("scheme `ftp`")
        );
        assert!(
            origin("http://u:p@h.example")
                .unwrap_err()
                .contains("user info")
        );
        assert!(origin("h.example:80").unwrap_err().contains("no scheme"));
        assert!(
            origin("http://h.example:0")
                .unwrap_err()
                .contains("not a port")
        );
    }

    #[test]
    fn the_fake_answers_granted_origins_and_records_what_was_sent() {
        let mut host = TestHost::new().with_http(["http://127.0.0.1:8080/"]);
        host.on_http(
            Method::Post,
            "http://127.0.0.1:8080/v1/lock",
            Response::new(200, r#"{"ok":true}"#).with_header("Content-Type", "application/json"),
        );
        let r = with(&mut host, |cx| {
            cx.http()
                .post("http://127.0.0.1:8080/v1/lock")
                .header("fleet-lock-protocol", "true")
                .json(&serde_json::json!({"id": 1}))
                .unwrap()
                .timeout_ms(500)
                .send()
        })
        .unwrap();
        assert!(r.is_success());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.url, "http://127.0.0.1:8080/v1/lock");
        #[derive(serde::Deserialize)]
        struct Ok_ {
            ok: bool,
        }
        assert!(r.json::<Ok_>().unwrap().ok);
        let sent = &host.http.requests[0];
        assert_eq!(sent.method, Method::Post);
        assert_eq!(sent.body, br#"{"id":1}"#);
        assert_eq!(sent.timeout_ms, Some(500));
        assert!(
            sent.headers
                .contains(&("fleet-lock-protocol".into(), "true".into()))
        );
    }

    #[test]
    fn the_fake_refuses_what_the_runner_refuses() {
        let mut host = TestHost::new().with_http(["http://127.0.0.1:8080"]);
        let e = with(&mut host, |cx| {
            cx.http().get("http://127.0.0.1:9090/").send()
        })
        .unwrap_err();
        assert_eq!(
            e.0,
            "`http://127.0.0.1:9090/` is outside the origins granted to plugin `test` (http://127.0.0.1:8080): its origin is http://127.0.0.1:9090"
        );
        assert!(host.http.requests.is_empty());
        // Granted, but nothing programmed: no answer, and it was sent.
        let e = with(&mut host, |cx| {
            cx.http().get("http://127.0.0.1:8080/x").send()
        })
        .unwrap_err();
        assert!(
            e.0.contains("no route for GET http://127.0.0.1:8080/x"),
            "{e}"
        );
        assert_eq!(host.http.requests.len(), 1);
        // A programmed failure.
        host.on_http_error(Method::Get, "http://127.0.0.1:8080/x", "connection refused");
        let e = with(&mut host, |cx| {
            cx.http().get("http://127.0.0.1:8080/x").send()
        })
        .unwrap_err();
        assert_eq!(e.0, "connection refused");
        // Not granted at all.
        let mut host = TestHost::new();
        let e = with(&mut host, |cx| {
            cx.http().head("http://127.0.0.1:8080/").send()
        })
        .unwrap_err();
        assert_eq!(
            e.0,
            "capability `http` not granted to plugin `test` by the policy"
        );
    }

    #[test]
    fn bodies_over_the_cap_are_cut_and_not_parsed() {
        let mut host = TestHost::new().with_http(["http://127.0.0.1:8080"]);
        host.on_http(
            Method::Get,
            "http://127.0.0.1:8080/big",
            Response::new(200, vec![b'1'; MAX_BODY_BYTES + 10]),
        );
        let r = with(&mut host, |cx| {
            cx.http().get("http://127.0.0.1:8080/big").send()
        })
        .unwrap();
        assert!(r.truncated);
        assert_eq!(r.body.len(), MAX_BODY_BYTES);
        assert!(r.json::<u64>().unwrap_err().0.contains("was cut"));
    }
}
