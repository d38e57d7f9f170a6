//! Run plugin logic natively, in `cargo test`: an in-memory host that records
//! log lines and progress and keeps storage in a map.

use crate::host::{Cx, Host};
use crate::{
    Artifact, CallContext, CheckResult, Error, HardwareOp, LogLevel, PartnerState, Plugin,
    Progress, Side, UpgradeState,
};
use crate::{ExecCommand, ExecExit, ExecStatus};
use std::collections::{BTreeMap, VecDeque};

/// A fake runner. Storage is granted unless made with [`TestHost::without_storage`].
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    pub logs: Vec<(LogLevel, String)>,
    pub progress: Option<(u8, String)>,
    /// `None`: the `storage` capability is not granted.
    pub storage: Option<BTreeMap<String, Vec<u8>>>,
    pub plugin_name: String,
    /// Scripted outcomes of `exec` per program ([`TestHost::on_exec`]).
    pub exec_script: BTreeMap<String, VecDeque<FakeExec>>,
    /// Every `exec.run` asked, in order.
    pub exec_calls: Vec<ExecCall>,
    /// Every key `exec.kill` was asked for, in order.
    pub exec_killed: Vec<String>,
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
        format!(
            "capability `storage` not granted to plugin `{}` by the policy",
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
