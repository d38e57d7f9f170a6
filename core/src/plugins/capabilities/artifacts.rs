//! `artifacts`: the policy's software, exactly the bytes the runner verified.
//!
//! Grant: `capabilities.artifacts: true` in the policy; the engine adds the
//! staged copy of each artifact (`<state>/artifacts/sha256/<hex>`, written by
//! [`crate::artifact::stage`] after its digest matched, read-only, in the
//! runner's own state dir that no grant may reach). A plugin that imports
//! `duplex:plugin/artifacts` without the grant is refused at load and by
//! `duplex validate`. Wiring: the `duplex:plugin/artifacts` interface,
//! always linked; without the grant every function returns "capability
//! `artifacts` not granted …". The plugin reads the staged copy, never the
//! policy's `source`: replacing the source file after it was verified
//! changes nothing the plugin sees. `copy-to` copies it into a read-write
//! `files` grant, atomically.

use super::files::{self, Files, Roots};
use super::{Capability, GrantProblem, LoadFailure, PluginFacts};
use crate::plugins::bindings::duplex::plugin as wit;
use crate::plugins::call::{CallScope, HostState};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The `artifacts` grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactsGrant {
    /// The policy grants the capability.
    #[serde(default)]
    pub granted: bool,
    /// Where each of the policy's artifacts is staged (empty without a
    /// state dir, as for `validate`).
    #[serde(default)]
    pub staged: Vec<StagedArtifact>,
}

/// One artifact's staged copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedArtifact {
    /// Its name in the policy's `software`.
    pub name: String,
    /// The pinned sha256 (lower-case hex).
    pub sha256: String,
    /// The staged copy.
    pub path: PathBuf,
}

/// The interface whose import needs the grant.
pub(crate) const INTERFACE: &str = "duplex:plugin/artifacts";

pub(crate) struct Artifacts;

type Staged = Arc<Vec<StagedArtifact>>;

pub(crate) struct ArtifactsView<'a> {
    scope: &'a mut CallScope,
    staged: &'a Option<Staged>,
    roots: &'a Option<Roots>,
}

impl HasData for Artifacts {
    type Data<'a> = ArtifactsView<'a>;
}

impl Capability for Artifacts {
    const NAME: &'static str = "artifacts";
    type Grant = ArtifactsGrant;
    type Loaded = Option<Staged>;
    type Call = Option<Staged>;

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        // `copy-to` also reaches the call's `files` roots.
        fn view(state: &mut HostState) -> ArtifactsView<'_> {
            ArtifactsView {
                scope: &mut state.scope,
                staged: &state.capabilities.artifacts,
                roots: &state.capabilities.files,
            }
        }
        wit::artifacts::add_to_linker::<HostState, Artifacts>(linker, view)
    }

    fn check(grant: &ArtifactsGrant, plugin: &PluginFacts<'_>) -> Vec<GrantProblem> {
        if !grant.granted && plugin.imports(INTERFACE) {
            return vec![GrantProblem {
                capability: Self::NAME,
                at: String::new(),
                key: false,
                message: format!(
                    "plugin `{}` imports {INTERFACE} but the policy does not grant it: add `capabilities.artifacts: true` to its entry",
                    plugin.name
                ),
            }];
        }
        Vec::new()
    }

    fn load(grant: &ArtifactsGrant, _: &PluginFacts<'_>) -> Result<Self::Loaded, LoadFailure> {
        Ok(grant.granted.then(|| Arc::new(grant.staged.clone())))
    }

    fn start(loaded: Option<&Self::Loaded>, _: &mut CallScope) -> Self::Call {
        loaded.cloned().flatten()
    }
}

/// The most one `read` returns.
pub const MAX_READ_BYTES: u32 = files::beneath::MAX_READ_BYTES;

/// Opens the staged copy of `name`.
fn open(staged: &[StagedArtifact], name: &str) -> Result<File, String> {
    let Some(a) = staged.iter().find(|a| a.name == name) else {
        return Err(format!(
            "no artifact named `{name}`; the policy's software: {}",
            if staged.is_empty() {
                "none".to_string()
            } else {
                staged
                    .iter()
                    .map(|a| format!("`{}`", a.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    };
    crate::files::open_regular(&a.path, "a regular file").map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "artifact `{name}` is not staged (the runner stages it, verified, when a session starts)"
            )
        } else {
            format!("artifact `{name}`: cannot read its staged copy: {e}")
        }
    })
}

impl ArtifactsView<'_> {
    fn run<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&[StagedArtifact]) -> Result<T, String> + Send + 'static,
    ) -> wasmtime::Result<Result<T, String>> {
        self.scope.guard.check()?;
        let Some(staged) = self.staged.clone() else {
            return Ok(Err(self.scope.deny(Artifacts::NAME)));
        };
        self.scope
            .guard
            .block_on(wasmtime_wasi::runtime::spawn_blocking(move || op(&staged)))
    }
}

impl wit::artifacts::Host for ArtifactsView<'_> {
    fn read(
        &mut self,
        name: String,
        offset: u64,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.run(move |staged| {
            let file = open(staged, &name)?;
            files::beneath::read_at(&file, offset, max_bytes.min(MAX_READ_BYTES))
                .map_err(|e| format!("artifact `{name}`: {e}"))
        })
    }

    fn copy_to(
        &mut self,
        name: String,
        root: String,
        path: String,
    ) -> wasmtime::Result<Result<u64, String>> {
        self.scope.guard.check()?;
        let Some(staged) = self.staged.clone() else {
            return Ok(Err(self.scope.deny(Artifacts::NAME)));
        };
        if self.roots.is_none() {
            return Ok(Err(self.scope.deny(Files::NAME)));
        }
        files::run_on(self.scope, self.roots, root, move |r| {
            let mut from = open(&staged, &name)?;
            let mut size = 0;
            r.replace_with(&path, |to| {
                size = std::io::copy(&mut from, to)?;
                Ok(())
            })?;
            Ok(size)
        })
    }
}
