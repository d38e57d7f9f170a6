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
enum Job {
    Apply(Box<policy::LoadedPolicy>, Option<UpgradeState>),
    Resume(Option<UpgradeState>),
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
                Job::Apply(Box::new(p), args.until)
            }
            Err(err) => return errors::report_load(&err),
        },
        Verb::Resume(args) => Job::Resume(args.until),
        Verb::Operator(verb, reason) => {
            let request = OperatorRequest {
                verb,
                by: operator.0.clone(),
                reason,
            };
            if let Some(code) = send_to_runner(&app, &request, output_format).await {
                return code;
            }
            Job::Operate(request)
        }
    };
    let app = std::sync::Arc::new(app);
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
            output::eline(&format!(
                "warning: cannot serve the control socket {}: {e}; commands from other shells will wait for this run to stop",
                crate::api::socket::path(app.state_dir()).display()
            ));
            None
        }
    };
    let result = match job {
        Job::Apply(file_policy, until) => {
            let options = RunOptions {
                until,
                ..Default::default()
            };
            app.apply(*file_policy, options, sink, cancel).await
        }
        Job::Resume(until) => {
            let options = RunOptions {
                until,
                ..Default::default()
            };
            app.resume(options, sink, cancel).await
        }
        Job::Operate(request) => {
            app.operate(request, RunOptions::default(), sink, cancel)
                .await
        }
    };
    running.store(false, std::sync::atomic::Ordering::SeqCst);
    if let Some(socket) = socket {
        socket.close().await;
    }
    match result {
        Ok(report) => report_stop(&app, &report, &operator, output_format),
        Err(err) => errors::report(output_format, &err),
    }
}

/// Give the command to the process running the session, if one listens
/// on the control socket; `None` when nobody does (the command then takes
/// the lock itself).
async fn send_to_runner(app: &App, request: &OperatorRequest, output_format: Output) -> Option<u8> {
    let body = serde_json::json!({ "by": request.by, "reason": request.reason });
    let path = format!("/v1/commands/{}", request.verb);
    let reply = match crate::api::client::post(app.state_dir(), &path, &body).await {
        Ok(reply) => reply,
        Err(e) => return Some(errors::fail(output_format, &e)),
    };
    let crate::api::client::Reply::Answered { status, body } = reply else {
        return None;
    };
    if status == 200 {
        let answer: Result<crate::api::commands::CommandAnswer, _> = serde_json::from_slice(&body);
        let Ok(answer) = answer else {
            return Some(errors::fail(
                output_format,
                "the running duplex sent an answer that is not one",
            ));
        };
        let a = &answer.accepted;
        let message = format!(
            "{} accepted by the duplex running session {} (pid {}); it is in {}. It takes effect at the run's next safe point (a plugin call in progress finishes first); `duplex log --follow` shows it.",
            a.verb, a.session, a.pid, a.at
        );
        match output_format {
            Output::Human => output::line(&message),
            Output::Json => output::json_line(
                &serde_json::json!({ "result": "accepted", "session": a.session, "pid": a.pid, "at": a.at, "message": message }).to_string(),
            ),
        }
        return Some(exit::OK);
    }
    let message = serde_json::from_slice::<crate::api::error::ErrorBody>(&body)
        .map(|b| b.error.message)
        .unwrap_or_else(|_| format!("the running duplex answered HTTP {status}"));
    Some(errors::fail(output_format, &message))
}

fn report_stop(app: &App, report: &RunReport, operator: &Operator, output_format: Output) -> u8 {
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
    match output_format {
        Output::Human => output::line(&message),
        Output::Json => output::json_line(
            &serde_json::json!({ "result": result, "session": report.session, "exitCode": code, "message": message })
                .to_string(),
        ),
    }
    code
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
