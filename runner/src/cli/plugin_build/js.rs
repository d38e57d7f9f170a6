//! `duplex plugin build` for a JavaScript plugin project (a directory with a
//! `package.json` whose `"duplex"` entry names the module and the WIT world,
//! as `duplex plugin new --lang js` writes it).
//!
//! The build is the JS SDK's `build.mjs` (plugin-sdk/js, embedded in this
//! binary with the contract plugin-sdk/wit/plugin.wit) run by `node`: it calls
//! componentize-js from the toolchain that
//! `scripts/install-plugin-toolchain-js.sh` installs in
//! `${DUPLEX_TOOLCHAINS:-~/.cache/duplex/toolchains}/js`. No network.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The JS SDK's build helper and the contract it puts under the world's deps/.
pub(crate) const BUILD_MJS: &str = include_str!("../../../../plugin-sdk/js/build.mjs");
pub(crate) const CONTRACT_WIT: &str = include_str!("../../../../plugin-sdk/wit/plugin.wit");

/// The toolchain versions the install script pins.
pub(crate) const COMPONENTIZE_JS: &str = "0.23.0";
pub(crate) const JCO: &str = "1.35.0";
pub(crate) const INSTALL_SCRIPT: &str = "scripts/install-plugin-toolchain-js.sh";

/// A JavaScript plugin project.
pub(crate) struct Project {
    /// From package.json's `name`.
    pub name: String,
    /// The module componentize-js starts from (package.json `duplex.main`).
    pub main: PathBuf,
}

/// The project in `dir` when it is a JavaScript one (a package.json with a
/// `"duplex"` entry, and no Cargo.toml); `Err` says what is wrong with it.
pub(crate) fn project(dir: &Path) -> Option<Result<Project, String>> {
    let manifest = dir.join("package.json");
    if !manifest.is_file() || dir.join("Cargo.toml").exists() {
        return None;
    }
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) => return Some(Err(format!("cannot read {}: {e}", manifest.display()))),
    };
    let value: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return Some(Err(format!("{}: not JSON: {e}", manifest.display()))),
    };
    let duplex = &value["duplex"];
    let (Some(main), Some(_world)) = (duplex["main"].as_str(), duplex["world"].as_str()) else {
        return Some(Err(format!(
            "{}: no \"duplex\": {{ \"main\": …, \"world\": … }} entry (is this a Duplex plugin project? \
             `duplex plugin new NAME --lang js` makes one)",
            manifest.display()
        )));
    };
    let Some(name) = value["name"].as_str().filter(|n| !n.is_empty()) else {
        return Some(Err(format!("{}: no \"name\"", manifest.display())));
    };
    Some(Ok(Project {
        name: name.to_string(),
        main: dir.join(main),
    }))
}

/// Where the toolchain is: `$DUPLEX_TOOLCHAINS/js`, else
/// `~/.cache/duplex/toolchains/js` (where the install script puts it).
pub(crate) fn toolchain_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("DUPLEX_TOOLCHAINS")
        .or_else(|| var("HOME").map(|h| h.join(".cache/duplex/toolchains")))
        .map(|d| d.join("js"))
}

/// `node --version`, or why node cannot run.
fn node_version() -> Result<String, String> {
    let out = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|e| {
            format!(
                "cannot run node: {e}; install Node.js (Debian: nodejs), e.g. with {INSTALL_SCRIPT}"
            )
        })?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// What the build used.
pub(crate) struct Built {
    pub component: Vec<u8>,
    pub node: String,
}

/// Builds the project in `dir` to a component (returned, not written).
pub(crate) fn build(dir: &Path) -> Result<Built, String> {
    let node = node_version()?;
    let toolchain = toolchain_dir().ok_or_else(|| {
        "cannot find the JavaScript plugin toolchain: set DUPLEX_TOOLCHAINS or HOME".to_string()
    })?;
    let componentize =
        toolchain.join("node_modules/@bytecodealliance/componentize-js/package.json");
    if !componentize.is_file() {
        return Err(format!(
            "no JavaScript plugin toolchain in {}: install it with {INSTALL_SCRIPT} (from a Duplex checkout), or\n    \
             npm install --prefix {} @bytecodealliance/componentize-js@{COMPONENTIZE_JS} @bytecodealliance/jco@{JCO}",
            toolchain.display(),
            toolchain.display()
        ));
    }
    let sdk = tempfile::Builder::new()
        .prefix("duplex-js-sdk-")
        .tempdir()
        .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let write = |rel: &str, text: &str| -> Result<PathBuf, String> {
        let path = sdk.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("has a parent"))
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let script = write("js/build.mjs", BUILD_MJS)?;
    write("wit/plugin.wit", CONTRACT_WIT)?;
    let out = sdk.path().join("component.wasm");
    let status = Command::new("node")
        .arg(&script)
        .arg(dir)
        .arg("--out")
        .arg(&out)
        .arg("--toolchain")
        .arg(&toolchain)
        .status()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if !status.success() {
        return Err(format!(
            "componentize-js could not build {} (its messages are above)",
            dir.display()
        ));
    }
    let component =
        std::fs::read(&out).map_err(|e| format!("cannot read {}: {e}", out.display()))?;
    Ok(Built { component, node })
}
