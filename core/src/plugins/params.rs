//! A plugin's parameter schemas applied to a policy's `with:` blocks: what
//! `describe` declares, checked before anything runs.

/// One way parameters fail a plugin's schema: where (relative to the
/// `with:` block, at a key or at a value) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// JSON pointer relative to the `with:` block.
    pub at: String,
    /// The problem is a key (an unknown parameter), not a value.
    pub key: bool,
    pub message: String,
}

/// Check parameters against a plugin's schema. `Err` when the schema itself
/// is unusable.
pub fn param_errors(
    schema: &serde_json::Value,
    with: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<ParamError>, String> {
    use jsonschema::error::ValidationErrorKind;
    // Schemas come from `describe`, which already refused those over the
    // limits; a schema from anywhere else is measured here, before jsonschema
    // compiles it (compiling or validating an exploding one never ends).
    let text_len = serde_json::to_string(schema).map_or(usize::MAX, |t| t.len());
    super::schema_limits::check(text_len, schema)
        .map_err(|e| format!("declares an unusable parameter schema: {e}"))?;
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("declares an unusable parameter schema: {e}"))?;
    let instance = serde_json::Value::Object(with.clone());
    let mut out = Vec::new();
    for error in validator.iter_errors(&instance) {
        let at = error.instance_path().as_str().to_string();
        match error.kind() {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    out.push(ParamError {
                        at: format!("{at}/{}", escape(name)),
                        key: true,
                        message: format!("unknown parameter `{name}`"),
                    });
                }
            }
            _ => out.push(ParamError {
                at,
                key: false,
                message: error.to_string(),
            }),
        }
    }
    Ok(out)
}

/// A JSON-pointer segment (RFC 6901).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
