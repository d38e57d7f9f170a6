//! Fleet rollouts (`kind: Rollout`): one policy rolled out over many hosts
//! in waves, under a limit of hosts out of service at once and an error
//! budget. This module is the document (`types`, the single source of
//! `schemas/rollout.schema.json`), its loading with positioned diagnostics
//! through the policy's pipeline (`load`, `semantic`), its resolution
//! against the fleet's hosts into a [`RolloutPlan`] (`resolve`) and its
//! recurring windows (`window`); coordinating the hosts is the
//! `duplex-fleet` crate's.

mod load;
mod plan;
mod resolve;
mod semantic;
mod types;
pub mod window;

pub use load::{LoadedRollout, RolloutLoadError, load_file, load_text};
pub use plan::{BetweenWaves, PlannedPolicy, PlannedWave, RecurringWindow, RolloutPlan};
pub use resolve::{InventoryHost, ResolveError, parse_inventory};
pub use types::*;
pub use window::window_open;

use crate::policy::Finding;
use std::sync::OnceLock;

/// Where the checked-in schema is, as example rollouts reference it.
pub const SCHEMA_FILE: &str = "schemas/rollout.schema.json";

/// The rollout's JSON Schema, generated from the types as the policy's is.
pub fn schema() -> &'static serde_json::Value {
    static SCHEMA: OnceLock<serde_json::Value> = OnceLock::new();
    SCHEMA.get_or_init(crate::policy::generate::<Rollout>)
}

/// The schema as it is checked in: pretty JSON with a final newline.
pub fn schema_json() -> String {
    crate::policy::pretty(schema())
}

/// Every schema violation in a rollout document: the rollout's schema, and
/// an inline policy against the policy's schema (placed inside the rollout).
fn schema_check(document: &serde_json::Value) -> Vec<Finding> {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    let validator = VALIDATOR.get_or_init(|| {
        jsonschema::validator_for(schema()).expect("the generated rollout schema is valid")
    });
    let mut findings = crate::policy::schema_check::check_with(schema(), validator, document);
    if let Some(inline) = document.pointer(semantic::INLINE)
        && inline.is_object()
    {
        findings.extend(
            crate::policy::schema_check::check(inline)
                .into_iter()
                .map(|f| f.under(semantic::INLINE)),
        );
    }
    findings
}
