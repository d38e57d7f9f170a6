//! The capability registry: everything a plugin can reach besides its own
//! memory, one module per capability.
//!
//! As Spin's *factors* do it, each capability declares in its own module:
//!
//! - its **grant**: the part of [`PluginSpec::capabilities`](super::PluginSpec)
//!   it reads (a field of [`Capabilities`]) and the checks of that grant at
//!   load time ([`Capability::check`]: can the plugin use it at all, does a
//!   path reach what must stay the runner's). Problems name their place in
//!   the policy's plugin entry, so `duplex validate` can show them there;
//! - its **wiring**: the imports it adds to the one linker every plugin is
//!   linked with ([`Capability::link`]);
//! - its **per-plugin state**, set up once at load from the grant (an open
//!   store, a checked list of directories), and its **per-call state**, built
//!   fresh for every call inside the call's store and folded into the call's
//!   record when it ends ([`Capability::start`], [`Capability::finish`]).
//!
//! Host calls that can block (storage I/O, WASI polls, stream and file
//! operations) run under the call's [`Guard`](super::call::Guard): they end
//! when the call's remaining time is up or its run is cancelled, whichever
//! comes first, so a plugin's deadline also holds inside host calls.
//!
//! The `registry!` invocation at the end of this file is the whole list.
//! Adding a capability (exec, http, files, …) is one new module implementing
//! [`Capability`] and one line there: the grant field, the per-plugin and
//! per-call state and the linker wiring all follow from it.

pub(crate) mod artifacts;
pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod host;
pub(crate) mod http;
pub(crate) mod storage;
pub(crate) mod wasi;

use super::call::{CallScope, HostState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use wasmtime::component::Linker;

pub use artifacts::{ArtifactsGrant, StagedArtifact};
pub use exec::{ExecGrant, KilledCommand, ProgramGrant};
pub use files::{FileRoot, FilesGrant};
pub use http::{HttpGrant, Origin as HttpOrigin};
pub use storage::StorageGrant;
pub use wasi::{DirGrant, WasiGrant};

/// One capability: grant, wiring, per-plugin and per-call state.
pub(crate) trait Capability {
    /// Its name in messages (`storage`, `wasi`).
    const NAME: &'static str;
    /// What the policy grants (a field of [`Capabilities`]).
    type Grant;
    /// Set up once per loaded plugin.
    type Loaded: Send + Sync + 'static;
    /// One call's state, in the call's store.
    type Call: Send + 'static;

    /// Adds the capability's imports to the shared linker (once per host).
    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()>;

    /// What is wrong with the grant for this plugin. Pure: creates nothing,
    /// so `duplex validate` runs it too.
    fn check(grant: &Self::Grant, plugin: &PluginFacts<'_>) -> Vec<GrantProblem>;

    /// Sets up what the grant gives (after `check` found nothing wrong).
    fn load(grant: &Self::Grant, plugin: &PluginFacts<'_>) -> Result<Self::Loaded, LoadFailure>;

    /// A call's state. `None`: the call gets nothing of the grant (the
    /// plugin's `describe`, which must depend on nothing but the plugin).
    fn start(loaded: Option<&Self::Loaded>, scope: &mut CallScope) -> Self::Call;

    /// Folds what the call left behind into its record (e.g. WASI stdout into
    /// the log).
    fn finish(call: Self::Call, scope: &mut CallScope) {
        let _ = (call, scope);
    }
}

/// What the grant checks know about the plugin being loaded.
pub(crate) struct PluginFacts<'a> {
    pub name: &'a str,
    /// Interfaces the component imports, without their version
    /// (`wasi:cli/environment`, `duplex:plugin/storage`).
    pub imports: &'a BTreeSet<String>,
    /// Paths no grant may reach.
    pub protected: &'a [ProtectedPath],
}

impl PluginFacts<'_> {
    /// Whether the component imports any interface of `package` (`wasi:io`)
    /// or exactly `interface` (`wasi:cli/environment`).
    pub fn imports(&self, prefix: &str) -> bool {
        self.imports.iter().any(|i| {
            i == prefix
                || i.strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// A path that belongs to the runner (or to the policy), which no plugin may
/// be granted: its state dir, its plugin cache, the policy's own plugin and
/// artifact files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtectedPath {
    pub path: PathBuf,
    /// What it is, for messages: "the state dir", "plugin `sim`'s file".
    pub what: String,
    /// Reading it is harmless (a plugin's or an artifact's file): only
    /// writable grants that reach it are refused.
    pub readable: bool,
}

/// Something wrong with a grant, placed in the policy's plugin entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantProblem {
    pub capability: &'static str,
    /// JSON pointer relative to the plugin's entry in the policy
    /// (`/capabilities/dirs/0/host`).
    pub at: String,
    /// The problem is the key at `at` (e.g. a whole `env:` block), not a value.
    pub key: bool,
    pub message: String,
}

/// Setting up a grant failed on the host's side (e.g. the storage directory
/// cannot be created).
#[derive(Debug)]
pub(crate) struct LoadFailure {
    pub capability: &'static str,
    pub message: String,
}

/// Generates, from the list of capabilities, the grant struct, the
/// per-plugin and per-call state and the functions that run every
/// capability's step in turn.
macro_rules! registry {
    ($($(#[$doc:meta])* $field:ident: $cap:ty => $grant:ty),* $(,)?) => {
        /// Authority granted to a plugin, one field per capability. Nothing
        /// by default: no storage, no environment, no files, frozen clocks,
        /// no network (WASI sockets are never granted; `http` reaches only
        /// the origins granted).
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Capabilities {
            $( $(#[$doc])* #[serde(default)] pub $field: $grant, )*
        }

        /// Every capability's state for one loaded plugin.
        pub(crate) struct LoadedCapabilities {
            $( $field: <$cap as Capability>::Loaded, )*
        }

        /// Every capability's state for one call.
        pub(crate) struct CallCapabilities {
            $( pub(crate) $field: <$cap as Capability>::Call, )*
        }

        $(
            impl Parts<$cap> for HostState {
                fn parts(&mut self) -> (&mut CallScope, &mut <$cap as Capability>::Call) {
                    (&mut self.scope, &mut self.capabilities.$field)
                }
            }
        )*

        /// Adds every capability's imports to the linker.
        pub(crate) fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
            $( <$cap as Capability>::link(linker)?; )*
            Ok(())
        }

        /// Every problem with a plugin's grants.
        pub(crate) fn check(grants: &Capabilities, plugin: &PluginFacts<'_>) -> Vec<GrantProblem> {
            let mut problems = Vec::new();
            $( problems.extend(<$cap as Capability>::check(&grants.$field, plugin)); )*
            problems
        }

        /// Sets up every grant of a plugin.
        pub(crate) fn load(
            grants: &Capabilities,
            plugin: &PluginFacts<'_>,
        ) -> Result<LoadedCapabilities, LoadFailure> {
            Ok(LoadedCapabilities {
                $( $field: <$cap as Capability>::load(&grants.$field, plugin)?, )*
            })
        }

        impl CallCapabilities {
            pub(crate) fn start(loaded: Option<&LoadedCapabilities>, scope: &mut CallScope) -> Self {
                CallCapabilities {
                    $( $field: <$cap as Capability>::start(loaded.map(|l| &l.$field), scope), )*
                }
            }

            pub(crate) fn finish(self, scope: &mut CallScope) {
                $( <$cap as Capability>::finish(self.$field, scope); )*
            }
        }
    };
}

/// A capability's host functions reach the call-wide scope (deadline, log,
/// denials, faults) and their own per-call state through this.
pub(crate) trait Parts<C: Capability> {
    fn parts(&mut self) -> (&mut CallScope, &mut C::Call);
}

registry! {
    /// `host`: log lines and progress, always available.
    host: host::Host => (),
    /// `storage`: the plugin's own key-value store.
    storage: storage::Storage => StorageGrant,
    /// WASI preview 2: environment variables, directories and clocks.
    wasi: wasi::Wasi => WasiGrant,
    /// `http`: requests to the granted origins.
    http: http::Http => HttpGrant,
    /// `files`: named host directories, read-only or read-write.
    files: files::Files => FilesGrant,
    /// `artifacts`: the policy's software, as the runner staged it.
    artifacts: artifacts::Artifacts => ArtifactsGrant,
    /// `exec`: programs it may run.
    exec: exec::Exec => ExecGrant,
}

impl LoadedCapabilities {
    /// Kills the commands the plugin left running (see [`exec`]).
    pub(crate) fn end_commands(&self, reason: &str) -> Vec<KilledCommand> {
        self.exec
            .as_ref()
            .map(|e| e.end_all(reason))
            .unwrap_or_default()
    }
}
