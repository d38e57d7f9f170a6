//! Run plugin logic natively, in `cargo test`: an in-memory host that records
//! log lines and progress and keeps storage in a map.

use crate::host::{Cx, Host};
use crate::http::{Method, Request, Response};
use crate::{
    Artifact, CallContext, CheckResult, Error, HardwareOp, LogLevel, PartnerState, Plugin,
    Progress, Side, UpgradeState,
};
use std::collections::BTreeMap;

/// A fake runner. Storage is granted unless made with [`TestHost::without_storage`].
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    pub logs: Vec<(LogLevel, String)>,
    pub progress: Option<(u8, String)>,
    /// `None`: the `storage` capability is not granted.
    pub storage: Option<BTreeMap<String, Vec<u8>>>,
    pub plugin_name: String,
    /// The `http` capability's fake (not granted unless [`TestHost::with_http`]).
    pub http: HttpFake,
}

/// The `http` fake: the granted origins, the answers tests program, the
/// requests the plugin sent. Like the runner, it refuses a URL whose origin
/// is not granted (and records nothing then).
#[derive(Debug, Clone, Default)]
pub struct HttpFake {
    /// Normalised origins (`http://127.0.0.1:8080`); `None`: not granted.
    pub origins: Option<Vec<String>>,
    /// `(method, url) → answer`, the last programmed first.
    pub routes: Vec<(Method, String, Result<Response, String>)>,
    /// Every request that reached the (fake) network, in order.
    pub requests: Vec<Request>,
}

impl TestHost {
    pub fn new() -> TestHost {
        TestHost {
            storage: Some(BTreeMap::new()),
            plugin_name: "test".into(),
            ..TestHost::default()
        }
    }

    pub fn without_storage() -> TestHost {
        TestHost {
            plugin_name: "test".into(),
            ..TestHost::default()
        }
    }

    /// Grants the `http` capability for `origins` (`scheme://host[:port]`).
    pub fn with_http<S: AsRef<str>>(mut self, origins: impl IntoIterator<Item = S>) -> TestHost {
        let origins = origins
            .into_iter()
            .map(|o| {
                let o = o.as_ref();
                let normal = crate::http::origin(o).unwrap_or_else(|e| panic!("{e}"));
                let rest = o.split_once("://").map_or("", |(_, r)| r);
                assert!(
                    !rest.trim_end_matches('/').contains('/'),
                    "`{o}`: a grant is an origin (`scheme://host:port`), without a path"
                );
                normal
            })
            .collect();
        self.http.origins = Some(origins);
        self
    }

    /// Answers `method url` with `response` (its `url` defaults to `url`).
    pub fn on_http(&mut self, method: Method, url: &str, mut response: Response) {
        if response.url.is_empty() {
            response.url = url.into();
        }
        if response.body.len() > crate::http::MAX_BODY_BYTES {
            response.body.truncate(crate::http::MAX_BODY_BYTES);
            response.truncated = true;
        }
        self.http
            .routes
            .insert(0, (method, url.into(), Ok(response)));
    }

    /// Answers `method url` with no answer: `reason` (a refused connection,
    /// a timeout).
    pub fn on_http_error(&mut self, method: Method, url: &str, reason: &str) {
        self.http
            .routes
            .insert(0, (method, url.into(), Err(reason.into())));
    }

    /// Seeds storage with a JSON value.
    pub fn set_json<T: serde::Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.storage
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), serde_json::to_vec(value).unwrap());
    }

    /// Reads a JSON value from storage.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        let bytes = self.storage.as_ref()?.get(key)?;
        Some(serde_json::from_slice(bytes).expect("stored JSON"))
    }

    pub fn check<P: Plugin>(
        &mut self,
        ctx: &CallContext,
        name: &str,
    ) -> Result<CheckResult, Error> {
        P::check(&mut Cx::new(ctx, self), name)
    }

    pub fn operate<P: Plugin>(&mut self, ctx: &CallContext, op: HardwareOp) -> Progress {
        P::operate(&mut Cx::new(ctx, self), op)
    }

    pub fn install<P: Plugin>(&mut self, ctx: &CallContext, artifact: &Artifact) -> Progress {
        P::install(&mut Cx::new(ctx, self), artifact)
    }

    pub fn partner<P: Plugin>(&mut self, ctx: &CallContext) -> Result<PartnerState, Error> {
        P::partner(&mut Cx::new(ctx, self))
    }

    /// Calls `operate` until it is no longer pending (at most `max_calls`
    /// times); returns the final progress and the number of calls.
    pub fn operate_until_settled<P: Plugin>(
        &mut self,
        ctx: &CallContext,
        op: HardwareOp,
        max_calls: u32,
    ) -> (Progress, u32) {
        let mut last = Progress::failed("not called", false);
        for n in 1..=max_calls {
            last = self.operate::<P>(ctx, op);
            if !matches!(last, Progress::Pending(_)) {
                return (last, n);
            }
        }
        (last, max_calls)
    }

    fn denied(&self) -> String {
        self.denied_capability("storage")
    }

    fn denied_capability(&self, capability: &str) -> String {
        format!(
            "capability `{capability}` not granted to plugin `{}` by the policy",
            self.plugin_name
        )
    }
}

impl Host for TestHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push((level, message.into()));
    }

    fn progress(&mut self, percent: u8, message: &str) {
        self.progress = Some((percent, message.into()));
    }

    fn storage_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let denied = self.denied();
        Ok(self.storage.as_ref().ok_or(denied)?.get(key).cloned())
    }

    fn storage_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        let denied = self.denied();
        self.storage
            .as_mut()
            .ok_or(denied)?
            .insert(key.into(), value.into());
        Ok(())
    }

    fn storage_delete(&mut self, key: &str) -> Result<(), String> {
        let denied = self.denied();
        self.storage.as_mut().ok_or(denied)?.remove(key);
        Ok(())
    }

    fn storage_list_keys(&mut self) -> Result<Vec<String>, String> {
        let denied = self.denied();
        Ok(self
            .storage
            .as_ref()
            .ok_or(denied)?
            .keys()
            .cloned()
            .collect())
    }

    fn http_send(&mut self, req: &Request) -> Result<Response, String> {
        self.http_answer(req)
    }
}

impl TestHost {
    fn http_answer(&mut self, req: &Request) -> Result<Response, String> {
        let Some(origins) = &self.http.origins else {
            return Err(self.denied_capability("http"));
        };
        let origin = crate::http::origin(&req.url)?;
        if !origins.contains(&origin) {
            return Err(format!(
                "`{}` is outside the origins granted to plugin `{}` ({}): its origin is {origin}",
                req.url,
                self.plugin_name,
                origins.join(", ")
            ));
        }
        self.http.requests.push(req.clone());
        let found = self
            .http
            .routes
            .iter()
            .find(|(m, url, _)| *m == req.method && *url == req.url);
        match found {
            Some((_, _, answer)) => {
                let mut answer = answer.clone();
                if let Ok(r) = &mut answer
                    && req.method == Method::Head
                {
                    r.body.clear();
                }
                answer
            }
            None => Err(format!(
                "no answer from {} (TestHost: no route for {} {}; program one with `on_http`)",
                req.url,
                req.method.as_str(),
                req.url
            )),
        }
    }
}

/// A call context for tests: session `test-session`, attempt 1, Upgrade Side.
pub fn context(state: UpgradeState, params: serde_json::Value) -> CallContext {
    CallContext {
        session_id: "test-session".into(),
        state,
        request: "test".into(),
        attempt: 1,
        side: Side::Upgrade,
        params: params.to_string(),
    }
}
