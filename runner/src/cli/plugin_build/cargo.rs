//! What `duplex plugin build` asks cargo: which package a directory holds,
//! and where the build put its core module.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The plugin crate to build.
#[derive(Debug)]
pub struct Package {
    pub name: String,
    /// Its Cargo.toml, canonical.
    pub manifest_path: PathBuf,
}

#[derive(Debug)]
pub enum PackageError {
    /// There is no crate to read at all.
    Unreadable(String),
    /// There is one, but it is not a plugin crate cargo can build.
    Invalid(String),
}

/// The cargo home whose sources builds name `/cargo/…`: `$CARGO_HOME`, else
/// `~/.cargo` (as cargo itself decides).
pub fn home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(home);
    }
    let user = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&user).join(".cargo")
}

/// The plugin package in `dir`, checked to be buildable as a plugin: a
/// package (not a virtual workspace), with a cdylib, in a workspace that
/// defines the `plugin` profile.
pub fn plugin_package(dir: &Path) -> Result<Package, PackageError> {
    let manifest = dir.join("Cargo.toml");
    let manifest = manifest.canonicalize().map_err(|e| {
        PackageError::Unreadable(format!(
            "no plugin crate in {}: cannot read {}: {e}; give the directory of the \
             plugin crate (duplex plugin build path/to/crate)",
            dir.display(),
            manifest.display()
        ))
    })?;
    let out = Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| {
            PackageError::Invalid(format!(
                "cannot run cargo: {e}; install Rust (https://rustup.rs, or Debian's cargo-web)"
            ))
        })?;
    if !out.status.success() {
        return Err(PackageError::Invalid(format!(
            "cargo cannot read {}:\n{}",
            manifest.display(),
            String::from_utf8_lossy(&out.stderr).trim_end()
        )));
    }
    let metadata: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| PackageError::Invalid(format!("cargo metadata printed no JSON: {e}")))?;
    let package = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| same_file(p["manifest_path"].as_str(), &manifest))
        .ok_or_else(|| {
            PackageError::Invalid(format!(
                "{} is a workspace, not a package: give the directory of the plugin crate in it",
                manifest.display()
            ))
        })?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let is_cdylib = package["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| has(&t["crate_types"], "cdylib"));
    if !is_cdylib {
        return Err(PackageError::Invalid(format!(
            "`{name}` is not a plugin crate: its library is not a cdylib. \
             Add this to {}:\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]",
            manifest.display()
        )));
    }
    let root = Path::new(metadata["workspace_root"].as_str().unwrap_or_default());
    let root_manifest = root.join("Cargo.toml");
    let defines_profile = std::fs::read_to_string(&root_manifest)
        .is_ok_and(|text| text.lines().any(|l| l.trim() == "[profile.plugin]"));
    if !defines_profile {
        return Err(PackageError::Invalid(format!(
            "{} has no [profile.plugin], the profile plugins are built with. \
             Add this to it:\n\n{}",
            root_manifest.display(),
            super::super::new::plugin_profile()
        )));
    }
    Ok(Package {
        name,
        manifest_path: manifest,
    })
}

/// From one line of `cargo build --message-format=json`: the `.wasm` file of
/// the cdylib of the package whose manifest is `manifest`, if the line
/// reports it.
pub fn cdylib_artifact(line: &str, manifest: &Path) -> Option<PathBuf> {
    if !line.contains("\"compiler-artifact\"") {
        return None;
    }
    let message: Value = serde_json::from_str(line).ok()?;
    let ours = message["reason"] == "compiler-artifact"
        && has(&message["target"]["crate_types"], "cdylib")
        && same_file(message["manifest_path"].as_str(), manifest);
    if !ours {
        return None;
    }
    message["filenames"]
        .as_array()?
        .iter()
        .filter_map(Value::as_str)
        .find(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
}

fn has(list: &Value, item: &str) -> bool {
    list.as_array()
        .is_some_and(|l| l.iter().any(|v| v.as_str() == Some(item)))
}

fn same_file(path: Option<&str>, canonical: &Path) -> bool {
    path.and_then(|p| Path::new(p).canonicalize().ok())
        .is_some_and(|p| p == canonical)
}
