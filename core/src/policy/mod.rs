//! The upgrade policy: its types (the single source of the JSON Schema),
//! loading with positioned diagnostics, and semantic checks.

mod diagnostic;
mod load;
pub mod reference;
pub mod schema_check;
mod semantic;
pub mod spans;
mod types;
pub mod values;

pub use diagnostic::{Diagnostic, Finding, field_path};
pub use load::{LoadError, LoadedPolicy, MAX_POLICY_BYTES, load_file, load_text, parse};
pub use types::*;
pub use values::{ByteSize, HumanDuration, Sha256, Timestamp};

use std::sync::OnceLock;

/// The `$schema` URL of the checked-in schema, as example policies reference it.
pub const SCHEMA_FILE: &str = "schemas/upgrade-policy.schema.json";

/// The policy's JSON Schema, generated from the types.
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let schema = schemars::schema_for!(UpgradePolicy);
        serde_json::to_value(schema).expect("a schema serializes")
    })
}

/// The schema as it is checked in: pretty JSON with a final newline.
pub fn schema_json() -> String {
    let mut text = serde_json::to_string_pretty(schema()).expect("a schema serializes");
    text.push('\n');
    text
}
