//! The `duplex` binary: argument parsing, rendering and exit codes over
//! `duplex-core`, which knows nothing of any of them.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
