//! Artifacts: the software a policy installs, verified against the digest
//! the policy pins, before a session starts and again right before each
//! install hands it over.

use crate::plugins;
use crate::policy::{Finding, LoadedPolicy, Sha256, Software};
use std::io::Read;

/// Read an artifact and check it against its pinned digest.
pub fn verify_artifact(
    policy: &LoadedPolicy,
    software: &Software,
) -> Result<plugins::Artifact, String> {
    let path = policy.resolve(&software.source);
    let mut file = std::fs::File::open(&path).map_err(|e| {
        format!(
            "artifact `{}` ({}): cannot read it: {e}",
            software.name,
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| {
        format!(
            "artifact `{}` ({}): cannot read it: {e}",
            software.name,
            path.display()
        )
    })?;
    let actual = Sha256::of(&bytes);
    if actual != software.sha256 {
        return Err(format!(
            "artifact `{}` ({}) does not match its pinned digest: the policy pins sha256 {}, the file has sha256 {actual}",
            software.name,
            path.display(),
            software.sha256
        ));
    }
    Ok(plugins::Artifact {
        name: software.name.clone(),
        version: software.version.clone(),
        sha256: software.sha256.to_string(),
        size: bytes.len() as u64,
        source: software.source.clone(),
    })
}

/// Check every artifact before the session starts.
pub fn verify_artifacts(policy: &LoadedPolicy) -> Result<(), Vec<crate::policy::Diagnostic>> {
    let findings: Vec<Finding> = policy
        .policy
        .spec
        .software
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            verify_artifact(policy, s)
                .err()
                .map(|e| Finding::value(format!("/spec/software/{i}/sha256"), e))
        })
        .collect();
    if findings.is_empty() {
        Ok(())
    } else {
        Err(policy.place(findings))
    }
}
