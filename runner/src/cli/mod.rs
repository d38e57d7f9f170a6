//! The command line: argument parsing, rendering, exit codes. Each verb
//! lives in its own module and asks the core's application layer; this file
//! only wires them up. All output goes through `output` (clippy refuses
//! `println!` in this crate), so a closed pipe never kills a command and no
//! control character from a plugin reaches the terminal.

use clap::{Parser, Subcommand, ValueEnum};
use duplex_core::app::OperatorVerb;
use std::process::ExitCode;

/// Exit codes shared by every verb (documented in README.md and `--help`).
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
    /// The session is held for a person: Broken, stopped by a rule, or held by someone.
    pub const HELD: u8 = 5;
    /// `--until STATE` was reached.
    pub const REACHED: u8 = 6;
    /// Interrupted (SIGINT, SIGTERM): the session is kept; `duplex resume`
    /// carries on.
    pub const INTERRUPTED: u8 = 7;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success; for apply/resume/approve/retry/abort: committed and finished
  1  invalid input, or a refused or failed operation (the message says which)
  2  usage error, or a file that cannot be read
  3  aborted and finished: the original configuration is restored
  4  waiting for an approval (duplex approve)
  5  held for a person: Broken (duplex retry or duplex abort) or held (duplex release)
  6  stopped at --until STATE (duplex resume carries on)
  7  interrupted by SIGINT/SIGTERM: the session is kept (duplex resume carries on)

Examples:
  duplex validate policies/*.yaml
  duplex plan policies/demo.yaml
  duplex --state-dir /tmp/duplex-demo apply policies/demo.yaml
  duplex apply --until Split policies/demo.yaml && duplex abort
  duplex status; duplex log --follow; duplex history
  DUPLEX_OPERATOR=alice duplex approve

Environment:
  DUPLEX_STATE_DIR   the state dir when --state-dir is not given
  DUPLEX_CACHE_DIR   where compiled plugins are cached (default: per user)
  DUPLEX_OPERATOR    who you are, for approvals and the log (default: the OS user)
  DUPLEX_ETCD        the fleet's etcd members for `rollout` and `fleet` (comma-separated URLs)";

#[derive(Debug, Parser)]
#[command(
    name = "duplex",
    // Usage lines say `duplex` also when `duplex-full` is run by its own name.
    bin_name = "duplex",
    version,
    about = "Run active upgrades of two-sided systems from a declared policy",
    after_help = AFTER_HELP,
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub globals: Globals,

    #[command(subcommand)]
    pub command: Verb,
}

/// The options every verb takes (`front::verb_of` skips them by name).
#[derive(Debug, clap::Args)]
pub struct Globals {
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human)]
    pub output: Output,

    /// Where sessions are kept [default: $DUPLEX_STATE_DIR, else /var/lib/duplex
    /// for root, else $XDG_STATE_HOME/duplex]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which document's schema.
    #[arg(long, value_enum, default_value_t = SchemaKind::Policy)]
    pub kind: SchemaKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaKind {
    /// The UpgradePolicy (schemas/upgrade-policy.schema.json).
    Policy,
    /// The Rollout (schemas/rollout.schema.json).
    Rollout,
}

#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Check policy files against the schema and the semantic rules.
    Validate(validate::Args),
    /// Print the policy JSON Schema (or, with --kind rollout, the rollout's).
    Schema(SchemaArgs),
    /// Show the path a policy will take through the state model, touching nothing.
    Plan(plan::Args),
    /// Record what a policy resolves to (plugin and artifact digests, plugin
    /// signatures) in its lock file, POLICY.lock, to commit beside it.
    Lock(lock::Args),
    /// Fleet rollouts: check, plan, apply, follow, pause, resume or abort one over the fleet on etcd.
    Rollout(rollout::Args),
    /// Write, build, inspect or verify plugins (WebAssembly components).
    Plugin(plugin::Args),
    /// Run an upgrade session for a policy (or carry on the one in flight).
    Apply(run::ApplyArgs),
    // status, log, history: run by `duplex` itself (`front`).
    #[command(flatten)]
    View(front::View),
    /// Approve the session to go on past its approval point (as $DUPLEX_OPERATOR or the OS user).
    Approve(run::CommandArgs),
    /// Retry the failed request of a Broken session.
    Retry(run::CommandArgs),
    /// Abort the session: restore the original configuration (not after Commit).
    Abort(run::CommandArgs),
    /// Hold the session at its next safe point, with a reason, until released.
    Hold(run::HoldArgs),
    /// Release a session held by a person: it goes on.
    Release(run::CommandArgs),
    /// Carry on the session in flight after a stop, a crash or a reboot.
    Resume(run::ResumeArgs),
    /// Break the state dir's lock when its holder is known to be dead.
    Unlock(run::UnlockArgs),
    /// Run unattended: reconcile a policy source (a directory or a git repository), serve the API.
    Agent(Box<crate::agent::Args>),
    /// Watch the session live in the terminal (a state dir, or an agent) and give commands.
    Watch(crate::watch::Args),
    /// The fleet on etcd: every host's state and slot; free a dead host's slot.
    Fleet(fleet::Args),
}

pub(crate) mod dirs;
pub(crate) mod errors;
mod fleet;
pub(crate) mod front;
mod grants;
mod handoff;
mod lock;
pub(crate) mod operator;
pub(crate) mod output;
mod plan;
mod plugin;
mod rollout;
pub(crate) mod run;
pub(crate) mod signals;
mod status;
mod validate;
mod view;

/// The application layer over the state dir the flags and environment name.
pub(crate) fn app(state_dir: Option<std::path::PathBuf>) -> Result<duplex_core::app::App, String> {
    let state_dir = dirs::state_dir(state_dir).map_err(|e| e.to_string())?;
    Ok(app_for(state_dir))
}

/// The application layer over `state_dir`.
pub(crate) fn app_for(state_dir: std::path::PathBuf) -> duplex_core::app::App {
    duplex_core::app::App::new(duplex_core::app::AppConfig {
        cache_dir: Some(dirs::default_cache_dir()),
        state_dir,
        clock: duplex_core::clock::SystemClock::shared(),
        pacing: Default::default(),
    })
}

/// The application layer for commands that need no state dir (`validate`):
/// only the plugin cache is used.
pub(crate) fn validation_app() -> duplex_core::app::App {
    duplex_core::app::App::new(duplex_core::app::AppConfig {
        state_dir: std::path::PathBuf::from("."),
        cache_dir: Some(dirs::default_cache_dir()),
        clock: duplex_core::clock::SystemClock::shared(),
        pacing: Default::default(),
    })
}

/// The arguments, or the exit code of `--help`, `--version` or a usage
/// error (already printed).
fn parse() -> Result<Cli, u8> {
    Cli::try_parse().map_err(|err| {
        let _ = err.print();
        if err.use_stderr() {
            exit::USAGE
        } else {
            exit::OK
        }
    })
}

/// `duplex-full`: every verb.
pub fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let Globals { output, state_dir } = cli.globals;
    let code = match cli.command {
        Verb::Validate(args) => validate::run(&args, output),
        Verb::Schema(args) => {
            let schema = match args.kind {
                SchemaKind::Policy => duplex_core::policy::schema_json(),
                SchemaKind::Rollout => duplex_core::rollout::schema_json(),
            };
            output::json_line(schema.trim_end());
            exit::OK
        }
        Verb::Rollout(args) => rollout::run(&args, output),
        Verb::Plan(args) => plan::run(&args, output, state_dir),
        Verb::Lock(args) => lock::run(&args, output),
        Verb::Apply(args) => run::drive(run::Verb::Apply(args), output, state_dir),
        Verb::View(view) => front::run_view(view, output, state_dir),
        Verb::Approve(a) => operator_verb(OperatorVerb::Approve, a.reason, output, state_dir),
        Verb::Retry(a) => operator_verb(OperatorVerb::Retry, a.reason, output, state_dir),
        Verb::Abort(a) => operator_verb(OperatorVerb::Abort, a.reason, output, state_dir),
        Verb::Hold(a) => operator_verb(OperatorVerb::Hold, Some(a.reason), output, state_dir),
        Verb::Release(a) => operator_verb(OperatorVerb::Release, a.reason, output, state_dir),
        Verb::Resume(args) => run::drive(run::Verb::Resume(args), output, state_dir),
        Verb::Unlock(args) => run::unlock(&args, output, state_dir),
        Verb::Plugin(args) => plugin::run(&args, output),
        Verb::Agent(args) => crate::agent::run(*args, state_dir),
        Verb::Watch(args) => crate::watch::run(args, state_dir),
        Verb::Fleet(args) => fleet::run(&args, output),
    };
    ExitCode::from(code)
}

fn operator_verb(
    verb: OperatorVerb,
    reason: Option<String>,
    output: Output,
    state_dir: Option<std::path::PathBuf>,
) -> u8 {
    run::drive(run::Verb::Operator(verb, reason), output, state_dir)
}
