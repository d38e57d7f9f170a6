//! One problem found in a policy file, with where it is.

use super::spans::{Position, SpanMap};
use serde::Serialize;
use std::fmt;

/// A problem in a policy file: `file:line:col: field.path: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// The field, as `spec.gates.prepareSplit[0].timeout`; empty for the whole file.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Something worth saying about a policy that does not make it invalid
/// (`validate` still exits 0): `file:line:col: warning: field.path: message`.
/// In JSON it has the fields of a [`Diagnostic`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Warning(pub Diagnostic);

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.0;
        write!(f, "{}:{}:{}: warning: ", d.file, d.line, d.column)?;
        if !d.path.is_empty() {
            write!(f, "{}: ", d.path)?;
        }
        f.write_str(&d.message)
    }
}

/// Where a finding points: a JSON pointer into the document, at its value
/// or at its key (for unknown and duplicate fields).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum At {
    Value(String),
    Key(String),
}

/// A finding before it is placed in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub at: At,
    pub message: String,
}

impl Finding {
    pub fn value(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            at: At::Value(pointer.into()),
            message: message.into(),
        }
    }
    pub fn key(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            at: At::Key(pointer.into()),
            message: message.into(),
        }
    }

    /// The same finding in a document embedded at `prefix` (a JSON pointer)
    /// in a larger one: a rollout's inline policy.
    pub fn under(self, prefix: &str) -> Self {
        let at = match self.at {
            At::Value(p) => At::Value(format!("{prefix}{p}")),
            At::Key(p) => At::Key(format!("{prefix}{p}")),
        };
        Self {
            at,
            message: self.message,
        }
    }

    pub fn place(self, file: &str, spans: &SpanMap, document: &serde_json::Value) -> Diagnostic {
        let (pointer, Position { line, column }) = match &self.at {
            At::Value(p) => (p, spans.value(p)),
            At::Key(p) => (p, spans.key(p)),
        };
        Diagnostic {
            file: file.to_string(),
            line,
            column,
            path: field_path(pointer, document),
            message: self.message,
        }
    }
}

/// `/spec/gates/prepareSplit/0/timeout` → `spec.gates.prepareSplit[0].timeout`,
/// using the document to tell list indices from keys.
pub fn field_path(pointer: &str, document: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut node = Some(document);
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        match node {
            Some(serde_json::Value::Array(items)) => {
                out.push_str(&format!("[{segment}]"));
                node = segment.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            other => {
                if !out.is_empty() {
                    out.push('.');
                }
                let plain = !segment.is_empty()
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if plain {
                    out.push_str(&segment);
                } else {
                    out.push_str(&format!("{segment:?}"));
                }
                node = other.and_then(|v| v.get(&segment));
            }
        }
    }
    out
}
