//! The `duplex` binary: a thin edge over the library (`anyhow` lives here).

fn main() -> std::process::ExitCode {
    duplex::cli::main()
}
