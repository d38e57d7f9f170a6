//! JSON Schema validation of a parsed policy, with messages written for
//! operators rather than for schema authors.

use super::diagnostic::Finding;
use super::spans::escape;
use super::values::{BYTE_SIZE_PATTERN, DURATION_PATTERN, describe_pattern};
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::Value;
use std::sync::OnceLock;

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(super::schema())
            .expect("the generated policy schema is a valid JSON Schema")
    })
}

/// Every schema violation in the policy.
pub fn check(document: &Value) -> Vec<Finding> {
    check_with(super::schema(), validator(), document)
}

/// Every violation of `schema` (which `validator` was built from) in the
/// document, in the words of the policy's messages: how any document duplex
/// reads (a policy, a rollout) is checked against its schema.
pub fn check_with(schema: &Value, validator: &Validator, document: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    for error in validator.iter_errors(document) {
        explain(schema, &error, &mut findings);
    }
    findings.dedup();
    findings
}

/// The schema node a keyword belongs to: `/$defs/Check/properties/x/type` → `/$defs/Check/properties/x`.
fn schema_node<'s>(schema: &'s Value, error: &ValidationError<'_>) -> Option<&'s Value> {
    let path = error.schema_path().as_str();
    let parent = &path[..path.rfind('/').unwrap_or(0)];
    schema.pointer(parent)
}

fn explain(schema: &Value, error: &ValidationError<'_>, out: &mut Vec<Finding>) {
    let at = error.instance_path().as_str().to_string();
    let node = schema_node(schema, error);
    let message = match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known: Vec<&str> = node
                .and_then(|n| n.get("properties"))
                .and_then(Value::as_object)
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            for field in unexpected {
                let mut message = format!("unknown field `{field}`");
                message.push_str(&did_you_mean(field, &known));
                if !known.is_empty() {
                    message.push_str(&format!("; expected one of: {}", known.join(", ")));
                }
                out.push(Finding::key(format!("{at}/{}", escape(field)), message));
            }
            return;
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            format!("missing required field `{name}`")
        }
        ValidationErrorKind::Type { kind } => {
            let expected = match node.and_then(|n| n.get("pattern")).and_then(Value::as_str) {
                Some(p) if describe_pattern(p).is_some() => {
                    describe_pattern(p).unwrap().to_string()
                }
                _ => type_names(kind),
            };
            let mut message = format!(
                "expected {expected}, found {}",
                describe_value(error.instance())
            );
            let pattern = node.and_then(|n| n.get("pattern")).and_then(Value::as_str);
            let wants_text = matches!(kind, TypeKind::Single(t) if t.to_string() == "string");
            if let Some(hint) = pattern.and_then(|p| unit_hint(p, error.instance())) {
                message.push_str(&hint);
            } else if wants_text
                && matches!(error.instance().as_ref(), Value::Number(_) | Value::Bool(_))
            {
                message.push_str(" (YAML reads it as a number or boolean: put it in quotes)");
            }
            message
        }
        ValidationErrorKind::Pattern { pattern } => match describe_pattern(pattern) {
            Some(what) => format!(
                "expected {what}, found {}{}",
                describe_value(error.instance()),
                unit_hint(pattern, error.instance()).unwrap_or_default()
            ),
            None => format!(
                "{} does not match the pattern `{pattern}`",
                describe_value(error.instance())
            ),
        },
        ValidationErrorKind::Enum { options } => {
            format!(
                "expected one of: {}; found {}",
                list_values(options),
                describe_value(error.instance())
            )
        }
        ValidationErrorKind::Constant { expected_value } => {
            format!(
                "expected {}, found {}",
                show(expected_value),
                describe_value(error.instance())
            )
        }
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::MinItems { limit } => {
            format!(
                "must list at least {limit} item{}",
                if *limit == 1 { "" } else { "s" }
            )
        }
        ValidationErrorKind::MinLength { limit: 1 } => "must not be empty".to_string(),
        ValidationErrorKind::MinLength { limit } => {
            format!("must be at least {limit} characters long")
        }
        ValidationErrorKind::OneOfNotValid { context } | ValidationErrorKind::AnyOf { context } => {
            if let Some(options) = const_options(node) {
                out.push(Finding::value(
                    at,
                    format!(
                        "expected one of: {}; found {}",
                        options.join(", "),
                        describe_value(error.instance())
                    ),
                ));
                return;
            }
            if let Some(branch) = tagged_branch(node, error.instance(), context) {
                for inner in branch {
                    explain(schema, inner, out);
                }
                return;
            }
            match tag_options(node) {
                Some((tag, options)) => {
                    let found = error.instance().get(tag.as_str());
                    let at = if found.is_some() {
                        format!("{at}/{tag}")
                    } else {
                        at
                    };
                    out.push(Finding::value(
                        at,
                        match found {
                            Some(v) => format!(
                                "`{tag}` must be one of: {}; found {}",
                                options.join(", "),
                                describe_value(v)
                            ),
                            None => format!(
                                "missing required field `{tag}` (one of: {})",
                                options.join(", ")
                            ),
                        },
                    ));
                    return;
                }
                None => error.to_string(),
            }
        }
        _ => error.to_string(),
    };
    out.push(Finding::value(at, message));
}

/// What to write instead of a bare number where a duration or a size is
/// expected: YAML's `10` (or `"10"`) has no unit, and quoting it is not
/// the fix.
fn unit_hint(pattern: &str, value: &Value) -> Option<String> {
    let (what, unit, meaning, others) = match pattern {
        DURATION_PATTERN => ("a duration", "s", "seconds", "`{n}m` or `{n}ms`"),
        BYTE_SIZE_PATTERN => ("a size", "MiB", "mebibytes", "`{n}KiB` or `{n}B`"),
        _ => return None,
    };
    let number = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        let others = others.replace("{n}", &number);
        Some(format!(
            " ({what} needs a unit: write `{number}{unit}` for {number} {meaning}, or {others})"
        ))
    } else if number.parse::<f64>().is_ok() {
        Some(format!(
            " ({what} is whole numbers with units, e.g. {})",
            if unit == "s" {
                "`1m30s` or `1500ms`"
            } else {
                "`1536KiB`"
            }
        ))
    } else {
        None
    }
}

/// For a choice of constants (an enum whose variants carry descriptions),
/// the allowed values.
fn const_options(node: Option<&Value>) -> Option<Vec<String>> {
    let branches = node?
        .get("oneOf")
        .or_else(|| node?.get("anyOf"))?
        .as_array()?;
    let mut options = Vec::new();
    for branch in branches {
        match (
            branch.get("const"),
            branch.get("enum").and_then(Value::as_array),
        ) {
            (Some(c), _) => options.push(show(c)),
            (None, Some(values)) => options.extend(values.iter().map(show)),
            (None, None) => return None,
        }
    }
    Some(options)
}

/// For a tagged union (`when: ...`), the tag name and its allowed values.
fn tag_options(node: Option<&Value>) -> Option<(String, Vec<String>)> {
    let branches = node?
        .get("oneOf")
        .or_else(|| node?.get("anyOf"))?
        .as_array()?;
    let mut tag = None;
    let mut options = Vec::new();
    for branch in branches {
        let props = branch.get("properties")?.as_object()?;
        let (name, value) = props
            .iter()
            .find_map(|(k, v)| Some((k, v.get("const")?.as_str()?)))?;
        tag = Some(name.clone());
        options.push(value.to_string());
    }
    Some((tag?, options))
}

/// The errors of the branch of a tagged union whose tag the value carries.
fn tagged_branch<'e>(
    node: Option<&Value>,
    instance: &Value,
    context: &'e [Vec<ValidationError<'static>>],
) -> Option<&'e Vec<ValidationError<'static>>> {
    let (tag, options) = tag_options(node)?;
    let value = instance.get(&tag)?.as_str()?;
    let index = options.iter().position(|o| o == value)?;
    context.get(index)
}

fn type_names(kind: &TypeKind) -> String {
    let name = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "object" => "a mapping".to_string(),
        "array" => "a list".to_string(),
        "integer" => "a whole number".to_string(),
        "number" => "a number".to_string(),
        "boolean" => "true or false".to_string(),
        "string" => "a string".to_string(),
        "null" => "nothing (null)".to_string(),
        other => other.to_string(),
    };
    match kind {
        TypeKind::Single(t) => name(t),
        TypeKind::Multiple(set) => set
            .iter()
            .map(|t| name(&t))
            .collect::<Vec<_>>()
            .join(" or "),
    }
}

fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("`{b}`"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.chars().count() > 60 => {
            format!("`{}…`", s.chars().take(60).collect::<String>())
        }
        Value::String(s) => format!("`{s}`"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "a mapping".into(),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn list_values(options: &Value) -> String {
    options
        .as_array()
        .map(|a| a.iter().map(show).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| options.to_string())
}

/// ` (did you mean `x`?)` when a known name is close enough to `word` to
/// be what was meant, else nothing: the one way every message suggests.
pub fn did_you_mean(word: &str, known: &[&str]) -> String {
    closest(word, known)
        .map(|close| format!(" (did you mean `{close}`?)"))
        .unwrap_or_default()
}

/// The known name closest to a misspelt one, if it is close enough to be a typo.
pub fn closest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(&word.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
