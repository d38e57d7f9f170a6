//! Process signals, for the verbs that drive a session, handled once per
//! process from the verb's first instruction: the first SIGINT or SIGTERM
//! cancels the run, which records the interruption and stops at its next
//! safe point (`duplex resume` carries on); a second one stops the process
//! at once (the journal is crash-safe: a resume re-runs the request that was
//! in progress).

use super::{exit, output};
use duplex_core::cancel::Cancel;
use tokio::signal::unix::{SignalKind, signal};

/// Watch for SIGINT and SIGTERM on the current runtime.
pub fn cancel_on_signal(cancel: Cancel) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let why = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            count += 1;
            if count == 1 {
                output::eline(&format!(
                    "{why}: stopping at the next safe point; the session is kept for `duplex resume` (send it again to stop at once)"
                ));
                cancel.cancel(why);
            } else {
                output::eline(&format!(
                    "{why} again: stopping now; `duplex resume` re-runs the request that was in progress"
                ));
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}
