//! The application layer: every use case a front end offers, as plain
//! calls returning plain data. The CLI, the agent and the console call
//! these; none of them re-implements opening a session, deciding what an
//! operator may do, or computing drift.
//!
//! - commands (`apply`, `resume`, `approve`, `retry`, `abort`) take the state
//!   dir's lock, do their one thing, then let the engine carry the session
//!   as far as it goes on its own, reporting a [`RunReport`];
//! - queries (`status`, `history`, `log`, `in_flight`) take no lock and
//!   change nothing.
//!
//! One [`App`] serves many sessions: it owns the plugin host (one wasmtime
//! engine, epoch ticker, instance pool and compile cache).

// An `AppError` is returned once per command and carries what a front end
// needs to say; its size is no cost worth boxing for.
#![allow(clippy::result_large_err)]

pub mod activity;
mod commands;
mod control;
pub mod drift;
mod error;
pub mod lock;
mod open;
mod query;
#[cfg(test)]
mod query_tests;

pub use crate::engine::operator::{Accepted, OperatorRequest, OperatorVerb, Refused};
pub use commands::{Operator, PolicySummary, RunOptions, RunReport};
pub use error::AppError;
pub use query::{
    Consequence, HistoryEntry, InFlight, OperatorCommand, RunnerInfo, SessionLog, SessionStatus,
    StatusReport, WaitingFor,
};

use crate::clock::SharedClock;
use crate::engine::Pacing;
use crate::plugins::{HostConfig, PluginHost};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What an [`App`] works on.
#[derive(Clone)]
pub struct AppConfig {
    /// The state dir: sessions, the lock, plugin storage.
    pub state_dir: PathBuf,
    /// Where compiled plugins are cached (`None`: compile every time).
    pub cache_dir: Option<PathBuf>,
    pub clock: SharedClock,
    pub pacing: Pacing,
}

pub struct App {
    config: AppConfig,
    /// The shared plugin host, made on first use; replaced by a larger one
    /// only when a policy's plugins need more memory than it reserves.
    host: Mutex<Option<PluginHost>>,
    /// The inbox of the run in progress, for operators' commands.
    control: control::Control,
}

impl App {
    pub fn new(config: AppConfig) -> App {
        App {
            config,
            host: Mutex::new(None),
            control: Default::default(),
        }
    }

    pub fn state_dir(&self) -> &Path {
        &self.config.state_dir
    }

    pub fn clock(&self) -> &SharedClock {
        &self.config.clock
    }

    /// An `App` over another state dir sharing `host` (one wasmtime engine,
    /// epoch ticker, pool and compile cache for every session).
    pub fn with_host(config: AppConfig, host: PluginHost) -> App {
        App {
            config,
            host: Mutex::new(Some(host)),
            control: Default::default(),
        }
    }

    /// Required signatures and agreement with the lock file (see
    /// [`lock::check`]): what every front end checks before using a
    /// policy's plugins. An `oci://` plugin is found in the cache or pulled.
    pub fn trust_findings(
        &self,
        policy: &crate::policy::LoadedPolicy,
    ) -> Vec<crate::policy::Finding> {
        lock::check(policy, &self.plugin_sources(policy))
    }

    /// Writes (or with `update` rewrites) the policy's lock file.
    pub fn lock(
        &self,
        policy: &crate::policy::LoadedPolicy,
        update: bool,
    ) -> Result<lock::Locked, lock::LockRefused> {
        lock::lock(policy, update, &self.plugin_sources(policy))
    }

    /// Plugin entries' components for [`lock`]: a file as the policy names
    /// it; an `oci://` source through this app's plugin host (so its cache).
    fn plugin_sources<'a>(
        &'a self,
        policy: &'a crate::policy::LoadedPolicy,
    ) -> impl Fn(&crate::policy::PluginRef) -> Result<crate::engine::setup::ComponentSource, String> + 'a
    {
        move |p| {
            if !duplex_oci::is_oci(&p.source) {
                return Ok(crate::engine::setup::file_source(policy, p));
            }
            let needed = crate::engine::setup::max_memory_bytes(&policy.policy.spec.plugins);
            let host = self.host_for(needed).map_err(|e| e.to_string())?;
            crate::engine::setup::component_source(&host, policy, p).map_err(|e| e.to_string())
        }
    }

    /// The shared plugin host, able to run plugins whose memory limit is up
    /// to `max_memory_bytes`. Every memory of the host's instance pool
    /// reserves that much address space, so the host is sized to what its
    /// policies ask (not 4 GiB each) and replaced by a larger one only when
    /// a policy asks more; plugins loaded earlier keep theirs.
    pub fn host_for(&self, max_memory_bytes: u64) -> Result<PluginHost, AppError> {
        let mut slot = self.host.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(host) = slot.as_ref()
            && host.max_memory_bytes() >= max_memory_bytes
        {
            return Ok(host.clone());
        }
        let reserve = max_memory_bytes.max(
            slot.as_ref()
                .map(PluginHost::max_memory_bytes)
                .unwrap_or(crate::plugins::Limits::DEFAULT_MEMORY_BYTES),
        );
        let host = PluginHost::new(HostConfig {
            cache_dir: self.config.cache_dir.clone(),
            max_memory_bytes: reserve,
            ..HostConfig::default()
        })
        .map_err(|e| AppError::Internal(format!("cannot start the plugin host: {e}")))?;
        *slot = Some(host.clone());
        Ok(host)
    }
}

impl App {
    /// Let go of the plugin host between sessions: its wasmtime engine,
    /// instance pool, compiled plugins and epoch ticker go when nothing else
    /// holds them (a long-running front end stays small and asleep while
    /// idle); the next session makes a new one, loading from the cache.
    pub fn release_plugin_host(&self) {
        *self.host.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// What `validate` checks beyond the policy file itself: every plugin
    /// verified against its digest and described (no capabilities set up),
    /// providing what the policy asks with parameters its schemas accept;
    /// every artifact a regular file matching its digest; every required
    /// signature valid and the lock file, if any, agreeing ([`lock::check`]).
    /// Each problem is placed in the policy file.
    pub fn validate(&self, policy: &crate::policy::LoadedPolicy) -> Vec<crate::policy::Diagnostic> {
        let needed = crate::engine::setup::max_memory_bytes(&policy.policy.spec.plugins);
        let host = match self.host_for(needed) {
            Ok(host) => host,
            Err(e) => {
                return policy.place(vec![crate::policy::Finding::value(
                    "/spec/plugins",
                    e.to_string(),
                )]);
            }
        };
        let mut findings = match crate::engine::setup::load_for_policy(&host, policy, None, |_| {})
        {
            Ok(_) => Vec::new(),
            Err(findings) => findings,
        };
        findings.extend(crate::artifact::findings(policy));
        findings.extend(self.trust_findings(policy));
        policy.place(findings)
    }
}
