//! What each plugin of a policy is granted, as `duplex plan` and
//! `duplex validate` show it (the lines come from the core's
//! `Capabilities::grants`, one place for every capability).

use duplex_core::policy::{Grant, LoadedPolicy};
use serde::Serialize;

/// One plugin entry and its grants.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PluginGrants {
    pub plugin: String,
    /// Empty: log lines and progress only.
    pub grants: Vec<Grant>,
}

pub fn of(policy: &LoadedPolicy) -> Vec<PluginGrants> {
    policy
        .policy
        .spec
        .plugins
        .iter()
        .map(|p| PluginGrants {
            plugin: p.name.clone(),
            grants: p.capabilities.grants(&p.name),
        })
        .collect()
}

/// The text lines, indented by `indent`.
pub fn lines(plugins: &[PluginGrants], indent: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in plugins {
        if p.grants.is_empty() {
            out.push(format!(
                "{indent}{}: nothing (log lines and progress only)",
                p.plugin
            ));
            continue;
        }
        out.push(format!("{indent}{}:", p.plugin));
        for g in &p.grants {
            out.push(format!("{indent}    {}: {}", g.capability, g.detail));
        }
    }
    out
}
