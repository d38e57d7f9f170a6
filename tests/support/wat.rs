//! Hand-written hostile plugins (tests/data/plugins): the skeleton with a
//! snippet's `;;@replace NAME` sections put in place of the skeleton's
//! `;;@begin NAME` … `;;@end NAME` regions. Used by the plugin tests through
//! `#[path = "support/wat.rs"] mod wat;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/plugins")
}

/// The skeleton (a well-behaved plugin) with `snippet` put in.
pub fn assemble(snippet: Option<&str>) -> String {
    let mut wat = std::fs::read_to_string(data_dir().join("skeleton.wat")).unwrap();
    let Some(snippet) = snippet else { return wat };
    let text = std::fs::read_to_string(data_dir().join(format!("{snippet}.wat"))).unwrap();
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix(";;@replace ") {
            sections.push((name.trim().to_string(), String::new()));
        } else if let Some((_, body)) = sections.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    assert!(!sections.is_empty(), "{snippet}.wat replaces nothing");
    for (name, body) in sections {
        let begin = format!(";;@begin {name}\n");
        let end = format!(";;@end {name}\n");
        let b = wat
            .find(&begin)
            .unwrap_or_else(|| panic!("no region {name}"))
            + begin.len();
        let e = b + wat[b..].find(&end).unwrap();
        wat.replace_range(b..e, &body);
    }
    wat
}

/// Writes the assembled plugin into `dir` and returns its path and sha256
/// (lower-case hex, as a policy pins it).
pub fn write(snippet: Option<&str>, dir: &Path) -> (PathBuf, String) {
    let wat = assemble(snippet);
    let path = dir.join(format!("{}.wat", snippet.unwrap_or("good")));
    std::fs::write(&path, &wat).unwrap();
    (path, duplex_core::plugins::sha256_hex(wat.as_bytes()))
}
