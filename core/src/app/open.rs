//! Opening a session for writing: the one in flight (its records checked, a
//! torn tail cut, its own policy and pinned plugins), or a new one created
//! atomically with its first record, its policy copy and its plugin copies.

use super::AppError;
use crate::engine::event::HardwarePin;
use crate::engine::setup::{Plugins, pinned_copy};
use crate::engine::{Event, JOURNAL_FORMAT, Session};
use crate::journal::{LockedStateDir, SessionInfo, SessionWriter, TornTail};
use crate::policy::{self, LoadedPolicy, PluginRef};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The session's copy of the policy it started with.
pub const POLICY_COPY: &str = "policy.yaml";

/// An unfinished session, opened for appending.
pub(super) struct Current {
    pub info: SessionInfo,
    pub writer: SessionWriter,
    pub session: Session,
    /// An incomplete last record that was cut on opening.
    pub torn_tail: Option<TornTail>,
}

/// The unfinished session, if any: read, checked and folded, a torn tail
/// cut. A session with no record at all (left by an older release's crash
/// right after creating it) is removed: there is nothing in it.
pub(super) fn current(dir: &LockedStateDir) -> Result<Option<Current>, AppError> {
    let Some(info) = dir.current_session()? else {
        return Ok(None);
    };
    let (writer, report) = dir.open_session::<Event>(&info.id)?;
    if report.records.is_empty() {
        drop(writer);
        dir.discard_empty_session(&info.id)?;
        return Ok(None);
    }
    let session = Session::fold(report.records.iter().map(|r| (r.seq, r.ts_ms, &r.event)))
        .map_err(|source| AppError::Fold {
            session: info.id.clone(),
            source,
        })?;
    Ok(Some(Current {
        info,
        writer,
        session,
        torn_tail: report.torn_tail,
    }))
}

/// The policy a session runs: its own copy (loaded as if from
/// `policy_file`), checked against the digest it started with.
pub(super) fn policy_copy(
    info: &SessionInfo,
    policy_file: &str,
    policy_digest: &str,
) -> Result<LoadedPolicy, AppError> {
    let path = info.dir.join(POLICY_COPY);
    let bad = |why: String| AppError::PolicyCopy {
        path: path.clone(),
        why,
    };
    let bytes = crate::files::read_regular(&path, "a policy copy", policy::MAX_POLICY_BYTES)
        .map_err(|e| bad(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8 text".into()))?;
    let loaded = policy::load_text(&text, Path::new(policy_file)).map_err(|e| match e {
        policy::LoadError::Invalid(d) => bad(d
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("; ")),
        other => bad(other.to_string()),
    })?;
    if loaded.digest.as_str() != policy_digest {
        return Err(bad(format!(
            "it has sha256 {}, but the session started with {policy_digest}",
            loaded.digest
        )));
    }
    Ok(loaded)
}

/// The text of the session's policy copy while it is still the one the
/// session started with (its digest): the text that passed every check
/// when the session started. `None` when it is missing, unreadable or
/// changed.
pub(super) fn unchanged_copy(info: &SessionInfo, policy_digest: &str) -> Option<String> {
    let path = info.dir.join(POLICY_COPY);
    let bytes =
        crate::files::read_regular(&path, "a policy copy", policy::MAX_POLICY_BYTES).ok()?;
    (policy::Sha256::of(&bytes).as_str() == policy_digest)
        .then(|| String::from_utf8(bytes).ok())
        .flatten()
}

/// The session's policy copy for a query (`status`): an unchanged copy is
/// only parsed, not validated again (a command that runs the session,
/// such as `resume`, loads it with [`policy_copy`]); a changed or unusable
/// one goes through [`policy_copy`], which says what is wrong with it.
pub(super) fn policy_copy_for_query(
    info: &SessionInfo,
    policy_file: &str,
    policy_digest: &str,
) -> Result<LoadedPolicy, AppError> {
    unchanged_copy(info, policy_digest)
        .and_then(|text| policy::load_checked_text(&text, Path::new(policy_file)))
        .map_or_else(|| policy_copy(info, policy_file, policy_digest), Ok)
}

/// The policy an abort runs when the session's copy cannot be used: the
/// target and its pinned hardware plugin, the default rules, nothing else.
pub(super) fn abort_only_policy(session: &Session) -> Option<LoadedPolicy> {
    let pin = session.hardware.as_ref()?;
    let document = serde_json::json!({
        "apiVersion": "duplex.dev/v1alpha1",
        "kind": "UpgradePolicy",
        "metadata": { "name": session.policy },
        "spec": {
            "target": { "name": session.target, "plugin": pin.plugin.name, "with": pin.with },
            "software": [],
            "plugins": [pin.plugin],
        }
    });
    let policy = serde_json::from_value(document).ok()?;
    let file = PathBuf::from(&session.policy_file);
    Some(LoadedPolicy {
        policy,
        base_dir: file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        file,
        digest: session.policy_digest.parse().ok()?,
        text: String::new(),
        origin: session.origin.clone(),
    })
}

/// Start a new session for `policy`, whose `plugins` were loaded from its
/// sources: the first record, the policy copy (exactly the text that was
/// validated) and a copy of each plugin component appear together.
pub(super) fn create(
    dir: &LockedStateDir,
    policy: &LoadedPolicy,
    plugins: &Plugins,
    ts_ms: u64,
) -> Result<(SessionWriter, Session, Event), AppError> {
    let spec = &policy.policy.spec;
    let file = absolute(&policy.file);
    let hardware = spec.plugin(&spec.target.plugin).map(|p| {
        Box::new(HardwarePin {
            plugin: PluginRef {
                source: if duplex_oci::is_oci(&p.source) {
                    p.source.clone()
                } else {
                    absolute(&policy.resolve(&p.source)).display().to_string()
                },
                // The digest it was loaded with, which an `oci://` source
                // may leave to its manifest: an abort never needs the
                // registry.
                sha256: plugins
                    .get(&p.name)
                    .and_then(|loaded| loaded.sha256().parse().ok())
                    .or_else(|| p.sha256.clone()),
                ..p.clone()
            },
            with: spec.target.with.clone(),
        })
    });
    let first = Event::SessionStarted {
        policy: policy.policy.metadata.name.clone(),
        policy_file: file.display().to_string(),
        policy_digest: policy.digest.to_string(),
        target: spec.target.name.clone(),
        format: JOURNAL_FORMAT,
        hardware,
        origin: policy.origin.clone(),
    };
    let mut files = vec![(PathBuf::from(POLICY_COPY), policy.text.clone().into_bytes())];
    let oci_pins: BTreeMap<&str, &str> = spec
        .plugins
        .iter()
        .filter(|p| duplex_oci::is_oci(&p.source))
        .filter_map(|p| Some((p.name.as_str(), plugins.get(&p.name)?.sha256())))
        .collect();
    if !oci_pins.is_empty() {
        files.push((
            PathBuf::from(crate::engine::setup::OCI_PINS),
            serde_json::to_vec(&oci_pins)
                .map_err(|e| AppError::Internal(format!("cannot record the plugin pins: {e}")))?,
        ));
    }
    for (name, plugin) in plugins {
        if spec.plugin(name).is_none() {
            return Err(AppError::Internal(format!(
                "plugin `{name}` is not in the policy"
            )));
        }
        // The copy is the very bytes that were verified against the pin
        // and loaded (not the file read again: it may have changed since).
        let bytes = plugin.component_bytes().to_vec();
        let relative = pinned_copy(Path::new(""), plugin.sha256());
        if !files.iter().any(|(p, _)| *p == relative) {
            files.push((relative, bytes));
        }
    }
    let writer = dir.create_session_with(ts_ms, &first, &files)?;
    let session = Session::start(&first, ts_ms).map_err(|source| AppError::Fold {
        session: writer.id().clone(),
        source,
    })?;
    Ok((writer, session, first))
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
