//! What the agent remembers between runs, in `<state>/agent/reconcile.json`
//! (written whole, atomically): the policy digest last achieved (a
//! committed session) and the digests abandoned (their session aborted,
//! or is held and not released): never run again on their own until the
//! source changes; and the fleet slot this host holds, if any, with how
//! its session ended when that is not yet reported (see `gate`).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Achieved {
    pub digest: String,
    pub revision: Option<String>,
    pub session: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReconcileRecord {
    pub achieved: Option<Achieved>,
    /// Digest → the session that gave it up.
    pub abandoned: std::collections::BTreeMap<String, String>,
    /// A fleet slot taken and not yet given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<HeldSlot>,
}

/// A slot of the fleet's semaphore this host holds: taken before a
/// session leaves Idle, given back once it has ended and that is reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldSlot {
    /// Where the slot was taken (the FleetLock server, or the fleet).
    pub from: String,
    /// The rollout the slot belongs to (the fleet on etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    /// When it was taken (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_ms: Option<u64>,
    /// The session that ran under it, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// How that session ended, once it has: `committed` or `aborted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<String>,
}

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("agent").join("reconcile.json")
}

impl ReconcileRecord {
    /// The record, or an empty one when there is none yet. A damaged file
    /// is an error: guessing could run an abandoned policy again.
    pub fn load(state_dir: &Path) -> Result<ReconcileRecord, String> {
        let path = path(state_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: not the agent's record: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ReconcileRecord::default()),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), String> {
        let path = path(state_dir);
        let dir = path.parent().expect("a file in agent/");
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let tmp = dir.join(".reconcile.json.tmp");
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(dir)?.sync_all()
        };
        write().map_err(|e| format!("{}: {e}", path.display()))
    }
}
