//! What a plugin may ask of the runner, behind a trait so plugin logic runs
//! both in wasm (the real imports) and natively ([`crate::testing::TestHost`]).

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
    /// The `http` capability: one request, redirects followed within the grant.
    fn http_send(&mut self, req: &crate::http::Request) -> Result<crate::http::Response, String>;
}

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
    fn http_send(&mut self, req: &crate::http::Request) -> Result<crate::http::Response, String> {
        let _ = req;
        Err("the SDK sends HTTP requests through its import directly".into())
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
    fn http_send(&mut self, _: &crate::http::Request) -> Result<crate::http::Response, String> {
        Err(NATIVE.into())
    }
}

#[cfg(not(target_arch = "wasm32"))]
const NATIVE: &str = "no runner here: use duplex_plugin_sdk::testing::TestHost";

/// One call's context: the call's [`CallContext`] and the host.
pub struct Cx<'a> {
    ctx: &'a CallContext,
    host: &'a mut dyn Host,
    /// Inside a component, with the real imports: a capability whose use the
    /// runner checks against its grant by import calls its import directly
    /// (not through `host`), so a plugin imports exactly what it uses (see
    /// [`WasmHost`]).
    pub(crate) wasm: bool,
}

impl<'a> Cx<'a> {
    pub fn new(ctx: &'a CallContext, host: &'a mut dyn Host) -> Cx<'a> {
        Cx {
            ctx,
            host,
            wasm: false,
        }
    }

    /// The context of a call inside a component (`export_plugin!`).
    pub(crate) fn wasm(ctx: &'a CallContext, host: &'a mut WasmHost) -> Cx<'a> {
        Cx {
            ctx,
            host,
            wasm: true,
        }
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

    /// HTTP requests to the origins the policy grants (`capabilities.http`):
    /// `cx.http().get(url).send()?`.
    pub fn http(&mut self) -> crate::http::Http<'_> {
        crate::http::Http {
            host: self.host,
            wasm: self.wasm,
        }
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
