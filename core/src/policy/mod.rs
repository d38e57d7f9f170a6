//! The upgrade policy: its types (the single source of the JSON Schema),
//! loading with positioned diagnostics, and semantic checks.

pub mod aliases;
mod diagnostic;
mod grants;
pub(crate) mod load;
pub mod reference;
pub mod schema_check;
pub(crate) mod semantic;
pub mod spans;
mod types;
pub mod values;

pub use diagnostic::{Diagnostic, Finding, Warning, field_path};
pub use grants::{Grant, IMPORT_GRANTS, grant_for_import};
pub use load::{
    LoadError, LoadedPolicy, MAX_POLICY_BYTES, PolicyOrigin, load_checked_text, load_file,
    load_text, parse,
};
pub use types::*;
pub use values::{ByteSize, HumanDuration, Sha256, Timestamp};

use schemars::transform::RecursiveTransform;
use std::sync::OnceLock;

/// The `$schema` URL of the checked-in schema, as example policies reference it.
pub const SCHEMA_FILE: &str = "schemas/upgrade-policy.schema.json";

/// The policy's JSON Schema, generated from the types.
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(generate::<UpgradePolicy>)
}

/// The JSON Schema of a document type, as duplex generates every schema it
/// checks in (the policy's, the rollout's).
pub(crate) fn generate<T: schemars::JsonSchema>() -> serde_json::Value {
    let schema = schemars::generate::SchemaSettings::default()
        .with_transform(RecursiveTransform(optional_is_not_null))
        .into_generator()
        .into_root_schema_for::<T>();
    serde_json::to_value(schema).expect("a schema serializes")
}

/// schemars writes an `Option<T>` field as `anyOf: [T, {type: null}]` (or
/// adds `null` to its `type`). A policy leaves an optional field out rather
/// than writing `null`, and the `anyOf` made every mistake inside such a
/// field (`verification`, `window`, ...) come out as "not valid under any
/// of the schemas": so an optional field's schema is just `T`'s.
fn optional_is_not_null(schema: &mut schemars::Schema) {
    use serde_json::Value;
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let is_null = |v: &Value| v.get("type").and_then(Value::as_str) == Some("null");
    if let Some(Value::Array(branches)) = object.get("anyOf")
        && branches.len() == 2
        && branches.iter().any(is_null)
    {
        let kept = branches
            .iter()
            .find(|b| !is_null(b))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        object.remove("anyOf");
        for (key, value) in kept {
            object.entry(key).or_insert(value);
        }
    }
    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            object.insert("type".into(), only);
        }
    }
}

/// The schema as it is checked in: pretty JSON with a final newline.
pub fn schema_json() -> String {
    pretty(schema())
}

/// A schema as it is checked in: pretty JSON with a final newline.
pub(crate) fn pretty(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema serializes");
    text.push('\n');
    text
}
