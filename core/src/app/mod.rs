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

mod commands;
pub mod drift;
mod error;
mod open;
mod query;

pub use commands::{Operator, PolicySummary, RunOptions, RunReport};
pub use error::AppError;
pub use query::{
    HistoryEntry, InFlight, OperatorCommand, RunnerInfo, SessionLog, SessionStatus, StatusReport,
    WaitingFor,
};

use crate::clock::SharedClock;
use crate::engine::Pacing;
use crate::plugins::{HostConfig, PluginHost};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    host: OnceLock<Result<PluginHost, String>>,
}

impl App {
    pub fn new(config: AppConfig) -> App {
        App {
            config,
            host: OnceLock::new(),
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
        let cell = OnceLock::new();
        let _ = cell.set(Ok(host));
        App { config, host: cell }
    }

    /// The shared plugin host, made on first use.
    pub fn host(&self) -> Result<&PluginHost, AppError> {
        self.host
            .get_or_init(|| {
                PluginHost::new(HostConfig {
                    cache_dir: self.config.cache_dir.clone(),
                    ..HostConfig::default()
                })
                .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| AppError::Internal(format!("cannot start the plugin host: {e}")))
    }
}

impl App {
    /// What `validate` checks beyond the policy file itself: every plugin
    /// verified against its digest and described (no capabilities set up),
    /// providing what the policy asks with parameters its schemas accept;
    /// every artifact a regular file matching its digest. Each problem is
    /// placed in the policy file.
    pub fn validate(&self, policy: &crate::policy::LoadedPolicy) -> Vec<crate::policy::Diagnostic> {
        let host = match self.host() {
            Ok(host) => host,
            Err(e) => {
                return policy.place(vec![crate::policy::Finding::value(
                    "/spec/plugins",
                    e.to_string(),
                )]);
            }
        };
        let mut findings = match crate::engine::setup::load_for_policy(host, policy, None, |_| {}) {
            Ok(_) => Vec::new(),
            Err(findings) => findings,
        };
        findings.extend(crate::artifact::findings(policy));
        policy.place(findings)
    }
}
