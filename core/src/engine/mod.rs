//! The engine: reconcile a session through the state model, durably.
//!
//! - `event`: the events the journal stores and `Session::fold`;
//! - `decide`: the pure choice of the next step (clock and jitter are inputs);
//! - `driver`: the [`Engine`], an owned value whose `run` is the loop that
//!   records, then acts; `request`: each state's work as `work::WORK` lists
//!   it; `checks`: the one loop for gates and the soak;
//! - `recorder`: the one way events are written and shown;
//! - `setup`: the plugins a run calls, verified and loaded;
//! - `sink`: where events go while it runs, and how they read.

pub mod checks;
pub mod decide;
mod driver;
pub mod event;
pub mod operator;
pub mod recorder;
mod request;
pub mod setup;
pub mod sink;

pub use decide::{Decision, Fired, Now, decide};
pub use driver::{Engine, Pacing, RunParts, Stop};
pub use event::{Event, FoldError, JOURNAL_FORMAT, Outcome, RequestId, Session, SessionSummary};
pub use recorder::{Recorder, SNAPSHOT_EVERY_BYTES, SNAPSHOT_EVERY_RECORDS, finish_session};

use crate::journal::JournalError;
use crate::model::TransitionError;

/// Why a run could not go on. Anything a plugin or the policy does wrong is
/// not here: it fails the request and the session holds or retries.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The journal refused a record (disk full, fsync failure, …): the run
    /// stops where the journal ends, and a resume carries on from there.
    #[error(transparent)]
    Journal(JournalError),
    /// The engine asked for a transition the model refuses: a bug.
    #[error("{0}")]
    Model(TransitionError),
    /// The run was cancelled (the driver records it and stops).
    #[error("the run was cancelled")]
    Cancelled,
    /// An operator's command (hold, abort, retry) changed what the run
    /// does: the step in hand stops at this safe point and the loop decides
    /// again. Never leaves the engine.
    #[error("an operator's command stopped the step in hand")]
    Preempted,
    /// Plugins made the session's journal grow past its limit.
    #[error(
        "the session's journal reached {bytes} bytes, past its limit of {limit}: a plugin is making it grow without bound"
    )]
    JournalLimit { bytes: u64, limit: u64 },
    #[error("internal error: {0}")]
    Internal(String),
}
