//! `duplex plugin new NAME --lang python`: a Python plugin project that
//! `duplex plugin build` builds with componentize-py, anywhere.
//!
//! The Python SDK (plugin-sdk/python/duplex_plugin) and the WIT contract
//! (plugin-sdk/wit/plugin.wit) are embedded when `duplex` is compiled and
//! written into the project (`vendor/duplex_plugin`,
//! `wit/deps/duplex-plugin/plugin.wit`), so it is always the SDK and contract
//! this runner speaks.

use super::super::build::python::{COMPONENTIZE_PY_VERSION, MARKER};
use std::path::PathBuf;

/// Where the SDK goes inside a project (`-p vendor` when building).
pub const SDK_DIR: &str = "vendor/duplex_plugin";

/// The Python SDK's source, file by file (a unit test checks nothing is
/// missing).
pub const SDK_FILES: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../../plugin-sdk/python/duplex_plugin/__init__.py"),
    ),
    (
        "plugin.py",
        include_str!("../../../../plugin-sdk/python/duplex_plugin/plugin.py"),
    ),
    (
        "log.py",
        include_str!("../../../../plugin-sdk/python/duplex_plugin/log.py"),
    ),
    (
        "http.py",
        include_str!("../../../../plugin-sdk/python/duplex_plugin/http.py"),
    ),
    (
        "storage.py",
        include_str!("../../../../plugin-sdk/python/duplex_plugin/storage.py"),
    ),
    (
        "files.py",
        include_str!("../../../../plugin-sdk/python/duplex_plugin/files.py"),
    ),
];

const CONTRACT: &str = include_str!("../../../../plugin-sdk/wit/plugin.wit");

/// The project's own files, with `{{…}}` placeholders.
const TEMPLATES: &[(&str, &str)] = &[
    (
        MARKER,
        include_str!("../../../templates/plugin-python/duplex-plugin.toml.tmpl"),
    ),
    (
        "app.py",
        include_str!("../../../templates/plugin-python/app.py.tmpl"),
    ),
    (
        "wit/world.wit",
        include_str!("../../../templates/plugin-python/world.wit.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../../templates/plugin-python/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../../templates/plugin-python/gitignore.tmpl"),
    ),
];

fn render(name: &str, template: &str) -> String {
    let text = template
        .replace("{{name}}", name)
        .replace("{{componentize_py}}", COMPONENTIZE_PY_VERSION)
        .replace("{{duplex_version}}", env!("CARGO_PKG_VERSION"));
    debug_assert!(!text.contains("{{"), "unrendered placeholder:\n{text}");
    text
}

/// Every file of the project, relative to its directory.
pub fn files(name: &str) -> Vec<(PathBuf, String)> {
    let own = TEMPLATES
        .iter()
        .map(|(path, template)| (PathBuf::from(path), render(name, template)));
    let sdk = SDK_FILES
        .iter()
        .map(|(path, text)| (PathBuf::from(SDK_DIR).join(path), text.to_string()));
    own.chain(sdk)
        .chain([(
            PathBuf::from("wit/deps/duplex-plugin/plugin.wit"),
            CONTRACT.to_string(),
        )])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn the_embedded_python_sdk_is_the_whole_sdk() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/python/duplex_plugin");
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        found.sort();
        let mut embedded: Vec<String> = SDK_FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(
            embedded, found,
            "SDK_FILES in plugin_new/python.rs must list every module of plugin-sdk/python/duplex_plugin"
        );
    }

    #[test]
    fn every_placeholder_is_rendered_and_the_marker_reads_back() {
        for (path, text) in files("acme-checks") {
            assert!(!text.contains("{{"), "{}: {text}", path.display());
        }
        let marker = render("acme-checks", TEMPLATES[0].1);
        assert!(
            marker.contains("name = \"acme-checks\"\nlanguage = \"python\""),
            "{marker}"
        );
    }
}
