//! The core's errors in the CLI's words: the core says what is wrong, the
//! CLI adds which of its verbs gets you out, and picks the exit code.

use super::{Output, exit, output};
use duplex_core::app::AppError;
use duplex_core::journal::JournalError;
use duplex_core::policy::LoadError;

/// The message for an error, with the CLI's way out where there is one.
pub fn message(err: &AppError) -> String {
    match err {
        AppError::Journal(j) => journal(j),
        AppError::Engine(duplex_core::engine::EngineError::Journal(j)) => journal(j),
        AppError::OtherSessionInFlight { .. } => format!(
            "{err} — `duplex resume` carries it on, `duplex abort` ends it, `duplex status` shows where it is"
        ),
        AppError::PolicyCopy { .. } => {
            format!("{err}; `duplex abort` still works from what the session pinned")
        }
        other => other.to_string(),
    }
}

pub fn journal(err: &JournalError) -> String {
    match err {
        JournalError::Fsync { .. } => format!("{err}. Check the disk, then run `duplex resume`"),
        JournalError::Poisoned { .. } => {
            format!("{err}; run `duplex resume` to continue from what is on disk")
        }
        JournalError::Locked { .. } => format!(
            "{err}; is another `duplex apply` running? If that process is dead, run `duplex unlock --force`"
        ),
        JournalError::StateDirMissing { .. } => {
            format!("{err}; pass --state-dir or set DUPLEX_STATE_DIR")
        }
        other => other.to_string(),
    }
}

/// The exit code of a failed command.
pub fn code(err: &AppError) -> u8 {
    match err {
        AppError::Load(LoadError::Unreadable { .. }) => exit::USAGE,
        AppError::InterruptedBeforeStart { .. } | AppError::InterruptedBeforeResume { .. } => {
            exit::INTERRUPTED
        }
        _ => exit::INVALID,
    }
}

/// Report a failed command on stderr (or as `{"error": …}` with `--output
/// json`, on stdout); returns its exit code.
pub fn report(output_format: Output, err: &AppError) -> u8 {
    if let AppError::Load(e) = err {
        return report_load(e);
    }
    fail(output_format, &message(err));
    code(err)
}

/// Report a message as an error; returns the generic failure code.
pub fn fail(output_format: Output, message: &str) -> u8 {
    match output_format {
        Output::Json => output::json_pretty(&serde_json::json!({ "error": message })),
        Output::Human => {
            let mut lines = message.lines();
            if let Some(first) = lines.next() {
                output::eline(&format!("error: {first}"));
            }
            for l in lines {
                output::eline(l);
            }
        }
    }
    exit::INVALID
}

/// Report a policy that failed to load; returns the exit code.
pub fn report_load(err: &LoadError) -> u8 {
    match err {
        LoadError::Invalid(diags) => {
            for d in diags {
                output::eline(&d.to_string());
            }
            exit::INVALID
        }
        LoadError::Unreadable { .. } => {
            output::eline(&format!("error: {err}"));
            exit::USAGE
        }
    }
}
