//! Typed errors at the edge of the host (inside, code runs on `wasmtime::Result`).

use super::capabilities::GrantProblem;
use std::path::PathBuf;
use std::time::Duration;

/// Loading a plugin failed: nothing of it runs.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file cannot be read, or is refused before it is (not a regular
    /// file, over [`MAX_PLUGIN_BYTES`](super::MAX_PLUGIN_BYTES)).
    #[error("cannot read plugin `{name}` from {}: {source}", path.display())]
    Unreadable {
        name: String,
        path: PathBuf,
        source: super::SourceError,
    },
    #[error("plugin `{name}`: {message}")]
    BadDigest { name: String, message: String },
    #[error(
        "plugin `{name}` ({}) does not match its pinned digest: the policy pins sha256 {expected}, the file has sha256 {actual}",
        path.display()
    )]
    DigestMismatch {
        name: String,
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("plugin `{name}` ({}) is not a valid WebAssembly component: {message}", path.display())]
    Invalid {
        name: String,
        path: PathBuf,
        message: String,
    },
    /// Refused before compiling: compiling it could take minutes (limits
    /// in [`code_limits`](super::code_limits)).
    #[error(
        "plugin `{name}` ({}) is refused before compiling: {message}. Past these limits compile time grows faster than code (minutes for one function); split the function, or build the plugin with optimisations",
        path.display()
    )]
    OverCompileLimits {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error(
        "plugin `{name}` does not fit the duplex:plugin@0.1.0 contract or asks for imports the runner does not provide: {message}"
    )]
    Incompatible { name: String, message: String },
    /// The plugin's own `describe` at load failed (the source names the plugin).
    #[error("{source}")]
    Describe {
        name: String,
        #[source]
        source: Box<CallError>,
    },
    #[error("plugin `{name}`: cannot set up capability `{capability}`: {message}")]
    Capability {
        name: String,
        capability: &'static str,
        message: String,
    },
    /// The plugin's limits ask more than the host was set up for.
    #[error("plugin `{name}`: {message}")]
    Limits { name: String, message: String },
    /// It would not fit the sandbox (checked before compiling).
    #[error("plugin `{name}` ({}) cannot run in the sandbox: {message}", path.display())]
    OverSandboxLimits {
        name: String,
        path: PathBuf,
        message: String,
    },
    /// The policy grants the plugin something it must not have or cannot
    /// use; each problem is placed in the plugin's entry of the policy.
    #[error("plugin `{name}`: {}", problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; "))]
    Grant {
        name: String,
        problems: Vec<GrantProblem>,
    },
    #[error("plugin host: {0}")]
    Host(String),
    /// An `oci://` source cannot be pulled (or found in the cache).
    #[error("plugin `{name}`: {source}")]
    Oci {
        name: String,
        #[source]
        source: Box<duplex_oci::Error>,
    },
    /// The component an `oci://` source names is not the one `sha256` pins.
    #[error(
        "plugin `{name}`: {reference} holds a component with sha256 {actual}, but the policy pins sha256 {expected}"
    )]
    OciDigest {
        name: String,
        reference: String,
        expected: String,
        actual: String,
    },
}

impl PluginError {
    /// The field of the policy's plugin entry the error is about (where
    /// `duplex validate` places it): `sha256`, `source` or `name`.
    pub fn policy_field(&self) -> &'static str {
        match self {
            PluginError::DigestMismatch { .. }
            | PluginError::BadDigest { .. }
            | PluginError::OciDigest { .. } => "sha256",
            PluginError::Unreadable { .. }
            | PluginError::Invalid { .. }
            | PluginError::OverCompileLimits { .. }
            | PluginError::OverSandboxLimits { .. }
            | PluginError::Incompatible { .. }
            | PluginError::Oci { .. } => "source",
            _ => "name",
        }
    }
}

/// One call of a loaded plugin failed. The runner and other plugins are unaffected;
/// the engine marks the step Broken with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum CallError {
    #[error("plugin `{plugin}`: {call} exceeded its deadline of {}", fmt_duration(*limit))]
    Timeout {
        plugin: String,
        call: String,
        #[serde(with = "super::types::millis")]
        limit: Duration,
    },
    #[error(
        "plugin `{plugin}`: {call} exceeded its memory limit of {} (asked for {})",
        fmt_bytes(*limit),
        fmt_bytes(*requested)
    )]
    MemoryLimit {
        plugin: String,
        call: String,
        limit: u64,
        requested: u64,
    },
    #[error(
        "plugin `{plugin}`: {call} exceeded the limit of {limit} table elements (asked for {requested})"
    )]
    TableLimit {
        plugin: String,
        call: String,
        limit: u64,
        requested: u64,
    },
    /// The plugin called WASI `exit` instead of returning.
    #[error(
        "plugin `{plugin}`: {call} called WASI exit with status {status} instead of returning a result"
    )]
    Exited {
        plugin: String,
        call: String,
        status: i32,
    },
    #[error("plugin `{plugin}`: {call} overflowed its stack (recursion too deep)")]
    StackOverflow { plugin: String, call: String },
    #[error("plugin `{plugin}`: {call} trapped: {message}{}", said(plugin_said))]
    Trap {
        plugin: String,
        call: String,
        message: String,
        /// The last error line the plugin logged (e.g. its panic message).
        plugin_said: Option<String>,
    },
    #[error(
        "plugin `{plugin}`: {call} returned {}, more than the limit of {}",
        fmt_bytes(*size),
        fmt_bytes(*limit)
    )]
    OutputTooLarge {
        plugin: String,
        call: String,
        size: u64,
        limit: u64,
    },
    #[error("plugin `{plugin}`: {call} returned invalid data: {message}")]
    InvalidOutput {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin `{plugin}`: {call} failed: {message}")]
    Plugin {
        plugin: String,
        call: String,
        message: String,
    },
    #[error(
        "plugin `{plugin}`: {call} needs capability `{capability}`, which the policy does not grant to it ({message})"
    )]
    CapabilityDenied {
        plugin: String,
        call: String,
        capability: String,
        message: String,
    },
    #[error("plugin `{plugin}`: {call} does not exist: {message}")]
    NotProvided {
        plugin: String,
        call: String,
        message: String,
    },
    #[error("plugin `{plugin}`: {call}: host error: {message}")]
    Host {
        plugin: String,
        call: String,
        message: String,
    },
    /// The run was stopped (e.g. the operator's SIGTERM) while the call ran:
    /// it was ended at once, whatever the plugin was doing.
    #[error("plugin `{plugin}`: {call} was cancelled: the run is stopping")]
    Cancelled { plugin: String, call: String },
    /// A capability failed on the runner's side (the disk under the plugin's
    /// store is full, read-only or failing): not the plugin's fault, whatever
    /// it then returned. Fix the host, then retry; retries spent meanwhile
    /// would not help.
    #[error(
        "plugin `{plugin}`: {call}: the runner's `{capability}` capability failed on the host: {message}"
    )]
    HostFault {
        plugin: String,
        call: String,
        capability: String,
        message: String,
    },
}

impl CallError {
    /// Whether trying the same call again may give a different result.
    /// Sandbox violations and ABI garbage are deterministic; timeouts and
    /// plugin-reported errors may be transient.
    pub fn is_transient(&self) -> bool {
        matches!(self, CallError::Timeout { .. } | CallError::Host { .. })
    }
}

fn said(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (plugin said: {s})"),
        None => String::new(),
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

pub(crate) fn fmt_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 20 {
        format!("{:.1} MiB ({n} bytes)", n as f64 / f64::from(1u32 << 20))
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}
