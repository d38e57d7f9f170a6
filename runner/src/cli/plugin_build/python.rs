//! `duplex plugin build` for a plugin written in Python: a directory with a
//! `duplex-plugin.toml` saying `language = "python"` (what `duplex plugin
//! new --lang python` writes, and plugins/py-* in this repository).
//!
//! componentize-py builds the component: the app module (which defines
//! `WitWorld`), the project directory and `vendor/` (the Duplex Python SDK)
//! on the Python path, against the project's own WIT world in `wit/` (its
//! dependency `wit/deps/duplex-plugin` is the `duplex:plugin` contract). The
//! world imports only the interfaces the plugin uses, so a policy grants it
//! no more than that.
//!
//! componentize-py is found in the toolchain directory
//! `scripts/install-plugin-toolchain-python.sh` installs it in
//! (`$DUPLEX_TOOLCHAINS/python`, default `~/.cache/duplex/toolchains/python`),
//! else on the PATH. It needs no network. Its output is not byte-for-byte
//! reproducible (the CPython heap it snapshots differs from run to run), so
//! a build is identified by its sources, not its bytes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The file that makes a directory a non-Rust plugin project.
pub const MARKER: &str = "duplex-plugin.toml";

/// The componentize-py this Duplex is tested with (the install script's pin).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// A plugin project's `duplex-plugin.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// The project directory.
    pub dir: PathBuf,
    /// The plugin's name (`dist/NAME.wasm`).
    pub name: String,
    /// `python` (the only language this file knows yet).
    pub language: String,
    /// The Python module that defines `WitWorld`.
    pub app: String,
    /// The WIT world in `wit/`.
    pub world: String,
}

const KEYS: &[&str] = &["name", "language", "app", "world"];
const LANGUAGES: &[&str] = &["python"];

/// Whether `dir` holds a non-Rust plugin project (its marker file).
pub fn is_project(dir: &Path) -> bool {
    dir.join(MARKER).is_file()
}

/// Reads `dir/duplex-plugin.toml`: `key = "value"` lines, `#` comments.
pub fn read_project(dir: &Path) -> Result<Project, String> {
    let path = dir.join(MARKER);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_project(dir, &path.display().to_string(), &text)
}

fn parse_project(dir: &Path, file: &str, text: &str) -> Result<Project, String> {
    let mut values: Vec<(&str, String)> = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let at = |col: usize| format!("{file}:{}:{}", n + 1, col + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let indent = raw.len() - raw.trim_start().len();
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "{}: expected `key = \"value\"`, found `{line}`",
                at(indent)
            ));
        };
        let key = key.trim();
        let Some(known) = KEYS.iter().find(|k| **k == key) else {
            return Err(format!(
                "{}: unknown key `{key}` (known: {})",
                at(indent),
                KEYS.join(", ")
            ));
        };
        if values.iter().any(|(k, _)| k == known) {
            return Err(format!("{}: `{key}` is set twice", at(indent)));
        }
        let value = value.trim();
        let value = value.split_once(" #").map_or(value, |(v, _)| v).trim();
        let after = raw.find('=').map_or(indent, |i| i + 1);
        let col = after + (raw[after..].len() - raw[after..].trim_start().len());
        let Some(inner) = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|v| !v.contains(['"', '\\']))
        else {
            return Err(format!(
                "{}: `{key}` must be a plain double-quoted string, found `{value}`",
                at(col)
            ));
        };
        values.push((known, inner.to_string()));
    }
    let get = |key: &str| {
        values
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    };
    let name = get("name").ok_or_else(|| format!("{file}: no `name = \"…\"`"))?;
    let language = get("language").ok_or_else(|| {
        format!(
            "{file}: no `language = \"…\"` (one of: {})",
            LANGUAGES.join(", ")
        )
    })?;
    if !LANGUAGES.contains(&language.as_str()) {
        return Err(format!(
            "{file}: `language = \"{language}\"` is not a language `duplex plugin build` builds \
             (one of: {}; a Rust plugin is a crate with a Cargo.toml and no {MARKER})",
            LANGUAGES.join(", ")
        ));
    }
    let app = get("app").unwrap_or_else(|| "app".into());
    let python_identifier = |s: &str| {
        s.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && part.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
        })
    };
    if !python_identifier(&app) {
        return Err(format!(
            "{file}: `app = \"{app}\"` is not a Python module name (e.g. `app` for app.py)"
        ));
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        name,
        language,
        app,
        world: get("world").unwrap_or_else(|| "plugin".into()),
    })
}

/// Where scripts/install-plugin-toolchain-python.sh installs componentize-py.
pub fn toolchain_dir() -> PathBuf {
    let base = std::env::var_os("DUPLEX_TOOLCHAINS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/duplex/toolchains")
        });
    base.join("python")
}

/// componentize-py: the toolchain directory's, else the PATH's; with its
/// `--version`.
pub fn componentize_py() -> Result<(PathBuf, String), String> {
    let installed = toolchain_dir().join("bin/componentize-py");
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("componentize-py"))
            .find(|p| p.is_file())
    });
    let Some(program) = Some(installed.clone()).filter(|p| p.is_file()).or(on_path) else {
        return Err(format!(
            "componentize-py, which builds Python plugins, is neither in {} nor on the PATH: \
             install it with scripts/install-plugin-toolchain-python.sh (in a Duplex checkout; \
             it installs componentize-py {COMPONENTIZE_PY_VERSION} from PyPI there), or \
             `pip install componentize-py=={COMPONENTIZE_PY_VERSION}`",
            installed.display()
        ));
    };
    let out = Command::new(&program)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !version.starts_with("componentize-py ") {
        return Err(format!(
            "{} --version did not say which componentize-py it is ({}): reinstall it with \
             scripts/install-plugin-toolchain-python.sh",
            program.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok((program, version))
}

/// Builds the component into `out` (through a temporary file beside it);
/// componentize-py's messages go to stderr. Returns its bytes.
pub fn build(
    project: &Project,
    program: &Path,
    out: &Path,
    quiet: bool,
) -> Result<Vec<u8>, String> {
    let app_file = project
        .dir
        .join(format!("{}.py", project.app.replace('.', "/")));
    if !app_file.is_file() && !project.dir.join(&project.app).join("__init__.py").is_file() {
        return Err(format!(
            "{}: no {} (the app module `{}` named in {MARKER})",
            project.dir.display(),
            app_file.display(),
            project.app
        ));
    }
    let wit = project.dir.join("wit");
    if !wit.is_dir() {
        return Err(format!(
            "{}: no wit/ directory (the world `{}` and wit/deps/duplex-plugin)",
            project.dir.display(),
            project.world
        ));
    }
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file_name = out.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{file_name}.{}.partial", std::process::id()));
    let temp = std::path::absolute(&temp).unwrap_or(temp);

    let mut cmd = Command::new(program);
    if quiet {
        cmd.arg("--quiet");
    }
    cmd.args(["-d", "wit", "-w", &project.world, "componentize"])
        .args(["-p", ".", "-p", "vendor"])
        .arg(&project.app)
        .arg("-o")
        .arg(&temp)
        .current_dir(&project.dir)
        // No __pycache__ in the project; componentize-py's own site-packages
        // search is for virtual environments, not wanted here.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("VIRTUAL_ENV")
        // Its backtraces are of its own internals, not of the plugin.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .stdin(Stdio::null())
        // Its chatter ("Component built successfully") goes to stderr:
        // stdout is duplex's own (`--output json`).
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit());
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    let built = if status.success() {
        std::fs::read(&temp).map_err(|e| format!("cannot read {}: {e}", temp.display()))
    } else {
        Err(format!(
            "componentize-py could not build {} (its messages are above)",
            project.name
        ))
    };
    let result = built.and_then(|bytes| {
        std::fs::rename(&temp, out)
            .map(|()| bytes)
            .map_err(|e| format!("cannot write {}: {e}", out.display()))
    });
    let _ = std::fs::remove_file(&temp);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Project, String> {
        parse_project(Path::new("p"), "p/duplex-plugin.toml", text)
    }

    #[test]
    fn a_marker_names_the_plugin_language_app_and_world() {
        let p = parse("# c\nname = \"acme\"  # the name\nlanguage = \"python\"\n").unwrap();
        assert_eq!(
            (
                p.name.as_str(),
                p.language.as_str(),
                p.app.as_str(),
                p.world.as_str()
            ),
            ("acme", "python", "app", "plugin")
        );
        let p =
            parse("name = \"a\"\nlanguage = \"python\"\napp = \"main\"\nworld = \"w\"\n").unwrap();
        assert_eq!((p.app.as_str(), p.world.as_str()), ("main", "w"));
    }

    #[test]
    fn a_bad_marker_is_refused_at_its_line() {
        let e = parse("name = \"a\"\n  lang = \"python\"\n").unwrap_err();
        assert_eq!(
            e,
            "p/duplex-plugin.toml:2:3: unknown key `lang` (known: name, language, app, world)"
        );
        let e = parse("name = a\n").unwrap_err();
        assert_eq!(
            e,
            "p/duplex-plugin.toml:1:8: `name` must be a plain double-quoted string, found `a`"
        );
        let e = parse("name = \"a\"\nlanguage = \"cobol\"\n").unwrap_err();
        assert!(
            e.contains("`language = \"cobol\"` is not a language"),
            "{e}"
        );
        let e = parse("name = \"a\"\n").unwrap_err();
        assert!(e.contains("no `language"), "{e}");
        let e = parse("name = \"a\"\nlanguage = \"python\"\napp = \"my-app\"\n").unwrap_err();
        assert!(e.contains("not a Python module name"), "{e}");
        let e = parse("name = \"a\"\nname = \"b\"\n").unwrap_err();
        assert_eq!(e, "p/duplex-plugin.toml:2:1: `name` is set twice");
    }
}
