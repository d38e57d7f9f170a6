//! The rollout document as Rust types: the single source of its JSON
//! Schema (`schemas/rollout.schema.json` is generated from these).
//!
//! Doc comments on fields become the schema's descriptions, so they are
//! written for operators.

use crate::policy::values::{CLOCK_TIME_PATTERN, NAME_PATTERN, PERCENT_PATTERN, describe_pattern};
use crate::policy::{ApiVersion, HumanDuration};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

/// A fleet rollout: one UpgradePolicy rolled out over many hosts, in waves,
/// with a limit of hosts out of service at once and an error budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "Rollout")]
pub struct Rollout {
    pub api_version: ApiVersion,
    pub kind: RolloutKind,
    pub metadata: RolloutMetadata,
    pub spec: RolloutSpec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutKind {
    Rollout,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutMetadata {
    /// Name of the rollout: lower-case letters, digits and `-`, at most 63 characters.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// What this rollout is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RolloutSpec {
    /// The UpgradePolicy every host of the rollout applies: `path` or `inline`.
    pub policy: PolicySource,
    /// Which hosts the rollout covers: the hosts named, and every host whose
    /// labels match one of the selectors.
    pub hosts: Hosts,
    /// The waves, in order: a wave starts once every host of the waves
    /// before it has ended. Absent: one wave, `all`, of every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<Wave>,
    /// The most hosts out of service at once: a count, or a percentage of
    /// the rollout's hosts (`25%`, rounded down, at least 1). Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<CountOrPercent>,
    /// Halt the rollout once this many hosts have aborted or are held: a
    /// count, or a percentage of the rollout's hosts (`10%`, rounded up, at
    /// least 1). Default: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_budget: Option<CountOrPercent>,
    /// What must happen between two waves.
    #[serde(default)]
    pub between_waves: BetweenWavesSpec,
    /// Recurring maintenance windows in which a host may start its upgrade.
    /// Absent: any time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<WindowSpec>,
}

/// Where the policy is: exactly one of `path` and `inline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySource {
    /// A policy file, relative to the rollout file (or absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub path: Option<String>,
    /// An UpgradePolicy document written here (see
    /// `upgrade-policy.schema.json`); paths in it resolve against the
    /// rollout file's folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub inline: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hosts {
    /// Hosts by name (they need not have registered yet).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<HostName>,
    /// A host whose labels match any one of these selectors is in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<Selector>,
}

/// A host's name, as it registers.
pub type HostName = String;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// A host matches when it has every one of these labels with these values.
    pub match_labels: BTreeMap<String, String>,
}

/// One wave: its size as `count`, `percent` or an explicit `hosts` list
/// (at most one of them); only the last wave may leave its size out, and
/// then takes every host left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Wave {
    /// The wave's name: lower-case letters, digits and `-`.
    #[schemars(regex(pattern = NAME_PATTERN))]
    pub name: String,
    /// This many hosts (of those no explicit wave lists, in name order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<u32>,
    /// This percentage of the rollout's hosts, rounded up (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percent: Option<u32>,
    /// Exactly these hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub hosts: Option<Vec<HostName>>,
}

impl Wave {
    /// Whether the wave says how big it is.
    pub fn is_sized(&self) -> bool {
        self.count.is_some() || self.percent.is_some() || self.hosts.is_some()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BetweenWavesSpec {
    /// Wait this long after a wave ends before the next one starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<HumanDuration>,
    /// An operator must approve each wave after the first.
    #[serde(default)]
    pub approval: bool,
}

/// A window that recurs every week, as Zincati's periodic strategy: on each
/// of `days`, from `start` (wall-clock time in `timeZone`) for `length`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    /// The days the window opens on (in `timeZone`).
    #[schemars(length(min = 1))]
    pub days: Vec<Day>,
    /// When it opens, local time `HH:MM`. A time skipped by a
    /// daylight-saving change opens it as much later as the clocks jumped;
    /// a time that happens twice opens it the first time.
    #[schemars(regex(pattern = CLOCK_TIME_PATTERN))]
    pub start: String,
    /// How long it stays open: elapsed time (a 4h window is 4 real hours
    /// across a daylight-saving change), more than 0 and at most 7 days.
    pub length: HumanDuration,
    /// An IANA time zone: `Europe/Berlin`, `America/New_York`, `UTC`.
    #[schemars(length(min = 1))]
    pub time_zone: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    pub fn as_str(self) -> &'static str {
        match self {
            Day::Mon => "Mon",
            Day::Tue => "Tue",
            Day::Wed => "Wed",
            Day::Thu => "Thu",
            Day::Fri => "Fri",
            Day::Sat => "Sat",
            Day::Sun => "Sun",
        }
    }
}

/// A number of hosts, written as a count (`2`) or a percentage of the
/// rollout's hosts (`"25%"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOrPercent {
    Count(u32),
    Percent(u32),
}

impl fmt::Display for CountOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountOrPercent::Count(n) => write!(f, "{n}"),
            CountOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Serialize for CountOrPercent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CountOrPercent::Count(n) => s.serialize_u32(*n),
            CountOrPercent::Percent(_) => s.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for CountOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(CountOrPercent::Count(n)),
            Raw::Text(text) => text
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .map(CountOrPercent::Percent)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "expected a count or a percentage such as `25%`, found `{text}`"
                    ))
                }),
        }
    }
}

impl JsonSchema for CountOrPercent {
    fn schema_name() -> Cow<'static, str> {
        "CountOrPercent".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["integer", "string"],
            "minimum": 1,
            "pattern": PERCENT_PATTERN,
            "description": describe_pattern(PERCENT_PATTERN).unwrap_or_default(),
        })
    }
}
