//! `duplex plugin inspect FILE` and `duplex plugin verify FILE --sha256 HEX`;
//! `new` and `build`, for plugin authors, live beside this file.

use super::output;
use super::{Output, exit};

fn print_json(value: &impl Serialize) {
    output::json_pretty(value)
}
use duplex_core::plugins::{
    self, HostConfig, Limits, LoadedPlugin, PluginError, PluginHost, PluginInfo, PluginSpec,
};
use serde::Serialize;
use std::path::{Path, PathBuf};

#[path = "plugin_build.rs"]
mod build;
#[path = "plugin_new.rs"]
mod new;
#[path = "plugin_push.rs"]
mod push;
#[path = "plugin_sign.rs"]
mod sign;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show what a plugin provides (checks, operations, installers, each
    /// parameter schema) and its sha256. Exit 0, 1 if it is not a valid
    /// plugin (or cannot be pulled), 2 if the file cannot be read or the
    /// reference is not pinned.
    Inspect {
        /// A component file, or a pinned
        /// `oci://REGISTRY/REPOSITORY[:TAG]@sha256:…` (pulled into the plugin
        /// cache and verified, as `validate` does).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check a plugin file against a sha256 digest. Exit 0 if it matches, 1 if
    /// not (or it cannot be pulled), 2 if the file cannot be read or the
    /// digest or reference is malformed.
    Verify {
        /// A component file, or a pinned `oci://…@sha256:…` reference.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The expected digest: 64 hex digits (as a policy pins it, in
        /// lower case; upper case is accepted here and compared lower-cased).
        #[arg(long, value_name = "HEX")]
        sha256: String,
    },
    /// Create a plugin crate that builds anywhere: Cargo.toml, src/lib.rs
    /// with one check, native tests, a README, and the Duplex plugin SDK in
    /// vendor/ (`--lang python`: app.py, duplex-plugin.toml, wit/ and the
    /// Python SDK in vendor/; `--lang js`: a JavaScript project with the JS
    /// SDK). Exit 0, 1 if the directory exists, 2 for a bad name.
    New(new::Args),
    /// Build a plugin crate (or a Python project with componentize-py, or a
    /// JavaScript project with componentize-js) to a component and print its
    /// path and sha256.
    /// Exit 0, 1 if it cannot be built, 2 if there is no crate or project.
    Build(build::Args),
    /// Publish a plugin to an OCI registry (`oci://REGISTRY/REPOSITORY[:TAG]`)
    /// with its describe metadata as annotations; print the reference pinned
    /// by the manifest digest and the component's sha256, for a policy.
    /// Exit 0, 1 if it is not a valid plugin or the registry refuses it, 2
    /// for a bad reference or an unreadable file.
    Push(push::Args),
    /// Make a minisign-compatible signing key pair (unencrypted, as
    /// `minisign -G -W`): the secret key (mode 0600) and the public key.
    /// Exit 0, 1 if a key file exists (never overwritten).
    Keygen(sign::KeygenArgs),
    /// Sign a plugin component: writes FILE.minisig beside it (a minisign
    /// detached signature; its trusted comment names the file and its
    /// sha256). Exit 0, 1 for an unusable key, 2 if a file cannot be read.
    Sign(sign::SignArgs),
}

pub fn run(args: &Args, output: Output) -> u8 {
    match &args.command {
        Command::Inspect { file } => match component_file(file, output) {
            Ok(path) => inspect(file, &path, output),
            Err(code) => code,
        },
        Command::Verify { file, sha256 } => match component_file(file, output) {
            Ok(path) => verify(file, &path, sha256, output),
            Err(code) => code,
        },
        Command::New(args) => new::run(args, output),
        Command::Build(args) => build::run(args, output),
        Command::Push(args) => push::run(args, output),
        Command::Keygen(args) => sign::keygen(args, output),
        Command::Sign(args) => sign::sign(args, output),
    }
}

#[derive(Serialize)]
struct Inspection<'a> {
    file: String,
    sha256: String,
    size: u64,
    contract: &'static str,
    plugin: InspectedPlugin<'a>,
    /// The interfaces the component imports.
    imports: Vec<Import<'a>>,
}

/// An imported interface and the `capabilities` key a policy must grant
/// for it to do anything (`null`: linked for every plugin).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Import<'a> {
    name: &'a str,
    granted_by: Option<&'static str>,
}

/// What a plugin describes, in the JSON shape of every other `--output json`
/// (camelCase keys), whatever the core's own types serialize as.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct InspectedPlugin<'a> {
    name: &'a str,
    version: &'a str,
    description: &'a str,
    checks: Vec<Provided<'a>>,
    operations: Vec<Provided<'a>>,
    installers: Vec<Provided<'a>>,
    reports_partner: bool,
}

/// A check, operation or installer with the schema of its parameters.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Provided<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    op: Option<String>,
    description: &'a str,
    params_schema: &'a serde_json::Value,
}

impl<'a> From<&'a PluginInfo> for InspectedPlugin<'a> {
    fn from(i: &'a PluginInfo) -> Self {
        InspectedPlugin {
            name: &i.name,
            version: &i.version,
            description: &i.description,
            checks: (i.checks.iter())
                .map(|c| Provided {
                    name: Some(&c.name),
                    op: None,
                    description: &c.description,
                    params_schema: &c.params_schema,
                })
                .collect(),
            operations: (i.operations.iter())
                .map(|o| Provided {
                    name: None,
                    op: Some(o.op.to_string()),
                    description: &o.description,
                    params_schema: &o.params_schema,
                })
                .collect(),
            installers: (i.installers.iter())
                .map(|n| Provided {
                    name: Some(&n.name),
                    op: None,
                    description: &n.description,
                    params_schema: &n.params_schema,
                })
                .collect(),
            reports_partner: i.reports_partner,
        }
    }
}

#[derive(Serialize)]
struct Failure {
    file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    error: String,
}

fn fail(file: &Path, sha256: Option<String>, error: String, code: u8, output: Output) -> u8 {
    match output {
        Output::Json => print_json(&Failure {
            file: file.display().to_string(),
            sha256,
            error,
        }),
        Output::Human => output::eline(&format!("error: {error}")),
    }
    code
}

/// The plugin file's bytes (a regular file within the size limit, checked
/// before reading), or the exit code after reporting why not.
fn read(file: &Path, output: Output) -> Result<Vec<u8>, u8> {
    plugins::read_plugin_file(file).map_err(|e| {
        fail(
            file,
            None,
            format!("cannot read {}: {e}", file.display()),
            exit::USAGE,
            output,
        )
    })
}

/// A plugin file loaded to be looked at (`inspect`, `push`): compiled,
/// linked and described with no grant, under the default limits. The
/// compiled-plugin cache spares a second compile of a large plugin (a
/// Python one is 18 MB: seconds in release, most of a minute in a debug
/// build) for `inspect` or `push` and then `validate`/`apply`; a cache dir
/// the host refuses (see plugins::cache) only means compiling here.
fn load_for_inspection(file: &Path, sha256: &str) -> Result<LoadedPlugin, PluginError> {
    let cached = HostConfig {
        cache_dir: Some(super::dirs::default_cache_dir()),
        ..HostConfig::default()
    };
    let host = PluginHost::new(cached).or_else(|_| PluginHost::new(HostConfig::default()))?;
    host.inspect(&PluginSpec {
        name: file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("plugin")
            .to_string(),
        path: file.to_path_buf(),
        sha256: sha256.to_string(),
        capabilities: Default::default(),
        limits: Limits::default(),
        param_schemas: Default::default(),
    })
}

/// The file to read for `FILE`: itself, or for a pinned
/// `oci://REGISTRY/REPOSITORY[:TAG]@sha256:…` the component it names, from
/// the plugin cache's OCI store or pulled into it (verified, as `validate`
/// pulls it), or the exit code after reporting why not.
fn component_file(file: &Path, output: Output) -> Result<PathBuf, u8> {
    let Some(reference) = file.to_str().filter(|s| duplex_oci::is_oci(s)) else {
        return Ok(file.to_path_buf());
    };
    let pinned = match duplex_oci::Reference::parse_pinned(reference) {
        Ok(pinned) => pinned,
        Err(e) => return Err(fail(file, None, e.to_string(), exit::USAGE, output)),
    };
    // Errors name the plugin by its repository's last segment.
    let name = pinned.repository.rsplit('/').next().unwrap_or("plugin");
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(super::dirs::default_cache_dir()),
        ..HostConfig::default()
    });
    match host.and_then(|host| host.pull_oci(name, reference)) {
        Ok(pulled) => Ok(pulled.path),
        Err(e) => Err(fail(file, None, e.to_string(), exit::INVALID, output)),
    }
}

/// `file` is what the operator named (shown), `path` what is read.
fn inspect(file: &Path, path: &Path, output: Output) -> u8 {
    let bytes = match read(path, output) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let sha256 = plugins::sha256_hex(&bytes);
    let plugin = match load_for_inspection(path, &sha256) {
        Ok(p) => p,
        Err(e) => return fail(file, Some(sha256), e.to_string(), exit::INVALID, output),
    };
    let info = plugin.info();
    let imports: Vec<Import<'_>> = plugin
        .imports()
        .iter()
        .map(|name| Import {
            name,
            granted_by: duplex_core::policy::grant_for_import(name),
        })
        .collect();
    match output {
        Output::Json => print_json(&Inspection {
            file: file.display().to_string(),
            sha256,
            size: bytes.len() as u64,
            contract: plugins::CONTRACT,
            plugin: info.into(),
            imports,
        }),
        Output::Human => {
            output::line(&format!("{} {}", info.name, info.version));
            if !info.description.is_empty() {
                output::line(&format!("  {}", info.description));
            }
            output::line(&format!(
                "file:      {} ({} bytes)",
                file.display(),
                bytes.len()
            ));
            output::line(&format!("sha256:    {sha256}"));
            output::line(&format!("contract:  {}", plugins::CONTRACT));
            output::line(&format!(
                "partner:   {}",
                if info.reports_partner {
                    "reports the partner side's state"
                } else {
                    "does not report the partner side's state"
                }
            ));
            output::line("imports:");
            for i in &imports {
                match i.granted_by {
                    Some(key) => output::line(&format!(
                        "  {}  (needs `capabilities.{key}` in the policy)",
                        i.name
                    )),
                    None => output::line(&format!("  {}", i.name)),
                }
            }
            let section = |title: &str, items: Vec<(String, &str, &serde_json::Value)>| {
                if items.is_empty() {
                    output::line(&format!("{title}: none"));
                    return;
                }
                output::line(&format!("{title}:"));
                for (name, description, schema) in items {
                    output::line(&format!("  {name}  {description}"));
                    let pretty = serde_json::to_string_pretty(schema).expect("schema serializes");
                    output::line("    parameters:");
                    for line in pretty.lines() {
                        output::line(&format!("      {line}"));
                    }
                }
            };
            section(
                "checks",
                info.checks
                    .iter()
                    .map(|c| (c.name.clone(), c.description.as_str(), &c.params_schema))
                    .collect(),
            );
            section(
                "operations",
                info.operations
                    .iter()
                    .map(|o| (o.op.to_string(), o.description.as_str(), &o.params_schema))
                    .collect(),
            );
            section(
                "installers",
                info.installers
                    .iter()
                    .map(|i| (i.name.clone(), i.description.as_str(), &i.params_schema))
                    .collect(),
            );
        }
    }
    exit::OK
}

#[derive(Serialize)]
struct Verification {
    file: String,
    expected: String,
    actual: String,
    matches: bool,
}

fn verify(file: &Path, path: &Path, expected: &str, output: Output) -> u8 {
    // Typed on a command line (or pasted from a tool that prints upper
    // case): compared as the policy would pin it.
    let expected = expected.to_ascii_lowercase();
    if !plugins::is_sha256_hex(&expected) {
        return fail(
            file,
            None,
            format!("`{expected}` is not a sha256 digest (64 hex digits)"),
            exit::USAGE,
            output,
        );
    }
    let bytes = match read(path, output) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let actual = plugins::sha256_hex(&bytes);
    let matches = actual == expected;
    match output {
        Output::Json => print_json(&Verification {
            file: file.display().to_string(),
            expected: expected.clone(),
            actual: actual.clone(),
            matches,
        }),
        Output::Human if matches => {
            output::line(&format!("ok: {} has sha256 {actual}", file.display()))
        }
        Output::Human => output::eline(&format!(
            "mismatch: {} has sha256 {actual}, expected sha256 {expected}",
            file.display()
        )),
    }
    if matches { exit::OK } else { exit::INVALID }
}
