//! The `exec` capability: run a program the policy grants.
//!
//! ```
//! use duplex_plugin_sdk::prelude::*;
//! use duplex_plugin_sdk::testing::{context, FakeExec, TestHost};
//!
//! fn active(cx: &mut Cx<'_>) -> Result<CheckResult, Error> {
//!     let status = cx
//!         .exec("/usr/bin/systemctl")
//!         .args(["is-active", "acme"])
//!         .key("acme-active")
//!         .wait_ms(2_000)
//!         .run()?;
//!     Ok(match status.exited() {
//!         None => CheckResult::inconclusive("still asking systemctl"),
//!         Some(e) if e.success() => CheckResult::pass(e.stdout_str().trim().to_string()),
//!         Some(e) => CheckResult::fail(e.describe()),
//!     })
//! }
//!
//! let mut host = TestHost::new();
//! host.on_exec("/usr/bin/systemctl", FakeExec::exit(0, "active\n"));
//! let ctx = context(UpgradeState::PrepareSplit, serde_json::json!({}));
//! let r = active(&mut Cx::new(&ctx, &mut host)).unwrap();
//! assert_eq!(r.verdict, Verdict::Pass);
//! assert_eq!(host.exec_calls[0].args, ["is-active", "acme"]);
//! ```
//!
//! The host runs the program directly (never through a shell unless the
//! shell itself is the granted program), in its own process group, with a
//! clean environment: what the grant declares plus `ACTIVE_UPGRADE_SIDE`,
//! `ACTIVE_UPGRADE_STATE`, `ACTIVE_UPGRADE_REQUEST`, `ACTIVE_UPGRADE_SESSION`
//! and `ACTIVE_UPGRADE_ATTEMPT`. A call waits at most `wait_ms` (and never
//! past the call's own time); a command still running is kept by the host
//! and found again by a later call of the same request with the same key, so
//! a long command is started by one call and polled by the next ones (from a
//! pending operation). Its timeout, the end of its request, a stop, an abort
//! or the end of the session kill it with its process group.

use crate::host::{Host, exec_run};
use crate::{Error, ExecCommand, ExecExit, ExecStatus};

/// A command being set up; [`Exec::run`] starts (or polls) it.
pub struct Exec<'a> {
    host: &'a mut dyn Host,
    cmd: ExecCommand,
    wait_ms: u32,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(host: &'a mut dyn Host, program: String) -> Exec<'a> {
        Exec {
            host,
            cmd: ExecCommand {
                key: program.clone(),
                program,
                args: Vec::new(),
                stdin: Vec::new(),
                cwd: None,
                timeout_ms: None,
            },
            wait_ms: u32::MAX,
        }
    }

    /// One more argument (after the grant's fixed prefix and the ones before).
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.cmd.args.push(arg.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.cmd.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Names the command within the request (default: the program's path):
    /// a later call with the same key finds it again while it runs.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.cmd.key = key.into();
        self
    }

    /// Bytes written to its standard input, which is then closed.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.cmd.stdin = bytes.into();
        self
    }

    /// Its working directory (absolute; default `/`).
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cmd.cwd = Some(dir.into());
        self
    }

    /// Killed after this long (the host's limit is the default and the most).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.cmd.timeout_ms = Some(ms);
        self
    }

    /// How long this call waits for it to exit (default: as long as the
    /// call's time allows).
    pub fn wait_ms(mut self, ms: u32) -> Self {
        self.wait_ms = ms;
        self
    }

    /// The command as it will be asked for.
    pub fn command(&self) -> &ExecCommand {
        &self.cmd
    }

    /// Starts the command, or finds the one this request started under the
    /// same key, and waits up to `wait_ms`: [`ExecStatus::Running`] if it is
    /// still running, else its exit (reported once: the next `run` with this
    /// key starts it again).
    pub fn run(self) -> Result<ExecStatus, Error> {
        exec_run(self.host, &self.cmd, self.wait_ms).map_err(Error)
    }

    /// Runs the command to its end within this call: its exit, or an error
    /// if it is still running when the call's time is up (then start it from
    /// a resumable operation and poll it with [`Exec::run`] instead).
    pub fn run_to_end(self) -> Result<ExecExit, Error> {
        let Exec { host, cmd, wait_ms } = self;
        // The host bounds each wait by the call's time: a second wait that
        // still finds it running means the time is up.
        let mut last = 0;
        for _ in 0..2 {
            match exec_run(host, &cmd, wait_ms).map_err(Error)? {
                ExecStatus::Exited(e) => return Ok(e),
                ExecStatus::Running(ms) => last = ms,
            }
        }
        Err(Error(format!(
            "`{}` is still running after {last} ms, longer than this call may wait: start it from a resumable operation and poll it (key `{}`)",
            cmd.program, cmd.key
        )))
    }
}

impl ExecStatus {
    /// The exit, when it has exited.
    pub fn exited(&self) -> Option<&ExecExit> {
        match self {
            ExecStatus::Exited(e) => Some(e),
            ExecStatus::Running(_) => None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, ExecStatus::Running(_))
    }
}

impl ExecExit {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// How it ended: `exit code 3`, `killed by signal 9 (timed out)`.
    pub fn status_text(&self) -> String {
        let mut s = match (self.code, self.signal) {
            (Some(c), _) => format!("exit code {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            (None, None) => "ended (status unknown)".into(),
        };
        if self.timed_out {
            s.push_str(" (timed out)");
        }
        s
    }

    /// The last `max_lines` non-empty lines of standard error, or of
    /// standard output when standard error has none.
    pub fn tail(&self, max_lines: usize) -> String {
        let pick = if self.stderr.iter().any(|b| !b.is_ascii_whitespace()) {
            self.stderr_str()
        } else {
            self.stdout_str()
        };
        let lines: Vec<&str> = pick.lines().filter(|l| !l.trim().is_empty()).collect();
        lines[lines.len().saturating_sub(max_lines)..].join("\n")
    }

    /// `exit code 3: <tail of its output>`: a reason for the operator.
    pub fn describe(&self) -> String {
        let tail = self.tail(5);
        if tail.is_empty() {
            self.status_text()
        } else {
            format!("{}: {tail}", self.status_text())
        }
    }
}
