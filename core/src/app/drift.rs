//! Drift: the policy a session runs (its own copy, by digest) against the
//! policy file as it is now. Computed here only; `status`, `plan` and `apply`
//! all ask.

use crate::engine::Session;
use crate::policy::{LoadedPolicy, PolicyAction, Sha256};
use serde::{Deserialize, Serialize};

/// How the policy file differs from what the session runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Drift {
    /// The file has other contents than the session started with.
    #[serde(rename_all = "camelCase")]
    Changed {
        file: String,
        recorded: String,
        current: String,
        /// The file now declares `action: abort`, which is applied.
        declares_abort: bool,
    },
    /// The file is gone (the session keeps its own copy).
    Gone { file: String },
}

impl Drift {
    /// The file's digest now, when there is a file.
    pub fn current(&self) -> Option<&str> {
        match self {
            Drift::Changed { current, .. } => Some(current),
            Drift::Gone { .. } => None,
        }
    }
}

/// Drift between a session and a policy that was just loaded (what `apply`
/// and `plan` were given).
pub fn against(session: &Session, file: &LoadedPolicy) -> Option<Drift> {
    (session.policy_digest != file.digest.as_str()).then(|| Drift::Changed {
        file: file.file.display().to_string(),
        recorded: session.policy_digest.clone(),
        current: file.digest.to_string(),
        declares_abort: file.policy.spec.action == PolicyAction::Abort,
    })
}

/// Drift between a session and the file it started from, read now (for
/// `status`; only the digest is computed, nothing is parsed).
pub fn of_file(session: &Session) -> Option<Drift> {
    match std::fs::read(&session.policy_file) {
        Ok(bytes) => {
            let current = Sha256::of(&bytes).to_string();
            (current != session.policy_digest).then(|| Drift::Changed {
                file: session.policy_file.clone(),
                recorded: session.policy_digest.clone(),
                current,
                declares_abort: false,
            })
        }
        Err(_) => Some(Drift::Gone {
            file: session.policy_file.clone(),
        }),
    }
}
