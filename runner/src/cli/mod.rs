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
    /// The session committed and finished (same as OK).
    pub const COMMITTED: u8 = 0;
    /// The session aborted and finished: the original configuration is restored.
    pub const ABORTED: u8 = 3;
    /// The session waits for `duplex approve`.
    pub const WAITING: u8 = 4;
    /// The session is Broken (or stopped by a rule) and held for a person.
    pub const HELD: u8 = 5;
    /// `--until STATE` was reached.
    pub const REACHED: u8 = 6;
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

    /// Where sessions are kept [default: $DUPLEX_STATE_DIR, else /var/lib/duplex
    /// for root, else $XDG_STATE_HOME/duplex]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,

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
    /// Write, build, inspect or verify plugins (WebAssembly components).
    Plugin(plugin::Args),
    /// Run an upgrade session for a policy (or carry on the one in flight).
    Apply(run::ApplyArgs),
    /// Show the session: state, status, partner, request, drift, what you can do next.
    Status,
    /// Show the activity log of the current (or a past) session.
    Log(status::LogArgs),
    /// Approve the session to go on past its approval point.
    Approve,
    /// Retry the failed request of a Broken session.
    Retry,
    /// Abort the session: restore the original configuration (not after Commit).
    Abort,
    /// Carry on the session in flight after a stop, a crash or a reboot.
    Resume(run::ResumeArgs),
    /// List past sessions with their outcome and duration.
    History,
    /// Break the state dir's lock when its holder is known to be dead.
    Unlock(run::UnlockArgs),
}

mod dirs;
mod plan;
mod plugin;
mod run;
mod signals;
mod status;
mod validate;
mod view;

/// Print a value as pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serializes")
    );
}

/// Report a failed verb on stderr (or as `{"error": …}` with `--output
/// json`); returns the exit code for it.
pub(crate) fn fail(output: Output, message: &str) -> u8 {
    match output {
        Output::Json => print_json(&serde_json::json!({ "error": message })),
        Output::Human => eprintln!("error: {message}"),
    }
    exit::INVALID
}

/// Report a policy that failed to load; returns the exit code.
pub(crate) fn report_load_error(err: &duplex_core::policy::LoadError) -> u8 {
    match err {
        duplex_core::policy::LoadError::Invalid(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            exit::INVALID
        }
        duplex_core::policy::LoadError::Unreadable { .. } => {
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
            print!("{}", duplex_core::policy::schema_json());
            exit::OK
        }
        Verb::Plan(args) => plan::run(&args, cli.output, cli.state_dir),
        Verb::Apply(args) => run::apply(&args, cli.output, cli.state_dir),
        Verb::Status => status::status(cli.output, cli.state_dir),
        Verb::Log(args) => status::log(&args, cli.output, cli.state_dir),
        Verb::Approve => run::approve(cli.output, cli.state_dir),
        Verb::Retry => run::retry(cli.output, cli.state_dir),
        Verb::Abort => run::abort(cli.output, cli.state_dir),
        Verb::Resume(args) => run::resume(&args, cli.output, cli.state_dir),
        Verb::History => status::history(cli.output, cli.state_dir),
        Verb::Unlock(args) => run::unlock(&args, cli.output, cli.state_dir),
        Verb::Plugin(args) => plugin::run(&args, cli.output),
    };
    ExitCode::from(code)
}
