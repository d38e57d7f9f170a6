//! What a plugin entry grants, as operators read it (`duplex plan`,
//! `duplex validate`), and which grant each imported interface needs
//! (`duplex plugin inspect`).
//!
//! One place per capability: [`Capabilities::grants`] lists a line per grant
//! and [`IMPORT_GRANTS`] maps interfaces to the policy key that grants them;
//! a new capability adds its lines to both, and every front end shows it.

use super::types::Capabilities;
use serde::Serialize;

/// One thing a plugin is granted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The policy key under `capabilities` (`storage`, `http`, `dirs`).
    pub capability: &'static str,
    /// What exactly, e.g. an origin, a directory and its mode.
    pub detail: String,
}

impl Capabilities {
    /// Every grant of the entry of plugin `plugin`, one per origin, program,
    /// directory, variable…, in the order of the policy's keys. Empty: the
    /// plugin gets log lines and progress only.
    pub fn grants(&self, plugin: &str) -> Vec<Grant> {
        let mut out = Vec::new();
        let mut add =
            |capability: &'static str, detail: String| out.push(Grant { capability, detail });
        if self.storage {
            let ns = self.storage_namespace.as_deref().unwrap_or(plugin);
            add("storage", format!("key-value store, namespace `{ns}`"));
        }
        // Names only: a value may be a secret.
        for name in self.env.keys() {
            add("env", format!("environment variable {name}"));
        }
        for d in &self.dirs {
            let mode = if d.read_only {
                "read-only"
            } else {
                "read-write"
            };
            add("dirs", format!("{} as {} ({mode})", d.host, d.guest));
        }
        for origin in &self.http {
            // Shown normalised (the port explicit), as requests are checked.
            let shown = crate::plugins::HttpOrigin::parse_grant(origin)
                .map_or_else(|_| origin.clone(), |o| o.to_string());
            add("http", shown);
        }
        for e in &self.exec {
            let mut detail = e.program.clone();
            for a in &e.args {
                detail.push(' ');
                detail.push_str(a);
            }
            if !e.args.is_empty() {
                detail.push_str(" …");
            }
            if !e.env.is_empty() {
                // Names only: a value may be a secret.
                let names: Vec<&str> = e.env.keys().map(String::as_str).collect();
                detail.push_str(&format!(" (environment: {})", names.join(", ")));
            }
            add("exec", detail);
        }
        for f in &self.files {
            let mode = if f.read_only {
                "read-only"
            } else {
                "read-write"
            };
            add("files", format!("`{}`: {} ({mode})", f.name, f.path));
        }
        if self.artifacts {
            add(
                "artifacts",
                "the policy's software, as staged after its sha256 was verified".into(),
            );
        }
        out
    }
}

/// Interfaces a plugin may import and the `capabilities` key that grants
/// them (`None`: linked for every plugin; WASI's other interfaces give
/// nothing without a grant: frozen clocks, no sockets). Matched by prefix,
/// without version, the first match wins.
pub const IMPORT_GRANTS: &[(&str, Option<&str>)] = &[
    ("duplex:plugin/types", None),
    ("duplex:plugin/host", None),
    ("duplex:plugin/storage", Some("storage")),
    ("duplex:plugin/exec", Some("exec")),
    ("duplex:plugin/http", Some("http")),
    ("duplex:plugin/files", Some("files")),
    ("duplex:plugin/artifacts", Some("artifacts")),
    ("wasi:cli/environment", Some("env")),
    ("wasi:filesystem", Some("dirs")),
    ("wasi:", None),
];

/// The `capabilities` key that grants an imported interface
/// (`duplex:plugin/http@0.1.0` → `http`); `None` when it needs no grant.
pub fn grant_for_import(import: &str) -> Option<&'static str> {
    let name = import.split_once('@').map_or(import, |(n, _)| n);
    IMPORT_GRANTS
        .iter()
        .find(|(prefix, _)| name.starts_with(prefix))
        .and_then(|(_, key)| *key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_name_their_grant() {
        assert_eq!(grant_for_import("duplex:plugin/http@0.1.0"), Some("http"));
        assert_eq!(grant_for_import("duplex:plugin/host@0.1.0"), None);
        assert_eq!(
            grant_for_import("wasi:filesystem/preopens@0.2.6"),
            Some("dirs")
        );
        assert_eq!(grant_for_import("wasi:clocks/wall-clock@0.2.6"), None);
    }
}
