//! Loading a rollout file through the policy's pipeline (read → alias
//! budget → YAML → JSON Schema → typed → semantic checks), then the policy
//! it rolls out: a file loaded with [`policy::load_file`] relative to the
//! rollout's folder (its errors as they are, in its own file), or the
//! inline document, whose errors are placed in the rollout file.

use super::semantic::{self, INLINE};
use super::types::Rollout;
use crate::policy::load::{Pipeline, dotted_to_pointer, parse_document, read_text};
use crate::policy::spans::SpanMap;
use crate::policy::{self, Diagnostic, Finding, LoadError, LoadedPolicy, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RolloutLoadError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Every problem found, in the rollout file and (for a policy given by
    /// path) in the policy's.
    #[error("{} problem(s) in the rollout", .0.len())]
    Invalid(Vec<Diagnostic>),
}

impl From<LoadError> for RolloutLoadError {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Unreadable { path, source } => RolloutLoadError::Unreadable { path, source },
            LoadError::Invalid(d) => RolloutLoadError::Invalid(d),
        }
    }
}

const ROLLOUT: Pipeline<Rollout> = Pipeline {
    noun: "rollout",
    expected: "a Rollout",
    wanted: "a rollout file (a regular file, or a pipe)",
    schema: super::schema_check,
    semantic: semantic::check,
};

/// A rollout that passed every check, with the policy it rolls out.
#[derive(Debug, Clone)]
pub struct LoadedRollout {
    pub rollout: Rollout,
    /// The rollout file, as it was named.
    pub file: PathBuf,
    /// The file's text.
    pub text: String,
    /// SHA-256 of the file's text: the plan's digest.
    pub digest: Sha256,
    /// The policy every host applies. For an inline policy: its text is the
    /// inline document written back as YAML, its file the rollout file's
    /// absolute path (paths in it resolve against the rollout's folder).
    pub policy: LoadedPolicy,
}

/// Read and check a rollout file, and the policy it names; a regular file
/// or a pipe of at most [`policy::MAX_POLICY_BYTES`].
pub fn load_file(path: &Path) -> Result<LoadedRollout, RolloutLoadError> {
    let text = read_text(path, &ROLLOUT)?;
    load_text(&text, path)
}

/// Check a rollout's text that was read from `path` (which places its
/// diagnostics and the policy's path).
pub fn load_text(text: &str, path: &Path) -> Result<LoadedRollout, RolloutLoadError> {
    let label = path.display().to_string();
    let rollout = parse_document(text, &label, &ROLLOUT).map_err(RolloutLoadError::Invalid)?;
    let source = &rollout.spec.policy;
    let policy = match (&source.path, &source.inline) {
        (Some(relative), _) => {
            let file = lexically_normal(&base_dir(path).join(relative));
            match policy::load_file(&file) {
                Ok(policy) => policy,
                Err(LoadError::Invalid(diags)) => return Err(RolloutLoadError::Invalid(diags)),
                Err(err @ LoadError::Unreadable { .. }) => {
                    return Err(RolloutLoadError::Invalid(place(
                        text,
                        &label,
                        vec![Finding::value("/spec/policy/path", err.to_string())],
                    )));
                }
            }
        }
        (None, Some(inline)) => {
            let fail = |message: String| {
                RolloutLoadError::Invalid(place(
                    text,
                    &label,
                    vec![Finding::value(INLINE, message)],
                ))
            };
            let policy_text = yaml_serde::to_string(inline).map_err(|e| fail(e.to_string()))?;
            let file = std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
            policy::load_checked_text(&policy_text, &file)
                .ok_or_else(|| fail("the inline policy does not read back".into()))?
        }
        // The semantic checks refuse this already.
        (None, None) => {
            return Err(RolloutLoadError::Invalid(place(
                text,
                &label,
                vec![Finding::value("/spec/policy", "missing the policy")],
            )));
        }
    };
    Ok(LoadedRollout {
        rollout,
        file: path.to_path_buf(),
        text: text.to_string(),
        digest: Sha256::of(text.as_bytes()),
        policy,
    })
}

/// `a/b/../c/./d` → `a/c/d`, without asking the file system (a `..`
/// after a symbolic link is taken lexically): how the policy's path is shown
/// and stored in the plan.
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => match out.components().next_back() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir) => {}
                _ => out.push(".."),
            },
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

fn base_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Place findings (JSON pointers into the rollout) in its text, in file order.
fn place(text: &str, file: &str, findings: Vec<Finding>) -> Vec<Diagnostic> {
    let document: serde_json::Value = yaml_serde::from_str(text).unwrap_or_default();
    let spans = SpanMap::build(text);
    let mut diags: Vec<Diagnostic> = findings
        .into_iter()
        .map(|f| f.place(file, &spans, &document))
        .collect();
    diags.sort_by_key(|d| (d.line, d.column));
    diags.dedup();
    diags
}

impl LoadedRollout {
    /// Whether the policy is written inside the rollout.
    pub fn policy_is_inline(&self) -> bool {
        self.rollout.spec.policy.inline.is_some()
    }

    /// Diagnostics about the policy found after loading (its plugins and
    /// artifacts: `App::validate`), where an operator finds them: for a
    /// policy file, as they are; for an inline policy, moved from the text
    /// written back to their place in the rollout file (by their field path).
    pub fn place_policy_diagnostics(&self, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
        if !self.policy_is_inline() {
            return diags;
        }
        let findings = diags
            .into_iter()
            .map(|d| Finding::value(format!("{INLINE}{}", dotted_to_pointer(&d.path)), d.message))
            .collect();
        place(&self.text, &self.file.display().to_string(), findings)
    }

    /// The policy's warnings as of `now` (a closed one-off window), placed
    /// like [`place_policy_diagnostics`](Self::place_policy_diagnostics).
    pub fn policy_warnings(&self, now: policy::Timestamp) -> Vec<policy::Warning> {
        let warnings = self.policy.warnings(now).into_iter().map(|w| w.0).collect();
        self.place_policy_diagnostics(warnings)
            .into_iter()
            .map(policy::Warning)
            .collect()
    }
}
