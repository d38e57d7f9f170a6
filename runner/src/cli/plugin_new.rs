//! `duplex plugin new NAME [--dir DIR] [--lang rust|python|js]`: scaffolds a
//! plugin crate (or, `--lang python`, a Python plugin project: see
//! [`python`]; `--lang js`, a JavaScript one: see [`js`]) that builds
//! anywhere, with no Duplex checkout around.
//!
//! The SDK is not on crates.io, so this binary carries its source (embedded
//! when `duplex` is compiled, so it is always the SDK of the contract this
//! runner speaks) and writes it into the new crate as the path dependency
//! `vendor/duplex-plugin-sdk`. `Cargo.lock` is seeded from Duplex's own lock:
//! the plugin gets the dependency versions Duplex is built and tested with,
//! and builds from the cargo cache without asking the registry.

use super::super::output;
use super::super::{Output, exit};
use serde::Serialize;
use std::io;
use std::path::{Path, PathBuf};

#[path = "plugin_new/js.rs"]
mod js;
#[path = "plugin_new/lockfile.rs"]
pub(super) mod lockfile;
#[path = "plugin_new/name.rs"]
pub(super) mod name;
#[path = "plugin_new/python.rs"]
mod python;

#[derive(Debug, clap::Args)]
#[command(after_help = "\
Example:
  duplex plugin new acme-checks
  cd acme-checks
  cargo test                                    # the plugin's logic, natively
  duplex plugin build                           # dist/acme-checks.wasm and its sha256
  duplex plugin inspect dist/acme-checks.wasm

  duplex plugin new acme-py --lang python       # a Python plugin (componentize-py)
  cd acme-py && duplex plugin build")]
pub struct Args {
    /// The plugin's name: lower-case letters, digits and single hyphens,
    /// starting with a letter (e.g. `acme-checks`). It names the crate, the
    /// component (`dist/NAME.wasm`) and the plugin in `duplex plugin inspect`.
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The directory to create for the crate [default: ./NAME]. It must not
    /// exist yet.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The language to write the plugin in: `rust` (a crate), `python`
    /// (built with componentize-py) or `js` (built with componentize-js).
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
}

/// The languages `duplex plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// A crate with the Rust SDK (built with cargo for wasm32-unknown-unknown).
    Rust,
    /// A Python project with the Python SDK (built with componentize-py).
    Python,
    /// A JavaScript project with the JS SDK (built with componentize-js).
    Js,
}

/// The Duplex workspace's lock, which seeds the scaffold's `Cargo.lock`.
pub(super) const WORKSPACE_LOCK: &str = include_str!("../../../Cargo.lock");

/// Where the SDK goes inside a scaffolded crate.
const SDK_DIR: &str = "vendor/duplex-plugin-sdk";

/// The SDK's source, path by path (a unit test checks nothing is missing).
const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../../plugin-sdk/Cargo.toml")),
    ("README.md", include_str!("../../../plugin-sdk/README.md")),
    ("src/lib.rs", include_str!("../../../plugin-sdk/src/lib.rs")),
    ("src/fs.rs", include_str!("../../../plugin-sdk/src/fs.rs")),
    (
        "src/fake_fs.rs",
        include_str!("../../../plugin-sdk/src/fake_fs.rs"),
    ),
    (
        "src/exec.rs",
        include_str!("../../../plugin-sdk/src/exec.rs"),
    ),
    (
        "src/host.rs",
        include_str!("../../../plugin-sdk/src/host.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../plugin-sdk/src/http.rs"),
    ),
    (
        "src/manifest.rs",
        include_str!("../../../plugin-sdk/src/manifest.rs"),
    ),
    (
        "src/testing.rs",
        include_str!("../../../plugin-sdk/src/testing.rs"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../../plugin-sdk/wit/plugin.wit"),
    ),
];

/// The crate's own files, with `{{…}}` placeholders (see [`Scaffold::render`]).
const TEMPLATES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin/Cargo.toml.tmpl"),
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/plugin/lib.rs.tmpl"),
    ),
    (
        "tests/checks.rs",
        include_str!("../../templates/plugin/checks.rs.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin/gitignore.tmpl"),
    ),
];

/// What the scaffold's `Cargo.toml` depends on; the seeded lock lists these
/// for the new package.
const DIRECT_DEPENDENCIES: [&str; 3] = ["duplex-plugin-sdk", "schemars", "serde"];

/// The `[profile.plugin]` table every scaffold gets (and `duplex plugin
/// build` needs in the crate's workspace).
pub(super) fn plugin_profile() -> String {
    let manifest = TEMPLATES[0].1;
    let table: Vec<&str> = manifest
        .lines()
        .skip_while(|l| *l != "[profile.plugin]")
        .take_while(|l| !l.trim().is_empty())
        .collect();
    table.join("\n")
}

/// The version of the embedded SDK (from its manifest).
fn sdk_version() -> &'static str {
    let manifest = SDK_FILES[0].1;
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .expect("plugin-sdk/Cargo.toml has a literal version")
}

/// A plugin crate to be written: its name and the identifiers derived from it.
struct Scaffold {
    /// The package name, e.g. `acme-checks`.
    name: String,
    /// The plugin type, e.g. `AcmeChecks`.
    type_name: String,
}

impl Scaffold {
    fn new(name: &str) -> Scaffold {
        Scaffold {
            name: name.to_string(),
            type_name: name::type_name(name),
        }
    }

    fn render(&self, template: &str) -> String {
        let text = template
            .replace("{{crate}}", &self.name)
            .replace("{{crate_ident}}", &self.name.replace('-', "_"))
            .replace("{{Type}}", &self.type_name)
            .replace("{{sdk_version}}", sdk_version())
            .replace("{{duplex_version}}", env!("CARGO_PKG_VERSION"));
        debug_assert!(!text.contains("{{"), "unrendered placeholder:\n{text}");
        text
    }

    /// Every file of the crate, relative to its directory.
    fn files(&self) -> Vec<(PathBuf, String)> {
        let own = TEMPLATES
            .iter()
            .map(|(path, template)| (PathBuf::from(path), self.render(template)));
        let sdk = SDK_FILES
            .iter()
            .map(|(path, text)| (Path::new(SDK_DIR).join(path), text.to_string()));
        let lock = lockfile::Lock::parse(WORKSPACE_LOCK)
            .for_plugin(&self.name, "0.1.0", &DIRECT_DEPENDENCIES)
            .expect("Duplex's Cargo.lock holds the SDK and its dependencies");
        own.chain(sdk)
            .chain([(PathBuf::from("Cargo.lock"), lock)])
            .collect()
    }
}

#[derive(Serialize)]
struct Created {
    name: String,
    dir: String,
    lang: Lang,
    sdk_version: &'static str,
    files: Vec<String>,
}

pub fn run(args: &Args, output: Output) -> u8 {
    if let Err(problem) = name::check(&args.name) {
        return report(output, &problem, exit::USAGE);
    }
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let (files, sdk_version) = match args.lang {
        Lang::Rust => (Scaffold::new(&args.name).files(), sdk_version()),
        // The Python SDK is the one this runner embeds: its version is the runner's.
        Lang::Python => (python::files(&args.name), env!("CARGO_PKG_VERSION")),
        // So is the JavaScript SDK.
        Lang::Js => (js::files(&args.name), env!("CARGO_PKG_VERSION")),
    };
    if let Err(problem) = create(&dir, &files) {
        return report(output, &problem, exit::INVALID);
    }
    let created = Created {
        name: args.name.clone(),
        dir: dir.display().to_string(),
        lang: args.lang,
        sdk_version,
        files: files.iter().map(|(p, _)| p.display().to_string()).collect(),
    };
    match (output, args.lang) {
        (Output::Json, _) => output::json_pretty(&created),
        (Output::Human, Lang::Rust) => print_next_steps(&created, &dir),
        (Output::Human, Lang::Python) => print_python_next_steps(&created, &dir),
        (Output::Human, Lang::Js) => print_next_steps_js(&created, &dir),
    }
    exit::OK
}

fn print_python_next_steps(created: &Created, dir: &Path) {
    let name = &created.name;
    output::line(&format!(
        "Created the Python plugin `{name}` in {}",
        dir.display()
    ));
    output::line(&format!(
        "  (the Duplex Python SDK {} is in {})",
        created.sdk_version,
        dir.join(python::SDK_DIR).display()
    ));
    output::line("");
    output::line("Next:");
    output::line(&format!("  cd {}", shell_word(&dir.display().to_string())));
    output::line(&format!(
        "  duplex plugin build              # build dist/{name}.wasm with componentize-py, print its sha256"
    ));
    output::line(&format!("  duplex plugin inspect dist/{name}.wasm"));
    output::line(&format!(
        "then pin dist/{name}.wasm by that sha256 in a policy (README.md shows how)."
    ));
}

/// Creates `dir` (which must not exist) with `files`; on failure removes what
/// it created, so there is never a half-written crate.
fn create(dir: &Path, files: &[(PathBuf, String)]) -> Result<(), String> {
    let exists = || {
        format!(
            "{} already exists: `duplex plugin new` only creates a new directory; \
             choose another NAME, or a new directory with --dir DIR",
            dir.display()
        )
    };
    if dir.symlink_metadata().is_ok() {
        return Err(exists());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(exists()),
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let written = files.iter().try_for_each(|(path, text)| {
        let path = dir.join(path);
        let parent = path.parent().expect("a file in the crate has a parent");
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    written
}

fn print_next_steps(created: &Created, dir: &Path) {
    let name = &created.name;
    output::line(&format!(
        "Created the plugin crate `{name}` in {}",
        dir.display()
    ));
    output::line(&format!(
        "  (the Duplex plugin SDK {} is in {})",
        created.sdk_version,
        dir.join(SDK_DIR).display()
    ));
    output::line("");
    output::line("Next:");
    output::line(&format!("  cd {}", shell_word(&dir.display().to_string())));
    output::line("  cargo test                       # run the plugin's logic natively");
    output::line(&format!(
        "  duplex plugin build              # build dist/{name}.wasm and print its sha256"
    ));
    output::line(&format!("  duplex plugin inspect dist/{name}.wasm"));
    output::line(&format!(
        "then pin dist/{name}.wasm by that sha256 in a policy (README.md shows how)."
    ));
}

fn print_next_steps_js(created: &Created, dir: &Path) {
    let name = &created.name;
    output::line(&format!(
        "Created the JavaScript plugin project `{name}` in {}",
        dir.display()
    ));
    output::line(&format!(
        "  (the Duplex JS plugin SDK {} is in {})",
        created.sdk_version,
        dir.join(js::SDK_DIR).display()
    ));
    output::line("");
    output::line("Next (the toolchain once: see README.md):");
    output::line(&format!("  cd {}", shell_word(&dir.display().to_string())));
    output::line(&format!(
        "  duplex plugin build              # build dist/{name}.wasm and print its sha256"
    ));
    output::line(&format!("  duplex plugin inspect dist/{name}.wasm"));
    output::line(&format!(
        "then pin dist/{name}.wasm by that sha256 in a policy (README.md shows how)."
    ));
}

/// `word`, quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn report(output: Output, message: &str, code: u8) -> u8 {
    match output {
        Output::Json => output::json_pretty(&serde_json::json!({ "error": message })),
        Output::Human => output::elines(&format!("error: {message}")),
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(path: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
    }

    /// Every file of plugin-sdk/src and plugin-sdk/wit, relative to plugin-sdk/.
    fn sdk_sources() -> Vec<String> {
        let mut found = Vec::new();
        for sub in ["src", "wit"] {
            for entry in std::fs::read_dir(repo("plugin-sdk").join(sub)).unwrap() {
                let entry = entry.unwrap();
                assert!(
                    entry.file_type().unwrap().is_file(),
                    "plugin-sdk/{sub}/ has a subdirectory: embed it in SDK_FILES"
                );
                found.push(format!("{sub}/{}", entry.file_name().to_string_lossy()));
            }
        }
        found.sort();
        found
    }

    #[test]
    fn the_embedded_sdk_is_the_whole_sdk() {
        let mut embedded: Vec<String> = SDK_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("src/") || p.starts_with("wit/"))
            .collect();
        embedded.sort();
        assert_eq!(
            embedded,
            sdk_sources(),
            "SDK_FILES in plugin_new.rs must list every file of plugin-sdk/src and plugin-sdk/wit"
        );
    }

    #[test]
    fn the_sdk_has_the_version_of_the_runner_that_ships_it() {
        assert_eq!(sdk_version(), env!("CARGO_PKG_VERSION"));
    }

    /// `duplex plugin build` uses `--profile plugin`; a scaffold must build
    /// the way plugins/dist is built.
    #[test]
    fn the_scaffold_has_the_workspace_plugin_profile() {
        let workspace = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
        let table: Vec<&str> = workspace
            .lines()
            .skip_while(|l| *l != "[profile.plugin]")
            .take_while(|l| !l.trim().is_empty())
            .collect();
        assert!(table.len() > 1, "no [profile.plugin] in Cargo.toml");
        assert_eq!(plugin_profile(), table.join("\n"));
    }

    #[test]
    fn every_placeholder_is_rendered() {
        let scaffold = Scaffold::new("acme-checks");
        for (path, text) in scaffold.files() {
            assert!(!text.contains("{{"), "{}: {text}", path.display());
        }
        let lib = scaffold.render(TEMPLATES[1].1);
        assert!(lib.contains("pub struct AcmeChecks;"), "{lib}");
        assert!(
            lib.contains("Manifest::new(\n            \"acme-checks\","),
            "{lib}"
        );
    }

    #[test]
    fn a_name_needing_quotes_is_quoted_for_the_shell() {
        assert_eq!(shell_word("acme-checks"), "acme-checks");
        assert_eq!(shell_word("my plugins/x"), "'my plugins/x'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
