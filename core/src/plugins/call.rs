//! One sandboxed call: a fresh store and instance, the call's scope (its
//! deadline and cancellation, its output, the capabilities it was refused,
//! host-side faults) and the classification of whatever went wrong into a
//! [`CallError`].

use super::bindings::OutputSize;
use super::capabilities::{CallCapabilities, LoadedCapabilities};
use super::error::{CallError, fmt_bytes};
use super::output::{LogSink, ProgressSlot};
use super::sandbox::{Limiter, MAX_TABLE_ELEMENTS, reserved_per_memory};
use super::spec::Limits;
use super::types::{
    CallContext, CallOutcome, CheckResult, LogLevel, LogLine, LogSource, PartnerState, PluginInfo,
    Progress,
};
use crate::cancel::CancelFlag;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Instance, InstancePre};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// The data of a call's store.
pub(crate) struct HostState {
    pub scope: CallScope,
    pub capabilities: CallCapabilities,
    pub limiter: Limiter,
}

/// What every capability of a call shares.
pub(crate) struct CallScope {
    pub plugin: Arc<str>,
    pub limits: Limits,
    pub guard: Guard,
    pub log: LogSink,
    pub progress: ProgressSlot,
    /// Capabilities the plugin asked for without having them.
    pub denied: Vec<&'static str>,
    /// A capability failed on the host's side (the disk under the plugin's
    /// store is full, say): whatever the plugin then returns, the call's
    /// outcome is this fault, not the plugin's.
    pub fault: Option<HostFault>,
    /// The call's context (`None` for `describe`).
    pub context: Option<CallContext>,
}

#[derive(Debug, Clone)]
pub(crate) struct HostFault {
    pub capability: &'static str,
    pub message: String,
}

impl CallScope {
    /// Records a refused capability once, with a note in the call's log.
    pub fn deny(&mut self, capability: &'static str) -> String {
        let why = format!(
            "capability `{capability}` not granted to plugin `{}` by the policy",
            self.plugin
        );
        if !self.denied.contains(&capability) {
            self.denied.push(capability);
            self.log.note(LogLevel::Warn, &format!("refused {why}"));
        }
        why
    }

    /// Records the first host-side fault of the call.
    pub fn host_fault(&mut self, capability: &'static str, message: String) {
        if self.fault.is_none() {
            self.fault = Some(HostFault {
                capability,
                message,
            });
        }
    }
}

/// Why the host stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    Deadline,
    Cancelled,
}

/// The call's deadline and cancellation, for wasm code (through the epoch
/// callback) and for host calls alike.
pub(crate) struct Guard {
    deadline: Instant,
    cancel: Option<CancelFlag>,
    /// Set when the host stopped the call.
    pub stopped: Option<Stop>,
}

impl Guard {
    fn new(timeout: Duration, cancel: Option<CancelFlag>) -> Guard {
        Guard {
            deadline: Instant::now() + timeout,
            cancel,
            stopped: None,
        }
    }

    /// Time left before the call's deadline (zero when past it).
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Traps if the call is cancelled or past its deadline. Every host
    /// function starts with this (epoch interruption only fires in wasm
    /// code, so a plugin looping over host calls is stopped here).
    pub fn check(&mut self) -> wasmtime::Result<()> {
        if self.cancel.as_ref().is_some_and(CancelFlag::is_cancelled) {
            return Err(self.stop(Stop::Cancelled));
        }
        if Instant::now() >= self.deadline {
            return Err(self.stop(Stop::Deadline));
        }
        Ok(())
    }

    fn stop(&mut self, why: Stop) -> wasmtime::Error {
        let why = *self.stopped.get_or_insert(why);
        wasmtime::Error::msg(match why {
            Stop::Deadline => "the call's deadline passed",
            Stop::Cancelled => "the call was cancelled",
        })
    }

    /// Runs a host operation that may block (I/O, a WASI poll) until it
    /// completes, the call's deadline passes or the call is cancelled,
    /// whichever comes first; in the last two cases the call traps.
    ///
    /// The synchronous WASI bindings run their futures with
    /// `wasmtime_wasi::runtime::in_tokio(..)`; this is the same with the
    /// call's remaining time and cancellation raced against the future.
    pub fn block_on<F: Future>(&mut self, fut: F) -> wasmtime::Result<F::Output> {
        self.check()?;
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let cancel = self.cancel.clone();
        let outcome = wasmtime_wasi::runtime::in_tokio(async move {
            tokio::select! {
                biased;
                out = fut => Ok(out),
                () = tokio::time::sleep_until(deadline) => Err(Stop::Deadline),
                () = cancelled(cancel) => Err(Stop::Cancelled),
            }
        });
        outcome.map_err(|why| self.stop(why))
    }
}

async fn cancelled(flag: Option<CancelFlag>) {
    match flag {
        Some(flag) => flag.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Whether a call's value counts as a failure (for capability-denial reporting).
pub(crate) trait Failure {
    fn failure(&self) -> Option<String>;
}

impl Failure for PluginInfo {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl Failure for super::bindings::w::PluginInfo {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl Failure for CheckResult {
    fn failure(&self) -> Option<String> {
        (self.verdict != super::types::Verdict::Pass).then(|| self.message.clone())
    }
}

impl Failure for Progress {
    fn failure(&self) -> Option<String> {
        match self {
            Progress::Failed { message, .. } => Some(message.clone()),
            _ => None,
        }
    }
}

impl Failure for PartnerState {
    fn failure(&self) -> Option<String> {
        None
    }
}

/// Why a returned value is not accepted.
pub(crate) enum Bad {
    /// The plugin returned its own error.
    Plugin(String),
    /// The value breaks the contract.
    Invalid(String),
}

/// What a call needs of the loaded plugin.
pub(crate) struct Callee<'a> {
    pub engine: &'a Engine,
    pub pre: &'a InstancePre<HostState>,
    pub plugin: &'a Arc<str>,
    pub limits: Limits,
    /// `None`: the call gets no capability (`describe`).
    pub capabilities: Option<&'a LoadedCapabilities>,
    pub cancel: Option<CancelFlag>,
    /// The call's context (`None`: `describe`).
    pub context: Option<CallContext>,
    /// The host's memory reservation (for messages).
    pub max_memory_bytes: u64,
}

/// One sandboxed call: fresh store and instance, limits, classification of
/// whatever went wrong.
pub(crate) fn run<R: OutputSize, T: Failure>(
    callee: Callee<'_>,
    call: &str,
    invoke: impl FnOnce(&Instance, &mut Store<HostState>) -> wasmtime::Result<R>,
    convert: impl FnOnce(R) -> Result<T, Bad>,
) -> Result<CallOutcome<T>, CallError> {
    let start = Instant::now();
    let limits = callee.limits;
    let mut scope = CallScope {
        plugin: callee.plugin.clone(),
        limits,
        guard: Guard::new(limits.timeout, callee.cancel),
        log: LogSink::new(limits.max_log_bytes),
        progress: ProgressSlot::default(),
        denied: Vec::new(),
        fault: None,
        context: callee.context,
    };
    let capabilities = CallCapabilities::start(callee.capabilities, &mut scope);
    let mut store = Store::new(
        callee.engine,
        HostState {
            scope,
            capabilities,
            limiter: Limiter::new(limits.memory_bytes),
        },
    );
    store.limiter(|s| &mut s.limiter);
    // The deadline and the cancellation are checked at every epoch tick.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| {
        cx.data_mut().scope.guard.check()?;
        Ok(UpdateDeadline::Continue(1))
    });

    let mut instantiated = false;
    let result = callee.pre.instantiate(&mut store).and_then(|instance| {
        instantiated = true;
        invoke(&instance, &mut store)
    });
    let HostState {
        mut scope,
        capabilities,
        limiter,
    } = store.into_data();
    capabilities.finish(&mut scope);
    scope.progress.finish(&mut scope.log);
    let plugin: String = callee.plugin.to_string();
    let call = call.to_string();
    let last_error = scope.log.last_plugin_error();
    let denied = scope.denied.first().copied();
    let stopped = scope.guard.stopped;
    let fault = scope.fault.take();
    let progress = scope.progress.last.take();
    let mut logs = scope.log.finish();

    if stopped == Some(Stop::Cancelled) {
        return Err(CallError::Cancelled { plugin, call });
    }
    if let Some(f) = fault {
        return Err(CallError::HostFault {
            plugin,
            call,
            capability: f.capability.into(),
            message: f.message,
        });
    }
    let denied_err = |plugin: String, call: String, message: String| CallError::CapabilityDenied {
        plugin,
        call,
        capability: denied.unwrap_or_default().into(),
        message,
    };
    let mut value = match result {
        Ok(v) => v,
        Err(err) => {
            return Err(if let Some(requested) = limiter.exceeded {
                CallError::MemoryLimit {
                    plugin,
                    call,
                    limit: limits.memory_bytes,
                    requested,
                }
            } else if stopped == Some(Stop::Deadline)
                || matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt))
            {
                CallError::Timeout {
                    plugin,
                    call,
                    limit: limits.timeout,
                }
            } else if let Some(requested) = limiter.table_exceeded {
                CallError::TableLimit {
                    plugin,
                    call,
                    limit: MAX_TABLE_ELEMENTS as u64,
                    requested,
                }
            } else if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
                CallError::Exited {
                    plugin,
                    call,
                    status: exit.0,
                }
            } else if matches!(err.downcast_ref::<Trap>(), Some(Trap::StackOverflow)) {
                CallError::StackOverflow { plugin, call }
            } else if denied.is_some() {
                denied_err(
                    plugin,
                    call,
                    format!("then it trapped: {}", root_message(&err)),
                )
            } else if err.downcast_ref::<Trap>().is_some() {
                CallError::Trap {
                    plugin,
                    call,
                    message: root_message(&err),
                    plugin_said: last_error,
                }
            } else if !instantiated && format!("{err:#}").contains("mmap failed") {
                // The address space for the instance's memory is not there
                // (a `ulimit -v` too small for the reservation).
                CallError::Host {
                    plugin,
                    call,
                    message: format!(
                        "cannot reserve address space for the plugin's memory ({}): each memory of a call reserves about {}, the largest `limits.memory` of the plugins loaded together ({}) rounded up to a power of two, plus guard pages; raise the runner's address-space limit (`ulimit -v`) or lower that `limits.memory`",
                        root_message(&err),
                        fmt_bytes(reserved_per_memory(callee.max_memory_bytes)),
                        fmt_bytes(callee.max_memory_bytes)
                    ),
                }
            } else if !instantiated {
                // Not a trap, before the plugin ran: the host could not
                // provide the instance (e.g. the instance pool is full).
                CallError::Host {
                    plugin,
                    call,
                    message: format!("cannot instantiate the plugin: {err:#}"),
                }
            } else {
                // Not a trap: the canonical ABI refused what the plugin
                // returned (bad pointer, invalid UTF-8, unknown case…).
                CallError::InvalidOutput {
                    plugin,
                    call,
                    message: format!("{err:#}"),
                }
            });
        }
    };
    if let Some(note) = value.cap_entries() {
        logs.push(LogLine {
            level: LogLevel::Warn,
            source: LogSource::Host,
            message: note,
        });
    }
    let size = value.output_size();
    if size > limits.max_output_bytes {
        return Err(CallError::OutputTooLarge {
            plugin,
            call,
            size,
            limit: limits.max_output_bytes,
        });
    }
    let value = match convert(value) {
        Ok(v) => v,
        Err(Bad::Plugin(message)) if denied.is_some() => {
            return Err(denied_err(plugin, call, message));
        }
        Err(Bad::Plugin(message)) => {
            return Err(CallError::Plugin {
                plugin,
                call,
                message,
            });
        }
        Err(Bad::Invalid(message)) => {
            return Err(CallError::InvalidOutput {
                plugin,
                call,
                message,
            });
        }
    };
    if denied.is_some()
        && let Some(message) = value.failure()
    {
        return Err(denied_err(plugin, call, message));
    }
    Ok(CallOutcome {
        value,
        logs,
        progress,
        elapsed: start.elapsed(),
    })
}

/// The trap's own description plus the innermost wasm frames, without the
/// rest of the backtrace.
fn root_message(err: &wasmtime::Error) -> String {
    let full = format!("{err:#}");
    let frames: Vec<&str> = full
        .lines()
        .map(str::trim)
        .filter(|l| {
            l.split(':')
                .next()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|l| l.split(": wasm trap:").next().unwrap_or(l))
        .take(3)
        .collect();
    let what = match err.downcast_ref::<Trap>() {
        Some(t) => t.to_string(),
        None => full.lines().next().unwrap_or_default().to_string(),
    };
    let mut s = if frames.is_empty() {
        what
    } else {
        format!("{what} [{}]", frames.join("; "))
    };
    if s.len() > 1000 {
        let mut end = 1000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}
