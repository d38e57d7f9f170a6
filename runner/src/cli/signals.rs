//! Process signals, for whatever drives a session (the verbs, the agent),
//! handled once per process from its first instruction: the first SIGINT or
//! SIGTERM cancels the run, which records the interruption and stops at its
//! next safe point; a second one stops the process at once (the journal is
//! crash-safe: whoever takes the session up re-runs the request that was in
//! progress).

use super::{exit, output};
use duplex_core::cancel::Cancel;
use tokio::signal::unix::{SignalKind, signal};

/// For the verbs: watch for SIGINT and SIGTERM on the current runtime;
/// messages to stderr name `duplex resume`.
pub fn cancel_on_signal(cancel: Cancel) {
    on_signal(
        cancel,
        "the session is kept for `duplex resume`",
        "`duplex resume` re-runs the request that was in progress",
        output::eline,
    );
}

/// Watch for SIGINT and SIGTERM on the current runtime: the first cancels
/// `cancel`, saying what happens to the session (`kept`); the second exits
/// at once, saying what becomes of the request in progress (`again`).
pub(crate) fn on_signal(cancel: Cancel, kept: &'static str, again: &'static str, say: fn(&str)) {
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
                say(&format!(
                    "{why}: stopping at the next safe point; {kept} (send it again to stop at once)"
                ));
                cancel.cancel(why);
            } else {
                say(&format!("{why} again: stopping now; {again}"));
                std::process::exit(i32::from(exit::INTERRUPTED));
            }
        }
    });
}
