//! The `duplex` binary: a thin edge over the library. The CLI turns the
//! library's typed errors into messages and exit codes (`cli::exit`).

fn main() -> std::process::ExitCode {
    duplex::cli::main()
}
