//! The verbs that drive a session: `apply`, `resume`, `approve`, `retry`,
//! `abort`. Each takes the state dir's lock, does its one thing, then lets
//! the engine carry the session as far as it can go on its own.

use super::view::{HumanView, JsonView};
use super::{Output, exit};
use duplex_core::engine::Cancel;
use duplex_core::engine::open::{self, Opened};
use duplex_core::engine::view::EventSink;
use duplex_core::engine::{
    Decision, Engine, EngineError, Event, Outcome, Stop, decide, now_ms, setup,
};
use duplex_core::journal::{LockedStateDir, StateDir};
use duplex_core::model::{Command, Phase, UpgradeState};
use duplex_core::policy::{self, ApprovalPoint};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Stop once this state's work is done (e.g. `Split`), before leaving it.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub until: Option<UpgradeState>,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// Stop once this state's work is done, before leaving it.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub until: Option<UpgradeState>,
}

fn parse_state(text: &str) -> Result<UpgradeState, String> {
    UpgradeState::ALL
        .into_iter()
        .find(|s| s.name().eq_ignore_ascii_case(text))
        .ok_or_else(|| {
            let names: Vec<&str> = UpgradeState::ALL.iter().map(|s| s.name()).collect();
            format!(
                "`{text}` is not a state; expected one of: {}",
                names.join(", ")
            )
        })
}

/// Who a person's command is recorded as.
fn operator() -> String {
    std::env::var("DUPLEX_OPERATOR")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "operator".into())
}

/// What to do with the session once opened, before the engine runs.
enum Action {
    Apply,
    Resume,
    Approve,
    Retry,
    Abort,
}

pub fn apply(args: &ApplyArgs, output: Output, state_dir: Option<PathBuf>) -> u8 {
    let file_policy = match policy::load_file(&args.file) {
        Ok(p) => p,
        Err(err) => return super::report_load_error(&err),
    };
    drive(
        state_dir,
        output,
        args.until,
        Action::Apply,
        Some(file_policy),
    )
}

pub fn resume(args: &ResumeArgs, output: Output, state_dir: Option<PathBuf>) -> u8 {
    drive(state_dir, output, args.until, Action::Resume, None)
}

pub fn approve(output: Output, state_dir: Option<PathBuf>) -> u8 {
    drive(state_dir, output, None, Action::Approve, None)
}

pub fn retry(output: Output, state_dir: Option<PathBuf>) -> u8 {
    drive(state_dir, output, None, Action::Retry, None)
}

pub fn abort(output: Output, state_dir: Option<PathBuf>) -> u8 {
    drive(state_dir, output, None, Action::Abort, None)
}

fn drive(
    state_dir: Option<PathBuf>,
    output: Output,
    until: Option<UpgradeState>,
    action: Action,
    file_policy: Option<policy::LoadedPolicy>,
) -> u8 {
    match try_drive(state_dir, output, until, action, file_policy) {
        Ok(code) => code,
        Err(err) => super::fail(output, &err.to_string()),
    }
}

pub fn lock(state_dir: Option<PathBuf>) -> Result<(PathBuf, LockedStateDir), EngineError> {
    let path =
        super::dirs::state_dir(state_dir).map_err(|e| EngineError::Refused(e.to_string()))?;
    let dir = StateDir::lock(&path).map_err(EngineError::Journal)?;
    Ok((path, dir))
}

fn try_drive(
    state_dir: Option<PathBuf>,
    output: Output,
    until: Option<UpgradeState>,
    action: Action,
    file_policy: Option<policy::LoadedPolicy>,
) -> Result<u8, EngineError> {
    let (path, dir) = lock(state_dir)?;
    let current = open::current(&dir)?;
    if let Some((_, _, report)) = &current
        && let Some(torn) = &report.torn_tail
    {
        eprintln!("warning: {torn}");
    }
    // Everything that can refuse the run is checked before anything is written.
    let run_policy = match (open::running_policy(&current)?, &file_policy) {
        // The session in flight runs its own policy, whatever the file says.
        (Some((p, false)), _) => p,
        // Over but not marked finished (a crash in between): `apply` starts
        // a new session, `resume` and the others finish marking it.
        (Some((_, true)) | None, Some(p)) => {
            check_new_session(p, &path)?;
            p.clone()
        }
        (Some((p, true)), None) => p,
        (None, None) => return Err(EngineError::NoSession(path.display().to_string())),
    };
    let plugins = setup::load_plugins(&run_policy, &path, Some(&super::dirs::cache_dir(&path)))?;
    duplex_core::artifact::verify_artifacts(&run_policy).map_err(EngineError::Policy)?;
    let mut opened = match file_policy {
        Some(p) => open::for_apply(&dir, current, p)?,
        None => open::in_flight(&dir, current)?,
    };
    match action {
        Action::Apply | Action::Resume => {}
        Action::Approve => approve_point(&mut opened)?,
        Action::Retry => retry_request(&mut opened)?,
        Action::Abort => request_abort(&mut opened)?,
    }
    let view: Box<dyn EventSink> = match output {
        Output::Human => Box::new(HumanView::new()),
        Output::Json => Box::new(JsonView),
    };
    if output == Output::Human {
        let verb = if opened.resumed {
            "Resuming"
        } else {
            "Started"
        };
        println!(
            "{verb} session {} of policy {} on {} ({})",
            opened.writer.id(),
            opened.policy.policy.metadata.name,
            opened.policy.policy.spec.target.name,
            opened.session.config
        );
    }
    let Opened {
        writer,
        session,
        policy,
        ..
    } = opened;
    let id = writer.id().to_string();
    let cancel = Cancel::new();
    let engine = Engine::new(
        policy.clone(),
        plugins,
        writer,
        session,
        view,
        cancel.clone(),
    )
    .until(until);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| EngineError::Internal(format!("cannot start the runtime: {e}")))?;
    let stop = runtime.block_on(async {
        super::signals::cancel_on_signal(cancel);
        engine.run().await
    })?;
    Ok(report_stop(&stop, &policy, &id, output))
}

/// What must hold before a new session starts for a policy file.
fn check_new_session(
    p: &policy::LoadedPolicy,
    state_dir: &std::path::Path,
) -> Result<(), EngineError> {
    if let Some(window) = &p.policy.spec.window
        && (now_ms() as i64) < window.start.unix_millis()
    {
        return Err(EngineError::Refused(format!(
            "{}: the maintenance window opens at {}; not starting a session before it (nothing was written)",
            p.file.display(),
            window.start
        )));
    }
    if p.policy.spec.action == policy::PolicyAction::Abort {
        return Err(EngineError::Refused(format!(
            "{} declares `action: abort`, but no upgrade session is in progress in {}: nothing to abort",
            p.file.display(),
            state_dir.display()
        )));
    }
    Ok(())
}

fn report_stop(stop: &Stop, policy: &policy::LoadedPolicy, session: &str, output: Output) -> u8 {
    let spec = &policy.policy.spec;
    let (code, result, message) = match stop {
        Stop::Ended(Outcome::Committed) => {
            let software: Vec<String> = spec
                .software
                .iter()
                .map(|s| format!("{} {}", s.name, s.version))
                .collect();
            (
                exit::COMMITTED,
                "committed",
                format!(
                    "Upgrade committed and finished: {} runs {}.",
                    spec.target.name,
                    software.join(", ")
                ),
            )
        }
        Stop::Ended(Outcome::Aborted) => (
            exit::ABORTED,
            "aborted",
            format!(
                "Upgrade aborted and finished: {} is back on its original configuration. `duplex log` shows why.",
                spec.target.name
            ),
        ),
        Stop::WaitingForApproval(point) => {
            let who = spec
                .requires_approval(*point)
                .map(|a| a.approvers.join(", "))
                .filter(|w| !w.is_empty())
                .map(|w| format!(" (approvers: {w})"))
                .unwrap_or_default();
            (
                exit::WAITING,
                "waiting-for-approval",
                format!(
                    "Waiting for approval before {point:?}{who}: run `duplex approve` to go on, or `duplex abort`."
                ),
            )
        }
        Stop::Held(reason) => (exit::HELD, "held", format!("Held for a person: {reason}")),
        Stop::Reached(state) => (
            exit::REACHED,
            "reached",
            format!("Stopped in {state} as asked (--until); `duplex resume` carries on."),
        ),
    };
    match output {
        Output::Human => println!("{message}"),
        Output::Json => println!(
            "{}",
            serde_json::json!({ "result": result, "session": session, "exitCode": code, "message": message })
        ),
    }
    code
}

fn approve_point(opened: &mut Opened) -> Result<(), EngineError> {
    match decide(&opened.session, &opened.policy.policy.spec, now_ms(), 0.5) {
        Decision::WaitForApproval(point) => open::record(
            opened,
            Event::Approved {
                before: point,
                by: operator(),
            },
        ),
        _ => Err(EngineError::Refused(format!(
            "nothing to approve: the session is in {} and waits for no approval{}",
            opened.session.config,
            pending_points(opened)
        ))),
    }
}

fn pending_points(opened: &Opened) -> String {
    let spec = &opened.policy.policy.spec;
    let points: Vec<String> = [ApprovalPoint::Merge, ApprovalPoint::Commit]
        .into_iter()
        .filter(|p| spec.requires_approval(*p).is_some() && !opened.session.approved(*p))
        .map(|p| format!("before {p:?}"))
        .collect();
    if points.is_empty() {
        String::new()
    } else {
        format!(" yet (the policy asks for one {})", points.join(" and "))
    }
}

fn retry_request(opened: &mut Opened) -> Result<(), EngineError> {
    let config = &opened.session.config;
    if let Err(refused) = config.apply(&Command::Retry) {
        return Err(EngineError::Model(refused));
    }
    open::record(
        opened,
        Event::Model {
            command: Command::Retry,
        },
    )
}

fn request_abort(opened: &mut Opened) -> Result<(), EngineError> {
    // Busy with the lock in hand: the runner that ran the request is gone.
    // Its request is over; record that before aborting (where abort is possible).
    let config = &opened.session.config;
    if config.phase == Phase::Running && duplex_core::model::abortable(config.state) {
        open::record(
            opened,
            Event::Model {
                command: Command::Fail {
                    reason: "interrupted: the runner stopped during this request".into(),
                },
            },
        )?;
    }
    if let Err(refused) = opened.session.config.apply(&Command::Abort) {
        return Err(EngineError::Model(refused));
    }
    open::record(opened, Event::AbortRequested { by: operator() })?;
    open::record(
        opened,
        Event::Model {
            command: Command::Abort,
        },
    )
}

/// `duplex unlock --force`.
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// Required: breaking a lock is only for a holder known to be dead.
    #[arg(long)]
    pub force: bool,
}

pub fn unlock(args: &UnlockArgs, output: Output, state_dir: Option<PathBuf>) -> u8 {
    if !args.force {
        eprintln!(
            "error: `duplex unlock` needs --force: it is only for a lock whose holder is dead"
        );
        return exit::USAGE;
    }
    let path = match super::dirs::state_dir(state_dir) {
        Ok(path) => path,
        Err(e) => return super::fail(output, &e.to_string()),
    };
    let result = duplex_core::journal::force_unlock(&path).map(|o| (path, o));
    match result {
        Ok((path, outcome)) if output == Output::Json => {
            let (result, pid) = match outcome {
                duplex_core::journal::UnlockOutcome::NotHeld { stale } => {
                    ("not-locked", stale.map(|h| h.pid))
                }
                duplex_core::journal::UnlockOutcome::Broken { holder } => {
                    ("broken", Some(holder.pid))
                }
            };
            super::print_json(
                &serde_json::json!({ "stateDir": path, "result": result, "deadHolderPid": pid }),
            );
            exit::OK
        }
        Ok((path, outcome)) => {
            match outcome {
                duplex_core::journal::UnlockOutcome::NotHeld { stale: None } => {
                    println!("{}: not locked; nothing to do", path.display())
                }
                duplex_core::journal::UnlockOutcome::NotHeld { stale: Some(h) } => println!(
                    "{}: not locked; cleared the record of dead holder pid {}",
                    path.display(),
                    h.pid
                ),
                duplex_core::journal::UnlockOutcome::Broken { holder } => println!(
                    "{}: broke the lock of dead holder pid {}",
                    path.display(),
                    holder.pid
                ),
            }
            exit::OK
        }
        Err(err) => super::fail(output, &err.to_string()),
    }
}
