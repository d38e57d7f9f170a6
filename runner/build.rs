//! Links the `duplex` executable (and only it: not the tests, not the core
//! library) as a position-dependent executable on Linux.
//!
//! Why: as a PIE, the ~250 MB binary carries ~76,000 relative relocations
//! that the dynamic loader applies on every start, writing to ~1.2 MB of
//! `.data.rel.ro` and `.got` (about 300 copy-on-write page faults): most of
//! what separates `duplex --version` from `cat`, and `status` is run often
//! (benches/RESULTS.md, "Start-up of the binary"). Without PIE the loader
//! has nothing to relocate and those pages stay shared with the page cache.
//! The cost: the executable's own code and data are at a fixed address
//! (libraries, heap, stack and mappings stay randomised). Build with
//! `DUPLEX_PIE=1` to keep the default PIE link.

fn main() {
    println!("cargo:rerun-if-env-changed=DUPLEX_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let gnu_or_musl = matches!(
        std::env::var("CARGO_CFG_TARGET_ENV").as_deref(),
        Ok("gnu") | Ok("musl")
    );
    if linux && gnu_or_musl && std::env::var_os("DUPLEX_PIE").is_none() {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
