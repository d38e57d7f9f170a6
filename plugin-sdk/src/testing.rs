//! Run plugin logic natively, in `cargo test`: an in-memory host that records
//! log lines and progress and keeps storage in a map.

use crate::host::{Cx, Host};
use crate::http::{Method, Request, Response};
use crate::{
    Artifact, CallContext, CheckResult, Error, HardwareOp, LogLevel, PartnerState, Plugin,
    Progress, Side, UpgradeState,
};
use crate::{ExecCommand, ExecExit, ExecStatus};
use std::collections::{BTreeMap, VecDeque};

#[path = "fake_fs.rs"]
mod fake_fs;
pub use fake_fs::FakeRoot;

/// A fake runner. Storage is granted unless made with [`TestHost::without_storage`].
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    pub logs: Vec<(LogLevel, String)>,
    pub progress: Option<(u8, String)>,
    /// `None`: the `storage` capability is not granted.
    pub storage: Option<BTreeMap<String, Vec<u8>>>,
    pub plugin_name: String,
    /// The `files` grants by name (none: not granted); see [`TestHost::grant_dir`].
    pub files: BTreeMap<String, FakeRoot>,
    /// The artifacts by name; `None`: `artifacts` not granted.
    pub artifacts: Option<BTreeMap<String, Vec<u8>>>,
    /// Scripted outcomes of `exec` per program ([`TestHost::on_exec`]).
    pub exec_script: BTreeMap<String, VecDeque<FakeExec>>,
    /// Every `exec.run` asked, in order.
    pub exec_calls: Vec<ExecCall>,
    /// Every key `exec.kill` was asked for, in order.
    pub exec_killed: Vec<String>,
    /// The `http` capability's fake (not granted unless [`TestHost::with_http`]).
    pub http: HttpFake,
}

/// A scripted outcome of one `exec.run` of a program.
#[derive(Debug, Clone, PartialEq)]
pub enum FakeExec {
    /// Still running after the wait, for this many milliseconds.
    Running(u64),
    Exited(ExecExit),
    /// The host refuses (as for an ungranted program).
    Refused(String),
}

impl FakeExec {
    /// Exited with `code`, printing `stdout`.
    pub fn exit(code: i32, stdout: &str) -> FakeExec {
        FakeExec::Exited(ExecExit {
            code: Some(code),
            signal: None,
            stdout: stdout.as_bytes().to_vec(),
            stderr: Vec::new(),
            dropped_bytes: 0,
            duration_ms: 1,
            timed_out: false,
        })
    }

    /// Exited with `code`, printing `stderr` on its standard error.
    pub fn exit_err(code: i32, stderr: &str) -> FakeExec {
        FakeExec::Exited(ExecExit {
            code: Some(code),
            signal: None,
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
            dropped_bytes: 0,
            duration_ms: 1,
            timed_out: false,
        })
    }

    /// Killed by the host when its timeout passed.
    pub fn timed_out() -> FakeExec {
        FakeExec::Exited(ExecExit {
            code: None,
            signal: Some(9),
            stdout: Vec::new(),
            stderr: Vec::new(),
            dropped_bytes: 0,
            duration_ms: 1,
            timed_out: true,
        })
    }
}

/// One `exec.run` a plugin asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecCall {
    pub key: String,
    pub program: String,
    pub args: Vec<String>,
    pub stdin: Vec<u8>,
    pub cwd: Option<String>,
    pub timeout_ms: Option<u32>,
    pub wait_ms: u32,
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

    /// Scripts `exec` of `program`: each `run` takes the next outcome queued
    /// for it; the last one repeats. A program never scripted is refused, as
    /// the runner refuses a program the policy does not grant.
    pub fn on_exec(&mut self, program: &str, outcome: FakeExec) -> &mut Self {
        self.exec_script
            .entry(program.into())
            .or_default()
            .push_back(outcome);
        self
    }

    /// Queues several outcomes at once (e.g. running, running, exited).
    pub fn on_exec_seq(
        &mut self,
        program: &str,
        outcomes: impl IntoIterator<Item = FakeExec>,
    ) -> &mut Self {
        for o in outcomes {
            self.on_exec(program, o);
        }
        self
    }

    /// The argument lists `program` was run with, in order.
    pub fn exec_args(&self, program: &str) -> Vec<Vec<String>> {
        self.exec_calls
            .iter()
            .filter(|c| c.program == program)
            .map(|c| c.args.clone())
            .collect()
    }

    /// Grants the directory `path` (a temporary one, say) as files root
    /// `name`, read-only or not, under the runner's rules.
    pub fn grant_dir(&mut self, name: &str, path: impl Into<std::path::PathBuf>, read_only: bool) {
        self.files.insert(
            name.into(),
            FakeRoot {
                path: path.into(),
                read_only,
                free_space: 1 << 40,
            },
        );
    }

    /// Grants `artifacts` (if not yet) with `name` holding `bytes`.
    pub fn grant_artifact(&mut self, name: &str, bytes: impl Into<Vec<u8>>) {
        self.artifacts
            .get_or_insert_with(BTreeMap::new)
            .insert(name.into(), bytes.into());
    }

    fn root(&self, name: &str) -> Result<&FakeRoot, String> {
        fake_fs::find(&self.files, name, &self.plugin_name)
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
    fn exec_run(&mut self, cmd: &ExecCommand, wait_ms: u32) -> Result<ExecStatus, String> {
        self.exec_calls.push(ExecCall {
            key: cmd.key.clone(),
            program: cmd.program.clone(),
            args: cmd.args.clone(),
            stdin: cmd.stdin.clone(),
            cwd: cmd.cwd.clone(),
            timeout_ms: cmd.timeout_ms,
            wait_ms,
        });
        let Some(queue) = self.exec_script.get_mut(&cmd.program) else {
            return Err(format!(
                "exec of `{}` refused for plugin `{}`: not a granted program",
                cmd.program, self.plugin_name
            ));
        };
        let next = if queue.len() > 1 {
            queue.pop_front()
        } else {
            queue.front().cloned()
        };
        match next.expect("a scripted program has an outcome") {
            FakeExec::Running(ms) => Ok(ExecStatus::Running(ms)),
            FakeExec::Exited(e) => Ok(ExecStatus::Exited(e)),
            FakeExec::Refused(m) => Err(m),
        }
    }

    fn exec_kill(&mut self, key: &str) -> Result<(), String> {
        self.exec_killed.push(key.into());
        Ok(())
    }

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

    fn files_read(
        &mut self,
        root: &str,
        path: &str,
        offset: u64,
        max: u32,
    ) -> Result<Vec<u8>, String> {
        self.root(root)?.read(root, path, offset, max)
    }
    fn files_write(&mut self, root: &str, path: &str, data: &[u8]) -> Result<(), String> {
        self.root(root)?.write(root, path, data)
    }
    fn files_append(&mut self, root: &str, path: &str, data: &[u8]) -> Result<(), String> {
        self.root(root)?.append(root, path, data)
    }
    fn files_set_mode(&mut self, root: &str, path: &str, mode: u32) -> Result<(), String> {
        self.root(root)?.set_mode(root, path, mode)
    }
    fn files_create_dir(&mut self, root: &str, path: &str) -> Result<(), String> {
        self.root(root)?.create_dir(root, path)
    }
    fn files_list(&mut self, root: &str, path: &str) -> Result<Vec<crate::DirEntry>, String> {
        self.root(root)?.list(root, path)
    }
    fn files_stat(&mut self, root: &str, path: &str) -> Result<Option<crate::Metadata>, String> {
        self.root(root)?.stat(root, path)
    }
    fn files_read_link(&mut self, root: &str, path: &str) -> Result<String, String> {
        self.root(root)?.read_link(root, path)
    }
    fn files_rename(&mut self, root: &str, from: &str, to: &str) -> Result<(), String> {
        self.root(root)?.rename(root, from, to)
    }
    fn files_symlink(&mut self, root: &str, target: &str, path: &str) -> Result<(), String> {
        self.root(root)?.symlink(root, target, path)
    }
    fn files_remove(&mut self, root: &str, path: &str) -> Result<(), String> {
        self.root(root)?.remove(root, path)
    }
    fn files_free_space(&mut self, root: &str) -> Result<u64, String> {
        Ok(self.root(root)?.free_space)
    }
    fn artifact_read(&mut self, name: &str, offset: u64, max: u32) -> Result<Vec<u8>, String> {
        let bytes = fake_fs::artifact(&self.artifacts, name, &self.plugin_name)?;
        let start = (offset as usize).min(bytes.len());
        let end = start
            .saturating_add(max.min(4 << 20) as usize)
            .min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }
    fn artifact_copy_to(&mut self, name: &str, root: &str, path: &str) -> Result<u64, String> {
        let bytes = fake_fs::artifact(&self.artifacts, name, &self.plugin_name)?.to_vec();
        self.root(root)?.write(root, path, &bytes)?;
        Ok(bytes.len() as u64)
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
