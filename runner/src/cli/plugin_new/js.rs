//! `duplex plugin new NAME --lang js`: a JavaScript plugin project (built by
//! `duplex plugin build` with componentize-js), with the JS SDK and the
//! contract embedded in this binary and written to `vendor/duplex-plugin-sdk`.

use std::path::PathBuf;

/// Where the SDK goes inside a scaffolded project (the same layout as
/// plugin-sdk/ in the Duplex repository: js/ and wit/).
pub(super) const SDK_DIR: &str = "vendor/duplex-plugin-sdk";

/// The JS SDK, path by path below SDK_DIR (a unit test checks nothing of
/// plugin-sdk/js is missing).
const SDK_FILES: &[(&str, &str)] = &[
    (
        "js/duplex.js",
        include_str!("../../../../plugin-sdk/js/duplex.js"),
    ),
    (
        "js/build.mjs",
        include_str!("../../../../plugin-sdk/js/build.mjs"),
    ),
    (
        "js/README.md",
        include_str!("../../../../plugin-sdk/js/README.md"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../../../plugin-sdk/wit/plugin.wit"),
    ),
];

/// The project's own files, with `{{name}}` and `{{duplex_version}}`.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../../templates/plugin-js/package.json.tmpl"),
    ),
    (
        "src/plugin.js",
        include_str!("../../../templates/plugin-js/plugin.js.tmpl"),
    ),
    (
        "wit/world.wit",
        include_str!("../../../templates/plugin-js/world.wit.tmpl"),
    ),
    (
        "README.md",
        include_str!("../../../templates/plugin-js/README.md.tmpl"),
    ),
    (
        ".gitignore",
        include_str!("../../../templates/plugin-js/gitignore.tmpl"),
    ),
];

fn render(name: &str, template: &str) -> String {
    let text = template
        .replace("{{name}}", name)
        .replace("{{duplex_version}}", env!("CARGO_PKG_VERSION"));
    debug_assert!(!text.contains("{{"), "unrendered placeholder:\n{text}");
    text
}

/// Every file of the project, relative to its directory.
pub(super) fn files(name: &str) -> Vec<(PathBuf, String)> {
    TEMPLATES
        .iter()
        .map(|(path, t)| (PathBuf::from(path), render(name, t)))
        .chain(
            SDK_FILES
                .iter()
                .map(|(path, text)| (std::path::Path::new(SDK_DIR).join(path), text.to_string())),
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_js_sdk_is_the_whole_js_sdk() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk/js");
        let mut found: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| format!("js/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        found.sort();
        let mut embedded: Vec<String> = SDK_FILES
            .iter()
            .map(|(p, _)| p.to_string())
            .filter(|p| p.starts_with("js/"))
            .collect();
        embedded.sort();
        assert_eq!(
            embedded, found,
            "SDK_FILES in plugin_new/js.rs must list every file of plugin-sdk/js"
        );
    }

    #[test]
    fn every_placeholder_is_rendered() {
        for (path, text) in files("acme-checks") {
            assert!(!text.contains("{{"), "{}: {text}", path.display());
        }
    }
}
