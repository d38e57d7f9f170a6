//! `files`: read and change files under the directories the policy grants.
//!
//! Grant: named directories (`capabilities.files` in the policy), each
//! read-only unless it says otherwise. Checked at load (and by `duplex
//! validate`): names unique, each path an existing directory, no writable
//! grant reaching the runner's protected paths (the state dir always, the
//! policy's plugin and artifact files when writable), and a plugin that
//! imports `duplex:plugin/files` without any grant is refused. Wiring: the
//! `duplex:plugin/files` interface, always linked; without a grant every
//! function returns "capability `files` not granted …". Per plugin: each
//! granted directory opened once ([`beneath::Root`]), every path resolved
//! beneath it by the kernel. Per call: a handle to them.
//!
//! Every operation runs on a blocking thread under the call's guard: a slow
//! disk or a huge tree costs the call its deadline, never the runner its
//! thread. Failures (a missing file, a path leading outside, a write on a
//! read-only grant) are the plugin's to handle: they come back as `err`.

pub(crate) mod beneath;

use super::wasi::reaches_protected;
use super::{Capability, GrantProblem, LoadFailure, Parts, PluginFacts};
use crate::plugins::bindings::duplex::plugin as wit;
use crate::plugins::call::{CallScope, HostState};
use beneath::{Kind, Root};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};
use wit::files::{DirEntry, EntryKind, Metadata};

/// The `files` grant: named host directories.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesGrant {
    #[serde(default)]
    pub roots: Vec<FileRoot>,
}

/// One granted directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRoot {
    /// The name the plugin uses (`cx.fs("releases")`).
    pub name: String,
    /// The directory on the host (absolute).
    pub path: PathBuf,
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// The interface whose import needs a grant.
pub(crate) const INTERFACE: &str = "duplex:plugin/files";

pub(crate) struct Files;

/// The granted directories, open.
pub(crate) type Roots = Arc<Vec<Root>>;

pub(crate) struct FilesView<'a> {
    scope: &'a mut CallScope,
    roots: &'a Option<Roots>,
}

impl HasData for Files {
    type Data<'a> = FilesView<'a>;
}

impl Capability for Files {
    const NAME: &'static str = "files";
    type Grant = FilesGrant;
    type Loaded = Option<Roots>;
    type Call = Option<Roots>;

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        fn view(state: &mut HostState) -> FilesView<'_> {
            let (scope, roots) = Parts::<Files>::parts(state);
            FilesView { scope, roots }
        }
        wit::files::add_to_linker::<HostState, Files>(linker, view)
    }

    fn check(grant: &FilesGrant, plugin: &PluginFacts<'_>) -> Vec<GrantProblem> {
        let mut problems = Vec::new();
        if grant.roots.is_empty() && plugin.imports(INTERFACE) {
            problems.push(GrantProblem {
                capability: Self::NAME,
                at: String::new(),
                key: false,
                message: format!(
                    "plugin `{}` imports {INTERFACE} but the policy grants it no directory: add `capabilities.files: [{{name: …, path: …}}]` to its entry, or use a plugin that needs no files",
                    plugin.name
                ),
            });
        }
        let mut names = BTreeSet::new();
        for (i, root) in grant.roots.iter().enumerate() {
            if !names.insert(root.name.as_str()) {
                problems.push(GrantProblem {
                    capability: Self::NAME,
                    at: format!("/capabilities/files/{i}/name"),
                    key: false,
                    message: format!("the files grant `{}` is named twice", root.name),
                });
            }
            let at = format!("/capabilities/files/{i}/path");
            if !root.path.is_dir() {
                problems.push(GrantProblem {
                    capability: Self::NAME,
                    at,
                    key: false,
                    message: format!(
                        "{} is not a directory (the files grant `{}`)",
                        root.path.display(),
                        root.name
                    ),
                });
                continue;
            }
            if let Some(message) = reaches_protected(&root.path, root.read_only, plugin.protected) {
                problems.push(GrantProblem {
                    capability: Self::NAME,
                    at,
                    key: false,
                    message: format!("the files grant `{}` {message}", root.name),
                });
            }
        }
        problems
    }

    fn load(grant: &FilesGrant, _: &PluginFacts<'_>) -> Result<Self::Loaded, LoadFailure> {
        if grant.roots.is_empty() {
            return Ok(None);
        }
        let roots = grant
            .roots
            .iter()
            .map(|r| {
                Root::open(&r.name, &r.path, r.read_only).map_err(|e| LoadFailure {
                    capability: Self::NAME,
                    message: format!("cannot open {}: {e}", r.path.display()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(Arc::new(roots)))
    }

    fn start(loaded: Option<&Self::Loaded>, _: &mut CallScope) -> Self::Call {
        loaded.cloned().flatten()
    }
}

/// The root named `name`, or why there is none.
pub(crate) fn find<'r>(roots: &'r [Root], name: &str, plugin: &str) -> Result<&'r Root, String> {
    roots.iter().find(|r| r.name == name).ok_or_else(|| {
        format!(
            "no files grant named `{name}` for plugin `{plugin}`; it is granted: {}",
            roots
                .iter()
                .map(|r| format!("`{}`", r.name))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

/// Runs `op` on the root named `root`, off this thread and within the
/// call's time.
pub(crate) fn run_on<T: Send + 'static>(
    scope: &mut CallScope,
    roots: &Option<Roots>,
    root: String,
    op: impl FnOnce(&Root) -> Result<T, String> + Send + 'static,
) -> wasmtime::Result<Result<T, String>> {
    scope.guard.check()?;
    let Some(roots) = roots.clone() else {
        return Ok(Err(scope.deny(Files::NAME)));
    };
    let plugin = scope.plugin.clone();
    scope
        .guard
        .block_on(wasmtime_wasi::runtime::spawn_blocking(move || {
            op(find(&roots, &root, &plugin)?)
        }))
}

impl FilesView<'_> {
    fn run<T: Send + 'static>(
        &mut self,
        root: String,
        op: impl FnOnce(&Root) -> Result<T, String> + Send + 'static,
    ) -> wasmtime::Result<Result<T, String>> {
        run_on(self.scope, self.roots, root, op)
    }
}

fn entry_kind(kind: Kind) -> EntryKind {
    match kind {
        Kind::File => EntryKind::File,
        Kind::Directory => EntryKind::Directory,
        Kind::Symlink => EntryKind::Symlink,
        Kind::Other => EntryKind::Other,
    }
}

impl wit::files::Host for FilesView<'_> {
    fn read(
        &mut self,
        root: String,
        path: String,
        offset: u64,
        max_bytes: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, String>> {
        self.run(root, move |r| r.read(&path, offset, max_bytes))
    }

    fn write(
        &mut self,
        root: String,
        path: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.write(&path, &data))
    }

    fn append(
        &mut self,
        root: String,
        path: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.append(&path, &data))
    }

    fn set_mode(
        &mut self,
        root: String,
        path: String,
        mode: u32,
    ) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.set_mode(&path, mode))
    }

    fn create_dir(&mut self, root: String, path: String) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.create_dir(&path))
    }

    fn list(
        &mut self,
        root: String,
        path: String,
    ) -> wasmtime::Result<Result<Vec<DirEntry>, String>> {
        self.run(root, move |r| {
            Ok(r.list(&path)?
                .into_iter()
                .map(|(name, kind)| DirEntry {
                    name,
                    kind: entry_kind(kind),
                })
                .collect())
        })
    }

    fn stat(
        &mut self,
        root: String,
        path: String,
    ) -> wasmtime::Result<Result<Option<Metadata>, String>> {
        self.run(root, move |r| {
            Ok(r.stat(&path)?.map(|m| Metadata {
                kind: entry_kind(m.kind),
                size: m.size,
                modified_ms: m.modified_ms,
                mode: m.mode,
            }))
        })
    }

    fn read_link(
        &mut self,
        root: String,
        path: String,
    ) -> wasmtime::Result<Result<String, String>> {
        self.run(root, move |r| r.read_link(&path))
    }

    fn rename(
        &mut self,
        root: String,
        from: String,
        to: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.rename(&from, &to))
    }

    fn symlink(
        &mut self,
        root: String,
        target: String,
        path: String,
    ) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.symlink(&target, &path))
    }

    fn remove(&mut self, root: String, path: String) -> wasmtime::Result<Result<(), String>> {
        self.run(root, move |r| r.remove(&path))
    }

    fn free_space(&mut self, root: String) -> wasmtime::Result<Result<u64, String>> {
        self.run(root, |r| r.free_space())
    }
}
