//! The plugin host: runs WebAssembly components written against
//! `plugin-sdk/wit/plugin.wit` (`duplex:plugin@0.1.0`) in a sandbox.
//!
//! - [`PluginHost::load`] verifies the file against the sha256 the policy pins,
//!   compiles it once (or takes it from the on-disk cache of precompiled
//!   artifacts), links it, and asks it to `describe` itself (validated).
//! - Every call on a [`LoadedPlugin`] gets a fresh instance from an
//!   `InstancePre`, its own store, a memory cap, an epoch deadline (which also
//!   bounds time spent in host calls), and caps on returned data and log volume.
//!   Whatever the plugin does, the call ends with `Ok(CallOutcome)` or a
//!   [`CallError`] saying why; the runner and other plugins are unaffected.
//! - Capabilities ([`Capabilities`]) are nothing by default: the `storage`
//!   interface refuses with "capability `storage` not granted …", WASI preview 2
//!   is linked with no env, no dirs, frozen clocks, no network.
//!
//! The API is synchronous; the engine calls it from `spawn_blocking`.
//! Internally everything runs on `wasmtime::Result`; errors are converted to
//! [`PluginError`] / [`CallError`] at this module's edge.

mod bindings;
mod cache;
mod digest;
mod error;
pub mod params;
mod spec;
mod state;
mod storage;
mod types;

pub use cache::CacheStatus;
pub use digest::{is_sha256_hex, sha256_hex};
pub use error::{CallError, PluginError};
pub use spec::{Capabilities, DirGrant, HostConfig, Limits, PluginSpec};
pub use storage::{MAX_KEY_BYTES, MAX_KEYS, MAX_VALUE_BYTES};
pub use types::*;

use bindings::{OutputSize, Plugin, PluginPre};
use state::HostState;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store, Trap};

fn engine_config(config: &HostConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // The host uses no component-model async; with it on every call is slower.
    c.concurrency_support(false);
    c.epoch_interruption(true);
    c.max_wasm_stack(512 << 10);
    if pooling {
        let n = config.pool_size.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 16)
            .total_stacks(n)
            // Per-call memory caps are enforced by the store's limiter; this is
            // only the pool's slot size (the whole 32-bit space).
            .max_memory_size(1 << 32);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

/// The WIT package every plugin is written against.
pub const CONTRACT: &str = "duplex:plugin@0.1.0";

/// Compiles, caches and links plugins. Cheap to share (`Clone`); one per runner.
#[derive(Clone)]
pub struct PluginHost {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    linker: Linker<HostState>,
    cache: cache::Cache,
    tick: Duration,
    stop: Arc<AtomicBool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl PluginHost {
    pub fn new(config: HostConfig) -> Result<PluginHost, PluginError> {
        Self::build(config).map_err(|e| PluginError::Host(format!("{e:#}")))
    }

    fn build(config: HostConfig) -> wasmtime::Result<PluginHost> {
        let engine = if config.pooling {
            // The pool reserves address space up front; where that is not
            // allowed (e.g. `ulimit -v`), run on the on-demand allocator.
            Engine::new(&engine_config(&config, true))
                .or_else(|_| Engine::new(&engine_config(&config, false)))?
        } else {
            Engine::new(&engine_config(&config, false))?
        };
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        let cache = cache::Cache::new(&engine, config.cache_dir.clone())?;

        let tick = config.epoch_tick.max(Duration::from_millis(1));
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("duplex-plugin-epoch".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    match weak.upgrade() {
                        Some(e) => e.increment_epoch(),
                        None => break,
                    }
                }
            })?;
        Ok(PluginHost {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                tick,
                stop,
            }),
        })
    }

    /// Verifies, compiles (or loads from cache), links and describes a plugin.
    pub fn load(&self, spec: &PluginSpec) -> Result<LoadedPlugin, PluginError> {
        let name = spec.name.clone();
        let bytes = std::fs::read(&spec.path).map_err(|source| PluginError::Unreadable {
            name: name.clone(),
            path: spec.path.clone(),
            source,
        })?;
        if !is_sha256_hex(&spec.sha256) {
            return Err(PluginError::BadDigest {
                name,
                digest: spec.sha256.clone(),
            });
        }
        let actual = sha256_hex(&bytes);
        let expected = spec.sha256.to_ascii_lowercase();
        if actual != expected {
            return Err(PluginError::DigestMismatch {
                name,
                path: spec.path.clone(),
                expected,
                actual,
            });
        }
        let s = &self.shared;
        let (component, cache_status) =
            s.cache
                .load(&s.engine, &actual, &bytes)
                .map_err(|e| PluginError::Invalid {
                    name: name.clone(),
                    path: spec.path.clone(),
                    message: format!("{e:#}"),
                })?;
        let pre = s
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| PluginError::Incompatible {
                name: name.clone(),
                message: format!("{e:#}"),
            })?;
        let storage = match &spec.capabilities.storage_dir {
            Some(dir) => {
                Some(
                    storage::FileStore::open(dir).map_err(|e| PluginError::Capability {
                        name: name.clone(),
                        capability: "storage",
                        message: format!("{}: {e}", dir.display()),
                    })?,
                )
            }
            None => None,
        };
        for d in &spec.capabilities.dirs {
            if !d.host.is_dir() {
                return Err(PluginError::Capability {
                    name: name.clone(),
                    capability: "dirs",
                    message: format!("{} is not a directory", d.host.display()),
                });
            }
        }
        let needs_wasi = component
            .component_type()
            .imports(&s.engine)
            .any(|(name, _)| name.starts_with("wasi:"));
        let mut plugin = LoadedPlugin {
            inner: Arc::new(Inner {
                needs_wasi,
                host: self.shared.clone(),
                pre,
                name: name.as_str().into(),
                sha256: actual,
                spec: spec.clone(),
                storage,
                cache_status,
                info: None,
            }),
        };
        let info = plugin
            .describe()
            .map_err(|source| PluginError::Describe {
                name: name.clone(),
                source: Box::new(source),
            })?
            .value;
        Arc::get_mut(&mut plugin.inner)
            .expect("not shared yet")
            .info = Some(info);
        Ok(plugin)
    }

    /// The engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Whether a component with this digest is in the precompile cache (so
    /// loading it takes milliseconds, not seconds of compiling).
    pub fn is_cached(&self, sha256: &str) -> bool {
        self.cache_entry(&sha256.to_ascii_lowercase())
            .is_some_and(|p| p.is_file())
    }

    /// Where the precompiled artifact of a component with this digest is cached.
    pub fn cache_entry(&self, sha256: &str) -> Option<std::path::PathBuf> {
        self.shared.cache.entry_path(sha256)
    }

    /// Compiles a component without caching (for benchmarks).
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        Component::new(&self.shared.engine, bytes).map_err(|e| PluginError::Host(format!("{e:#}")))
    }
}

/// A verified, compiled, linked plugin. `Clone + Send + Sync`; every call runs
/// in a fresh instance.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<Inner>,
}

struct Inner {
    host: Arc<Shared>,
    pre: PluginPre<HostState>,
    name: Arc<str>,
    sha256: String,
    spec: PluginSpec,
    storage: Option<storage::FileStore>,
    cache_status: CacheStatus,
    info: Option<PluginInfo>,
    /// The component imports WASI interfaces.
    needs_wasi: bool,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .finish_non_exhaustive()
    }
}

/// Whether a call's value counts as a failure (for capability-denial reporting).
trait Failure {
    fn failure(&self) -> Option<String>;
}

impl Failure for PluginInfo {
    fn failure(&self) -> Option<String> {
        None
    }
}

impl Failure for CheckResult {
    fn failure(&self) -> Option<String> {
        (self.verdict != Verdict::Pass).then(|| self.message.clone())
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

impl LoadedPlugin {
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The verified sha256 of the component file.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }

    pub fn spec(&self) -> &PluginSpec {
        &self.inner.spec
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.inner.cache_status
    }

    /// The description validated at load time.
    pub fn info(&self) -> &PluginInfo {
        self.inner.info.as_ref().expect("described at load")
    }

    /// Asks the plugin to describe itself again (validated).
    pub fn describe(&self) -> Result<CallOutcome<PluginInfo>, CallError> {
        self.call(
            "describe",
            |p, s| p.call_describe(s),
            |i| bindings::plugin_info(i).map_err(Bad::Invalid),
        )
    }

    /// Runs a readiness/verification check the plugin describes.
    pub fn check(
        &self,
        ctx: &CallContext,
        name: &str,
    ) -> Result<CallOutcome<CheckResult>, CallError> {
        let call = format!("check `{name}`");
        if self
            .inner
            .info
            .as_ref()
            .is_some_and(|i| i.check(name).is_none())
        {
            return Err(self.not_provided(&call, format!("the plugin describes no check `{name}`")));
        }
        let wctx = bindings::context(ctx);
        self.call(
            &call,
            |p, s| p.call_check(s, &wctx, name),
            |r| match r {
                Ok(c) => Ok(bindings::check_result(c)),
                Err(m) => Err(Bad::Plugin(m)),
            },
        )
    }

    /// One step of a hardware operation.
    pub fn operate(
        &self,
        ctx: &CallContext,
        op: HardwareOp,
    ) -> Result<CallOutcome<Progress>, CallError> {
        let call = format!("operation `{op}`");
        if self.info().operation(op).is_none() {
            return Err(
                self.not_provided(&call, format!("the plugin describes no operation `{op}`"))
            );
        }
        let wctx = bindings::context(ctx);
        self.call(
            &call,
            |p, s| p.call_operate(s, &wctx, bindings::op_to_wit(op)),
            |r| bindings::progress(r).map_err(Bad::Invalid),
        )
    }

    /// One step of installing an artifact on the Upgrade Side.
    pub fn install(
        &self,
        ctx: &CallContext,
        artifact: &Artifact,
    ) -> Result<CallOutcome<Progress>, CallError> {
        let call = format!("install of `{}` {}", artifact.name, artifact.version);
        if self.info().installers.is_empty() {
            return Err(self.not_provided(&call, "the plugin describes no installer".into()));
        }
        let wctx = bindings::context(ctx);
        let wart = bindings::artifact(artifact);
        self.call(
            &call,
            |p, s| p.call_install(s, &wctx, &wart),
            |r| bindings::progress(r).map_err(Bad::Invalid),
        )
    }

    /// The partner side's health.
    pub fn partner(&self, ctx: &CallContext) -> Result<CallOutcome<PartnerState>, CallError> {
        let call = "partner-state report";
        if !self.info().reports_partner {
            return Err(
                self.not_provided(call, "the plugin does not report the partner state".into())
            );
        }
        let wctx = bindings::context(ctx);
        self.call(
            call,
            |p, s| p.call_partner(s, &wctx),
            |r| match r {
                Ok(p) => Ok(bindings::partner(p)),
                Err(m) => Err(Bad::Plugin(m)),
            },
        )
    }

    fn not_provided(&self, call: &str, message: String) -> CallError {
        CallError::NotProvided {
            plugin: self.name().into(),
            call: call.into(),
            message,
        }
    }

    fn new_state(&self) -> wasmtime::Result<HostState> {
        let limits = &self.inner.spec.limits;
        // Building a WASI context costs about as much as the rest of a call:
        // only components that import WASI get one up front.
        let wasi = if self.inner.needs_wasi {
            Some(state::Wasi::new(&self.inner.spec.capabilities, limits)?)
        } else {
            None
        };
        Ok(HostState::new(
            self.inner.name.clone(),
            limits,
            self.inner.storage.clone(),
            wasi,
        ))
    }

    /// One sandboxed call: fresh store and instance, limits, classification of
    /// whatever went wrong.
    fn call<R: OutputSize, T: Failure>(
        &self,
        call: &str,
        run: impl FnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<R>,
        convert: impl FnOnce(R) -> Result<T, Bad>,
    ) -> Result<CallOutcome<T>, CallError> {
        let start = Instant::now();
        let limits = self.inner.spec.limits;
        let plugin: String = self.name().into();
        let host_err = |message: String| CallError::Host {
            plugin: plugin.clone(),
            call: call.into(),
            message,
        };
        let state = self.new_state().map_err(|e| host_err(format!("{e:#}")))?;
        let mut store = Store::new(&self.inner.host.engine, state);
        store.limiter(|s| &mut s.limiter);
        let tick = self.inner.host.tick.as_nanos().max(1);
        let ticks = limits.timeout.as_nanos().div_ceil(tick) + 1;
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();

        let mut instantiated = false;
        let result = self.inner.pre.instantiate(&mut store).and_then(|instance| {
            instantiated = true;
            run(&instance, &mut store)
        });
        let mut state = store.into_data();
        if let Some(wasi) = state.wasi.take() {
            for (pipe, source, level) in [
                (&wasi.stdout, LogSource::Stdout, LogLevel::Info),
                (&wasi.stderr, LogSource::Stderr, LogLevel::Warn),
            ] {
                let text = pipe.contents();
                for line in String::from_utf8_lossy(&text)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                {
                    state.log.push(level, source, line);
                }
            }
        }
        let denied = state.denied.first().copied();
        let last_error = state
            .log
            .lines
            .iter()
            .rev()
            .find(|l| l.level == LogLevel::Error && l.source != LogSource::Host)
            .map(|l| l.message.clone());
        let progress = state.progress.take();
        let exceeded = state.limiter.exceeded;
        let host_deadline_hit = state.host_deadline_hit;
        let logs = state.log.finish();

        let e = |kind: fn(String, String, String) -> CallError, message: String| {
            kind(plugin.clone(), call.into(), message)
        };
        let denied_err = |message: String| CallError::CapabilityDenied {
            plugin: plugin.clone(),
            call: call.into(),
            capability: denied.unwrap_or_default().into(),
            message,
        };
        let value = match result {
            Ok(v) => v,
            Err(err) => {
                return Err(if let Some(requested) = exceeded {
                    CallError::MemoryLimit {
                        plugin,
                        call: call.into(),
                        limit: limits.memory_bytes,
                        requested,
                    }
                } else if host_deadline_hit
                    || matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt))
                {
                    CallError::Timeout {
                        plugin,
                        call: call.into(),
                        limit: limits.timeout,
                    }
                } else if matches!(err.downcast_ref::<Trap>(), Some(Trap::StackOverflow)) {
                    CallError::StackOverflow {
                        plugin,
                        call: call.into(),
                    }
                } else if denied.is_some() {
                    denied_err(format!("then it trapped: {}", root_message(&err)))
                } else if err.downcast_ref::<Trap>().is_some() {
                    CallError::Trap {
                        plugin,
                        call: call.into(),
                        message: root_message(&err),
                        plugin_said: last_error,
                    }
                } else if !instantiated {
                    // Not a trap, before the plugin ran: the host could not
                    // provide the instance (e.g. the instance pool is full).
                    host_err(format!("cannot instantiate the plugin: {err:#}"))
                } else {
                    // Not a trap: the canonical ABI refused what the plugin
                    // returned (bad pointer, invalid UTF-8, unknown case…).
                    e(
                        |plugin, call, message| CallError::InvalidOutput {
                            plugin,
                            call,
                            message,
                        },
                        format!("{err:#}"),
                    )
                });
            }
        };
        let size = value.output_size();
        if size > limits.max_output_bytes {
            return Err(CallError::OutputTooLarge {
                plugin,
                call: call.into(),
                size,
                limit: limits.max_output_bytes,
            });
        }
        let value = match convert(value) {
            Ok(v) => v,
            Err(Bad::Plugin(message)) if denied.is_some() => return Err(denied_err(message)),
            Err(Bad::Plugin(message)) => {
                return Err(e(
                    |plugin, call, message| CallError::Plugin {
                        plugin,
                        call,
                        message,
                    },
                    message,
                ));
            }
            Err(Bad::Invalid(message)) => {
                return Err(e(
                    |plugin, call, message| CallError::InvalidOutput {
                        plugin,
                        call,
                        message,
                    },
                    message,
                ));
            }
        };
        if denied.is_some()
            && let Some(message) = value.failure()
        {
            return Err(denied_err(message));
        }
        Ok(CallOutcome {
            value,
            logs,
            progress,
            elapsed: start.elapsed(),
        })
    }
}

/// Why a returned value is not accepted.
enum Bad {
    /// The plugin returned its own error.
    Plugin(String),
    /// The value breaks the contract.
    Invalid(String),
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
