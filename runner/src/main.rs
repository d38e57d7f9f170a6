//! The `duplex` binary: argument parsing, rendering and exit codes over
//! `duplex-core`, which knows nothing of any of them.

// Every byte of output goes through `cli::output` (closed pipes, escaping).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod agent;
mod api;
mod cli;
mod watch;

fn main() -> std::process::ExitCode {
    cli::main()
}
