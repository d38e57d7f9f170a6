//! The verbs that drive a session: `apply`, `resume`, `approve`, `retry`,
//! `abort`, `hold`, `release`, and `unlock`. Each hands its one thing to the
//! application layer and renders the report: the stop, the exit code, what
//! to do next. While one of them runs the session it serves the state
//! dir's control socket, so an operator's command from another shell
//! reaches it; an operator's command first tries that socket, and takes the
//! lock itself only when nobody runs the session.

use super::view::{HumanView, JsonView};
use super::{Output, errors, exit, output};
use duplex_core::app::{
    App, AppError, Operator, OperatorRequest, OperatorVerb, RunOptions, RunReport,
};
use duplex_core::cancel::Cancel;
use duplex_core::engine::sink::EventSink;
use duplex_core::engine::{Outcome, Stop};
use duplex_core::model::UpgradeState;
use duplex_core::policy;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The policy file (read once: the session keeps exactly what was validated).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Stop once this state's work is done (e.g. `Split`), before leaving it.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub until: Option<UpgradeState>,
    /// At an approval point or a hold, wait for a command from another shell
    /// (`duplex approve`, `duplex release`, `duplex watch`) instead of exiting.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, clap::Args)]
pub struct ResumeArgs {
    /// Stop once this state's work is done, before leaving it.
    #[arg(long, value_name = "STATE", value_parser = parse_state)]
    pub until: Option<UpgradeState>,
    /// At an approval point or a hold, wait for a command from another shell
    /// instead of exiting.
    #[arg(long)]
    pub wait: bool,
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

/// `approve`, `retry`, `abort`, `release`: why, for the log.
#[derive(Debug, clap::Args)]
pub struct CommandArgs {
    /// Why (recorded in the session's log with who asked).
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

/// `hold`: the reason is required.
#[derive(Debug, clap::Args)]
pub struct HoldArgs {
    /// Why the session is held (recorded, and shown by `duplex status`).
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
}

/// What to ask of the application layer.
pub enum Verb {
    Apply(ApplyArgs),
    Resume(ResumeArgs),
    Operator(OperatorVerb, Option<String>),
}

/// A verb once its input is read: what the application layer runs.
pub(crate) enum Job {
    Apply(Box<policy::LoadedPolicy>, RunOptions),
    Resume(RunOptions),
    Operate(OperatorRequest),
}

/// Run a verb that drives a session, from its first instruction under the
/// signal handling of `signals`.
pub fn drive(verb: Verb, output_format: Output, state_dir: Option<PathBuf>) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return errors::fail(output_format, &format!("cannot start the runtime: {e}")),
    };
    let cancel = Cancel::new();
    let code = runtime.block_on(async {
        super::signals::cancel_on_signal(cancel.clone());
        run_verb(verb, output_format, state_dir, cancel).await
    });
    // A plugin call the run stopped waiting for may still run on a blocking
    // thread until its deadline: do not wait for it.
    runtime.shutdown_background();
    code
}

async fn run_verb(
    verb: Verb,
    output_format: Output,
    state_dir: Option<PathBuf>,
    cancel: Cancel,
) -> u8 {
    let app = match super::app(state_dir) {
        Ok(app) => app,
        Err(message) => return errors::fail(output_format, &message),
    };
    let sink: Box<dyn EventSink> = match output_format {
        Output::Human => Box::new(HumanView::new()),
        Output::Json => Box::new(JsonView),
    };
    let operator = super::operator::current();
    // What to run, read and checked before the socket is served: an apply
    // reads its policy first and creates the state dir (its session's first
    // record would); a command goes to the process running the session
    // when one listens.
    let job = match verb {
        Verb::Apply(args) => match policy::load_file(&args.file) {
            Ok(p) => {
                let _ = crate::api::socket::create_state_dir(app.state_dir());
                Job::Apply(Box::new(p), run_options(args.until, args.wait))
            }
            Err(err) => return errors::report_load(&err),
        },
        Verb::Resume(args) => Job::Resume(run_options(args.until, args.wait)),
        Verb::Operator(verb, reason) => {
            let request = OperatorRequest {
                verb,
                by: operator.0.clone(),
                reason,
            };
            match send_to_runner(&app, &request).await {
                Ok(None) => {}
                Ok(Some(accepted)) => {
                    report_accepted(&accepted, output_format);
                    return exit::OK;
                }
                Err(message) => return errors::fail(output_format, &message),
            }
            Job::Operate(request)
        }
    };
    let app = std::sync::Arc::new(app);
    let result = run_job(&app, job, sink, cancel, |w| output::eline(&w)).await;
    match result {
        Ok(report) => {
            let (code, result, message) = stop_message(&app, &report, &operator);
            match output_format {
                Output::Human => output::line(&message),
                Output::Json => output::json_line(
                    &serde_json::json!({ "result": result, "session": report.session, "exitCode": code, "message": message })
                        .to_string(),
                ),
            }
            code
        }
        Err(err) => errors::report(output_format, &err),
    }
}

fn run_options(until: Option<UpgradeState>, wait: bool) -> RunOptions {
    RunOptions {
        until,
        wait_for_operator: wait,
    }
}

/// Run `job` on the session, serving the state dir's control socket
/// meanwhile (the CLI's verbs, and `duplex watch` giving a command when
/// nobody runs the session). `warn` is told when the socket cannot be
/// served (the CLI prints it; the console, which owns the screen, shows it).
pub(crate) async fn run_job(
    app: &std::sync::Arc<App>,
    job: Job,
    sink: Box<dyn EventSink>,
    cancel: Cancel,
    warn: impl FnOnce(String),
) -> Result<RunReport, AppError> {
    // Commands from other shells reach this run through the socket; one
    // that comes while the run is starting waits for it.
    let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let starting = {
        let running = running.clone();
        std::sync::Arc::new(move || running.load(std::sync::atomic::Ordering::SeqCst))
    };
    let socket = match crate::api::socket::serve(
        app.state_dir(),
        crate::api::commands::router(app.clone(), starting),
    ) {
        Ok(socket) => socket,
        Err(e) => {
            warn(format!(
                "warning: cannot serve the control socket {}: {e}; commands from other shells will wait for this run to stop",
                crate::api::socket::path(app.state_dir()).display()
            ));
            None
        }
    };
    let result = match job {
        Job::Apply(file_policy, options) => app.apply(*file_policy, options, sink, cancel).await,
        Job::Resume(options) => app.resume(options, sink, cancel).await,
        Job::Operate(request) => {
            app.operate(request, RunOptions::default(), sink, cancel)
                .await
        }
    };
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    if let Some(socket) = socket {
        socket.close().await;
    }
    result
}

/// A command the process running the session accepted.
pub(crate) struct Accepted {
    pub answer: crate::api::commands::AcceptedView,
    /// What it means, in a sentence.
    pub message: String,
}

/// Give the command to the process running the session, if one listens
/// on the control socket: `Ok(None)` when nobody does (the command then
/// takes the lock itself), `Err` with the reason when it was refused.
pub(crate) async fn send_to_runner(
    app: &App,
    request: &OperatorRequest,
) -> Result<Option<Accepted>, String> {
    let body = serde_json::json!({ "by": request.by, "reason": request.reason });
    let path = format!("/v1/commands/{}", request.verb);
    let reply = crate::api::client::post(app.state_dir(), &path, &body).await?;
    let crate::api::client::Reply::Answered { status, body } = reply else {
        return Ok(None);
    };
    if status == 200 {
        let answer: crate::api::commands::CommandAnswer = serde_json::from_slice(&body)
            .map_err(|_| "the running duplex sent an answer that is not one".to_string())?;
        let a = &answer.accepted;
        let message = format!(
            "{} accepted by the duplex running session {} (pid {}); it is in {}. It takes effect at the run's next safe point (a plugin call in progress finishes first); `duplex log --follow` shows it.",
            a.verb, a.session, a.pid, a.at
        );
        return Ok(Some(Accepted {
            answer: answer.accepted,
            message,
        }));
    }
    Err(
        serde_json::from_slice::<crate::api::error::ErrorBody>(&body)
            .map(|b| b.error.message)
            .unwrap_or_else(|_| format!("the running duplex answered HTTP {status}")),
    )
}

fn report_accepted(accepted: &Accepted, output_format: Output) {
    let (a, message) = (&accepted.answer, &accepted.message);
    match output_format {
        Output::Human => output::line(message),
        Output::Json => output::json_line(
            &serde_json::json!({ "result": "accepted", "session": a.session, "pid": a.pid, "at": a.at, "message": message }).to_string(),
        ),
    }
}

/// How a run stopped: its exit code, its result word (`--output json`)
/// and the sentence that says it.
pub(crate) fn stop_message(
    app: &App,
    report: &RunReport,
    operator: &Operator,
) -> (u8, &'static str, String) {
    let summary = &report.summary;
    let (code, result, message) = match &report.stop {
        Stop::Ended(Outcome::Committed) => {
            let software: Vec<String> = summary
                .software
                .iter()
                .map(|(name, version)| format!("{name} {version}"))
                .collect();
            (
                exit::COMMITTED,
                "committed",
                format!(
                    "Upgrade committed and finished: {} runs {}.",
                    summary.target,
                    software.join(", ")
                ),
            )
        }
        Stop::Ended(Outcome::Aborted) => (
            exit::ABORTED,
            "aborted",
            format!(
                "Upgrade aborted and finished: {} is back on its original configuration. `duplex log` shows why.",
                summary.target
            ),
        ),
        Stop::WaitingForApproval(point) => {
            let approvers = summary.approvers_at(*point);
            let who = if approvers.is_empty() {
                String::new()
            } else {
                format!(" (approvers: {})", approvers.join(", "))
            };
            let may = if approvers.is_empty() || approvers.contains(&operator.0) {
                String::new()
            } else {
                format!("; you are {operator}, not one of them")
            };
            (
                exit::WAITING,
                "waiting-for-approval",
                format!(
                    "Waiting for approval before {point:?}{who}: run `duplex approve` to go on, or `duplex abort`{may}."
                ),
            )
        }
        Stop::Held(reason) => (
            exit::HELD,
            "held",
            format!("Held for a person: {reason}.{}", next_steps(app)),
        ),
        Stop::Reached(state) => (
            exit::REACHED,
            "reached",
            format!("Stopped in {state} as asked (--until); `duplex resume` carries on."),
        ),
        Stop::Interrupted { why } => (
            exit::INTERRUPTED,
            "interrupted",
            format!(
                "Interrupted ({why}): the session stopped at a safe point and is kept; `duplex resume` carries on."
            ),
        ),
    };
    (code, result, message)
}

/// ` Next: `duplex retry` or `duplex abort`.`, from what the model allows now.
fn next_steps(app: &App) -> String {
    let next = app
        .status()
        .ok()
        .and_then(|s| s.session)
        .map(|s| s.next)
        .unwrap_or_default();
    if next.is_empty() {
        return String::new();
    }
    let verbs: Vec<String> = next
        .iter()
        .map(|c| format!("`duplex {}`", c.name()))
        .collect();
    format!(" Next: {}.", verbs.join(" or "))
}

/// `duplex unlock --force`.
#[derive(Debug, clap::Args)]
pub struct UnlockArgs {
    /// Required: breaking a lock is only for a holder known to be dead.
    #[arg(long)]
    pub force: bool,
}

pub fn unlock(args: &UnlockArgs, output_format: Output, state_dir: Option<PathBuf>) -> u8 {
    use duplex_core::journal::{UnlockOutcome, force_unlock};
    if !args.force {
        output::eline(
            "error: `duplex unlock` needs --force: it is only for a lock whose holder is dead",
        );
        return exit::USAGE;
    }
    let path = match super::dirs::state_dir(state_dir) {
        Ok(path) => path,
        Err(e) => return errors::fail(output_format, &e.to_string()),
    };
    let outcome = match force_unlock(&path) {
        Ok(o) => o,
        Err(e) => return errors::report(output_format, &AppError::Journal(e)),
    };
    match output_format {
        Output::Json => {
            let (result, pid) = match &outcome {
                UnlockOutcome::NotHeld { stale } => ("not-locked", stale.as_ref().map(|h| h.pid)),
                UnlockOutcome::Broken { holder } => ("broken", Some(holder.pid)),
            };
            output::json_pretty(
                &serde_json::json!({ "stateDir": path, "result": result, "deadHolderPid": pid }),
            );
        }
        Output::Human => output::line(&match outcome {
            UnlockOutcome::NotHeld { stale: None } => {
                format!("{}: not locked; nothing to do", path.display())
            }
            UnlockOutcome::NotHeld { stale: Some(h) } => format!(
                "{}: not locked; cleared the record of dead holder pid {}",
                path.display(),
                h.pid
            ),
            UnlockOutcome::Broken { holder } => format!(
                "{}: broke the lock of dead holder pid {}",
                path.display(),
                holder.pid
            ),
        }),
    }
    exit::OK
}
