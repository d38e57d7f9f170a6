//! Waking the agent when a watched directory changes, instead of polling.

use std::path::PathBuf;

use notify::event::{AccessKind, AccessMode, EventKind, MetadataKind, ModifyKind};
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc::UnboundedSender;

use super::SourceError;

/// Watch `paths` (each a directory, not recursively) and send `()` on `tx`
/// whenever something in one of them is created, written, renamed or
/// removed, or the watch itself reports an error (the receiver then
/// fetches and finds out). Reading a file is not a change: the agent reads
/// the policy it watches, and must not wake itself. One burst of writes can
/// send several `()`; the receiver drains the channel after waking
/// (`while rx.try_recv().is_ok() {}`). Dropping the watcher stops it.
///
/// A watched directory that is replaced (renamed over, deleted and made
/// again) is no longer watched; the fetch interval still covers it.
pub fn watch(
    paths: Vec<PathBuf>,
    tx: UnboundedSender<()>,
) -> Result<notify::RecommendedWatcher, SourceError> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let wake = match event {
            Ok(event) => is_change(&event.kind),
            Err(_) => true,
        };
        if wake {
            // The receiver gone means the agent is stopping.
            let _ = tx.send(());
        }
    })
    .map_err(|err| SourceError::Watch {
        path: paths.first().cloned().unwrap_or_default(),
        message: err.to_string(),
    })?;
    for path in &paths {
        watcher
            .watch(path, RecursiveMode::NonRecursive)
            .map_err(|err| SourceError::Watch {
                path: path.clone(),
                message: err.to_string(),
            })?;
    }
    Ok(watcher)
}

fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime)) => false,
        EventKind::Any
        | EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Other => true,
    }
}
