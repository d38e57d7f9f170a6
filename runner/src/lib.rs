//! The `duplex` command line: argument parsing, rendering and exit codes
//! over `duplex-core`, which knows nothing of any of them. Two executables
//! link it (`src/main.rs`, `src/bin/duplex-full.rs`; see `cli::front`).

// Every byte of output goes through `cli::output` (closed pipes, escaping).
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod agent;
mod api;
mod cli;
mod watch;

pub use cli::front::front;
pub use cli::main;
