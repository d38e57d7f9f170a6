//! Loading a policy file: read → YAML → JSON Schema → typed → semantic checks.
//! Each stage reports every problem it finds; a later stage only runs when
//! the earlier ones found nothing, because its input would not be sound.

use super::diagnostic::{Diagnostic, Finding, Warning};
use super::spans::{Position, SpanMap};
use super::values::{Sha256, Timestamp};
use super::{UpgradePolicy, schema_check, semantic};
use crate::files::{self, FileKind, WrongKind};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Larger files are refused before parsing: a policy is a page or two of YAML.
pub const MAX_POLICY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} problem(s) in the policy", .0.len())]
    Invalid(Vec<Diagnostic>),
}

/// A policy that passed every check, with where it came from.
#[derive(Debug, Clone)]
pub struct LoadedPolicy {
    pub policy: UpgradePolicy,
    pub file: PathBuf,
    /// Paths in the policy are relative to this directory.
    pub base_dir: PathBuf,
    /// SHA-256 of the file's bytes: how a session notices the policy changed.
    pub digest: Sha256,
    /// The file's text, to place later findings (e.g. against plugin schemas).
    pub text: String,
    /// Where the file came from, when a front end fetched it from a source
    /// (the agent: a directory or a git repository); recorded with a session.
    pub origin: Option<PolicyOrigin>,
}

/// Where a policy came from: the source a front end fetched it from, the
/// revision (a git commit) and the file's path in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyOrigin {
    /// The source, e.g. `git+file:///srv/policies@main` or a directory.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The policy file's path in the source.
    pub path: String,
}

impl LoadedPolicy {
    /// Place findings made after loading (JSON pointers into the policy)
    /// at their lines and columns, in file order.
    pub fn place(&self, findings: Vec<Finding>) -> Vec<Diagnostic> {
        let spans = SpanMap::build(&self.text);
        let document = serde_json::to_value(&self.policy).unwrap_or_default();
        let file = self.file.display().to_string();
        let mut diags: Vec<Diagnostic> = findings
            .into_iter()
            .map(|f| f.place(&file, &spans, &document))
            .collect();
        diags.sort_by_key(|d| (d.line, d.column));
        diags.dedup();
        diags
    }

    /// What is worth a warning in this policy as of `now` (a window that
    /// has closed, say), placed in the file. Warnings do not make it invalid.
    pub fn warnings(&self, now: Timestamp) -> Vec<Warning> {
        self.place(semantic::warnings(&self.policy, now))
            .into_iter()
            .map(Warning)
            .collect()
    }

    /// A path written in the policy, resolved against the policy's folder.
    pub fn resolve(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }
}

/// Read and check a policy file. It is read once, whole, up to
/// [`MAX_POLICY_BYTES`]: a regular file, or a pipe (`duplex apply
/// /dev/stdin < policy.yaml`, read as it comes). Devices, directories and
/// sockets are refused as [`LoadError::Unreadable`] (its source a
/// [`WrongKind`](crate::files::WrongKind)) without reading them.
pub fn load_file(path: &Path) -> Result<LoadedPolicy, LoadError> {
    let text = read_text(path, &POLICY)?;
    load_text(&text, path)
}

/// What the loading pipeline needs to know of a kind of document (an
/// `UpgradePolicy`, a `Rollout`): the words of its messages, its schema
/// check and its semantic checks. The stages are the same for every kind.
pub(crate) struct Pipeline<T> {
    /// The document's noun in messages: `policy`, `rollout`.
    pub noun: &'static str,
    /// What an empty file should have been: `an UpgradePolicy`.
    pub expected: &'static str,
    /// What a path naming a device or a directory should have named.
    pub wanted: &'static str,
    /// Every schema violation in the parsed document.
    pub schema: fn(&serde_json::Value) -> Vec<Finding>,
    /// Checks a schema cannot express, on the typed document.
    pub semantic: fn(&T) -> Vec<Finding>,
}

const POLICY: Pipeline<UpgradePolicy> = Pipeline {
    noun: "policy",
    expected: "an UpgradePolicy",
    wanted: "a policy file (a regular file, or a pipe)",
    schema: schema_check::check,
    semantic: semantic::check,
};

/// The first stage: read a document file whole, up to [`MAX_POLICY_BYTES`],
/// from a regular file or a pipe, as UTF-8 text; errors name `pipeline.noun`.
pub(crate) fn read_text<T>(path: &Path, pipeline: &Pipeline<T>) -> Result<String, LoadError> {
    let noun = pipeline.noun;
    let label = path.display().to_string();
    let unreadable = |source| LoadError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let (file, kind) = files::open(path).map_err(unreadable)?;
    let size = match kind {
        FileKind::Regular => file.metadata().map_err(unreadable)?.len(),
        FileKind::Fifo => {
            files::blocking(&file).map_err(unreadable)?;
            0
        }
        kind => {
            return Err(unreadable(
                WrongKind {
                    kind,
                    wanted: pipeline.wanted,
                }
                .into_io(),
            ));
        }
    };
    let whole_file = |message: String| {
        LoadError::Invalid(vec![Diagnostic {
            file: label.clone(),
            line: 1,
            column: 1,
            path: String::new(),
            message,
        }])
    };
    let too_large = |size: Option<u64>| {
        whole_file(match size {
            Some(size) => format!(
                "the file is {size} bytes; a {noun} may be at most {MAX_POLICY_BYTES} bytes (1 MiB)"
            ),
            None => format!(
                "the file is more than {MAX_POLICY_BYTES} bytes; a {noun} may be at most {MAX_POLICY_BYTES} bytes (1 MiB)"
            ),
        })
    };
    if size > MAX_POLICY_BYTES {
        return Err(too_large(Some(size)));
    }
    // Read at most one byte past the limit: a pipe has no size to check
    // first, and a file may grow meanwhile.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(too_large(None));
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(err) => {
            let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
            let column = valid.iter().rev().take_while(|b| **b != b'\n').count() + 1;
            Err(LoadError::Invalid(vec![Diagnostic {
                file: label,
                line,
                column,
                path: String::new(),
                message: "the file is not UTF-8 text".into(),
            }]))
        }
    }
}

/// Load a policy from text that was read from `path` (for example the copy a
/// session keeps): paths in it resolve against `path`'s folder.
pub fn load_text(text: &str, path: &Path) -> Result<LoadedPolicy, LoadError> {
    let policy = parse(text, &path.display().to_string()).map_err(LoadError::Invalid)?;
    Ok(loaded(policy, text, path))
}

/// Load a policy text that passed every check before and is known to be
/// unchanged since (a session's copy of its policy, whose digest the
/// session recorded when it was validated): parsed to its types, not
/// checked again (the JSON Schema validator is the costly part of a load).
/// `None` when it does not parse; [`load_text`] then says why.
pub fn load_checked_text(text: &str, path: &Path) -> Option<LoadedPolicy> {
    // The alias budget still holds before anything is expanded.
    super::aliases::check(text).ok()?;
    let policy: UpgradePolicy = yaml_serde::from_str(text).ok()?;
    Some(loaded(policy, text, path))
}

fn loaded(policy: UpgradePolicy, text: &str, path: &Path) -> LoadedPolicy {
    let base_dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    LoadedPolicy {
        policy,
        file: path.to_path_buf(),
        base_dir,
        digest: Sha256::of(text.as_bytes()),
        text: text.to_string(),
        origin: None,
    }
}

/// Parse and check a policy's text; `file` labels the diagnostics.
pub fn parse(text: &str, file: &str) -> Result<UpgradePolicy, Vec<Diagnostic>> {
    parse_document(text, file, &POLICY)
}

/// The stages after reading, for any kind of document: alias budget →
/// YAML → JSON Schema → typed → semantic checks, each stage's findings
/// placed at their lines and columns in `text`; `file` labels them.
pub(crate) fn parse_document<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &str,
    pipeline: &Pipeline<T>,
) -> Result<T, Vec<Diagnostic>> {
    let at_start = |message: String| {
        vec![Diagnostic {
            file: file.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message,
        }]
    };
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(at_start(format!(
            "the file is empty; expected {}",
            pipeline.expected
        )));
    }
    // Before yaml_serde expands a single alias.
    super::aliases::check(text).map_err(|bomb| {
        vec![Diagnostic {
            file: file.to_string(),
            line: bomb.line,
            column: bomb.column,
            path: bomb.path,
            message: bomb.message,
        }]
    })?;
    let document: serde_json::Value =
        yaml_serde::from_str(text).map_err(|e| vec![yaml_diagnostic(file, text, &e)])?;
    let spans = SpanMap::build(text);
    let place = |findings: Vec<Finding>| {
        let mut diags: Vec<Diagnostic> = findings
            .into_iter()
            .map(|f| f.place(file, &spans, &document))
            .collect();
        diags.sort_by_key(|d| (d.line, d.column));
        diags.dedup();
        diags
    };
    let findings = (pipeline.schema)(&document);
    if !findings.is_empty() {
        return Err(place(findings));
    }
    // The schema accepted it, so this only fails on what a schema cannot
    // express (e.g. a duration too long to represent); yaml_serde places it.
    let typed: T = yaml_serde::from_str(text).map_err(|e| vec![yaml_diagnostic(file, text, &e)])?;
    let findings = (pipeline.semantic)(&typed);
    if !findings.is_empty() {
        return Err(place(findings));
    }
    Ok(typed)
}

/// A YAML-level error (syntax, duplicate key, nesting, aliases) as a diagnostic.
fn yaml_diagnostic(file: &str, text: &str, err: &yaml_serde::Error) -> Diagnostic {
    let position = err
        .location()
        .map(|l| Position {
            line: l.line(),
            column: l.column(),
        })
        .unwrap_or(Position::START);
    // yaml_serde and libyaml put " at line L column C" into the text; the
    // position is shown up front instead.
    let message = strip_positions(&err.to_string());
    let (path, message) = match message.split_once(": ") {
        Some((path, rest)) if is_field_path(path) => {
            (path.trim_start_matches('.').to_string(), rest.to_string())
        }
        _ => (String::new(), message),
    };
    // A duplicate key is reported at its mapping; point at the second key.
    if let Some(field) = message
        .strip_prefix("duplicate field `")
        .or_else(|| message.strip_prefix("duplicate entry with key \""))
        .and_then(|rest| rest.split(['`', '"']).next())
    {
        let spans = SpanMap::build(text);
        let pointer = format!(
            "{}/{}",
            dotted_to_pointer(&path),
            super::spans::escape(field)
        );
        if let Some((first, second)) = spans.duplicate(&pointer) {
            return Diagnostic {
                file: file.to_string(),
                line: second.line,
                column: second.column,
                path: if path.is_empty() {
                    field.to_string()
                } else {
                    format!("{path}.{field}")
                },
                message: format!("`{field}` is given twice (first at line {})", first.line),
            };
        }
    }
    let message = match message.as_str() {
        "recursion limit exceeded" => {
            "the YAML is nested too deeply (more than 128 levels)".to_string()
        }
        "repetition limit exceeded" => {
            "the YAML expands aliases too many times (an alias bomb?); write the values out"
                .to_string()
        }
        _ => message,
    };
    Diagnostic {
        file: file.to_string(),
        line: position.line,
        column: position.column,
        path,
        message,
    }
}

fn is_field_path(s: &str) -> bool {
    !s.is_empty()
        && !s.contains(' ')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._[]-".contains(c))
}

/// Remove every " at line L column C" from a message.
fn strip_positions(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(" at line ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + " at line ".len()..];
        let skip = after
            .find(|c: char| !(c.is_ascii_digit() || c == ' ' || "column".contains(c)))
            .unwrap_or(after.len());
        rest = &after[skip..];
    }
    out.push_str(rest);
    out
}

/// `spec.plugins[1]` → `/spec/plugins/1`.
pub(crate) fn dotted_to_pointer(path: &str) -> String {
    let mut out = String::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let mut pieces = part.split('[');
        if let Some(name) = pieces.next().filter(|n| !n.is_empty()) {
            out.push('/');
            out.push_str(&super::spans::escape(name));
        }
        for index in pieces {
            out.push('/');
            out.push_str(index.trim_end_matches(']'));
        }
    }
    out
}
