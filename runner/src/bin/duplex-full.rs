//! `duplex-full`: the whole command line, every verb. `duplex` hands it
//! every command but `status`, `log` and `history` (same arguments, same
//! process); run directly, it behaves as `duplex` does.

fn main() -> std::process::ExitCode {
    duplex_cli::main()
}
