//! The queries: what a session is doing, what happened, what an operator
//! may do next. They take no lock and change nothing, so they work while a
//! runner drives the session.

use super::drift::{self, Drift};
use super::open::abort_only_policy;
use super::{App, AppError};
use crate::engine::decide::pending_approval;
use crate::engine::operator::{self, OperatorRequest, OperatorVerb, Refused};
use crate::engine::{Event, Outcome, RequestId, Session, SessionSummary};
use crate::journal::{LockHolder, RecordStream, SessionId, SessionInfo, StateDir, TornTail};
use crate::model::{Configuration, Phase, UpgradeState};
use crate::policy::{ApprovalPoint, LoadedPolicy};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What an operator may do next, as the model and the session allow it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OperatorCommand {
    Approve,
    Retry,
    Abort,
    Hold,
    Release,
    Resume,
}

impl OperatorCommand {
    pub fn name(self) -> &'static str {
        match self {
            OperatorCommand::Approve => "approve",
            OperatorCommand::Retry => "retry",
            OperatorCommand::Abort => "abort",
            OperatorCommand::Hold => "hold",
            OperatorCommand::Release => "release",
            OperatorCommand::Resume => "resume",
        }
    }

    /// What the command will do to a session at `at` (waiting at
    /// `waiting`, when it is), in words an operator confirms before a
    /// console sends it.
    pub fn consequence(self, at: &Configuration, waiting: Option<ApprovalPoint>) -> String {
        let state = at.state;
        match self {
            OperatorCommand::Approve => match waiting {
                Some(ApprovalPoint::Commit) => "Commit is the point of no return: once the \
                    session commits, the upgrade can no longer be aborted."
                    .into(),
                Some(ApprovalPoint::Merge) => "The merge process starts (PrepareMerge, then \
                    Merge): production moves to the upgraded side. An abort stays possible \
                    until Commit."
                    .into(),
                None => format!("The session goes on from {state}."),
            },
            OperatorCommand::Retry => format!(
                "The failed request of {state} runs again from its start (attempt {}).",
                at.attempt + 1
            ),
            OperatorCommand::Abort => format!(
                "The session aborts from {state}: the Upgrade Side is given up, the \
                 original configuration restored, and the session ends Aborted."
            ),
            OperatorCommand::Hold => "The session stops at its next safe point and waits \
                for a release; nothing advances meanwhile."
                .into(),
            OperatorCommand::Release => {
                format!("The hold is lifted: the session goes on from {state}.")
            }
            OperatorCommand::Resume => format!("A runner takes the session up again in {state}."),
        }
    }

    /// The command an operator's verb gives.
    pub fn of(verb: OperatorVerb) -> OperatorCommand {
        match verb {
            OperatorVerb::Approve => OperatorCommand::Approve,
            OperatorVerb::Retry => OperatorCommand::Retry,
            OperatorVerb::Abort => OperatorCommand::Abort,
            OperatorVerb::Hold => OperatorCommand::Hold,
            OperatorVerb::Release => OperatorCommand::Release,
        }
    }
}

/// The live process holding the state dir's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunnerInfo {
    pub pid: u32,
    pub since_ms: u64,
}

impl From<LockHolder> for RunnerInfo {
    fn from(h: LockHolder) -> Self {
        RunnerInfo {
            pid: h.pid,
            since_ms: h.since_ms,
        }
    }
}

/// An approval point the session waits at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitingFor {
    pub point: ApprovalPoint,
    /// Who the policy lets approve (empty: anyone).
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub state_dir: PathBuf,
    /// A live runner holds the state dir (driving or preparing a session).
    pub runner: Option<RunnerInfo>,
    /// The session in flight, else the last one; `None` when none ever ran.
    pub session: Option<SessionStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionStatus {
    pub id: SessionId,
    pub finished: bool,
    /// Where the session stands: its policy and target, configuration,
    /// hold, times and outcome (`ended`).
    pub session: SessionSummary,
    /// The piece of work in hand while Busy or Broken.
    pub request: Option<RequestId>,
    pub waiting_for: Option<WaitingFor>,
    pub drift: Option<Drift>,
    pub next: Vec<OperatorCommand>,
    /// What each of `next` would do, for a console's confirmation.
    pub consequences: Vec<Consequence>,
    /// Why the session's copy of its policy cannot be used (then only an
    /// abort, from what the session pinned, is possible).
    pub policy_copy_problem: Option<String>,
    /// A torn last record (a write in progress, or a crash the next writer
    /// cuts).
    pub torn_tail: Option<TornTail>,
}

/// What one operator command would do now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consequence {
    pub command: OperatorCommand,
    pub text: String,
}

/// One line of `history`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub session: SessionId,
    pub finished: bool,
    /// `None` when the journal cannot be read (see `problem`).
    pub policy: Option<String>,
    pub target: Option<String>,
    pub started_ms: Option<u64>,
    pub duration_ms: Option<u64>,
    /// Where the session is, for one in flight.
    pub state: Option<UpgradeState>,
    pub outcome: Option<Outcome>,
    /// The state an aborted session aborted from.
    pub aborted_from: Option<UpgradeState>,
    pub held: bool,
    pub problem: Option<String>,
}

/// A session's records, streamed: checked whole when the log was opened,
/// then read a chunk at a time as they are iterated.
pub struct SessionLog {
    pub info: SessionInfo,
    pub records: RecordStream<Event>,
    pub torn_tail: Option<TornTail>,
}

/// A session in flight, as `plan` reports it against a policy file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InFlight {
    pub session: SessionId,
    pub policy: String,
    pub target: String,
    pub at: Configuration,
    pub drift: Option<Drift>,
}

impl App {
    fn read_dir(&self) -> Result<StateDir, AppError> {
        Ok(StateDir::read_only(self.state_dir())?)
    }

    /// The session in flight (else the last one) and what may be done next.
    pub fn status(&self) -> Result<StatusReport, AppError> {
        let runner = StateDir::read_only(self.state_dir())
            .ok()
            .and_then(|d| d.lock_holder())
            .map(RunnerInfo::from);
        let dir = match StateDir::read_only(self.state_dir()) {
            Ok(dir) => dir,
            Err(crate::journal::JournalError::StateDirMissing { .. }) => {
                return Ok(StatusReport {
                    state_dir: self.state_dir().to_path_buf(),
                    runner,
                    session: None,
                });
            }
            Err(e) => return Err(e.into()),
        };
        // The session in flight is the newest; with none in flight, the
        // newest is the last one.
        let Some(info) = dir.newest_session()? else {
            return Ok(StatusReport {
                state_dir: self.state_dir().to_path_buf(),
                runner,
                session: None,
            });
        };
        // A finished session, from its marker (its journal's end checked).
        if let Some(summary) = marked_summary(&dir, &info, true) {
            let policy_copy_problem = finished_copy_problem(&info, &summary);
            return Ok(StatusReport {
                state_dir: self.state_dir().to_path_buf(),
                runner,
                session: Some(session_status(
                    &info,
                    summary,
                    SessionExtras {
                        policy_copy_problem,
                        ..SessionExtras::default()
                    },
                )),
            });
        }
        let Some((session, torn_tail)) = load(&dir, &info)? else {
            // Created by an older release that crashed before its first
            // record: nothing ran; the next apply clears it away.
            return Ok(StatusReport {
                state_dir: self.state_dir().to_path_buf(),
                runner,
                session: None,
            });
        };
        let copy =
            super::open::policy_copy_for_query(&info, &session.policy_file, &session.policy_digest);
        let policy_copy_problem = copy.as_ref().err().map(|e| e.to_string());
        let waiting_for = copy.as_ref().ok().and_then(|p| waiting_for(&session, p));
        let next = if info.is_finished() || session.ended.is_some() {
            Vec::new()
        } else {
            let wall_ms = self.clock().wall_ms();
            let now = crate::engine::Now {
                wall_ms,
                session_age_ms: wall_ms.saturating_sub(session.started_ms),
            };
            next_commands(&session, copy.as_ref().ok(), now, runner.is_some())
        };
        let drift = if info.is_finished() {
            None
        } else {
            drift::of_file(&session)
        };
        Ok(StatusReport {
            state_dir: self.state_dir().to_path_buf(),
            runner,
            session: Some(session_status(
                &info,
                SessionSummary::from(&session),
                SessionExtras {
                    waiting_for,
                    drift,
                    next,
                    policy_copy_problem,
                    torn_tail,
                },
            )),
        })
    }

    /// Every session, oldest first.
    pub fn history(&self) -> Result<Vec<HistoryEntry>, AppError> {
        let dir = match StateDir::read_only(self.state_dir()) {
            Ok(dir) => dir,
            Err(crate::journal::JournalError::StateDirMissing { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut entries = Vec::new();
        for info in dir.sessions()? {
            // A finished session from its marker (its journal's length
            // checked); one in flight, or with an older marker, replayed.
            let read = match marked_summary(&dir, &info, false) {
                Some(summary) => Ok(Some(summary)),
                None => load(&dir, &info)
                    .map(|loaded| loaded.map(|(session, _)| SessionSummary::from(&session))),
            };
            let entry = match read {
                Ok(Some(s)) => HistoryEntry {
                    session: info.id.clone(),
                    finished: info.is_finished(),
                    policy: Some(s.policy),
                    target: Some(s.target),
                    started_ms: Some(s.started_ms),
                    duration_ms: Some(s.last_ms.saturating_sub(s.started_ms)),
                    state: (s.ended.is_none()).then_some(s.config.state),
                    outcome: s.ended,
                    aborted_from: s.aborted_from,
                    held: s.held.is_some(),
                    problem: None,
                },
                Ok(None) => HistoryEntry {
                    problem: Some("created but never started: nothing was recorded".into()),
                    ..empty_entry(&info)
                },
                Err(e) => HistoryEntry {
                    problem: Some(format!("unreadable: {e}")),
                    ..empty_entry(&info)
                },
            };
            entries.push(entry);
        }
        Ok(entries)
    }

    /// A session's records: `id`, or the latest session. The journal is
    /// checked whole before this returns; the records are then read as
    /// they are iterated, so memory does not grow with the journal.
    pub fn log(&self, id: Option<&SessionId>) -> Result<SessionLog, AppError> {
        let dir = self.read_dir()?;
        let info = match id {
            Some(id) => dir.session(id)?,
            None => dir.newest_session()?.ok_or_else(|| AppError::NoSession {
                state_dir: self.state_dir().to_path_buf(),
            })?,
        };
        let records = dir.stream_session::<Event>(&info)?;
        Ok(SessionLog {
            info,
            torn_tail: records.torn_tail().cloned(),
            records,
        })
    }

    /// A session's activity as a tree (`id`, or the latest session). A
    /// record the fold refuses ends the tree there and is reported.
    pub fn activity(
        &self,
        id: Option<&SessionId>,
    ) -> Result<(SessionId, super::activity::ActivityTree), AppError> {
        let log = self.log(id)?;
        let mut tree = super::activity::ActivityTree::new();
        for record in log.records {
            let r = record?;
            tree.push(r.seq, r.ts_ms, &r.event)
                .map_err(|source| AppError::Fold {
                    session: log.info.id.clone(),
                    source,
                })?;
        }
        Ok((log.info.id, tree))
    }

    /// Follow a session's records as they are appended.
    pub fn follow(&self, id: &SessionId) -> Result<crate::journal::Follower<Event>, AppError> {
        Ok(self.read_dir()?.follow(id)?)
    }

    /// Whether a live runner holds the state dir.
    pub fn runner(&self) -> Option<RunnerInfo> {
        StateDir::read_only(self.state_dir())
            .ok()
            .and_then(|d| d.lock_holder())
            .map(RunnerInfo::from)
    }

    /// The session in flight, and how `file` differs from what it runs.
    pub fn in_flight(&self, file: &LoadedPolicy) -> Result<Option<InFlight>, AppError> {
        let dir = match StateDir::read_only(self.state_dir()) {
            Ok(dir) => dir,
            Err(crate::journal::JournalError::StateDirMissing { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let Some(info) = dir.current_session()? else {
            return Ok(None);
        };
        let Some((session, _)) = load(&dir, &info)? else {
            return Ok(None);
        };
        Ok(Some(InFlight {
            session: info.id.clone(),
            policy: session.policy.clone(),
            target: session.target.clone(),
            drift: drift::against(&session, file),
            at: session.config,
        }))
    }
}

fn empty_entry(info: &SessionInfo) -> HistoryEntry {
    HistoryEntry {
        session: info.id.clone(),
        finished: info.is_finished(),
        policy: None,
        target: None,
        started_ms: None,
        duration_ms: None,
        state: None,
        outcome: None,
        aborted_from: None,
        held: false,
        problem: None,
    }
}

/// A finished session's summary from its marker, when the marker has one
/// and the journal ends where the marker says (its length; with
/// `check_record`, its last record too). `None` sends the caller to the
/// journal itself.
fn marked_summary(
    dir: &StateDir,
    info: &SessionInfo,
    check_record: bool,
) -> Option<SessionSummary> {
    let value = info.finished.as_ref()?.summary.as_ref()?;
    let summary = SessionSummary::deserialize(value).ok()?;
    // The engine finishes only a session that ended.
    (summary.ended.is_some() && dir.ends_as_marked(info, check_record)).then_some(summary)
}

/// What a finished session's status says of its policy copy. The copy is
/// the text that was validated when the session started: while it still
/// has that digest it is not validated again. Otherwise it is loaded, to
/// say what is wrong with it.
fn finished_copy_problem(info: &SessionInfo, summary: &SessionSummary) -> Option<String> {
    if super::open::unchanged_copy(info, &summary.policy_digest).is_some() {
        return None;
    }
    super::open::policy_copy(info, &summary.policy_file, &summary.policy_digest)
        .err()
        .map(|e| e.to_string())
}

/// A session's fold: from its writer's snapshot when it checks out against
/// the journal, else from the first record; `None` for a session with no
/// record. Also any torn tail.
fn load(
    dir: &StateDir,
    info: &SessionInfo,
) -> Result<Option<(Session, Option<TornTail>)>, AppError> {
    let read = dir.read_session_after_snapshot::<Session, Event>(info)?;
    let records = read.records.iter().map(|r| (r.seq, r.ts_ms, &r.event));
    let fold_error = |source| AppError::Fold {
        session: info.id.clone(),
        source,
    };
    let session = match read.snapshot {
        // The snapshot's state folds in the record it names: its last event
        // was written at that record's time.
        Some(snapshot) if snapshot.state.last_ms == snapshot.ts_ms => {
            let mut session = snapshot.state;
            for (seq, ts, event) in records {
                session.apply_at(seq, ts, event).map_err(fold_error)?;
            }
            session
        }
        Some(_) => {
            // Not the fold it claims to be: read the whole journal.
            let report = dir.read_session::<Event>(&info.id)?;
            let all = report.records.iter().map(|r| (r.seq, r.ts_ms, &r.event));
            return Session::fold(all)
                .map(|session| Some((session, report.torn_tail)))
                .map_err(fold_error);
        }
        None if read.records.is_empty() => return Ok(None),
        None => Session::fold(records).map_err(fold_error)?,
    };
    Ok(Some((session, read.torn_tail)))
}

/// What a status shows beyond the session's own summary.
#[derive(Default)]
struct SessionExtras {
    waiting_for: Option<WaitingFor>,
    drift: Option<Drift>,
    next: Vec<OperatorCommand>,
    policy_copy_problem: Option<String>,
    torn_tail: Option<TornTail>,
}

fn session_status(info: &SessionInfo, s: SessionSummary, extras: SessionExtras) -> SessionStatus {
    let request = match s.config.phase() {
        Phase::Running | Phase::Failed => s.request.clone(),
        _ => None,
    };
    let waiting = extras.waiting_for.as_ref().map(|w| w.point);
    let consequences = extras
        .next
        .iter()
        .map(|c| Consequence {
            command: *c,
            text: c.consequence(&s.config, waiting),
        })
        .collect();
    SessionStatus {
        id: info.id.clone(),
        finished: info.is_finished(),
        session: s,
        request,
        waiting_for: extras.waiting_for,
        drift: extras.drift,
        next: extras.next,
        consequences,
        policy_copy_problem: extras.policy_copy_problem,
        torn_tail: extras.torn_tail,
    }
}

fn waiting_for(session: &Session, policy: &LoadedPolicy) -> Option<WaitingFor> {
    if session.ended.is_some() || session.held.is_some() || session.config.phase() != Phase::Done {
        return None;
    }
    let spec = &policy.policy.spec;
    pending_approval(session, spec).map(|point| WaitingFor {
        point,
        approvers: spec
            .requires_approval(point)
            .map(|a| a.approvers.clone())
            .unwrap_or_default(),
    })
}

/// What an operator may do with a session in flight, as the checks every
/// command goes through answer (`operator::check`). `policy` is its usable
/// policy copy (`None`: only an abort from what the session pinned is
/// possible); `running`: a live runner drives it (commands go to it, and
/// there is nothing to resume).
pub fn next_commands(
    session: &Session,
    policy: Option<&LoadedPolicy>,
    now: crate::engine::Now,
    running: bool,
) -> Vec<OperatorCommand> {
    if session.ended.is_some() {
        return Vec::new();
    }
    let pinned = abort_only_policy(session);
    let mut next: Vec<OperatorCommand> = OperatorVerb::ALL
        .into_iter()
        .filter(|verb| {
            let spec = match (policy, verb) {
                (Some(p), _) => &p.policy.spec,
                (None, OperatorVerb::Abort) => match &pinned {
                    Some(p) => &p.policy.spec,
                    None => return false,
                },
                (None, _) => return false,
            };
            let request = OperatorRequest {
                verb: *verb,
                by: String::new(),
                reason: Some("status".into()),
            };
            // Whether anyone may approve here, not who.
            matches!(
                operator::check(&request, session, spec, now),
                Ok(_) | Err(Refused::NotAnApprover { .. })
            )
        })
        .map(OperatorCommand::of)
        .collect();
    if policy.is_some() && !running {
        next.push(OperatorCommand::Resume);
    }
    next
}
