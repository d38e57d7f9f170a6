//! `http`: requests to the origins the policy grants.
//!
//! A Duplex interface (`duplex:plugin/http`) rather than `wasi:http`: SDK
//! plugins target `wasm32-unknown-unknown` (no WASI), and one blocking
//! `send` with the allow-list, the redirect policy, the deadline and the body
//! cap enforced here is the whole surface a readiness probe needs.
//!
//! Grant: a list of origins, `scheme://host[:port]` (`capabilities.http` in
//! the policy), `http` or `https`, the port defaulting to the scheme's. Each
//! is parsed and normalised once ([`Origin::parse_grant`]); a path, a query,
//! user info, a wildcard or another scheme is refused at the entry. A plugin
//! that imports `duplex:plugin/http` without the grant is refused at load
//! (and so at `duplex validate`); a grant the plugin does not import is fine.
//!
//! Wiring: the `duplex:plugin/http` interface, always linked; without the
//! grant `send` returns "capability `http` not granted …". Per plugin: the
//! checked origins and one client ([`ureq`], rustls with the bundled Mozilla
//! roots, no proxy, no cookies, no automatic redirects). Per call: a handle.
//!
//! Every request:
//! - its URL must parse and its origin (scheme, host, port, explicit or the
//!   scheme's default) must be granted, else it is refused before any
//!   connection, naming the URL, the plugin and the granted origins;
//! - redirects are followed here, at most [`MAX_REDIRECTS`], each hop checked
//!   like the first (a redirect out of the grant is refused, naming it);
//! - it ends by min(its own timeout, the call's remaining time): it runs on a
//!   blocking thread under the call's guard, and the client's socket timeouts
//!   are set from the same deadline, so a server trickling a byte a second
//!   ends at the deadline and the thread with it;
//! - at most [`MAX_BODY_BYTES`] of the body are read (`truncated` beyond);
//! - no answer (refused connection, timeout, TLS failure) is `err(reason)`
//!   for the plugin: a fact about the world, not a host fault;
//! - one line in the call's log: method, URL, status, milliseconds.

use super::{Capability, GrantProblem, LoadFailure, Parts, PluginFacts};
use crate::plugins::bindings::duplex::plugin::http as wit;
use crate::plugins::call::{CallScope, HostState};
use crate::plugins::types::{LogLevel, LogSource};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};
use ureq::http::{self as h, Uri};
use wasmtime::component::{HasData, Linker};

/// Most bytes of a response body handed to the plugin; the rest is not read.
pub const MAX_BODY_BYTES: u64 = 1 << 20;
/// Most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 5;
/// The interface a plugin imports to send requests.
pub const INTERFACE: &str = "duplex:plugin/http";

/// The `http` grant: origins as the policy writes them (checked and
/// normalised at load).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpGrant {
    #[serde(default)]
    pub origins: Vec<String>,
}

/// `scheme://host:port`, normalised: lower-case scheme and host, the port
/// always explicit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub scheme: String,
    /// Lower case; an IPv6 address keeps its brackets.
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl Origin {
    /// An origin as a policy grants it: `http://127.0.0.1:8080`,
    /// `https://health.example` (port 443). The message says what is wrong.
    pub fn parse_grant(text: &str) -> Result<Origin, String> {
        if text.contains('*') {
            return Err(format!(
                "`{text}`: wildcards are not supported; grant each origin (`scheme://host:port`) on its own"
            ));
        }
        if text.trim() != text || text.is_empty() {
            return Err(format!(
                "`{text}` is not an origin: write `scheme://host:port` without spaces"
            ));
        }
        let uri: Uri = text.parse().map_err(|e| {
            format!("`{text}` is not an origin (`scheme://host:port`, e.g. `http://127.0.0.1:8080`): {e}")
        })?;
        let pq = uri.path_and_query().map_or("", |p| p.as_str());
        if !(pq.is_empty() || pq == "/") || uri.query().is_some() {
            return Err(format!(
                "`{text}` has a path or query (`{pq}`): a grant is an origin, `scheme://host:port`; the plugin chooses paths"
            ));
        }
        Self::of(&uri, text)
    }

    /// The origin of an absolute `http(s)` URL.
    fn of(uri: &Uri, text: &str) -> Result<Origin, String> {
        let scheme = match uri.scheme_str().map(str::to_ascii_lowercase) {
            Some(s) if s == "http" || s == "https" => s,
            Some(s) => {
                return Err(format!(
                    "`{text}`: scheme `{s}` is not supported, only `http` and `https`"
                ));
            }
            None => {
                return Err(format!(
                    "`{text}` has no scheme: write `http://…` or `https://…`"
                ));
            }
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("`{text}` has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{text}` has user info (`…@`): credentials do not belong in a URL; send an `Authorization` header"
            ));
        }
        let host = authority.host().to_ascii_lowercase();
        if host.is_empty() {
            return Err(format!("`{text}` has no host"));
        }
        let text_port = authority.as_str()[authority.host().len()..].strip_prefix(':');
        let port = match text_port {
            Some("") => return Err(format!("`{text}` has an empty port")),
            None if scheme == "https" => 443,
            None => 80,
            Some(p) => match p.parse::<u16>() {
                Ok(0) => return Err(format!("`{text}`: port 0 is not a port to connect to")),
                Ok(p) => p,
                Err(_) => return Err(format!("`{text}`: `{p}` is not a port (1 to 65535)")),
            },
        };
        Ok(Origin { scheme, host, port })
    }
}

pub(crate) struct Http;

/// One plugin's grant, set up: its origins and its client.
pub(crate) struct HttpClient {
    origins: Vec<Origin>,
    agent: ureq::Agent,
}

pub(crate) struct HttpView<'a> {
    scope: &'a mut CallScope,
    client: &'a Option<Arc<HttpClient>>,
}

impl HasData for Http {
    type Data<'a> = HttpView<'a>;
}

impl Capability for Http {
    const NAME: &'static str = "http";
    type Grant = HttpGrant;
    type Loaded = Option<Arc<HttpClient>>;
    type Call = Option<Arc<HttpClient>>;

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        fn view(state: &mut HostState) -> HttpView<'_> {
            let (scope, client) = Parts::<Http>::parts(state);
            HttpView { scope, client }
        }
        wit::add_to_linker::<HostState, Http>(linker, view)
    }

    fn check(grant: &HttpGrant, plugin: &PluginFacts<'_>) -> Vec<GrantProblem> {
        let mut problems: Vec<GrantProblem> = grant
            .origins
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                Origin::parse_grant(o).err().map(|message| GrantProblem {
                    capability: Self::NAME,
                    at: format!("/capabilities/http/{i}"),
                    key: false,
                    message,
                })
            })
            .collect();
        if grant.origins.is_empty() && plugin.imports(INTERFACE) {
            problems.push(GrantProblem {
                capability: Self::NAME,
                at: String::new(),
                key: false,
                message: format!(
                    "plugin `{}` imports {INTERFACE} but the policy grants it no origin: add `capabilities.http: [\"scheme://host:port\", …]` with the origins it may reach",
                    plugin.name
                ),
            });
        }
        problems
    }

    fn load(grant: &HttpGrant, _: &PluginFacts<'_>) -> Result<Self::Loaded, LoadFailure> {
        if grant.origins.is_empty() {
            return Ok(None);
        }
        let mut origins = Vec::new();
        for o in &grant.origins {
            let origin = Origin::parse_grant(o).map_err(|message| LoadFailure {
                capability: Self::NAME,
                message,
            })?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Some(Arc::new(HttpClient {
            origins,
            agent: agent(),
        })))
    }

    fn start(loaded: Option<&Self::Loaded>, _: &mut CallScope) -> Self::Call {
        loaded.cloned().flatten()
    }
}

/// The client: no proxy (the runner reads no environment), no cookies (the
/// feature is not built), no automatic redirects (followed by [`send`] within
/// the grant), statuses as values.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .proxy(None)
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("duplex/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

impl HttpClient {
    fn allowed(&self, origin: &Origin) -> bool {
        self.origins.contains(origin)
    }

    fn granted(&self) -> String {
        let list: Vec<String> = self.origins.iter().map(Origin::to_string).collect();
        list.join(", ")
    }
}

/// A request as the plugin asked for it, checked.
struct Outgoing {
    method: h::Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// What the blocking side reports.
struct Sent {
    response: Result<wit::Response, String>,
    /// The status of the last answer (for the log line), if any.
    status: Option<u16>,
    url: String,
}

impl HttpView<'_> {
    fn log(&mut self, level: LogLevel, line: String) {
        self.scope.log.push(level, LogSource::Host, &line);
    }
}

impl wit::Host for HttpView<'_> {
    fn send(&mut self, req: wit::Request) -> wasmtime::Result<Result<wit::Response, String>> {
        self.scope.guard.check()?;
        let Some(client) = self.client.clone() else {
            return Ok(Err(self.scope.deny(Http::NAME)));
        };
        let method = method(req.method);
        let start = Instant::now();
        let plugin = self.scope.plugin.clone();
        if let Err(why) = permitted(&client, &req.url, &plugin) {
            self.log(
                LogLevel::Warn,
                format!("http {method} {}: refused: {why}", req.url),
            );
            return Ok(Err(why));
        }
        // The request's own timeout, within the call's remaining time.
        let left = self.scope.guard.remaining();
        let timeout = req
            .timeout_ms
            .map_or(left, |ms| Duration::from_millis(ms.into()).min(left));
        let out = Outgoing {
            method: method.clone(),
            url: req.url.clone(),
            headers: req.headers,
            body: req.body,
        };
        let sent = self
            .scope
            .guard
            .block_on(wasmtime_wasi::runtime::spawn_blocking(move || {
                send(&client, out, &plugin, start + timeout)
            }))
            .inspect_err(|_| {
                // The call's deadline passed (or it was cancelled) first.
                let ms = start.elapsed().as_millis();
                self.scope.log.push(
                    LogLevel::Warn,
                    LogSource::Host,
                    &format!(
                        "http {method} {}: no answer when the call ended ({ms} ms)",
                        req.url
                    ),
                );
            })?;
        let ms = start.elapsed().as_millis();
        match &sent.response {
            Ok(r) => {
                let via = if sent.url == req.url {
                    String::new()
                } else {
                    format!(" (from {})", sent.url)
                };
                let cut = if r.truncated { ", body truncated" } else { "" };
                self.log(
                    LogLevel::Info,
                    format!(
                        "http {method} {}{via}: {} in {ms} ms ({} bytes{cut})",
                        req.url,
                        r.status,
                        r.body.len()
                    ),
                );
            }
            Err(why) => {
                let status = sent.status.map(|s| format!("{s}, ")).unwrap_or_default();
                self.log(
                    LogLevel::Warn,
                    format!(
                        "http {method} {}: {status}failed in {ms} ms: {why}",
                        req.url
                    ),
                );
            }
        }
        Ok(sent.response)
    }
}

fn method(m: wit::Method) -> h::Method {
    match m {
        wit::Method::Get => h::Method::GET,
        wit::Method::Head => h::Method::HEAD,
        wit::Method::Post => h::Method::POST,
        wit::Method::Put => h::Method::PUT,
        wit::Method::Patch => h::Method::PATCH,
        wit::Method::Delete => h::Method::DELETE,
    }
}

/// Whether `url` may be requested: it parses as an absolute `http(s)` URL
/// and its origin is granted.
fn permitted(client: &HttpClient, url: &str, plugin: &str) -> Result<Origin, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let origin = Origin::of(&uri, url)?;
    if client.allowed(&origin) {
        Ok(origin)
    } else {
        Err(format!(
            "`{url}` is outside the origins granted to plugin `{plugin}` ({}): its origin is {origin}",
            client.granted()
        ))
    }
}

/// Sends the request and follows redirects within the grant, by `deadline`.
/// Runs on a blocking thread.
fn send(client: &HttpClient, mut out: Outgoing, plugin: &str, deadline: Instant) -> Sent {
    let mut hops = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Sent {
                response: Err(format!("no answer from {} in time", out.url)),
                status: None,
                url: out.url,
            };
        }
        let response = match once(client, &out, left) {
            Ok(r) => r,
            Err(e) => {
                return Sent {
                    response: Err(describe(&e, &out.url)),
                    status: None,
                    url: out.url,
                };
            }
        };
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get(h::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match (status, location) {
            (301 | 302 | 303 | 307 | 308, Some(location)) => {
                let next = match join(&out.url, &location) {
                    Ok(next) => next,
                    Err(why) => {
                        return Sent {
                            response: Err(format!(
                                "{} redirected ({status}) to `{location}`, which is not a URL: {why}",
                                out.url
                            )),
                            status: Some(status),
                            url: out.url,
                        };
                    }
                };
                if let Err(why) = permitted(client, &next, plugin) {
                    return Sent {
                        response: Err(format!(
                            "redirect ({status}) from {} refused: {why}",
                            out.url
                        )),
                        status: Some(status),
                        url: out.url,
                    };
                }
                hops += 1;
                if hops > MAX_REDIRECTS {
                    return Sent {
                        response: Err(format!(
                            "more than {MAX_REDIRECTS} redirects (the last from {} to {next})",
                            out.url
                        )),
                        status: Some(status),
                        url: out.url,
                    };
                }
                // 303 (and 301/302 after a POST, as every client does)
                // become a GET without a body; 307 and 308 keep both.
                if status == 303 || (matches!(status, 301 | 302) && out.method == h::Method::POST) {
                    if out.method != h::Method::HEAD {
                        out.method = h::Method::GET;
                    }
                    out.body.clear();
                    out.headers.retain(|(k, _)| {
                        !k.eq_ignore_ascii_case("content-type")
                            && !k.eq_ignore_ascii_case("content-length")
                    });
                }
                // Credentials stay with the origin they were meant for.
                if origin_of(&next) != origin_of(&out.url) {
                    out.headers.retain(|(k, _)| {
                        !k.eq_ignore_ascii_case("authorization")
                            && !k.eq_ignore_ascii_case("cookie")
                    });
                }
                out.url = next;
            }
            _ => {
                let response = read(response, &out.method, &out.url, deadline);
                return Sent {
                    response,
                    status: Some(status),
                    url: out.url,
                };
            }
        }
    }
}

fn origin_of(url: &str) -> Option<Origin> {
    let uri: Uri = url.parse().ok()?;
    Origin::of(&uri, url).ok()
}

/// One exchange, no redirect followed, within `left`.
fn once(
    client: &HttpClient,
    out: &Outgoing,
    left: Duration,
) -> Result<h::Response<ureq::Body>, ureq::Error> {
    let mut b = h::Request::builder()
        .method(out.method.clone())
        .uri(out.url.as_str());
    for (k, v) in &out.headers {
        b = b.header(k.as_str(), v.as_str());
    }
    let agent = &client.agent;
    if out.body.is_empty()
        && matches!(
            out.method,
            h::Method::GET | h::Method::HEAD | h::Method::DELETE
        )
    {
        let req = b.body(())?;
        let req = agent
            .configure_request(req)
            .timeout_global(Some(left))
            .build();
        agent.run(req)
    } else {
        let req = b.body(out.body.clone())?;
        let req = agent
            .configure_request(req)
            .timeout_global(Some(left))
            .build();
        agent.run(req)
    }
}

/// The answer, its body read up to the cap (never more), by `deadline`.
fn read(
    response: h::Response<ureq::Body>,
    method: &h::Method,
    url: &str,
    deadline: Instant,
) -> Result<wit::Response, String> {
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    if *method != h::Method::HEAD {
        let mut reader = response.into_body().into_reader().take(MAX_BODY_BYTES + 1);
        if let Err(e) = reader.read_to_end(&mut body) {
            let why = if Instant::now() >= deadline {
                "the request's time ran out".to_string()
            } else {
                e.to_string()
            };
            return Err(format!(
                "{url} answered {status} but its body could not be read ({} bytes received): {why}",
                body.len()
            ));
        }
        if body.len() as u64 > MAX_BODY_BYTES {
            body.truncate(MAX_BODY_BYTES as usize);
            truncated = true;
        }
    }
    Ok(wit::Response {
        status,
        headers,
        body,
        truncated,
        url: url.to_owned(),
    })
}

/// Why there was no answer, for the plugin.
fn describe(e: &ureq::Error, url: &str) -> String {
    match e {
        ureq::Error::Timeout(_) => format!("no answer from {url} in time (timed out)"),
        ureq::Error::Http(e) => format!("cannot send the request to {url}: {e}"),
        e => format!("no answer from {url}: {e}"),
    }
}

/// `location` resolved against `base` (RFC 3986 §5.2, for the forms servers
/// send: absolute, scheme-relative, absolute path, relative path).
fn join(base: &str, location: &str) -> Result<String, String> {
    let lower = location.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        location.parse::<Uri>().map_err(|e| e.to_string())?;
        return Ok(location.to_owned());
    }
    if lower.contains("://") {
        return Err("not an http or https URL".into());
    }
    let uri: Uri = base
        .parse()
        .map_err(|e: h::uri::InvalidUri| e.to_string())?;
    let scheme = uri.scheme_str().unwrap_or("http");
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or_default();
    let joined = if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{}{location}", uri.path())
    } else {
        let path = uri.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!(
            "{scheme}://{authority}{}{location}",
            if dir.is_empty() { "/" } else { dir }
        )
    };
    joined.parse::<Uri>().map_err(|e| e.to_string())?;
    Ok(joined)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(s: &str) -> Result<String, String> {
        Origin::parse_grant(s).map(|o| o.to_string())
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(o("http://127.0.0.1:8080").unwrap(), "http://127.0.0.1:8080");
        assert_eq!(
            o("HTTPS://Health.Example").unwrap(),
            "https://health.example:443"
        );
        assert_eq!(o("http://h.example/").unwrap(), "http://h.example:80");
        assert_eq!(o("http://[::1]:9000").unwrap(), "http://[::1]:9000");
    }

    #[test]
    fn origins_refuse_what_they_cannot_mean() {
        for (bad, why) in [
            ("http://h.example/health", "path"),
            ("http://h.example?x=1", "path or query"),
            ("http://user:pw@h.example", "user info"),
            ("http://*.example", "wildcards"),
            ("ftp://h.example", "scheme `ftp`"),
            ("h.example:80", "no scheme"),
            ("http://h.example:0", "port 0"),
            ("http://h.example:99999", "not a port"),
            ("http://h.example:", "empty port"),
            (" http://h.example", "without spaces"),
            ("", "not an origin"),
        ] {
            let e = o(bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_default_port_is_the_same_origin_as_the_explicit_one_and_no_other() {
        let client = HttpClient {
            origins: vec![
                Origin::parse_grant("http://h.example").unwrap(),
                Origin::parse_grant("https://h.example:8443").unwrap(),
            ],
            agent: agent(),
        };
        for ok in [
            "http://h.example:80/x",
            "HTTP://H.EXAMPLE/x?y=1",
            "https://h.example:8443/",
        ] {
            assert!(permitted(&client, ok, "p").is_ok(), "{ok}");
        }
        for refused in [
            "https://h.example/x",
            "http://h.example:8080/",
            "http://h.example.evil/",
            "http://evil/?h.example",
        ] {
            let e = permitted(&client, refused, "p").unwrap_err();
            assert!(
                e.contains("is outside the origins granted to plugin `p` (http://h.example:80, https://h.example:8443)"),
                "{refused}: {e}"
            );
        }
    }

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://127.0.0.1:8080/a/b?q=1";
        assert_eq!(join(base, "/c").unwrap(), "http://127.0.0.1:8080/c");
        assert_eq!(join(base, "c").unwrap(), "http://127.0.0.1:8080/a/c");
        assert_eq!(join(base, "//x.example/y").unwrap(), "http://x.example/y");
        assert_eq!(
            join(base, "https://x.example/").unwrap(),
            "https://x.example/"
        );
        assert!(join(base, "ftp://x.example/").is_err());
    }
}
