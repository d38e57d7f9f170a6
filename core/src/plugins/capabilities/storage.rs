//! `storage`: the plugin's own persistent key-value store.
//!
//! Grant: a directory for the store (`capabilities.storage` in the policy;
//! the engine puts it under the state dir). Wiring: the
//! `duplex:plugin/storage` interface, always linked; without the grant every
//! function returns "capability `storage` not granted …". Per plugin: the
//! open store. Per call: a handle to it.
//!
//! Store operations do file I/O (a write fsyncs twice), so each runs on a
//! blocking thread under the call's guard: a stuck disk costs the call its
//! deadline, never the runner its thread. An I/O failure is the host's
//! fault, not the plugin's: it is recorded in the call's scope and the call
//! ends as a [`CallError::HostFault`](crate::plugins::CallError::HostFault),
//! whatever the plugin does with the error it is handed.

use super::{Capability, GrantProblem, LoadFailure, Parts, PluginFacts};
use crate::plugins::bindings::duplex::plugin as wit;
use crate::plugins::call::{CallScope, HostState};
use crate::plugins::file_store::{FileStore, StoreError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The `storage` grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageGrant {
    /// The store's directory (created if missing). Plugins given the same
    /// directory share the same keys. `None`: not granted.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

pub(crate) struct Storage;

pub(crate) struct StorageView<'a> {
    scope: &'a mut CallScope,
    store: &'a Option<Arc<FileStore>>,
}

impl HasData for Storage {
    type Data<'a> = StorageView<'a>;
}

impl Capability for Storage {
    const NAME: &'static str = "storage";
    type Grant = StorageGrant;
    type Loaded = Option<Arc<FileStore>>;
    type Call = Option<Arc<FileStore>>;

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        fn view(state: &mut HostState) -> StorageView<'_> {
            let (scope, store) = Parts::<Storage>::parts(state);
            StorageView { scope, store }
        }
        wit::storage::add_to_linker::<HostState, Storage>(linker, view)
    }

    fn check(_: &StorageGrant, _: &PluginFacts<'_>) -> Vec<GrantProblem> {
        Vec::new()
    }

    fn load(grant: &StorageGrant, _: &PluginFacts<'_>) -> Result<Self::Loaded, LoadFailure> {
        let Some(dir) = &grant.dir else {
            return Ok(None);
        };
        let store = FileStore::open(dir).map_err(|e| LoadFailure {
            capability: Self::NAME,
            message: format!("{}: {e}", dir.display()),
        })?;
        Ok(Some(Arc::new(store)))
    }

    fn start(loaded: Option<&Self::Loaded>, _: &mut CallScope) -> Self::Call {
        loaded.cloned().flatten()
    }
}

impl StorageView<'_> {
    /// Runs `op` on the store, off this thread and within the call's time.
    fn run<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> wasmtime::Result<Result<T, String>> {
        self.scope.guard.check()?;
        let Some(store) = self.store.clone() else {
            return Ok(Err(self.scope.deny(Storage::NAME)));
        };
        let done = self
            .scope
            .guard
            .block_on(wasmtime_wasi::runtime::spawn_blocking(move || op(&store)))?;
        Ok(done.map_err(|e| {
            if let StoreError::Io(message) = &e {
                self.scope.host_fault(Storage::NAME, message.clone());
            }
            e.to_string()
        }))
    }
}

impl wit::storage::Host for StorageView<'_> {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, String>> {
        self.run(move |s| s.get(&key))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        self.run(move |s| s.set(&key, &value))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        self.run(move |s| s.delete(&key))
    }

    fn list_keys(&mut self) -> wasmtime::Result<Result<Vec<String>, String>> {
        self.run(|s| s.list_keys())
    }
}
