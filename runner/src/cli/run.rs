//! The verbs that drive a session: `apply`, `resume`, `approve`, `retry`,
//! `abort`, and `unlock`. Each hands its one thing to the application layer
//! and renders the report: the stop, the exit code, what to do next.

use super::view::{HumanView, JsonView};
use super::{Output, errors, exit, output};
use duplex_core::app::{App, AppError, Operator, RunOptions, RunReport};
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

/// What to ask of the application layer.
pub enum Verb {
    Apply(ApplyArgs),
    Resume(ResumeArgs),
    Approve,
    Retry,
    Abort,
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
    let result = match verb {
        Verb::Apply(args) => {
            let file_policy = match policy::load_file(&args.file) {
                Ok(p) => p,
                Err(err) => return errors::report_load(&err),
            };
            let options = RunOptions { until: args.until };
            app.apply(file_policy, options, sink, cancel).await
        }
        Verb::Resume(args) => {
            app.resume(RunOptions { until: args.until }, sink, cancel)
                .await
        }
        Verb::Approve => app.approve(&operator, sink, cancel).await,
        Verb::Retry => app.retry(sink, cancel).await,
        Verb::Abort => app.abort(&operator, sink, cancel).await,
    };
    match result {
        Ok(report) => report_stop(&app, &report, &operator, output_format),
        Err(err) => errors::report(output_format, &err),
    }
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
