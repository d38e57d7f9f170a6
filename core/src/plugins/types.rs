//! The plain-Rust side of the WIT contract (`plugin-sdk/wit/plugin.wit`): what the
//! engine passes to plugin calls and gets back. Serializable, independent of
//! wasmtime and of the policy module.

use crate::cancel::CancelFlag;
/// The model's partner states are the contract's: one type for both.
pub use crate::model::PartnerState;
use crate::model::UpgradeState;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// The two halves of the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    Production,
    Upgrade,
}

/// The hardware operations of the manual.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HardwareOp {
    Split,
    Merge,
    Commit,
    Abort,
    Finish,
}

impl HardwareOp {
    pub const ALL: [HardwareOp; 5] = [
        HardwareOp::Split,
        HardwareOp::Merge,
        HardwareOp::Commit,
        HardwareOp::Abort,
        HardwareOp::Finish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HardwareOp::Split => "split",
            HardwareOp::Merge => "merge",
            HardwareOp::Commit => "commit",
            HardwareOp::Abort => "abort",
            HardwareOp::Finish => "finish",
        }
    }
}

impl fmt::Display for HardwareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What every plugin call receives (WIT `call-context`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallContext {
    /// The upgrade session (stable across retries and runner restarts).
    pub session_id: String,
    pub state: UpgradeState,
    /// The piece of work within the state, e.g. `gate/free-space` or `op/split`.
    pub request: String,
    /// 1 for the first attempt, incremented by each retry after a failure.
    pub attempt: u32,
    pub side: Side,
    /// The policy's `with:` block (`{}` when absent).
    pub params: serde_json::Value,
    /// Ends the call at once when set (the run is stopping): the call
    /// returns [`CallError::Cancelled`](super::CallError::Cancelled).
    #[serde(skip)]
    pub cancel: Option<CancelFlag>,
}

impl CallContext {
    /// A context with empty parameters, attempt 1, targeting the Upgrade Side.
    pub fn new(
        session_id: impl Into<String>,
        state: UpgradeState,
        request: impl Into<String>,
    ) -> Self {
        CallContext {
            session_id: session_id.into(),
            state,
            request: request.into(),
            attempt: 1,
            side: Side::Upgrade,
            params: serde_json::Value::Object(Default::default()),
            cancel: None,
        }
    }

    /// The call ends with [`CallError::Cancelled`](super::CallError::Cancelled)
    /// within about one epoch tick of `flag` being set, wherever the plugin
    /// is (in wasm code or waiting in a host call).
    pub fn with_cancel(mut self, flag: CancelFlag) -> Self {
        self.cancel = Some(flag);
        self
    }

    pub(crate) fn cancel_flag(&self) -> Option<CancelFlag> {
        self.cancel.clone()
    }

    pub fn with_params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }

    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    pub fn with_side(mut self, side: Side) -> Self {
        self.side = side;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Pass,
    Fail,
    Inconclusive,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Inconclusive => "inconclusive",
        })
    }
}

/// The outcome of a readiness or verification check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    pub verdict: Verdict,
    pub message: String,
    /// Measured facts, in the order the plugin reported them.
    pub observations: Vec<(String, String)>,
}

/// One call's outcome of a resumable operation (hardware op or install).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Progress {
    /// Finished; call again only for a new request.
    Done { message: String },
    /// Still running: call again after `retry_after`.
    Pending {
        /// 0..=100 (checked by the host).
        percent: u8,
        message: String,
        #[serde(with = "millis")]
        retry_after: Duration,
    },
    /// Failed; `retryable` says whether a new attempt may help.
    Failed { message: String, retryable: bool },
}

/// A piece of software to install on the Upgrade Side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    pub name: String,
    pub version: String,
    /// Lower-case hex sha256.
    pub sha256: String,
    pub size: u64,
    pub source: String,
}

/// A readiness check a plugin provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckInfo {
    pub name: String,
    pub description: String,
    /// JSON Schema of the check's `with:` block.
    pub params_schema: serde_json::Value,
}

/// A hardware operation a plugin provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OperationInfo {
    pub op: HardwareOp,
    pub description: String,
    pub params_schema: serde_json::Value,
}

/// An installer a plugin provides (by artifact kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallerInfo {
    pub name: String,
    pub description: String,
    pub params_schema: serde_json::Value,
}

/// What a plugin says it provides (`describe`), validated by the host: names are
/// unique and non-empty, every schema is a JSON object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    pub checks: Vec<CheckInfo>,
    pub operations: Vec<OperationInfo>,
    pub installers: Vec<InstallerInfo>,
    pub reports_partner: bool,
}

impl PluginInfo {
    pub fn check(&self, name: &str) -> Option<&CheckInfo> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub fn operation(&self, op: HardwareOp) -> Option<&OperationInfo> {
        self.operations.iter().find(|o| o.op == op)
    }

    pub fn installer(&self, name: &str) -> Option<&InstallerInfo> {
        self.installers.iter().find(|i| i.name == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogSource {
    /// The plugin's `log` import.
    Plugin,
    /// The plugin's WASI stdout / stderr.
    Stdout,
    Stderr,
    /// The host, about the plugin (refused capabilities, truncation).
    Host,
}

/// One line for the activity log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub source: LogSource,
    pub message: String,
}

/// The last progress a plugin reported through the `progress` import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressReport {
    pub percent: u8,
    pub message: String,
}

/// A successful call: the value plus what the plugin said on the way, for the
/// activity log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallOutcome<T> {
    pub value: T,
    pub logs: Vec<LogLine>,
    pub progress: Option<ProgressReport>,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

impl<T> CallOutcome<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> CallOutcome<U> {
        CallOutcome {
            value: f(self.value),
            logs: self.logs,
            progress: self.progress,
            elapsed: self.elapsed,
        }
    }
}

/// Durations as integer milliseconds in JSON.
pub(crate) mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
