//! What the application layer refuses or fails with. Plain data: a front
//! end renders it, adding its own vocabulary for what to do next (the CLI
//! names its verbs, an API its endpoints).

use crate::engine::operator::Refused;
use crate::engine::{EngineError, FoldError};
use crate::journal::{JournalError, SessionId};
use crate::model::TransitionError;
use crate::plugins::PluginError;
use crate::policy::{Diagnostic, LoadError, Timestamp};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The policy asks for something its plugins or artifacts cannot give
    /// (placed in the policy file). Nothing was written.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<Diagnostic>),
    #[error(transparent)]
    Load(LoadError),
    #[error(transparent)]
    Journal(JournalError),
    #[error(transparent)]
    Engine(EngineError),
    /// The state model refuses the command here.
    #[error("{0}")]
    NotAllowed(TransitionError),
    #[error("no upgrade session is in progress in {}", .state_dir.display())]
    NoSession { state_dir: PathBuf },
    /// `apply FILE` while a session of another policy or target is in flight.
    #[error(
        "session {session} of policy {policy} on {target} is in flight in {}; {file} is policy {file_policy} on {file_target}, so it is not applied: finish the session in flight first (resume it or abort it)",
        .state_dir.display()
    )]
    OtherSessionInFlight {
        state_dir: PathBuf,
        session: SessionId,
        policy: String,
        target: String,
        file: String,
        file_policy: String,
        file_target: String,
    },
    /// An operator's command refused here (the model's or the policy's
    /// reason). Nothing was written.
    #[error(transparent)]
    Refused(Refused),
    /// A command for a run in progress, but none is here.
    #[error("no run holds the session in {} here", .state_dir.display())]
    NoRunInProgress { state_dir: PathBuf },
    #[error(
        "{}: the maintenance window opens at {start}; not starting a session before it (nothing was written)",
        .file.display()
    )]
    WindowNotOpen { file: PathBuf, start: Timestamp },
    #[error(
        "{}: the maintenance window closed at {end}; not starting a session after it (nothing was written)",
        .file.display()
    )]
    WindowClosed { file: PathBuf, end: Timestamp },
    #[error(
        "{} declares `action: abort`, but no upgrade session is in progress in {}: nothing to abort",
        .file.display(), .state_dir.display()
    )]
    NothingToAbort { file: PathBuf, state_dir: PathBuf },
    /// The session's own copy of its policy is gone or does not load: only
    /// an abort (from what the session pinned) is possible.
    #[error("the session's copy of its policy ({}) cannot be used: {why}", .path.display())]
    PolicyCopy { path: PathBuf, why: String },
    #[error("session {session}: {source}")]
    Fold {
        session: SessionId,
        #[source]
        source: FoldError,
    },
    #[error(transparent)]
    Plugin(PluginError),
    /// The run was cancelled before a session was written.
    #[error("interrupted ({why}) before the session started; nothing was written")]
    InterruptedBeforeStart { why: String },
    /// The run was cancelled before it took the session in flight up again.
    #[error("interrupted ({why}) before the session was taken up again; nothing was written")]
    InterruptedBeforeResume { why: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<JournalError> for AppError {
    fn from(e: JournalError) -> Self {
        AppError::Journal(e)
    }
}

impl From<EngineError> for AppError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Journal(j) => AppError::Journal(j),
            EngineError::Model(m) => AppError::NotAllowed(m),
            other => AppError::Engine(other),
        }
    }
}
