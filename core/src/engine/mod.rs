//! The engine: reconcile a policy through the state model, durably.
//!
//! - `session`: the events the journal stores and the fold over them;
//! - `decide`: the pure choice of the next step (clock and jitter are inputs);
//! - `driver`: the loop that records, then acts; `request`: each state's work;
//! - `setup`: plugins and artifacts verified before anything is written;
//! - `open`: starting, resuming and operator commands on a session;
//! - `view`: what a person or a machine sees, live and in `duplex log`.

pub mod decide;
mod driver;
pub mod open;
mod request;
pub mod session;
pub mod setup;
pub mod view;

pub use crate::cancel::Cancel;
pub use decide::{Decision, Fired, decide};
pub use driver::{Engine, Stop, now_ms};
pub use session::{Event, FoldError, Outcome, Session};

use crate::journal::JournalError;
use crate::model::TransitionError;
use crate::plugins::PluginError;
use crate::policy::LoadError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The policy asks for something its plugins or artifacts cannot give.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<crate::policy::Diagnostic>),
    #[error(transparent)]
    Plugin(PluginError),
    #[error(transparent)]
    Journal(JournalError),
    #[error("the session's journal does not make sense: {0}")]
    Fold(FoldError),
    #[error("{0}")]
    Model(TransitionError),
    #[error("the session's copy of its policy no longer loads: {0}")]
    Snapshot(String),
    #[error("no upgrade session is in progress in {0}")]
    NoSession(String),
    #[error("{0}")]
    Refused(String),
    #[error("interrupted; the session is saved: run `duplex resume` to carry on")]
    Interrupted,
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Load(LoadError),
}
