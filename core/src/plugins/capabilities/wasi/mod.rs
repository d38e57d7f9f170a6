//! WASI preview 2: environment variables, directories and clocks, as granted.
//!
//! Grant: `env`, `dirs` (and `clocks`, which the policy does not offer yet).
//! Wiring: all of wasmtime-wasi's synchronous preview-2 interfaces, so
//! components built for WASI (componentize-py, jco, wasm32-wasip2) link,
//! with the interfaces that can wait shadowed by versions bounded by the
//! call's guard ([`bounded`], [`bounded_fs`]). Leaving clocks and polls
//! unlinked for plugins without a grant would not do: such components
//! import them whether they use them or not (a componentize-py plugin
//! imports every WASI interface) and must keep loading, and even a frozen
//! clock's `subscribe-duration` makes a real timer to wait on. Bounding the
//! waits keeps every such plugin working and no wait past its deadline. Nothing is reachable without
//! a grant: no environment, no preopened directory, clocks frozen at 0, no
//! network (sockets and name lookups are refused), stdin empty. Per call: a
//! WASI context with exactly the grant, stdout and stderr captured into the
//! call's log within its caps. Building a context costs about as much as the
//! rest of a call, so only components that import WASI get one up front.

pub(crate) mod bounded;
pub(crate) mod bounded_fs;
pub(crate) mod pipe;

use super::{Capability, GrantProblem, LoadFailure, Parts, PluginFacts, ProtectedPath};
use crate::plugins::call::{CallScope, HostState};
use crate::plugins::spec::Limits;
use crate::plugins::types::{LogLevel, LogSource};
use bounded::{Bounded, BoundedIo};
use bounded_fs::BoundedFs;
use pipe::CappedPipe;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::filesystem::{WasiFilesystemCtxView, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::sync as wasi_sync;
use wasmtime_wasi::{
    FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// The WASI grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasiGrant {
    /// Environment variables the plugin sees.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Host directories the plugin can open.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Real wall and monotonic clocks (otherwise both read 0).
    #[serde(default)]
    pub clocks: bool,
}

/// A host directory made visible to the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirGrant {
    pub host: PathBuf,
    /// The path the plugin sees (e.g. `/data`).
    pub guest: String,
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

pub(crate) struct Wasi;

pub(crate) struct WasiLoaded {
    /// The component imports some WASI interface.
    imports_wasi: bool,
    grant: WasiGrant,
}

/// One call's WASI state: exactly the granted capabilities.
pub(crate) struct WasiCall {
    ctx: WasiCtx,
    table: ResourceTable,
    stdout: CappedPipe,
    stderr: CappedPipe,
}

impl WasiCall {
    fn new(grant: &WasiGrant, limits: &Limits) -> wasmtime::Result<WasiCall> {
        let cap = usize::try_from(limits.max_log_bytes).unwrap_or(usize::MAX);
        let stdout = CappedPipe::new(cap);
        let stderr = CappedPipe::new(cap);
        let mut b = WasiCtxBuilder::new();
        b.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !grant.clocks {
            b.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        for (k, v) in &grant.env {
            b.env(k, v);
        }
        for d in &grant.dirs {
            let perms = if d.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&d.host, &d.guest, perms)?;
        }
        Ok(WasiCall {
            ctx: b.build(),
            table: ResourceTable::new(),
            stdout,
            stderr,
        })
    }
}

impl Capability for Wasi {
    const NAME: &'static str = "wasi";
    type Grant = WasiGrant;
    type Loaded = WasiLoaded;
    /// Built at the start of the call for components that import WASI, on
    /// first use otherwise.
    type Call = Option<WasiCall>;

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        wasmtime_wasi::p2::add_to_linker_sync(linker)?;
        // The interfaces whose functions can wait, again, bounded.
        fn io(state: &mut HostState) -> Bounded<'_, &mut ResourceTable> {
            let (scope, wasi) = Parts::<Wasi>::parts(state);
            let wasi = call(wasi, &scope.limits);
            Bounded {
                guard: &mut scope.guard,
                inner: &mut wasi.table,
            }
        }
        fn fs(state: &mut HostState) -> Bounded<'_, WasiFilesystemCtxView<'_>> {
            let (scope, wasi) = Parts::<Wasi>::parts(state);
            Bounded {
                guard: &mut scope.guard,
                inner: call(wasi, &scope.limits).filesystem(),
            }
        }
        linker.allow_shadowing(true);
        wasi_sync::io::poll::add_to_linker::<HostState, BoundedIo>(linker, io)?;
        wasi_sync::io::streams::add_to_linker::<HostState, BoundedIo>(linker, io)?;
        wasi_sync::filesystem::types::add_to_linker::<HostState, BoundedFs>(linker, fs)?;
        linker.allow_shadowing(false);
        Ok(())
    }

    fn check(grant: &WasiGrant, plugin: &PluginFacts<'_>) -> Vec<GrantProblem> {
        let mut problems = Vec::new();
        // A grant the plugin has no import for does nothing: say so (SDK
        // plugins, built for wasm32-unknown-unknown, import no WASI at all).
        for (granted, what, at, interface) in [
            (
                !grant.env.is_empty(),
                "env",
                "/capabilities/env",
                "wasi:cli/environment",
            ),
            (
                !grant.dirs.is_empty(),
                "dirs",
                "/capabilities/dirs",
                "wasi:filesystem/preopens",
            ),
            (grant.clocks, "clocks", "/capabilities", "wasi:clocks"),
        ] {
            if granted && !plugin.imports(interface) {
                problems.push(GrantProblem {
                    capability: "wasi",
                    at: at.into(),
                    key: true,
                    message: format!(
                        "plugin `{}` cannot use `{what}`: it does not import {interface} ({}); remove the grant, or build the plugin for WASI",
                        plugin.name,
                        if plugin.imports.iter().any(|i| i.starts_with("wasi:")) {
                            "it imports other WASI interfaces"
                        } else {
                            "it imports no WASI at all, like plugins built with the SDK for wasm32-unknown-unknown"
                        }
                    ),
                });
            }
        }
        for (i, d) in grant.dirs.iter().enumerate() {
            let at = format!("/capabilities/dirs/{i}/host");
            if !d.host.is_dir() {
                problems.push(GrantProblem {
                    capability: "wasi",
                    at,
                    key: false,
                    message: format!("{} is not a directory", d.host.display()),
                });
                continue;
            }
            if let Some(message) = reaches_protected(&d.host, d.read_only, plugin.protected) {
                problems.push(GrantProblem {
                    capability: "wasi",
                    at,
                    key: false,
                    message,
                });
            }
        }
        problems
    }

    fn load(grant: &WasiGrant, plugin: &PluginFacts<'_>) -> Result<WasiLoaded, LoadFailure> {
        Ok(WasiLoaded {
            imports_wasi: plugin.imports.iter().any(|i| i.starts_with("wasi:")),
            grant: grant.clone(),
        })
    }

    fn start(loaded: Option<&WasiLoaded>, scope: &mut CallScope) -> Option<WasiCall> {
        let loaded = loaded.filter(|l| l.imports_wasi)?;
        match WasiCall::new(&loaded.grant, &scope.limits) {
            Ok(call) => Some(call),
            Err(e) => {
                // Preopens were checked at load: a granted directory that
                // cannot be opened now is the host's problem.
                scope.host_fault("dirs", format!("cannot open a granted directory: {e:#}"));
                None
            }
        }
    }

    fn finish(call: Option<WasiCall>, scope: &mut CallScope) {
        let Some(call) = call else { return };
        for (pipe, source, level, name) in [
            (&call.stdout, LogSource::Stdout, LogLevel::Info, "stdout"),
            (&call.stderr, LogSource::Stderr, LogLevel::Warn, "stderr"),
        ] {
            let (text, dropped) = pipe.take();
            for line in String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                scope.log.push(level, source, line);
            }
            if dropped > 0 {
                scope.log.note(
                    LogLevel::Warn,
                    &format!(
                        "{dropped} bytes of {name} dropped: over the limit of {} bytes per call",
                        scope.limits.max_log_bytes
                    ),
                );
            }
        }
    }
}

/// Why a directory grant reaches something no plugin may have: the state
/// dir or the plugin cache (at all), the policy's plugin and artifact files
/// (writably). Paths are compared canonicalised (symlinks resolved; a path
/// that does not exist yet by its deepest existing parent).
pub(crate) fn reaches_protected(
    host: &Path,
    read_only: bool,
    protected: &[ProtectedPath],
) -> Option<String> {
    let granted = canonical(host);
    for p in protected {
        if p.readable && read_only {
            continue;
        }
        let path = canonical(&p.path);
        let how = if granted == path {
            "which is"
        } else if path.starts_with(&granted) {
            "which holds"
        } else if granted.starts_with(&path) {
            "which is inside"
        } else {
            continue;
        };
        let access = if read_only { "read" } else { "read-write" };
        let why = if p.readable {
            "a plugin able to change it could replace what the policy pins; grant it read-only (`readOnly: true`) or a directory without it"
        } else {
            "a plugin must not reach the runner's journal, lock, plugin cache or other plugins' storage; grant a directory outside it"
        };
        return Some(format!(
            "grants {access} access to {}, {how} {} ({}): {why}",
            host.display(),
            p.what,
            p.path.display()
        ));
    }
    None
}

/// `path` with symlinks resolved, as far as it exists.
fn canonical(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        if let Ok(mut real) = at.canonicalize() {
            real.extend(missing.iter().rev());
            return real;
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                at = if parent.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    parent
                };
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// The call's WASI state, built with nothing granted if the call did not
/// get one up front (a component without WASI imports never gets here; the
/// plugin's `describe` gets no grant).
fn call<'a>(slot: &'a mut Option<WasiCall>, limits: &Limits) -> &'a mut WasiCall {
    slot.get_or_insert_with(|| {
        WasiCall::new(&WasiGrant::default(), limits).expect("no preopens to fail")
    })
}

impl WasiView for WasiCall {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (scope, wasi) = Parts::<Wasi>::parts(self);
        call(wasi, &scope.limits).ctx()
    }
}

/// The clock a plugin sees unless the policy grants real clocks: always 0.
pub(crate) struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
