//! `duplex plan FILE`

use super::{Output, exit};
use crate::plan::Plan;
use crate::policy;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

pub fn run(args: &Args, output: Output) -> u8 {
    let loaded = match policy::load_file(&args.file) {
        Ok(loaded) => loaded,
        Err(err) => return super::report_load_error(&err),
    };
    let plan = Plan::of(&loaded);
    match output {
        Output::Json => super::print_json(&plan),
        Output::Human => print!("{}", render(&plan)),
    }
    exit::OK
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
            let _ = writeln!(out, "      then {a}");
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
