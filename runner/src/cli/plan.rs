//! `duplex plan FILE`

use super::{Output, errors, exit, output};
use duplex_core::app::drift::Drift;
use duplex_core::plan::Plan;
use duplex_core::policy;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: &Args, output_format: Output, state_dir: Option<PathBuf>) -> u8 {
    let loaded = match policy::load_file(&args.file) {
        Ok(loaded) => loaded,
        Err(err) => return errors::report_load(&err),
    };
    // Required signatures and the lock file, as `validate` and `apply` check them.
    let refused = super::validation_app().trust_findings(&loaded);
    if !refused.is_empty() {
        return errors::report_load(&policy::LoadError::Invalid(loaded.place(refused)));
    }
    let plan = Plan::of(&loaded);
    let warnings = now().map(|now| loaded.warnings(now)).unwrap_or_default();
    let in_flight = in_flight(state_dir, &loaded);
    let grants = super::grants::of(&loaded);
    match output_format {
        Output::Json => {
            let mut value = serde_json::to_value(&plan).expect("a plan serializes");
            value["inFlight"] = serde_json::to_value(&in_flight).expect("serializes");
            value["warnings"] = serde_json::to_value(&warnings).expect("serializes");
            value["plugins"] = serde_json::to_value(&grants).expect("serializes");
            output::json_pretty(&value)
        }
        Output::Human => {
            for w in &warnings {
                output::eline(&w.to_string());
            }
            output::lines(&render(&plan));
            output::line("");
            output::line("Plugins and what the policy grants them:");
            for l in super::grants::lines(&grants, "  ") {
                output::line(&l);
            }
            if let Some(f) = &in_flight {
                output::line("");
                output::line(&format!("In flight: session {} is in {}.", f.session, f.at));
                if let Some(d) = &f.drift {
                    output::line(&format!("Drift: {d}"));
                }
            }
        }
    }
    exit::OK
}

/// The wall clock, for the policy's time-dependent warnings (the core
/// reads no clock).
pub fn now() -> Option<policy::Timestamp> {
    policy::Timestamp::from_system_time(std::time::SystemTime::now())
}

/// A session in flight in the state dir, and whether this file is what it runs.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct InFlight {
    session: String,
    at: String,
    drift: Option<String>,
}

fn in_flight(state_dir: Option<PathBuf>, file: &policy::LoadedPolicy) -> Option<InFlight> {
    let app = super::app(state_dir).ok()?;
    let f = app.in_flight(file).ok()??;
    let drift = f.drift.as_ref().map(|d| match d {
        Drift::Changed {
            recorded,
            current,
            declares_abort,
            ..
        } => format!(
            "the session runs the policy it started with (sha256 {}…); {} (sha256 {}…) differs and is not applied to it{}",
            &recorded[..recorded.len().min(12)],
            file.file.display(),
            &current[..current.len().min(12)],
            if *declares_abort {
                ", except its `action: abort`, which `duplex apply` carries out"
            } else {
                ""
            }
        ),
        Drift::Gone { file } => format!("{file} is gone; the session keeps its own copy"),
    });
    Some(InFlight {
        session: f.session.to_string(),
        at: f.at.to_string(),
        drift,
    })
}

pub fn render(plan: &Plan) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Policy {} ({}), sha256 {}",
        plan.policy, plan.file, plan.digest
    );
    let _ = writeln!(
        out,
        "Target {} through plugin {}; action: {}; {}",
        plan.target,
        plan.hardware_plugin,
        plan.action,
        if plan.unattended {
            "unattended"
        } else {
            "with approvals"
        }
    );
    match &plan.window {
        Some(w) => {
            let _ = writeln!(out, "Maintenance window: {} to {}", w.start, w.end);
        }
        None => {
            let _ = writeln!(
                out,
                "Maintenance window: none (a session may start at any time)"
            );
        }
    }
    let _ = writeln!(out, "\nPath:");
    for step in &plan.steps {
        let _ = writeln!(out, "  {}", step.state);
        for w in &step.work {
            let _ = writeln!(out, "      {w}");
        }
        if let Some(r) = &step.retries {
            let _ = writeln!(out, "      on failure: {r}");
        }
        if let Some(a) = &step.approval {
            let who = if a.approvers.is_empty() {
                String::new()
            } else {
                format!(" (approvers: {})", a.approvers.join(", "))
            };
            let _ = writeln!(
                out,
                "      then wait for `duplex approve` before {:?}{who}",
                a.before
            );
        }
    }
    let from: Vec<String> = plan.abort_from.iter().map(|s| s.to_string()).collect();
    let _ = writeln!(out, "\nAbort (possible from {}):", from.join(", "));
    for step in &plan.abort_path {
        let _ = writeln!(out, "  {}", step.state);
        for w in &step.work {
            let _ = writeln!(out, "      {w}");
        }
    }
    let _ = writeln!(out, "\nAuto-abort rules:");
    if plan.auto_abort.is_empty() {
        let _ = writeln!(
            out,
            "  none: a failure whose retries are used up stops Broken for a person"
        );
    }
    for rule in &plan.auto_abort {
        let _ = writeln!(out, "  {rule}");
    }
    out
}
