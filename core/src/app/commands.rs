//! The commands that drive a session: `apply`, `resume`, `approve`, `retry`,
//! `abort`. Each takes the state dir's lock, checks everything that can
//! refuse it before writing anything, does its one thing, then lets the
//! engine carry the session as far as it can go on its own.

use super::open::{self, Current};
use super::{App, AppError, drift};
use crate::cancel::Cancel;
use crate::engine::operator::{self, OperatorRequest, OperatorVerb, Runner};
use crate::engine::setup::{self, Plugins};
use crate::engine::sink::{EventSink, Notice};
use crate::engine::{Engine, Event, Recorder, RunParts, Session, Stop};
use crate::journal::{LockedStateDir, SessionId, SessionInfo, StateDir};
use crate::model::UpgradeState;
use crate::policy::{ApprovalPoint, LoadedPolicy, PolicyAction};
use serde::Serialize;

/// Who gives a command, as recorded in the journal and checked against a
/// policy's approvers. Front ends decide how they know (the CLI:
/// `DUPLEX_OPERATOR`, else the OS user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operator(pub String);

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Stop once this state's work is done, before leaving it.
    pub until: Option<UpgradeState>,
    /// At an approval point or a hold, wait for an operator's command sent
    /// through [`App::deliver`] instead of stopping (a long-running front
    /// end: the agent).
    pub wait_for_operator: bool,
}

/// How a run ended, and what a front end needs to say so.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    pub session: SessionId,
    #[serde(skip)]
    pub stop: Stop,
    pub summary: PolicySummary,
}

/// The policy a run ran, in brief.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicySummary {
    pub policy: String,
    pub target: String,
    /// `(name, version)` of each software item, in order.
    pub software: Vec<(String, String)>,
    /// The approvers the policy names at each approval point.
    pub approvers: Vec<(ApprovalPoint, Vec<String>)>,
}

impl PolicySummary {
    fn of(policy: &LoadedPolicy) -> PolicySummary {
        let spec = &policy.policy.spec;
        PolicySummary {
            policy: policy.policy.metadata.name.clone(),
            target: spec.target.name.clone(),
            software: spec
                .software
                .iter()
                .map(|s| (s.name.clone(), s.version.clone()))
                .collect(),
            approvers: spec
                .approvals
                .iter()
                .map(|a| (a.before, a.approvers.clone()))
                .collect(),
        }
    }

    pub fn approvers_at(&self, point: ApprovalPoint) -> &[String] {
        self.approvers
            .iter()
            .find(|(p, _)| *p == point)
            .map(|(_, who)| who.as_slice())
            .unwrap_or(&[])
    }
}

/// What to do with a session in flight once it is open, before the engine
/// runs.
enum Action {
    Resume,
    Operate(OperatorRequest),
}

impl Action {
    fn is_abort(&self) -> bool {
        matches!(self, Action::Operate(r) if r.verb == OperatorVerb::Abort)
    }
}

/// A session open for writing with everything its run needs.
struct Prepared {
    session: SessionId,
    recorder: Recorder,
    policy: LoadedPolicy,
    plugins: Plugins,
}

impl App {
    /// Run a session for `policy` — the text that was read and validated
    /// once, which is what the session keeps — or carry on the one in flight
    /// when it runs the same policy (a changed version of it is drift).
    pub async fn apply(
        &self,
        policy: LoadedPolicy,
        options: RunOptions,
        mut sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        let dir = StateDir::lock(self.state_dir())?;
        if let Some(current) = open::current(&dir)? {
            report_torn(&current, sink.as_mut());
            if current.session.ended.is_some() {
                // Over, but a crash came before it was marked finished: mark
                // it now, and start the new session this apply asks for.
                crate::engine::finish_session(current.writer, &current.session)?;
            } else {
                return self
                    .carry_on(current, Some(policy), Action::Resume, options, sink, cancel)
                    .await;
            }
        }
        self.start(&dir, policy, options, sink, cancel).await
    }

    /// Carry on the session in flight after a stop, a crash or a reboot.
    pub async fn resume(
        &self,
        options: RunOptions,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        self.command(Action::Resume, options, sink, cancel).await
    }

    /// Let a session waiting at an approval point go on.
    pub async fn approve(
        &self,
        by: &Operator,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        self.operate(
            request(OperatorVerb::Approve, by, None),
            RunOptions::default(),
            sink,
            cancel,
        )
        .await
    }

    /// Re-run the failed request of a Broken session.
    pub async fn retry(
        &self,
        by: &Operator,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        self.operate(
            request(OperatorVerb::Retry, by, None),
            RunOptions::default(),
            sink,
            cancel,
        )
        .await
    }

    /// Abort the session in flight (from PrepareSplit, Split, PrepareMerge,
    /// Merge): restore the original configuration, then Finish. Works from
    /// what the session pinned, whatever became of its policy file, its
    /// policy copy, its artifacts or its plugins' schemas.
    pub async fn abort(
        &self,
        by: &Operator,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        self.operate(
            request(OperatorVerb::Abort, by, None),
            RunOptions::default(),
            sink,
            cancel,
        )
        .await
    }

    /// Give an operator's command to the session in flight when no run
    /// holds it: take the lock, check and record the command, then let the
    /// engine carry the session as far as it goes (a hold stops it at once).
    /// While a run holds the session, commands go to it: [`App::deliver`].
    pub async fn operate(
        &self,
        request: OperatorRequest,
        options: RunOptions,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        self.command(Action::Operate(request), options, sink, cancel)
            .await
    }

    async fn command(
        &self,
        action: Action,
        options: RunOptions,
        mut sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        let no_session = || AppError::NoSession {
            state_dir: self.state_dir().to_path_buf(),
        };
        let dir = match StateDir::lock_existing(self.state_dir()) {
            Ok(dir) => dir,
            Err(crate::journal::JournalError::StateDirMissing { .. }) => return Err(no_session()),
            Err(e) => return Err(e.into()),
        };
        let current = open::current(&dir)?.ok_or_else(no_session)?;
        report_torn(&current, sink.as_mut());
        // The lock lives as long as the session's writer, through the run.
        drop(dir);
        self.carry_on(current, None, action, options, sink, cancel)
            .await
    }

    /// A new session: refused before anything is written when the window
    /// is not open, there is nothing to abort, or the policy's plugins or
    /// artifacts do not give what it asks.
    async fn start(
        &self,
        dir: &LockedStateDir,
        policy: LoadedPolicy,
        options: RunOptions,
        mut sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        let now = self.clock().wall_ms() as i64;
        if let Some(window) = &policy.policy.spec.window {
            if now < window.start.unix_millis() {
                return Err(AppError::WindowNotOpen {
                    file: policy.file.clone(),
                    start: window.start,
                });
            }
            if now >= window.end.unix_millis() {
                return Err(AppError::WindowClosed {
                    file: policy.file.clone(),
                    end: window.end,
                });
            }
        }
        if policy.policy.spec.action == PolicyAction::Abort {
            return Err(AppError::NothingToAbort {
                file: policy.file.clone(),
                state_dir: self.state_dir().to_path_buf(),
            });
        }
        let (plugins, policy, returned) = self.load_for_start(policy, sink, &cancel).await?;
        sink = returned;
        // Every artifact staged (downloaded if it is a URL) and verified
        // before anything is written: off the async thread, a cancel stops
        // waiting for it (a partial download is kept and resumed next time).
        let staging = {
            let policy = policy.clone();
            let state_dir = self.state_dir().to_path_buf();
            tokio::task::spawn_blocking(move || crate::artifact::stage_all(&policy, &state_dir))
        };
        tokio::select! {
            biased;
            joined = staging => joined
                .map_err(|e| AppError::Internal(format!("staging artifacts failed: {e}")))?
                .map_err(AppError::Policy)
                .map(drop)?,
            _ = cancel.cancelled() => {
                return Err(AppError::InterruptedBeforeStart {
                    why: cancel.reason().unwrap_or_default(),
                });
            }
        }
        if let Some(why) = cancel.reason() {
            return Err(AppError::InterruptedBeforeStart { why });
        }
        let ts = self.clock().wall_ms();
        let (writer, session, first) = open::create(dir, &policy, &plugins, ts)?;
        let id = writer.id().clone();
        let mut recorder = Recorder::new(writer, session, sink, self.clock().clone());
        recorder.announce(1, ts, &first);
        self.run(
            Prepared {
                session: id,
                recorder,
                policy,
                plugins,
            },
            false,
            options,
            cancel,
        )
        .await
    }

    /// Load and check a new session's plugins off the async thread (the
    /// first load compiles, which takes seconds), telling the sink which
    /// ones are compiled; a cancel stops waiting for it.
    async fn load_for_start(
        &self,
        policy: LoadedPolicy,
        mut sink: Box<dyn EventSink>,
        cancel: &Cancel,
    ) -> Result<(Plugins, LoadedPolicy, Box<dyn EventSink>), AppError> {
        // Signatures and the lock file first: a plugin is not even compiled
        // unless the policy's trust in it holds.
        let refused = self.trust_findings(&policy);
        if !refused.is_empty() {
            return Err(AppError::Policy(policy.place(refused)));
        }
        let host = self.host_for(setup::max_memory_bytes(&policy.policy.spec.plugins))?;
        let state_dir = self.state_dir().to_path_buf();
        if let Some(why) = cancel.reason() {
            return Err(AppError::InterruptedBeforeStart { why });
        }
        let task = tokio::task::spawn_blocking(move || {
            let result = setup::load_for_policy(&host, &policy, Some(&state_dir), |plugin| {
                sink.notice(&Notice::Compiling {
                    plugin: plugin.to_string(),
                })
            });
            (result, policy, sink)
        });
        let (result, policy, sink) = tokio::select! {
            biased;
            joined = task => joined.map_err(|e| AppError::Internal(format!("loading plugins failed: {e}")))?,
            _ = cancel.cancelled() => {
                return Err(AppError::InterruptedBeforeStart {
                    why: cancel.reason().unwrap_or_default(),
                });
            }
        };
        let plugins = result.map_err(|findings| AppError::Policy(policy.place(findings)))?;
        Ok((plugins, policy, sink))
    }

    /// Open the session in flight for a run: its policy (its own copy, or
    /// for an abort what it pinned), its pinned plugins; then the action's
    /// records, then the engine.
    async fn carry_on(
        &self,
        current: Current,
        file: Option<LoadedPolicy>,
        action: Action,
        options: RunOptions,
        sink: Box<dyn EventSink>,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        let Current {
            info,
            writer,
            session,
            ..
        } = current;
        if let Some(file) = &file
            && (file.policy.metadata.name != session.policy
                || file.policy.spec.target.name != session.target)
        {
            return Err(AppError::OtherSessionInFlight {
                state_dir: self.state_dir().to_path_buf(),
                session: info.id.clone(),
                policy: session.policy.clone(),
                target: session.target.clone(),
                file: file.file.display().to_string(),
                file_policy: file.policy.metadata.name.clone(),
                file_target: file.policy.spec.target.name.clone(),
            });
        }
        let policy = match (
            open::policy_copy(&info, &session.policy_file, &session.policy_digest),
            &action,
        ) {
            (Ok(p), _) => p,
            (Err(e), a) if a.is_abort() => open::abort_only_policy(&session).ok_or(e)?,
            (Err(e), _) => return Err(e),
        };
        // Everything that can refuse the command is checked before a record.
        let planned = match &action {
            Action::Resume => None,
            Action::Operate(request) => {
                let wall_ms = self.clock().wall_ms();
                let now = crate::engine::Now {
                    wall_ms,
                    session_age_ms: wall_ms.saturating_sub(session.started_ms),
                };
                Some(
                    operator::check(request, &session, &policy.policy.spec, now)
                        .map_err(AppError::Refused)?,
                )
            }
        };
        let plugins = self
            .load_pinned(&info, &session, &policy, sink, &cancel)
            .await?;
        let (plugins, sink) = plugins;
        let mut recorder = Recorder::new(writer, session, sink, self.clock().clone());
        if recorder.session().ended.is_none() {
            let at = recorder.session().config.to_string();
            recorder.record(Event::Resumed {
                pid: std::process::id(),
                at,
            })?;
        }
        if let Some(file) = &file
            && let Some(d) = drift::against(recorder.session(), file)
        {
            recorder.record(Event::Drift {
                recorded: recorder.session().policy_digest.clone(),
                current: d.current().unwrap_or_default().to_string(),
            })?;
            // A declared abort is the one change that is applied.
            if file.policy.spec.action == PolicyAction::Abort && !recorder.session().abort_requested
            {
                recorder.record(Event::AbortRequested {
                    by: "policy".into(),
                })?;
            }
        }
        if let (Action::Operate(request), Some(planned)) = (&action, planned) {
            for event in operator::records(request, planned, Runner::Gone) {
                recorder.record(event)?;
            }
        }
        self.run(
            Prepared {
                session: info.id.clone(),
                recorder,
                policy,
                plugins,
            },
            true,
            options,
            cancel,
        )
        .await
    }

    async fn load_pinned(
        &self,
        info: &SessionInfo,
        session: &Session,
        policy: &LoadedPolicy,
        mut sink: Box<dyn EventSink>,
        cancel: &Cancel,
    ) -> Result<(Plugins, Box<dyn EventSink>), AppError> {
        let host = self.host_for(setup::max_memory_bytes(&policy.policy.spec.plugins))?;
        let state_dir = self.state_dir().to_path_buf();
        let session_dir = info.dir.clone();
        let refs: Vec<_> = if session.ended.is_some() {
            Vec::new()
        } else {
            policy.policy.spec.plugins.clone()
        };
        if let Some(why) = cancel.reason() {
            return Err(AppError::InterruptedBeforeResume { why });
        }
        let base = policy.clone();
        let task = tokio::task::spawn_blocking(move || {
            let result = setup::load_pinned(
                &host,
                &refs,
                &base.policy.spec.software,
                &session_dir,
                &state_dir,
                |p| base.resolve(p),
                |plugin| {
                    sink.notice(&Notice::Compiling {
                        plugin: plugin.to_string(),
                    })
                },
            );
            (result, sink)
        });
        let (result, sink) = tokio::select! {
            biased;
            joined = task => joined.map_err(|e| AppError::Internal(format!("loading plugins failed: {e}")))?,
            _ = cancel.cancelled() => {
                return Err(AppError::InterruptedBeforeResume {
                    why: cancel.reason().unwrap_or_default(),
                });
            }
        };
        Ok((result.map_err(AppError::Plugin)?, sink))
    }

    async fn run(
        &self,
        prepared: Prepared,
        resumed: bool,
        options: RunOptions,
        cancel: Cancel,
    ) -> Result<RunReport, AppError> {
        let Prepared {
            session: info_id,
            mut recorder,
            policy,
            plugins,
        } = prepared;
        let summary = PolicySummary::of(&policy);
        let session = recorder.session();
        recorder.notice(&Notice::Opened {
            session: info_id.to_string(),
            resumed,
            policy: policy.policy.metadata.name.clone(),
            target: policy.policy.spec.target.name.clone(),
            at: session.config.clone(),
        });
        // Commands reach this run through the App while it goes on.
        let (sender, inbox) = operator::channel();
        let _open = self.control.open(sender);
        let engine = Engine::new(RunParts {
            policy,
            plugins,
            recorder,
            cancel,
            until: options.until,
            pacing: self.config.pacing,
            state_dir: self.state_dir().to_path_buf(),
            inbox: Some(inbox),
            wait_for_operator: options.wait_for_operator,
        });
        let stop = engine.run().await?;
        Ok(RunReport {
            session: info_id,
            stop,
            summary,
        })
    }
}

fn report_torn(current: &Current, sink: &mut dyn EventSink) {
    if let Some(torn) = &current.torn_tail {
        sink.notice(&Notice::TornTailCut(torn.clone()));
    }
}

fn request(verb: OperatorVerb, by: &Operator, reason: Option<String>) -> OperatorRequest {
    OperatorRequest {
        verb,
        by: by.0.clone(),
        reason,
    }
}
