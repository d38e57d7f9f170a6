//! Process signals, handled once per process: SIGINT and SIGTERM cancel the
//! run, which stops at its next safe point (`duplex resume` carries on).

use duplex_core::engine::Cancel;
use tokio::signal::unix::{SignalKind, signal};

/// Cancel `cancel` on the first SIGINT or SIGTERM. Must be called inside
/// the runtime.
pub fn cancel_on_signal(cancel: Cancel) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        cancel.cancel(why);
    });
}
