//! What a plugin may ask of the runner, behind a trait so plugin logic runs
//! both in wasm (the real imports) and natively ([`crate::testing::TestHost`]).

use crate::fs::{DirEntry, Metadata};
use crate::{CallContext, Error, LogLevel};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The runner's side of a call: log lines, progress and the `storage`
/// capability (which the runner refuses unless the policy grants it).
pub trait Host {
    fn log(&mut self, level: LogLevel, message: &str);
    fn progress(&mut self, percent: u8, message: &str);
    fn storage_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String>;
    fn storage_set(&mut self, key: &str, value: &[u8]) -> Result<(), String>;
    fn storage_delete(&mut self, key: &str) -> Result<(), String>;
    fn storage_list_keys(&mut self) -> Result<Vec<String>, String>;
    /// `exec.run` (see [`crate::exec`]).
    fn exec_run(
        &mut self,
        cmd: &crate::ExecCommand,
        wait_ms: u32,
    ) -> Result<crate::ExecStatus, String>;
    /// `exec.kill`.
    fn exec_kill(&mut self, key: &str) -> Result<(), String>;
    /// Whether this is the real runner (the component's imports). The SDK
    /// calls optional capabilities' imports directly in that case, so that a
    /// component imports only the capabilities its code uses (a vtable entry
    /// would import them all, and the runner refuses a plugin importing a
    /// capability the policy does not grant).
    #[doc(hidden)]
    fn is_runner(&self) -> bool {
        false
    }
    // `files` and `artifacts` (crate::fs): `root` names a files grant.
    fn files_read(
        &mut self,
        root: &str,
        path: &str,
        offset: u64,
        max: u32,
    ) -> Result<Vec<u8>, String>;
    fn files_write(&mut self, root: &str, path: &str, data: &[u8]) -> Result<(), String>;
    fn files_append(&mut self, root: &str, path: &str, data: &[u8]) -> Result<(), String>;
    fn files_set_mode(&mut self, root: &str, path: &str, mode: u32) -> Result<(), String>;
    fn files_create_dir(&mut self, root: &str, path: &str) -> Result<(), String>;
    fn files_list(&mut self, root: &str, path: &str) -> Result<Vec<DirEntry>, String>;
    fn files_stat(&mut self, root: &str, path: &str) -> Result<Option<Metadata>, String>;
    fn files_read_link(&mut self, root: &str, path: &str) -> Result<String, String>;
    fn files_rename(&mut self, root: &str, from: &str, to: &str) -> Result<(), String>;
    fn files_symlink(&mut self, root: &str, target: &str, path: &str) -> Result<(), String>;
    fn files_remove(&mut self, root: &str, path: &str) -> Result<(), String>;
    fn files_free_space(&mut self, root: &str) -> Result<u64, String>;
    fn artifact_read(&mut self, name: &str, offset: u64, max: u32) -> Result<Vec<u8>, String>;
    fn artifact_copy_to(&mut self, name: &str, root: &str, path: &str) -> Result<u64, String>;
    /// The `http` capability: one request, redirects followed within the grant.
    fn http_send(&mut self, req: &crate::http::Request) -> Result<crate::http::Response, String>;
}

/// `exec.run` on `host`: the import itself when running in the runner.
pub(crate) fn exec_run(
    host: &mut dyn Host,
    cmd: &crate::ExecCommand,
    wait_ms: u32,
) -> Result<crate::ExecStatus, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::exec::run(cmd, wait_ms);
    }
    host.exec_run(cmd, wait_ms)
}

/// `exec.kill` on `host`: the import itself when running in the runner.
pub(crate) fn exec_kill(host: &mut dyn Host, key: &str) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::exec::kill(key);
    }
    host.exec_kill(key)
}

/// `files.read` on `host`: the import itself when running in the runner.
pub(crate) fn files_read(
    host: &mut dyn Host,
    root: &str,
    path: &str,
    offset: u64,
    max: u32,
) -> Result<Vec<u8>, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::read(root, path, offset, max);
    }
    host.files_read(root, path, offset, max)
}

/// `files.write` on `host`: the import itself when running in the runner.
pub(crate) fn files_write(
    host: &mut dyn Host,
    root: &str,
    path: &str,
    data: &[u8],
) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::write(root, path, data);
    }
    host.files_write(root, path, data)
}

/// `files.append` on `host`: the import itself when running in the runner.
pub(crate) fn files_append(
    host: &mut dyn Host,
    root: &str,
    path: &str,
    data: &[u8],
) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::append(root, path, data);
    }
    host.files_append(root, path, data)
}

/// `files.set_mode` on `host`: the import itself when running in the runner.
pub(crate) fn files_set_mode(
    host: &mut dyn Host,
    root: &str,
    path: &str,
    mode: u32,
) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::set_mode(root, path, mode);
    }
    host.files_set_mode(root, path, mode)
}

/// `files.create_dir` on `host`: the import itself when running in the runner.
pub(crate) fn files_create_dir(host: &mut dyn Host, root: &str, path: &str) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::create_dir(root, path);
    }
    host.files_create_dir(root, path)
}

/// `files.list` on `host`: the import itself when running in the runner.
pub(crate) fn files_list(
    host: &mut dyn Host,
    root: &str,
    path: &str,
) -> Result<Vec<DirEntry>, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::list(root, path);
    }
    host.files_list(root, path)
}

/// `files.stat` on `host`: the import itself when running in the runner.
pub(crate) fn files_stat(
    host: &mut dyn Host,
    root: &str,
    path: &str,
) -> Result<Option<Metadata>, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::stat(root, path);
    }
    host.files_stat(root, path)
}

/// `files.read_link` on `host`: the import itself when running in the runner.
pub(crate) fn files_read_link(
    host: &mut dyn Host,
    root: &str,
    path: &str,
) -> Result<String, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::read_link(root, path);
    }
    host.files_read_link(root, path)
}

/// `files.rename` on `host`: the import itself when running in the runner.
pub(crate) fn files_rename(
    host: &mut dyn Host,
    root: &str,
    from: &str,
    to: &str,
) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::rename(root, from, to);
    }
    host.files_rename(root, from, to)
}

/// `files.symlink` on `host`: the import itself when running in the runner.
pub(crate) fn files_symlink(
    host: &mut dyn Host,
    root: &str,
    target: &str,
    path: &str,
) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::symlink(root, target, path);
    }
    host.files_symlink(root, target, path)
}

/// `files.remove` on `host`: the import itself when running in the runner.
pub(crate) fn files_remove(host: &mut dyn Host, root: &str, path: &str) -> Result<(), String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::remove(root, path);
    }
    host.files_remove(root, path)
}

/// `files.free_space` on `host`: the import itself when running in the runner.
pub(crate) fn files_free_space(host: &mut dyn Host, root: &str) -> Result<u64, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::files::free_space(root);
    }
    host.files_free_space(root)
}

/// `artifacts.read` on `host`: the import itself when running in the runner.
pub(crate) fn artifact_read(
    host: &mut dyn Host,
    name: &str,
    offset: u64,
    max: u32,
) -> Result<Vec<u8>, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::artifacts::read(name, offset, max);
    }
    host.artifact_read(name, offset, max)
}

/// `artifacts.copy_to` on `host`: the import itself when running in the runner.
pub(crate) fn artifact_copy_to(
    host: &mut dyn Host,
    name: &str,
    root: &str,
    path: &str,
) -> Result<u64, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::artifacts::copy_to(name, root, path);
    }
    host.artifact_copy_to(name, root, path)
}

/// `http.send` on `host`: the import itself when running in the runner.
pub(crate) fn http_send(
    host: &mut dyn Host,
    req: &crate::http::Request,
) -> Result<crate::http::Response, String> {
    #[cfg(target_arch = "wasm32")]
    if host.is_runner() {
        return crate::bindings::duplex::plugin::http::send(req);
    }
    host.http_send(req)
}

/// Optional capabilities are reached through [`exec_run`] and friends in
/// the runner, never through [`WasmHost`]'s vtable.
#[cfg(target_arch = "wasm32")]
const THROUGH_CX: &str = "internal: optional capabilities are called through Cx";

/// The real imports (only callable inside a component).
///
/// `Cx` holds it as `&mut dyn Host`, so its vtable — every method, used or
/// not — is in every plugin, with every import those methods call. For the
/// capabilities the runner refuses by import (`http`: importing it without
/// a grant fails `duplex validate`), the method here is not the way in: the
/// SDK calls the import directly from the capability's own API
/// ([`crate::http::RequestBuilder::send`]), which only a plugin that uses it
/// links.
pub(crate) struct WasmHost;

#[cfg(target_arch = "wasm32")]
impl Host for WasmHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        crate::bindings::duplex::plugin::host::log(level, message)
    }
    fn progress(&mut self, percent: u8, message: &str) {
        crate::bindings::duplex::plugin::host::progress(percent, message)
    }
    fn storage_get(&mut self, key: &str) -> Result<Option<Vec<u8>>, String> {
        crate::bindings::duplex::plugin::storage::get(key)
    }
    fn storage_set(&mut self, key: &str, value: &[u8]) -> Result<(), String> {
        crate::bindings::duplex::plugin::storage::set(key, value)
    }
    fn storage_delete(&mut self, key: &str) -> Result<(), String> {
        crate::bindings::duplex::plugin::storage::delete(key)
    }
    fn storage_list_keys(&mut self) -> Result<Vec<String>, String> {
        crate::bindings::duplex::plugin::storage::list_keys()
    }
    fn exec_run(&mut self, _: &crate::ExecCommand, _: u32) -> Result<crate::ExecStatus, String> {
        Err(THROUGH_CX.into())
    }
    fn exec_kill(&mut self, _: &str) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn is_runner(&self) -> bool {
        true
    }
    fn files_read(&mut self, _: &str, _: &str, _: u64, _: u32) -> Result<Vec<u8>, String> {
        Err(THROUGH_CX.into())
    }
    fn files_write(&mut self, _: &str, _: &str, _: &[u8]) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_append(&mut self, _: &str, _: &str, _: &[u8]) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_set_mode(&mut self, _: &str, _: &str, _: u32) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_create_dir(&mut self, _: &str, _: &str) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_list(&mut self, _: &str, _: &str) -> Result<Vec<DirEntry>, String> {
        Err(THROUGH_CX.into())
    }
    fn files_stat(&mut self, _: &str, _: &str) -> Result<Option<Metadata>, String> {
        Err(THROUGH_CX.into())
    }
    fn files_read_link(&mut self, _: &str, _: &str) -> Result<String, String> {
        Err(THROUGH_CX.into())
    }
    fn files_rename(&mut self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_symlink(&mut self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_remove(&mut self, _: &str, _: &str) -> Result<(), String> {
        Err(THROUGH_CX.into())
    }
    fn files_free_space(&mut self, _: &str) -> Result<u64, String> {
        Err(THROUGH_CX.into())
    }
    fn artifact_read(&mut self, _: &str, _: u64, _: u32) -> Result<Vec<u8>, String> {
        Err(THROUGH_CX.into())
    }
    fn artifact_copy_to(&mut self, _: &str, _: &str, _: &str) -> Result<u64, String> {
        Err(THROUGH_CX.into())
    }
    fn http_send(&mut self, _: &crate::http::Request) -> Result<crate::http::Response, String> {
        Err(THROUGH_CX.into())
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Host for WasmHost {
    fn log(&mut self, _: LogLevel, _: &str) {}
    fn progress(&mut self, _: u8, _: &str) {}
    fn storage_get(&mut self, _: &str) -> Result<Option<Vec<u8>>, String> {
        Err(NATIVE.into())
    }
    fn storage_set(&mut self, _: &str, _: &[u8]) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn storage_delete(&mut self, _: &str) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn storage_list_keys(&mut self) -> Result<Vec<String>, String> {
        Err(NATIVE.into())
    }
    fn exec_run(&mut self, _: &crate::ExecCommand, _: u32) -> Result<crate::ExecStatus, String> {
        Err(NATIVE.into())
    }
    fn exec_kill(&mut self, _: &str) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_read(&mut self, _: &str, _: &str, _: u64, _: u32) -> Result<Vec<u8>, String> {
        Err(NATIVE.into())
    }
    fn files_write(&mut self, _: &str, _: &str, _: &[u8]) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_append(&mut self, _: &str, _: &str, _: &[u8]) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_set_mode(&mut self, _: &str, _: &str, _: u32) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_create_dir(&mut self, _: &str, _: &str) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_list(&mut self, _: &str, _: &str) -> Result<Vec<DirEntry>, String> {
        Err(NATIVE.into())
    }
    fn files_stat(&mut self, _: &str, _: &str) -> Result<Option<Metadata>, String> {
        Err(NATIVE.into())
    }
    fn files_read_link(&mut self, _: &str, _: &str) -> Result<String, String> {
        Err(NATIVE.into())
    }
    fn files_rename(&mut self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_symlink(&mut self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_remove(&mut self, _: &str, _: &str) -> Result<(), String> {
        Err(NATIVE.into())
    }
    fn files_free_space(&mut self, _: &str) -> Result<u64, String> {
        Err(NATIVE.into())
    }
    fn artifact_read(&mut self, _: &str, _: u64, _: u32) -> Result<Vec<u8>, String> {
        Err(NATIVE.into())
    }
    fn artifact_copy_to(&mut self, _: &str, _: &str, _: &str) -> Result<u64, String> {
        Err(NATIVE.into())
    }
    fn http_send(&mut self, _: &crate::http::Request) -> Result<crate::http::Response, String> {
        Err(NATIVE.into())
    }
}

#[cfg(not(target_arch = "wasm32"))]
const NATIVE: &str = "no runner here: use duplex_plugin_sdk::testing::TestHost";

/// One call's context: the call's [`CallContext`] and the host.
pub struct Cx<'a> {
    ctx: &'a CallContext,
    pub(crate) host: &'a mut dyn Host,
}

impl<'a> Cx<'a> {
    pub fn new(ctx: &'a CallContext, host: &'a mut dyn Host) -> Cx<'a> {
        Cx { ctx, host }
    }

    /// Session id, state, request, attempt, side and raw parameters.
    pub fn context(&self) -> &CallContext {
        self.ctx
    }

    /// The policy's `with:` block parsed as `T` (an absent block is `{}`).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let raw = if self.ctx.params.trim().is_empty() {
            "{}"
        } else {
            self.ctx.params.as_str()
        };
        serde_json::from_str(raw).map_err(|e| {
            Error(format!(
                "invalid parameters for `{}`: {e}",
                self.ctx.request
            ))
        })
    }

    pub fn log(&mut self, level: LogLevel, message: impl AsRef<str>) {
        self.host.log(level, message.as_ref())
    }

    pub fn debug(&mut self, message: impl AsRef<str>) {
        self.log(LogLevel::Debug, message)
    }

    pub fn info(&mut self, message: impl AsRef<str>) {
        self.log(LogLevel::Info, message)
    }

    pub fn warn(&mut self, message: impl AsRef<str>) {
        self.log(LogLevel::Warn, message)
    }

    pub fn error(&mut self, message: impl AsRef<str>) {
        self.log(LogLevel::Error, message)
    }

    /// Reports progress of the current call (the runner keeps the last one).
    pub fn progress(&mut self, percent: u8, message: impl AsRef<str>) {
        self.host.progress(percent.min(100), message.as_ref())
    }

    /// A command to run through the `exec` capability (see [`crate::exec`]).
    pub fn exec(&mut self, program: impl Into<String>) -> crate::exec::Exec<'_> {
        crate::exec::Exec::new(self.host, program.into())
    }

    /// Kills the command this request started under `key` (its process group).
    pub fn exec_kill(&mut self, key: &str) -> Result<(), Error> {
        exec_kill(self.host, key).map_err(Error)
    }

    /// HTTP requests to the origins the policy grants (`capabilities.http`):
    /// `cx.http().get(url).send()?`.
    pub fn http(&mut self) -> crate::http::Http<'_> {
        crate::http::Http { host: self.host }
    }

    /// The persistent key-value store (errors unless the policy grants `storage`).
    pub fn storage(&mut self) -> Storage<'_> {
        Storage { host: self.host }
    }
}

/// The `storage` capability. Values are bytes; the `_json` helpers store
/// serde values as JSON.
pub struct Storage<'a> {
    host: &'a mut dyn Host,
}

impl Storage<'_> {
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        self.host.storage_get(key).map_err(Error)
    }

    pub fn set(&mut self, key: &str, value: &[u8]) -> Result<(), Error> {
        self.host.storage_set(key, value).map_err(Error)
    }

    pub fn delete(&mut self, key: &str) -> Result<(), Error> {
        self.host.storage_delete(key).map_err(Error)
    }

    pub fn list_keys(&mut self) -> Result<Vec<String>, Error> {
        self.host.storage_list_keys().map_err(Error)
    }

    pub fn get_json<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>, Error> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error(format!(
                    "storage: key `{key}` does not hold the expected data: {e}"
                ))
            }),
        }
    }

    pub fn set_json<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error(format!("storage: cannot encode `{key}`: {e}")))?;
        self.set(key, &bytes)
    }
}
