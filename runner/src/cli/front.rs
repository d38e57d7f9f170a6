//! `duplex`, the front: the read-only views (`status`, `log`, `history`)
//! run here; every other verb is handed to `duplex-full` beside this
//! executable (`handoff`).
//!
//! Why two executables: the whole command line links wasmtime, cranelift,
//! the agent's servers, the fleet's gRPC client and the console, and as a
//! position-independent executable it carries ~93,000 relative relocations
//! that the dynamic loader writes on every start (~370 copy-on-write pages,
//! about 1 ms). The views operators poll (`watch duplex status`, scripts,
//! monitoring) need none of that: the front links only them, and both
//! executables stay PIEs (benches/RESULTS.md, "A front for the read-only
//! views").
//!
//! The front reads the verb past the global options itself and builds the
//! argument parser for the views only (the whole command line's parser
//! allocates and touches far more than a view does); anything else,
//! `--help` and `--version` included, goes to `duplex-full` untouched. The
//! views' definitions are shared with `duplex-full` (`Verb` flattens
//! `View`), so their help and usage errors are the same whichever
//! executable answers (tests/cli.rs compares them).
//!
//! It is also entered without std's runtime start-up (`#![no_main]` in
//! `src/main.rs`): that start-up reads and parses `/proc/self/maps` to
//! place the main thread's stack guard, a tenth of what the front costs
//! before it does any work. What it would have set up and the front needs
//! is done here: SIGPIPE ignored (a closed pipe ends output quietly, as in
//! every verb), a panic turned into exit 101 instead of an abort, stdout
//! flushed before returning.

use super::{Globals, Output, exit, handoff, status};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

/// The views: `Verb::View` in the whole command line.
#[derive(Debug, Subcommand)]
pub enum View {
    /// Show the session: state, status, partner, request, drift, what you can do next.
    Status,
    /// Show the activity log of the current (or a past) session.
    Log(status::LogArgs),
    /// List past sessions with their outcome and duration.
    History,
}

/// The names of the views, as `verb_of` finds them.
const VIEWS: [&str; 3] = ["status", "log", "history"];

/// The global options that take a value (`Globals`), which `verb_of` skips.
const GLOBALS_WITH_A_VALUE: [&str; 2] = ["--output", "--state-dir"];

/// The front's parser: the top level of `Cli` with the views only.
#[derive(Debug, Parser)]
#[command(
    name = "duplex",
    bin_name = "duplex",
    version,
    propagate_version = true
)]
struct ViewCli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    view: View,
}

/// Run a view (in either executable).
pub fn run_view(view: View, output: Output, state_dir: Option<PathBuf>) -> u8 {
    match view {
        View::Status => status::status(output, state_dir),
        View::Log(args) => status::log(&args, output, state_dir),
        View::History => status::history(output, state_dir),
    }
}

/// The verb `args` (without the program's name) name, past the global
/// options before it; `None` for a flag (`--help`, `--version`, an
/// unknown one) or arguments that are not UTF-8, which the whole command
/// line answers.
fn verb_of(args: &[OsString]) -> Option<&str> {
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if GLOBALS_WITH_A_VALUE.contains(&arg) {
            rest.next();
        } else if GLOBALS_WITH_A_VALUE
            .iter()
            .any(|g| arg.strip_prefix(g).is_some_and(|v| v.starts_with('=')))
        {
        } else if arg.starts_with('-') {
            return None;
        } else {
            return Some(arg);
        }
    }
    None
}

/// The front's `main`: the exit code of the view it ran, or of the error
/// that stopped it handing the command on.
pub fn front() -> i32 {
    // SAFETY: setting a signal's disposition to SIG_IGN has no
    // preconditions; no other thread exists yet.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = std::panic::catch_unwind(run).unwrap_or(101);
    let _ = std::io::stdout().flush();
    code
}

fn run() -> i32 {
    let args: Vec<OsString> = std::env::args_os().collect();
    if !verb_of(args.get(1..).unwrap_or_default()).is_some_and(|v| VIEWS.contains(&v)) {
        return handoff::exec_full(&args).into();
    }
    let cli = match ViewCli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            }
            .into();
        }
    };
    run_view(cli.view, cli.globals.output, cli.globals.state_dir).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn verb(args: &[&str]) -> Option<String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        verb_of(&args).map(str::to_owned)
    }

    #[test]
    fn the_verb_is_found_past_the_global_options() {
        assert_eq!(verb(&["status"]).as_deref(), Some("status"));
        assert_eq!(
            verb(&["--state-dir", "status", "log"]).as_deref(),
            Some("log")
        );
        assert_eq!(
            verb(&["--output=json", "--state-dir=/x", "history"]).as_deref(),
            Some("history")
        );
        assert_eq!(
            verb(&["--output", "json", "apply", "p.yaml"]).as_deref(),
            Some("apply")
        );
        assert_eq!(verb(&["--help"]), None);
        assert_eq!(verb(&["-V", "status"]), None);
        assert_eq!(verb(&["--outputs=json", "status"]), None);
        assert_eq!(verb(&[]), None);
    }

    /// `verb_of` knows every global option of the whole command line by
    /// name and whether it takes a value.
    #[test]
    fn verb_of_skips_exactly_the_global_options() {
        let cli = super::super::Cli::command();
        let mut globals: Vec<String> = cli
            .get_arguments()
            .filter(|a| a.is_global_set())
            .map(|a| {
                assert!(
                    a.get_action().takes_values(),
                    "{:?} takes no value",
                    a.get_id()
                );
                format!("--{}", a.get_long().unwrap())
            })
            .collect();
        globals.sort();
        assert_eq!(globals, GLOBALS_WITH_A_VALUE);
    }

    /// The views `verb_of` sends to the front's parser are its subcommands.
    #[test]
    fn the_views_are_the_front_parsers_subcommands() {
        let names: Vec<String> = ViewCli::command()
            .get_subcommands()
            .map(|c| c.get_name().to_owned())
            .filter(|n| n != "help")
            .collect();
        assert_eq!(names, VIEWS);
    }
}
