//! The command line: argument parsing, human/JSON rendering, exit codes.
//! Each verb lives in its own module; this file only wires them up.

use clap::{Parser, Subcommand, ValueEnum};
use std::process::ExitCode;

/// Exit codes shared by every verb (documented in README.md).
pub mod exit {
    pub const OK: u8 = 0;
    /// The input was read but is invalid (or the operation failed).
    pub const INVALID: u8 = 1;
    /// Bad usage, or a file could not be read.
    pub const USAGE: u8 = 2;
}

#[derive(Debug, Parser)]
#[command(
    name = "duplex",
    version,
    about = "Run active upgrades of two-sided systems from a declared policy",
    propagate_version = true
)]
pub struct Cli {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,

    #[command(subcommand)]
    pub command: Verb,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Check policy files against the schema and the semantic rules.
    Validate(validate::Args),
    /// Print the policy JSON Schema.
    Schema,
    /// Show the path a policy will take through the state model, touching nothing.
    Plan(plan::Args),
    /// Inspect or verify a plugin component file.
    Plugin(plugin::Args),
}

mod plan;
mod plugin;
mod validate;

/// Print a value as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

/// Report a policy that failed to load; returns the exit code.
pub(crate) fn report_load_error(err: &crate::policy::LoadError) -> u8 {
    match err {
        crate::policy::LoadError::Invalid(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            exit::INVALID
        }
        crate::policy::LoadError::Unreadable { .. } => {
            eprintln!("error: {err}");
            exit::USAGE
        }
    }
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let code = match cli.command {
        Verb::Validate(args) => validate::run(&args, cli.output),
        Verb::Schema => {
            print!("{}", crate::policy::schema_json());
            exit::OK
        }
        Verb::Plan(args) => plan::run(&args, cli.output),
        Verb::Plugin(args) => plugin::run(&args, cli.output),
    };
    ExitCode::from(code)
}
