//! `duplex plugin build [CRATE_DIR] [-o OUT.wasm]`: builds a plugin crate to a
//! component, from anywhere, and prints what a policy pins (path, sha256).
//!
//! cargo compiles the crate's cdylib for `wasm32-unknown-unknown` with its
//! workspace's `plugin` profile (through the route [`toolchain`] finds), and
//! the core module is turned into a component here, with `wit-component` (the
//! encoder wit-bindgen itself uses), so nothing else needs installing. It is
//! how `scripts/build-plugins.sh` builds `plugins/dist` too: one route.

use super::super::output;
use super::super::{Output, exit};
use duplex_core::plugins;
use serde::Serialize;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[path = "plugin_build/cargo.rs"]
mod cargo;
#[path = "plugin_build/js.rs"]
pub(super) mod js;
#[path = "plugin_build/python.rs"]
pub(super) mod python;
#[path = "plugin_build/toolchain.rs"]
mod toolchain;

use toolchain::{TARGET, Toolchain};

/// The cargo profile plugins are built with.
const PROFILE: &str = "plugin";

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  duplex plugin build                        # the crate in this directory -> dist/NAME.wasm
  duplex plugin build ~/src/acme-checks -o /srv/duplex/plugins/acme-checks.wasm

cargo runs as usual (CARGO_TARGET_DIR, CARGO_HOME and the crate's Cargo.lock apply); \
once the dependencies are in the cargo cache no network is needed.")]
pub struct Args {
    /// The plugin's directory: a crate (its Cargo.toml has `crate-type =
    /// ["cdylib", …]`), a Python plugin project (its duplex-plugin.toml says
    /// `language = "python"`; built by componentize-py), or a JavaScript
    /// plugin project (its package.json has a `"duplex"` entry; built with
    /// componentize-js, see scripts/install-plugin-toolchain-js.sh).
    #[arg(value_name = "CRATE_DIR", default_value = ".")]
    pub crate_dir: PathBuf,
    /// Where to write the component [default: CRATE_DIR/dist/NAME.wasm].
    // Short only: a long `--out` would sit too close to the global `--output`.
    #[arg(short = 'o', value_name = "OUT.wasm")]
    pub out: Option<PathBuf>,
    /// Pass --locked to cargo: fail if Cargo.lock would change.
    #[arg(long)]
    pub locked: bool,
    /// Pass --offline to cargo: never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// Pass --quiet to cargo: only its errors and warnings.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Serialize)]
struct Built {
    /// The component.
    file: String,
    sha256: String,
    size: u64,
    /// The crate's package name.
    plugin: String,
    /// The core module cargo produced.
    core_module: String,
    compiler: String,
    route: &'static str,
    target: &'static str,
    profile: &'static str,
    componentizer: String,
}

/// A failed build: what to tell the operator, and the exit code.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: String) -> Failure {
        Failure {
            message,
            code: exit::USAGE,
        }
    }

    fn invalid(message: String) -> Failure {
        Failure {
            message,
            code: exit::INVALID,
        }
    }
}

/// A Python plugin, built by componentize-py.
#[derive(Serialize)]
struct BuiltPython {
    /// The component.
    file: String,
    sha256: String,
    size: u64,
    /// The name in duplex-plugin.toml.
    plugin: String,
    language: &'static str,
    /// The WIT world it was built against (in the project's wit/).
    world: String,
    /// `componentize-py 0.25.1`.
    componentizer: String,
    /// The componentize-py that ran.
    toolchain: String,
}

pub fn run(args: &Args, output: Output) -> u8 {
    let result = if python::is_project(&args.crate_dir) {
        build_python(args).map(|built| match output {
            Output::Json => output::json_pretty(&built),
            Output::Human => {
                print_file(&built.file, built.size, &built.sha256);
                output::line(&format!(
                    "  built by: {} ({}, world `{}`)",
                    built.componentizer, built.toolchain, built.world
                ));
                print_pin(&built.plugin, &built.file, &built.sha256);
            }
        })
    } else {
        build(args).map(|built| match output {
            Output::Json => output::json_pretty(&built),
            Output::Human => print_built(&built),
        })
    };
    match result {
        Ok(()) => exit::OK,
        Err(failure) => {
            match output {
                Output::Json => {
                    output::json_pretty(&serde_json::json!({ "error": failure.message }))
                }
                Output::Human => output::elines(&format!("error: {}", failure.message)),
            }
            failure.code
        }
    }
}

fn build_python(args: &Args) -> Result<BuiltPython, Failure> {
    let project = python::read_project(&args.crate_dir).map_err(Failure::invalid)?;
    super::new::name::check(&project.name).map_err(|problem| {
        Failure::invalid(format!(
            "{}: `name = \"{}\"`: {problem}",
            args.crate_dir.join(python::MARKER).display(),
            project.name
        ))
    })?;
    let (program, version) = python::componentize_py().map_err(Failure::invalid)?;
    let out = default_out(args, &project.name);
    let component =
        python::build(&project, &program, &out, args.quiet).map_err(Failure::invalid)?;
    Ok(BuiltPython {
        file: out.display().to_string(),
        sha256: plugins::sha256_hex(&component),
        size: component.len() as u64,
        plugin: project.name,
        language: "python",
        world: project.world,
        componentizer: version,
        toolchain: program.display().to_string(),
    })
}

fn build(args: &Args) -> Result<Built, Failure> {
    if let Some(project) = js::project(&args.crate_dir) {
        return build_js(args, project.map_err(Failure::invalid)?);
    }
    let package = cargo::plugin_package(&args.crate_dir).map_err(|e| match e {
        cargo::PackageError::Unreadable(m) => Failure::usage(m),
        cargo::PackageError::Invalid(m) => Failure::invalid(m),
    })?;
    let toolchain =
        Toolchain::detect(&args.crate_dir).map_err(|e| Failure::invalid(e.to_string()))?;

    let core_module = compile(args, &package, &toolchain)?;
    let module = std::fs::read(&core_module).map_err(|e| {
        Failure::invalid(format!(
            "cannot read the core module {}: {e}",
            core_module.display()
        ))
    })?;
    let component = componentize(&module).map_err(|e| {
        Failure::invalid(format!(
            "{} is not a core module the Duplex plugin SDK built \
             (does the crate call duplex_plugin_sdk::export_plugin!?): {e:#}",
            core_module.display()
        ))
    })?;
    let out = default_out(args, &package.name);
    write_atomically(&out, &component)
        .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", out.display())))?;

    Ok(Built {
        file: out.display().to_string(),
        sha256: plugins::sha256_hex(&component),
        size: component.len() as u64,
        plugin: package.name,
        core_module: core_module.display().to_string(),
        compiler: toolchain.compiler().to_string(),
        route: toolchain.route(),
        target: TARGET,
        profile: PROFILE,
        componentizer: componentizer(),
    })
}

/// A JavaScript project (package.json with a `"duplex"` entry) → a component,
/// with componentize-js (see [`js`]).
fn build_js(args: &Args, project: js::Project) -> Result<Built, Failure> {
    let built = js::build(&args.crate_dir).map_err(Failure::invalid)?;
    let out = default_out(args, &project.name);
    write_atomically(&out, &built.component)
        .map_err(|e| Failure::invalid(format!("cannot write {}: {e}", out.display())))?;
    Ok(Built {
        file: out.display().to_string(),
        sha256: plugins::sha256_hex(&built.component),
        size: built.component.len() as u64,
        plugin: project.name,
        core_module: project.main.display().to_string(),
        compiler: format!("node {}", built.node),
        route: "componentize-js",
        target: "javascript",
        profile: "-",
        componentizer: format!("componentize-js {}", js::COMPONENTIZE_JS),
    })
}

/// `-o`, else DIR/dist/NAME.wasm.
fn default_out(args: &Args, name: &str) -> PathBuf {
    args.out.clone().unwrap_or_else(|| {
        let dist = Path::new("dist").join(format!("{name}.wasm"));
        if args.crate_dir == Path::new(".") {
            dist
        } else {
            args.crate_dir.join(dist)
        }
    })
}

/// Runs cargo; returns the core module it wrote.
fn compile(
    args: &Args,
    package: &cargo::Package,
    toolchain: &Toolchain,
) -> Result<PathBuf, Failure> {
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--lib", "--message-format=json-render-diagnostics"])
        .args(["--target", TARGET, "--profile", PROFILE])
        .arg("--manifest-path")
        .arg(&package.manifest_path);
    for (wanted, flag) in [
        (args.locked, "--locked"),
        (args.offline, "--offline"),
        (args.quiet, "--quiet"),
    ] {
        if wanted {
            cmd.arg(flag);
        }
    }
    toolchain.configure(&mut cmd);
    // Location-independent output: sources under the cargo home are named
    // /cargo/…; the crate's own workspace members are named by relative
    // paths already. These flags replace any from RUSTFLAGS or cargo config,
    // so the same source and compiler give the same bytes on every machine.
    cmd.env_remove("RUSTFLAGS").env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!("--remap-path-prefix={}=/cargo", cargo::home().display()),
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());

    let mut child = cmd.spawn().map_err(|e| {
        Failure::invalid(format!(
            "cannot run cargo: {e}; install Rust (https://rustup.rs, or Debian's cargo-web)"
        ))
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut core_module = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if let Some(path) = cargo::cdylib_artifact(&line, &package.manifest_path) {
            core_module = Some(path);
        }
    }
    let status = child
        .wait()
        .map_err(|e| Failure::invalid(format!("cargo did not finish: {e}")))?;
    if !status.success() {
        return Err(Failure::invalid(format!(
            "cargo could not build {} for {TARGET} (its messages are above)",
            package.name
        )));
    }
    core_module.ok_or_else(|| {
        Failure::invalid(format!(
            "cargo built {} but reported no {TARGET} cdylib for it",
            package.name
        ))
    })
}

/// A core module with the component type information wit-bindgen embeds →
/// a validated component.
fn componentize(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(module)?
        .encode()
}

/// The componentizer and its version, from the lock this binary was built with.
fn componentizer() -> String {
    let lock = super::new::lockfile::Lock::parse(super::new::WORKSPACE_LOCK);
    let version = lock
        .dependency_version("duplex", "wit-component")
        .expect("duplex depends on wit-component");
    format!("wit-component {version}")
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// so `path` is never a half-written component.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    std::fs::write(&temp, bytes)
        .and_then(|()| std::fs::rename(&temp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temp);
        })
}

fn print_built(built: &Built) {
    print_file(&built.file, built.size, &built.sha256);
    output::line(&format!("  compiler: {} ({})", built.compiler, built.route));
    print_pin(&built.plugin, &built.file, &built.sha256);
}

fn print_file(file: &str, size: u64, sha256: &str) {
    output::line(&format!("Built {file} ({size} bytes)"));
    output::line(&format!("  sha256:   {sha256}"));
}

fn print_pin(plugin: &str, file: &str, sha256: &str) {
    output::line("Pin it in a policy:");
    output::line("  plugins:");
    output::line(&format!("    - name: {plugin}"));
    output::line(&format!(
        "      source: {file}   # relative to the policy file"
    ));
    output::line(&format!("      sha256: {sha256}"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_componentizer_is_named_with_its_version() {
        let c = super::componentizer();
        assert!(c.starts_with("wit-component 0."), "{c}");
    }
}
