//! Artifacts: the software a policy installs, verified against the digest
//! the policy pins. One check, [`verify_artifact`], serves `duplex
//! validate`, the pre-flight check before a session starts
//! ([`verify_artifacts`]) and each install, right before the artifact is
//! handed over.
//!
//! An artifact is a regular file named by a path (relative to the policy
//! file); Duplex does not download anything, so a URL is refused when the
//! policy is checked (`policy::semantic`). The file is opened without
//! waiting (a FIFO must not hang the runner), refused unless it is a regular
//! file (a device such as `/dev/zero` never ends), and hashed as a stream in
//! constant memory, whatever its size.

use crate::files::{self, FileKind, WrongKind};
use crate::plugins;
use crate::policy::{Diagnostic, Finding, LoadedPolicy, Sha256, Software};
use std::path::PathBuf;

/// Why an artifact cannot be handed over.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact `{name}` ({}): cannot read it: {source}", .path.display())]
    Unreadable {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "artifact `{name}` ({}) is {kind}, not a regular file; give the path of the artifact file itself",
        .path.display()
    )]
    NotARegularFile {
        name: String,
        path: PathBuf,
        kind: FileKind,
    },
    #[error(
        "artifact `{name}` ({}) does not match its pinned digest: the policy pins sha256 {pinned}, the file has sha256 {actual}",
        .path.display()
    )]
    DigestMismatch {
        name: String,
        path: PathBuf,
        pinned: Sha256,
        actual: Sha256,
    },
}

impl ArtifactError {
    /// The field of the software item the problem is with.
    pub fn field(&self) -> &'static str {
        match self {
            ArtifactError::DigestMismatch { .. } => "sha256",
            ArtifactError::Unreadable { .. } | ArtifactError::NotARegularFile { .. } => "source",
        }
    }
}

/// Read an artifact, as a stream, and check it against its pinned digest.
pub fn verify_artifact(
    policy: &LoadedPolicy,
    software: &Software,
) -> Result<plugins::Artifact, ArtifactError> {
    let path = policy.resolve(&software.source);
    let unreadable =
        |source: std::io::Error| match source.get_ref().and_then(|e| e.downcast_ref::<WrongKind>())
        {
            Some(wrong) => ArtifactError::NotARegularFile {
                name: software.name.clone(),
                path: path.clone(),
                kind: wrong.kind,
            },
            None => ArtifactError::Unreadable {
                name: software.name.clone(),
                path: path.clone(),
                source,
            },
        };
    let file = files::open_regular(&path, "a regular file").map_err(unreadable)?;
    let (actual, size) = Sha256::of_reader(file).map_err(unreadable)?;
    if actual != software.sha256 {
        return Err(ArtifactError::DigestMismatch {
            name: software.name.clone(),
            path,
            pinned: software.sha256.clone(),
            actual,
        });
    }
    Ok(plugins::Artifact {
        name: software.name.clone(),
        version: software.version.clone(),
        sha256: software.sha256.to_string(),
        size,
        source: software.source.clone(),
    })
}

/// Every artifact problem, as findings at the software item's field
/// (`source` for a file that cannot be read, `sha256` for a mismatch).
pub fn findings(policy: &LoadedPolicy) -> Vec<Finding> {
    policy
        .policy
        .spec
        .software
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            verify_artifact(policy, s)
                .err()
                .map(|e| Finding::value(format!("/spec/software/{i}/{}", e.field()), e.to_string()))
        })
        .collect()
}

/// Check every artifact before the session starts; the problems placed in
/// the policy file.
pub fn verify_artifacts(policy: &LoadedPolicy) -> Result<(), Vec<Diagnostic>> {
    let findings = findings(policy);
    if findings.is_empty() {
        Ok(())
    } else {
        Err(policy.place(findings))
    }
}
