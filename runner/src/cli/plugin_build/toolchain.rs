//! Which compiler builds plugins for `wasm32-unknown-unknown` here: rustup's
//! target when it is installed, else Debian's `rustc-web` with std rebuilt
//! from `rust-web-src` and linked by `wasm-ld-22` (see
//! `scripts/install-wasm-toolchain.sh`, which installs the latter).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub const TARGET: &str = "wasm32-unknown-unknown";

/// The Debian packages of the second route, as `apt-get` takes them.
pub const DEBIAN_PACKAGES: &str = "rustc-web cargo-web rust-web-src lld-22";

/// Debian's `rustc-web` installs here (rustup's proxies come first on PATH).
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_LINKER: &str = "wasm-ld-22";
/// Edition 2024 (the SDK's) needs 1.85.
const MIN_MINOR: u32 = 85;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Rustup,
    Debian,
}

/// A way to compile for [`TARGET`], and the compiler it uses.
#[derive(Debug, Clone)]
pub struct Toolchain {
    route: Route,
    /// `rustc -V` of the compiler that builds the plugin.
    compiler: String,
}

/// Why neither route is usable: one line per finding.
#[derive(Debug)]
pub struct NotFound {
    findings: Vec<String>,
}

impl Toolchain {
    /// Looks for a route, from `dir` (where rustup honours a toolchain file).
    pub fn detect(dir: &Path) -> Result<Toolchain, NotFound> {
        let mut findings = Vec::new();
        match rustup_compiler(dir) {
            Ok(compiler) => {
                return Ok(Toolchain {
                    route: Route::Rustup,
                    compiler,
                });
            }
            Err(finding) => findings.push(finding),
        }
        match debian_compiler() {
            Ok(compiler) => Ok(Toolchain {
                route: Route::Debian,
                compiler,
            }),
            Err(missing) => {
                findings.push(format!(
                    "Debian's rustc-web route is incomplete: {}",
                    missing.join("; ")
                ));
                Err(NotFound { findings })
            }
        }
    }

    /// `rustc -V` of the compiler used.
    pub fn compiler(&self) -> &str {
        &self.compiler
    }

    /// The route, as plugins/dist/BUILD-INFO records it.
    pub fn route(&self) -> &'static str {
        match self.route {
            Route::Rustup => "rustup target wasm32-unknown-unknown",
            Route::Debian => "debian rustc-web, -Zbuild-std=std,panic_abort, wasm-ld-22",
        }
    }

    /// Sets up `cargo build` for this route: environment and extra arguments.
    pub fn configure(&self, cargo: &mut Command) {
        if self.route == Route::Debian {
            cargo
                .env("RUSTC", DEBIAN_RUSTC)
                // -Zbuild-std is unstable; Debian's std source matches its rustc.
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", DEBIAN_LINKER)
                .arg("-Zbuild-std=std,panic_abort");
        }
    }
}

/// rustup's compiler, when it has the target installed.
fn rustup_compiler(dir: &Path) -> Result<String, String> {
    let listed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .output()
        .map_err(|_| "rustup is not on PATH".to_string())?;
    let installed = String::from_utf8_lossy(&listed.stdout);
    if !listed.status.success() || !installed.lines().any(|l| l.trim() == TARGET) {
        return Err(format!("rustup has no {TARGET} target installed"));
    }
    version(Command::new("rustc").current_dir(dir))
        .map_err(|e| format!("rustup's rustc does not run: {e}"))
}

/// Debian's rustc-web, when it, its std source and the linker are installed;
/// else what is missing.
fn debian_compiler() -> Result<String, Vec<String>> {
    let mut missing = Vec::new();
    let compiler = match version(&mut Command::new(DEBIAN_RUSTC)) {
        Ok(v) if minor(&v).is_some_and(|m| m >= MIN_MINOR) => Some(v),
        Ok(v) => {
            missing.push(format!(
                "{DEBIAN_RUSTC} is {v}, older than 1.{MIN_MINOR} (package rustc-web)"
            ));
            None
        }
        Err(_) => {
            missing.push(format!("no {DEBIAN_RUSTC} (package rustc-web)"));
            None
        }
    };
    if compiler.is_some() {
        let std_source = sysroot(DEBIAN_RUSTC)
            .map(|root| root.join("lib/rustlib/src/rust/library/Cargo.lock"))
            .filter(|lock| lock.is_file());
        if std_source.is_none() {
            missing.push("no std source for it (package rust-web-src)".into());
        }
    }
    if find_on_path(DEBIAN_LINKER).is_none() {
        missing.push(format!("no {DEBIAN_LINKER} on PATH (package lld-22)"));
    }
    match compiler {
        Some(v) if missing.is_empty() => Ok(v),
        _ => Err(missing),
    }
}

fn version(rustc: &mut Command) -> Result<String, String> {
    let out = rustc.arg("-V").output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `rustc 1.96.0 (…)` → 96.
fn minor(version: &str) -> Option<u32> {
    let number = version.split_whitespace().nth(1)?;
    number.split('.').nth(1)?.parse().ok()
}

fn sysroot(rustc: &str) -> Option<PathBuf> {
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

impl fmt::Display for NotFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no WebAssembly toolchain here to build plugins for {TARGET}:"
        )?;
        for finding in &self.findings {
            writeln!(f, "  - {finding}")?;
        }
        writeln!(f, "Install one, then run this command again. Either")?;
        writeln!(f, "  rustup target add {TARGET}")?;
        writeln!(f, "or, on Debian 12 or later, as root:")?;
        writeln!(
            f,
            "  apt-get update && apt-get install -y --no-install-recommends {DEBIAN_PACKAGES}"
        )?;
        write!(
            f,
            "(in a Duplex checkout, scripts/install-wasm-toolchain.sh installs what is missing)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_versions() {
        assert_eq!(
            minor("rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"),
            Some(96)
        );
        assert_eq!(minor("rustc 1.63.0"), Some(63));
        assert_eq!(minor("garbage"), None);
    }
}
