//! Opening a session for writing: start a new one for a policy, or resume
//! the one in flight; and the operator's commands on it. Each keeps the
//! session's own copy of its policy (`policy.yaml` beside the journal), so a
//! changed file is reported as drift and never silently applied.

use super::session::{Event, Session};
use super::{EngineError, now_ms};
use crate::journal::{LockedStateDir, ReadReport, SessionInfo, SessionWriter, TornTail};
use crate::policy::{self, LoadedPolicy};
use std::path::{Path, PathBuf};

/// The session's copy of the policy it started with.
pub const POLICY_SNAPSHOT: &str = "policy.yaml";

pub struct Opened {
    pub writer: SessionWriter,
    pub session: Session,
    /// The policy the session runs (its own copy).
    pub policy: LoadedPolicy,
    /// Set when a torn last record was cut on opening.
    pub torn_tail: Option<TornTail>,
    pub resumed: bool,
}

/// An unfinished session opened for writing, with its records.
pub type Current = (SessionInfo, SessionWriter, ReadReport<Event>);

/// The unfinished session, if any, read and checked (a torn tail is cut).
pub fn current(
    dir: &LockedStateDir,
) -> Result<Option<(SessionInfo, SessionWriter, ReadReport<Event>)>, EngineError> {
    let Some(info) = dir.current_session().map_err(EngineError::Journal)? else {
        return Ok(None);
    };
    let (writer, report) = dir
        .open_session::<Event>(&info.id)
        .map_err(EngineError::Journal)?;
    Ok(Some((info, writer, report)))
}

/// `duplex apply FILE`: resume the session in flight (reporting drift if
/// the file changed since it started), or start a new one.
pub fn for_apply(
    dir: &LockedStateDir,
    current: Option<Current>,
    file_policy: LoadedPolicy,
) -> Result<Opened, EngineError> {
    if let Some((info, writer, report)) = current {
        if ended(&report) {
            // Ended, but a crash came before it was marked finished: mark
            // it now, and start the new session this apply asks for.
            writer.finish().map_err(EngineError::Journal)?;
        } else if !report.records.is_empty() {
            let mut opened = resume(&info, writer, report)?;
            if opened.policy.digest != file_policy.digest {
                let drift = Event::Drift {
                    recorded: opened.policy.digest.to_string(),
                    current: file_policy.digest.to_string(),
                };
                record(&mut opened, drift)?;
                // A declared abort is the one change that is applied.
                if file_policy.policy.spec.action == policy::PolicyAction::Abort
                    && !opened.session.abort_requested
                {
                    record(
                        &mut opened,
                        Event::AbortRequested {
                            by: "policy".into(),
                        },
                    )?;
                }
            }
            return Ok(opened);
        } else {
            // Created but never started (a crash right after creating it).
            return start(&info, writer, file_policy);
        }
    }
    let writer = dir.create_session().map_err(EngineError::Journal)?;
    let info = dir.session(writer.id()).map_err(EngineError::Journal)?;
    start(&info, writer, file_policy)
}

/// Append an event outside the engine loop, keeping the fold in step.
pub fn record(opened: &mut Opened, event: Event) -> Result<(), EngineError> {
    opened.session.apply(&event).map_err(EngineError::Model)?;
    opened
        .writer
        .append_at(now_ms(), &event)
        .map_err(EngineError::Journal)?;
    Ok(())
}

fn start(
    info: &SessionInfo,
    mut writer: SessionWriter,
    policy: LoadedPolicy,
) -> Result<Opened, EngineError> {
    let text = std::fs::read(&policy.file)
        .map_err(|e| EngineError::Snapshot(format!("{}: {e}", policy.file.display())))?;
    crate::journal::write_atomic(&info.dir.join(POLICY_SNAPSHOT), &text)
        .map_err(EngineError::Journal)?;
    let file = absolute(&policy.file);
    let started = Event::SessionStarted {
        policy: policy.policy.metadata.name.clone(),
        policy_file: file.display().to_string(),
        policy_digest: policy.digest.to_string(),
        target: policy.policy.spec.target.name.clone(),
    };
    let ts = now_ms();
    writer
        .append_at(ts, &started)
        .map_err(EngineError::Journal)?;
    let session = Session::fold([(1, ts, &started)]).map_err(EngineError::Fold)?;
    let policy =
        policy::load_text(&String::from_utf8_lossy(&text), &file).map_err(EngineError::Load)?;
    Ok(Opened {
        writer,
        session,
        policy,
        torn_tail: None,
        resumed: false,
    })
}

/// The policy of the session `current` opened, if it has started, and
/// whether that session is already over (ended, not yet marked finished).
pub fn running_policy(
    current: &Option<Current>,
) -> Result<Option<(LoadedPolicy, bool)>, EngineError> {
    match current {
        Some((info, _, report)) if !report.records.is_empty() => {
            let session = Session::fold(report.records.iter().map(|r| (r.seq, r.ts_ms, &r.event)))
                .map_err(EngineError::Fold)?;
            Ok(Some((snapshot(info, &session)?, ended(report))))
        }
        _ => Ok(None),
    }
}

/// Whether a session's records end with its last one (`sessionEnded`).
fn ended(report: &ReadReport<Event>) -> bool {
    report
        .records
        .last()
        .is_some_and(|r| matches!(r.event, Event::SessionEnded { .. }))
}

/// Fold a session's records and load its own copy of the policy.
fn resume(
    info: &SessionInfo,
    writer: SessionWriter,
    report: ReadReport<Event>,
) -> Result<Opened, EngineError> {
    let session = Session::fold(report.records.iter().map(|r| (r.seq, r.ts_ms, &r.event)))
        .map_err(EngineError::Fold)?;
    let policy = snapshot(info, &session)?;
    let mut opened = Opened {
        writer,
        session,
        policy,
        torn_tail: report.torn_tail,
        resumed: true,
    };
    if opened.session.ended.is_none() {
        let at = opened.session.config.to_string();
        record(
            &mut opened,
            Event::Resumed {
                pid: std::process::id(),
                at,
            },
        )?;
    }
    Ok(opened)
}

/// The policy a session runs, from the copy it keeps.
pub fn snapshot(info: &SessionInfo, session: &Session) -> Result<LoadedPolicy, EngineError> {
    let path = info.dir.join(POLICY_SNAPSHOT);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| EngineError::Snapshot(format!("{}: {e}", path.display())))?;
    let loaded =
        policy::load_text(&text, Path::new(&session.policy_file)).map_err(|e| match e {
            policy::LoadError::Invalid(d) => EngineError::Snapshot(
                d.iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            other => EngineError::Load(other),
        })?;
    if loaded.digest.as_str() != session.policy_digest {
        return Err(EngineError::Snapshot(format!(
            "{} has sha256 {}, but the session started with {}",
            path.display(),
            loaded.digest,
            session.policy_digest
        )));
    }
    Ok(loaded)
}

/// The session in flight, for `resume`, `approve`, `retry` and `abort`.
pub fn in_flight(dir: &LockedStateDir, current: Option<Current>) -> Result<Opened, EngineError> {
    match current {
        Some((info, writer, report)) if !report.records.is_empty() => resume(&info, writer, report),
        _ => Err(EngineError::NoSession(dir.path().display().to_string())),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
