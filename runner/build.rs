//! Links the `duplex` executable (and only it: not the tests, not the core
//! library) as a position-dependent executable on Linux when built with
//! `DUPLEX_NO_PIE=1`; by default it stays a PIE.
//!
//! Why it is offered: as a PIE, the ~250 MB binary carries ~76,000 relative
//! relocations that the dynamic loader applies on every start, writing to
//! ~1.2 MB of `.data.rel.ro` and `.got` (about 300 copy-on-write page
//! faults): most of what separates `duplex --version` from `cat`
//! (benches/RESULTS.md, "Start-up of the binary"). Without PIE the loader
//! has nothing to relocate.
//! Why it is not the default: the executable's own code and data would sit
//! at a fixed address, and the same binary is the agent, a root daemon that
//! parses HTTP requests, registry responses and git data; keeping its image
//! randomised is worth more than ~1 ms per command.

fn main() {
    println!("cargo:rerun-if-env-changed=DUPLEX_NO_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let gnu_or_musl = matches!(
        std::env::var("CARGO_CFG_TARGET_ENV").as_deref(),
        Ok("gnu") | Ok("musl")
    );
    if linux && gnu_or_musl && std::env::var_os("DUPLEX_NO_PIE").is_some() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
