//! A rollout resolved against the fleet's hosts: the plain data that
//! `duplex rollout apply` stores in etcd and every agent obeys. Resolving
//! (label selectors → host names, percentages → counts, waves → lists) is
//! done once, at apply, so every agent sees the same waves in the same
//! order; a host that registers later is not part of the rollout.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A rollout as stored in etcd (`/duplex/rollouts/<name>/plan`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPlan {
    /// `metadata.name` of the rollout.
    pub name: String,
    /// SHA-256 (hex) of the rollout document's text.
    pub digest: String,
    /// The policy every host of the rollout applies.
    pub policy: PlannedPolicy,
    /// In order: a wave starts only once every host of the waves before it
    /// has ended (committed or aborted).
    pub waves: Vec<PlannedWave>,
    /// The most hosts out of service (holding a slot) at once, resolved to
    /// a count (at least 1).
    pub max_unavailable: u32,
    /// The rollout halts once this many hosts have aborted or are held
    /// (resolved to a count, at least 1).
    pub error_budget: u32,
    /// What must happen between two waves.
    pub between_waves: BetweenWaves,
    /// Recurring windows in which a host may *start* its upgrade (empty:
    /// any time). A session started inside a window goes on to its end.
    pub windows: Vec<RecurringWindow>,
}

/// The policy of a rollout: its exact text (its digest is the policy's
/// digest) and where relative paths in it (plugins, artifacts) resolve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedPolicy {
    pub text: String,
    /// SHA-256 (hex) of `text`.
    pub digest: String,
    /// The absolute path the policy was read from (or, for an inline
    /// policy, the rollout file's): relative paths in the policy resolve
    /// against its folder on every host, so plugins and artifacts must be
    /// there (same path) on each host.
    pub path: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PlannedWave {
    /// The wave's name (`canary`, `wave-2`, ...).
    pub name: String,
    /// Host names, sorted.
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BetweenWaves {
    /// Wait this long after a wave ends before the next one starts.
    #[serde(default, with = "millis")]
    pub pause: Duration,
    /// An operator must approve each wave after the first
    /// (`duplex rollout resume`).
    #[serde(default)]
    pub approval: bool,
}

/// A window that recurs every week: on each of `days`, from `start` (local
/// time in `time_zone`) for `length`. See [`RecurringWindow::contains`] for
/// daylight-saving time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecurringWindow {
    /// Weekdays, as written (`Mon` .. `Sun`).
    pub days: Vec<String>,
    /// Local time, `HH:MM`.
    pub start: String,
    #[serde(with = "millis")]
    pub length: Duration,
    /// An IANA time zone (`Europe/Berlin`, `UTC`).
    pub time_zone: String,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl RolloutPlan {
    /// The index of the wave `host` belongs to, if it is in the rollout.
    pub fn wave_of(&self, host: &str) -> Option<usize> {
        self.waves
            .iter()
            .position(|w| w.hosts.binary_search_by(|h| h.as_str().cmp(host)).is_ok())
    }

    /// Every host of the rollout.
    pub fn host_count(&self) -> usize {
        self.waves.iter().map(|w| w.hosts.len()).sum()
    }
}
