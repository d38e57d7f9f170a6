//! The plugin's description, built from typed parameters.

use crate::{CheckInfo, HardwareOp, InstallerInfo, OperationInfo, PluginInfo};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a plugin provides; each item's parameter schema is derived from its
/// parameter type, so `describe` can never disagree with what [`crate::Cx::params`]
/// accepts.
#[derive(Debug, Clone)]
pub struct Manifest {
    info: PluginInfo,
}

/// Parameters of an item that takes none (`with:` must be absent or `{}`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

fn schema<P: JsonSchema>() -> String {
    serde_json::to_string(&schemars::schema_for!(P)).expect("a JSON Schema serializes")
}

impl Manifest {
    pub fn new(name: &str, version: &str, description: &str) -> Manifest {
        Manifest {
            info: PluginInfo {
                name: name.into(),
                version: version.into(),
                description: description.into(),
                checks: Vec::new(),
                operations: Vec::new(),
                installers: Vec::new(),
                reports_partner: false,
            },
        }
    }

    /// A readiness/verification check taking parameters `P`.
    pub fn check<P: JsonSchema>(mut self, name: &str, description: &str) -> Manifest {
        self.info.checks.push(CheckInfo {
            name: name.into(),
            description: description.into(),
            params_schema: schema::<P>(),
        });
        self
    }

    /// A hardware operation taking parameters `P`.
    pub fn operation<P: JsonSchema>(mut self, op: HardwareOp, description: &str) -> Manifest {
        self.info.operations.push(OperationInfo {
            op,
            description: description.into(),
            params_schema: schema::<P>(),
        });
        self
    }

    /// An installer for artifacts of kind `name` taking parameters `P`.
    pub fn installer<P: JsonSchema>(mut self, name: &str, description: &str) -> Manifest {
        self.info.installers.push(InstallerInfo {
            name: name.into(),
            description: description.into(),
            params_schema: schema::<P>(),
        });
        self
    }

    /// The plugin reports the partner side's health.
    pub fn reports_partner(mut self) -> Manifest {
        self.info.reports_partner = true;
        self
    }

    pub fn into_info(self) -> PluginInfo {
        self.info
    }
}
