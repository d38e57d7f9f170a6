//! The plugin host: runs WebAssembly components written against
//! `plugin-sdk/wit/plugin.wit` (`duplex:plugin@0.1.0`) in a sandbox.
//!
//! - [`PluginHost::load`] verifies the file against the sha256 the policy pins,
//!   compiles it once (or takes it from the on-disk cache of precompiled
//!   artifacts), links it, checks and sets up its grants, and asks it to
//!   `describe` itself (validated; `describe` gets no capability, so what
//!   it returned is recorded in the cache by digest and limits, and a warm
//!   load takes it from there).
//! - Every call on a [`LoadedPlugin`] gets a fresh instance from an
//!   `InstancePre`, its own store, a memory cap, a deadline (epoch
//!   interruption in wasm code; every host call, WASI included, bounded by
//!   the call's remaining time), a cancellation flag, and caps on returned
//!   data and log volume ([`call`]). Whatever the plugin does, the call ends
//!   with `Ok(CallOutcome)` or a [`CallError`] saying why; the runner and
//!   other plugins are unaffected.
//! - Capabilities ([`Capabilities`], one module each under [`capabilities`])
//!   are nothing by default: the `storage` interface refuses with
//!   "capability `storage` not granted …", WASI preview 2 is linked with no
//!   env, no dirs, frozen clocks, no network.
//!
//! The API is synchronous; the engine calls it from `spawn_blocking`.
//! Internally everything runs on `wasmtime::Result`; errors are converted to
//! [`PluginError`] / [`CallError`] at this module's edge.

mod bindings;
mod cache;
mod call;
pub mod capabilities;
pub mod code_limits;
mod digest;
mod error;
mod file_store;
mod output;
pub mod params;
mod sandbox;
pub mod schema_limits;
pub mod signature;
mod source;
mod spec;
mod table;
mod types;

pub use cache::CacheStatus;
pub use capabilities::exec::{MAX_COMMAND_TIMEOUT, MAX_OUTPUT_BYTES, MAX_RUNNING_COMMANDS};
pub use capabilities::http::{
    MAX_BODY_BYTES as MAX_HTTP_BODY_BYTES, MAX_REDIRECTS as MAX_HTTP_REDIRECTS,
};
pub use capabilities::{
    ArtifactsGrant, Capabilities, DirGrant, ExecGrant, FileRoot, FilesGrant, GrantProblem,
    HttpGrant, HttpOrigin, KilledCommand, ProgramGrant, ProtectedPath, StagedArtifact,
    StorageGrant, WasiGrant,
};
pub use digest::{is_sha256_hex, sha256_hex};
pub use error::{CallError, PluginError};
pub use file_store::{MAX_KEY_BYTES, MAX_KEYS, MAX_VALUE_BYTES};
pub use output::{
    ENTRY_OVERHEAD_BYTES, MAX_LINE_BYTES, MAX_LOG_LINES, MAX_OBSERVATION_BYTES, MAX_OBSERVATIONS,
    MAX_PROGRESS_REPORTS,
};
pub use sandbox::{KEEP_RESIDENT_BYTES, MAX_MEMORIES, MAX_TABLE_ELEMENTS};
pub use source::{MAX_PLUGIN_BYTES, SourceError, read_plugin_file};
pub use spec::{HostConfig, Limits, ParamSchemas, PluginSpec, PoolTuning};
pub use types::*;

use bindings::{Linked, w};
use call::{Bad, Callee, Failure, HostState};
use capabilities::{LoadedCapabilities, PluginFacts};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{Component, Instance, Linker};
use wasmtime::{Engine, Store};

/// The WIT package every plugin is written against.
pub const CONTRACT: &str = "duplex:plugin@0.1.0";

/// Compiles, caches and links plugins. Cheap to share (`Clone`); one per runner.
#[derive(Clone)]
pub struct PluginHost {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Engine,
    max_memory_bytes: u64,
    linker: Linker<HostState>,
    cache: cache::Cache,
    /// Plugins pulled from OCI registries, inside the cache dir (`oci/`).
    oci: Option<duplex_oci::Store>,
    /// Components loaded in this process, by digest (see `table.rs`).
    loaded: table::Table<Resident>,
    protected: Vec<ProtectedPath>,
    stop: Arc<AtomicBool>,
}

/// What the host keeps of a loaded component: it depends on the bytes
/// alone, never on the policy that loaded them.
#[derive(Clone)]
struct Resident {
    pre: Linked<HostState>,
    imports: Vec<String>,
    /// What `describe` returned, under these limits.
    described: Option<(Limits, Arc<w::PluginInfo>)>,
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
            Engine::new(&sandbox::engine_config(&config, true))
                .or_else(|_| Engine::new(&sandbox::engine_config(&config, false)))?
        } else {
            Engine::new(&sandbox::engine_config(&config, false))?
        };
        let mut linker = Linker::new(&engine);
        capabilities::link(&mut linker)?;
        let cache = cache::Cache::new(&engine, config.cache_dir.clone())?;
        let mut protected = Vec::new();
        if let Some(dir) = &config.cache_dir {
            protected.push(ProtectedPath {
                path: dir.clone(),
                what: "the plugin cache".into(),
                readable: false,
            });
        }

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
                max_memory_bytes: config.max_memory_bytes,
                linker,
                cache,
                oci: config
                    .cache_dir
                    .as_ref()
                    .map(|dir| duplex_oci::Store::new(dir.join("oci"))),
                loaded: table::Table::new(config.loaded_components),
                protected,
                stop,
            }),
        })
    }

    /// Verifies, compiles (or loads from cache), links, sets up the grants of
    /// and describes a plugin.
    pub fn load(&self, spec: &PluginSpec) -> Result<LoadedPlugin, PluginError> {
        self.open(spec, &[], Open::Load)
    }

    /// [`PluginHost::load`], refusing grants that reach `protected` paths
    /// (the state dir, the policy's plugin and artifact files) besides the
    /// plugin cache, which is always protected.
    pub fn load_guarded(
        &self,
        spec: &PluginSpec,
        protected: &[ProtectedPath],
    ) -> Result<LoadedPlugin, PluginError> {
        self.open(spec, protected, Open::Load)
    }

    /// Everything [`PluginHost::load_guarded`] checks, without setting up
    /// any grant (no storage directory is created): for `duplex validate`.
    pub fn validate(
        &self,
        spec: &PluginSpec,
        protected: &[ProtectedPath],
    ) -> Result<LoadedPlugin, PluginError> {
        self.open(spec, protected, Open::Validate)
    }

    /// The component on its own, for `duplex plugin inspect`: verified,
    /// compiled, linked and described, with no grant checked or set up (no
    /// policy says what it is granted; [`LoadedPlugin::imports`] shows what
    /// it would need).
    pub fn inspect(&self, spec: &PluginSpec) -> Result<LoadedPlugin, PluginError> {
        self.open(spec, &[], Open::Inspect)
    }

    /// The component an `oci://` source names (pinned by its manifest
    /// digest): from the OCI store inside the plugin cache, or pulled from
    /// its registry into it, verified (see the `duplex_oci` crate). A
    /// reference already pulled never touches the network.
    pub fn pull_oci(&self, name: &str, source: &str) -> Result<duplex_oci::Pulled, PluginError> {
        let oci = |source| PluginError::Oci {
            name: name.to_string(),
            source: Box::new(source),
        };
        let reference = duplex_oci::Reference::parse_pinned(source).map_err(|e| oci(e.into()))?;
        let store = self
            .shared
            .oci
            .as_ref()
            .ok_or_else(|| oci(duplex_oci::Error::NoCache))?;
        store.pull(&reference, MAX_PLUGIN_BYTES).map_err(oci)
    }

    /// The largest memory limit this host's plugins may have (each memory
    /// reserves that much address space).
    pub fn max_memory_bytes(&self) -> u64 {
        self.shared.max_memory_bytes
    }

    fn open(
        &self,
        spec: &PluginSpec,
        extra_protected: &[ProtectedPath],
        mode: Open,
    ) -> Result<LoadedPlugin, PluginError> {
        let name = spec.name.clone();
        let bytes = read_plugin_file(&spec.path).map_err(|source| PluginError::Unreadable {
            name: name.clone(),
            path: spec.path.clone(),
            source,
        })?;
        // The policy's rule for a pinned digest, not a laxer one of our own.
        if let Err(message) = spec.sha256.parse::<crate::policy::Sha256>() {
            return Err(PluginError::BadDigest { name, message });
        }
        let actual = sha256_hex(&bytes);
        let expected = spec.sha256.clone();
        if actual != expected {
            return Err(PluginError::DigestMismatch {
                name,
                path: spec.path.clone(),
                expected,
                actual,
            });
        }
        let s = &self.shared;
        if spec.limits.memory_bytes > s.max_memory_bytes {
            return Err(PluginError::Limits {
                name,
                message: format!(
                    "its memory limit of {} is more than this plugin host reserves per memory ({}): give the host the largest limit of the plugins it runs (HostConfig::max_memory_bytes)",
                    error::fmt_bytes(spec.limits.memory_bytes),
                    error::fmt_bytes(s.max_memory_bytes)
                ),
            });
        }
        let (pre, imported, cache_status, known) = match s.loaded.get(&actual) {
            Some(resident) => (
                resident.pre,
                resident.imports,
                CacheStatus::Memory,
                resident.described,
            ),
            None => {
                let (pre, imported, status) = self.link(spec, &bytes, &actual)?;
                s.loaded.insert(
                    &actual,
                    Resident {
                        pre: pre.clone(),
                        imports: imported.clone(),
                        described: None,
                    },
                );
                (pre, imported, status, None)
            }
        };
        let imports: BTreeSet<String> = imported
            .iter()
            .map(|import| unversioned(import).to_string())
            .collect();
        let protected: Vec<ProtectedPath> =
            s.protected.iter().chain(extra_protected).cloned().collect();
        let facts = PluginFacts {
            name: &name,
            imports: &imports,
            protected: &protected,
        };
        let problems = match mode {
            Open::Inspect => Vec::new(),
            Open::Load | Open::Validate => capabilities::check(&spec.capabilities, &facts),
        };
        if !problems.is_empty() {
            return Err(PluginError::Grant { name, problems });
        }
        let granted = if mode == Open::Load {
            Some(capabilities::load(&spec.capabilities, &facts).map_err(|f| {
                PluginError::Capability {
                    name: name.clone(),
                    capability: f.capability,
                    message: f.message,
                }
            })?)
        } else {
            None
        };
        let mut plugin = LoadedPlugin {
            inner: Arc::new(Inner {
                host: self.shared.clone(),
                pre,
                name: name.as_str().into(),
                sha256: actual,
                spec: spec.clone(),
                granted,
                cache_status,
                info: None,
                imports: imported,
                bytes,
            }),
        };
        let info = plugin
            .described(&s.cache, &s.loaded, known)
            .map_err(|source| PluginError::Describe {
                name: name.clone(),
                source: Box::new(source),
            })?;
        Arc::get_mut(&mut plugin.inner)
            .expect("not shared yet")
            .info = Some(info);
        Ok(plugin)
    }

    /// Compiles the verified `bytes` (or takes them from the on-disk
    /// cache), links them and lists their imports.
    fn link(
        &self,
        spec: &PluginSpec,
        bytes: &[u8],
        digest: &str,
    ) -> Result<(Linked<HostState>, Vec<String>, CacheStatus), PluginError> {
        let s = &self.shared;
        let name = &spec.name;
        let compile = || {
            // Text (WAT) plugins, which wasmtime also takes, are checked as
            // the binary they stand for.
            let binary = wat::parse_bytes(bytes)?;
            code_limits::check(&binary).map_err(wasmtime::Error::new)?;
            s.engine.precompile_component(&binary)
        };
        let (component, cache_status) = s.cache.load(&s.engine, digest, compile).map_err(|e| {
            match e.downcast::<code_limits::OverLimit>() {
                Ok(code_limits::OverLimit::Compile(message)) => PluginError::OverCompileLimits {
                    name: name.clone(),
                    path: spec.path.clone(),
                    message,
                },
                Ok(code_limits::OverLimit::Sandbox(message)) => PluginError::OverSandboxLimits {
                    name: name.clone(),
                    path: spec.path.clone(),
                    message,
                },
                Err(e) => PluginError::Invalid {
                    name: name.clone(),
                    path: spec.path.clone(),
                    message: format!("{e:#}"),
                },
            }
        })?;
        let pre = s
            .linker
            .instantiate_pre(&component)
            .and_then(Linked::new)
            .map_err(|e| PluginError::Incompatible {
                name: name.clone(),
                message: format!("{e:#}"),
            })?;
        let imported: Vec<String> = component
            .component_type()
            .imports(&s.engine)
            .map(|(import, _)| import.to_string())
            .collect();
        Ok((pre, imported, cache_status))
    }

    /// How many components this host holds loaded (at most
    /// [`HostConfig::loaded_components`]).
    pub fn loaded_components(&self) -> usize {
        self.shared.loaded.len()
    }

    /// The engine (for benchmarks and tools).
    pub fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// Whether a component with this digest is in the precompile cache (so
    /// loading it takes milliseconds, not seconds of compiling).
    pub fn is_cached(&self, sha256: &str) -> bool {
        let sha256 = sha256.to_ascii_lowercase();
        self.shared.loaded.contains(&sha256)
            || self.cache_entry(&sha256).is_some_and(|p| p.is_file())
    }

    /// Where the precompiled artifact of a component with this digest is cached.
    pub fn cache_entry(&self, sha256: &str) -> Option<std::path::PathBuf> {
        self.shared.cache.entry_path(sha256)
    }

    /// Compiles a component without caching (for benchmarks), within the
    /// same static limits as [`PluginHost::load`].
    pub fn compile(&self, bytes: &[u8]) -> Result<Component, PluginError> {
        let binary = wat::parse_bytes(bytes).map_err(|e| PluginError::Host(e.to_string()))?;
        code_limits::check(&binary).map_err(|e| PluginError::Host(e.to_string()))?;
        Component::new(&self.shared.engine, &binary)
            .map_err(|e| PluginError::Host(format!("{e:#}")))
    }
}

/// `wasi:cli/environment@0.2.0` → `wasi:cli/environment`.
/// How far [`PluginHost::open`] goes with the grants.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    /// Checked and set up.
    Load,
    /// Checked only.
    Validate,
    /// Neither.
    Inspect,
}

fn unversioned(import: &str) -> &str {
    import.split_once('@').map_or(import, |(name, _)| name)
}

/// A verified, compiled, linked plugin. `Clone + Send + Sync`; every call runs
/// in a fresh instance.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<Inner>,
}

struct Inner {
    host: Arc<Shared>,
    pre: Linked<HostState>,
    name: Arc<str>,
    sha256: String,
    spec: PluginSpec,
    /// `None` when loaded by [`PluginHost::validate`]: calls get no capability.
    granted: Option<LoadedCapabilities>,
    cache_status: CacheStatus,
    info: Option<PluginInfo>,
    /// The interfaces the component imports, as it names them
    /// (`duplex:plugin/http@0.1.0`).
    imports: Vec<String>,
    /// The component file's bytes, as verified against the pin.
    bytes: Vec<u8>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.inner.name)
            .field("sha256", &self.inner.sha256)
            .finish_non_exhaustive()
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

    /// The bytes of the component file this plugin was loaded from, as
    /// they were verified against the pinned sha256 (a session's copy of
    /// the plugin is written from them: no second read or hash).
    pub fn component_bytes(&self) -> &[u8] {
        &self.inner.bytes
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_status(&self) -> CacheStatus {
        self.inner.cache_status
    }

    /// The description validated at load time.
    pub fn info(&self) -> &PluginInfo {
        self.inner.info.as_ref().expect("described at load")
    }

    /// The interfaces the component imports (`duplex:plugin/http@0.1.0`,
    /// `wasi:cli/environment@0.2.6`), in the component's order.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Asks the plugin to describe itself again (validated). `describe` must
    /// depend on nothing but the plugin: it gets no capability.
    pub fn describe(&self) -> Result<CallOutcome<PluginInfo>, CallError> {
        self.call(
            "describe",
            None,
            |i, s| bindings::call(i, s, &self.inner.pre.describe, ()),
            |i| bindings::plugin_info(i, self.inner.spec.param_schemas).map_err(Bad::Invalid),
        )
    }

    /// The validated description: what the plugin's `describe` returned
    /// under these limits, from the cache when the component's digest has
    /// a record there (`describe` gets no capability, so the component and
    /// the limits determine what it returns), else from a call.
    /// `known`: what the host's table holds for the component.
    fn described(
        &self,
        cache: &cache::Cache,
        table: &table::Table<Resident>,
        known: Option<(Limits, Arc<w::PluginInfo>)>,
    ) -> Result<PluginInfo, CallError> {
        let inner = &*self.inner;
        let limits = &inner.spec.limits;
        let from_table = known
            .filter(|(l, _)| l == limits)
            .map(|(_, raw)| (*raw).clone());
        let had = from_table.is_some();
        let raw = match from_table.or_else(|| cache.described(&inner.sha256, limits)) {
            Some(raw) => raw,
            None => {
                let raw: w::PluginInfo = self
                    .call(
                        "describe",
                        None,
                        |i, s| bindings::call(i, s, &inner.pre.describe, ()),
                        Ok,
                    )?
                    .value;
                cache.record_described(&inner.sha256, limits, &raw);
                raw
            }
        };
        if !had {
            let recorded = Arc::new(raw.clone());
            table.update(&inner.sha256, |r| r.described = Some((*limits, recorded)));
        }
        bindings::plugin_info(raw, inner.spec.param_schemas).map_err(|message| {
            CallError::InvalidOutput {
                plugin: self.name().into(),
                call: "describe".into(),
                message,
            }
        })
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
            Some(ctx),
            |i, s| {
                bindings::call::<_, Result<w::CheckResult, String>>(
                    i,
                    s,
                    &self.inner.pre.check,
                    (&wctx, name),
                )
            },
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
            Some(ctx),
            |i, s| {
                bindings::call::<_, w::Progress>(
                    i,
                    s,
                    &self.inner.pre.operate,
                    (&wctx, bindings::op_to_wit(op)),
                )
            },
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
            Some(ctx),
            |i, s| bindings::call::<_, w::Progress>(i, s, &self.inner.pre.install, (&wctx, &wart)),
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
            Some(ctx),
            |i, s| {
                bindings::call::<_, Result<w::PartnerState, String>>(
                    i,
                    s,
                    &self.inner.pre.partner,
                    (&wctx,),
                )
            },
            |r| match r {
                Ok(p) => Ok(bindings::partner(p)),
                Err(m) => Err(Bad::Plugin(m)),
            },
        )
    }

    /// Kills every command the plugin started that is still running (its
    /// process group; see the `exec` capability) and forgets exits not yet
    /// reported: the engine calls it when a request ends (done, failed,
    /// stopped). Returns what was killed, for the activity log.
    pub fn end_commands(&self, reason: &str) -> Vec<KilledCommand> {
        self.inner
            .granted
            .as_ref()
            .map(|g| g.end_commands(reason))
            .unwrap_or_default()
    }

    fn not_provided(&self, call: &str, message: String) -> CallError {
        CallError::NotProvided {
            plugin: self.name().into(),
            call: call.into(),
            message,
        }
    }

    /// One call; `ctx: None` is `describe`, which gets no capability.
    fn call<R: bindings::OutputSize, T: Failure>(
        &self,
        call: &str,
        ctx: Option<&CallContext>,
        invoke: impl FnOnce(&Instance, &mut Store<HostState>) -> wasmtime::Result<R>,
        convert: impl FnOnce(R) -> Result<T, Bad>,
    ) -> Result<CallOutcome<T>, CallError> {
        let inner = &*self.inner;
        let callee = Callee {
            engine: &inner.host.engine,
            pre: &inner.pre.pre,
            plugin: &inner.name,
            limits: inner.spec.limits,
            capabilities: ctx.and(inner.granted.as_ref()),
            cancel: ctx.and_then(CallContext::cancel_flag),
            context: ctx.cloned(),
            max_memory_bytes: inner.host.max_memory_bytes,
        };
        call::run(callee, call, invoke, convert)
    }
}
