//! A loaded rollout resolved against the fleet's hosts into the
//! [`RolloutPlan`] every agent obeys.
//!
//! The rules:
//!
//! - The rollout's hosts are the hosts it names (`spec.hosts.names`, which
//!   need not have registered yet) and every inventory host whose labels
//!   match any one of the selectors (all of that selector's labels, with
//!   their values); sorted by name.
//! - Waves are filled in two passes. First the waves that list their hosts
//!   take exactly those (each must be one of the rollout's hosts, in one
//!   wave only). Then, in order, the sized waves take from the hosts left,
//!   in name order: `count` hosts, or `percent` of *all* the rollout's
//!   hosts rounded up (at least 1); the last wave, when it gives no size,
//!   takes every host left.
//! - It is an error for a host to be left in no wave, for a wave to end
//!   up empty, and for a wave to name a host that is not in the rollout:
//!   each error names the wave and the hosts.
//! - `maxUnavailable`: a count as written, a percentage of all the hosts
//!   rounded down (at least 1); default 1. `errorBudget`: a count as
//!   written, a percentage rounded up (at least 1); default 1.
//! - The plan's digest is the SHA-256 of the rollout file's text.

use super::load::LoadedRollout;
use super::plan::{BetweenWaves, PlannedPolicy, PlannedWave, RecurringWindow, RolloutPlan};
use super::types::{CountOrPercent, Selector};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A host the fleet knows, with its labels (from its registration, or an
/// inventory file).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryHost {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// An inventory file's hosts: a YAML list of `{name, labels}`.
pub fn parse_inventory(text: &str) -> Result<Vec<InventoryHost>, String> {
    crate::policy::aliases::check(text).map_err(|bomb| {
        format!(
            "line {}, column {}: {}",
            bomb.line, bomb.column, bomb.message
        )
    })?;
    yaml_serde::from_str(text).map_err(|e| e.to_string())
}

/// Why a rollout cannot be resolved against an inventory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the rollout has no hosts: it names none and no host matches its selectors")]
    NoHosts,
    #[error("wave `{wave}` names host `{host}`, which is not one of the rollout's hosts")]
    UnknownHost { wave: String, host: String },
    #[error("wave `{wave}` names host `{host}`, which wave `{first}` already has")]
    HostInTwoWaves {
        wave: String,
        host: String,
        first: String,
    },
    #[error("wave `{wave}` has no hosts: the waves before it took them all")]
    EmptyWave { wave: String },
    #[error(
        "{} in no wave: {}; give the last wave no size so it takes the rest, or list them",
        if hosts.len() == 1 { "a host is" } else { "hosts are" },
        hosts.join(", ")
    )]
    LeftOver { hosts: Vec<String> },
}

impl Selector {
    /// Whether a host with these labels matches: it has every label of the
    /// selector, with the same value.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
    }
}

impl CountOrPercent {
    /// A count as written; a percentage of `total`, rounded up or down, at least 1.
    pub fn resolve(self, total: usize, round_up: bool) -> u32 {
        match self {
            CountOrPercent::Count(n) => n,
            CountOrPercent::Percent(p) => {
                let scaled = total as u64 * u64::from(p);
                let n = if round_up {
                    scaled.div_ceil(100)
                } else {
                    scaled / 100
                };
                u32::try_from(n).unwrap_or(u32::MAX).max(1)
            }
        }
    }
}

impl LoadedRollout {
    /// The rollout's hosts among (and beside) `inventory`, sorted by name.
    pub fn hosts(&self, inventory: &[InventoryHost]) -> Vec<String> {
        let spec = &self.rollout.spec.hosts;
        let mut hosts: BTreeSet<String> = spec.names.iter().cloned().collect();
        for host in inventory {
            if spec.selectors.iter().any(|s| s.matches(&host.labels)) {
                hosts.insert(host.name.clone());
            }
        }
        hosts.into_iter().collect()
    }

    /// Resolve the rollout against the fleet's hosts (see the module's
    /// rules): every error found, or the plan.
    pub fn resolve(&self, inventory: &[InventoryHost]) -> Result<RolloutPlan, Vec<ResolveError>> {
        let spec = &self.rollout.spec;
        let hosts = self.hosts(inventory);
        if hosts.is_empty() {
            return Err(vec![ResolveError::NoHosts]);
        }
        let total = hosts.len();
        let mut errors = Vec::new();
        let mut left: BTreeSet<&str> = hosts.iter().map(String::as_str).collect();
        let mut waves: Vec<PlannedWave> = Vec::new();
        if spec.waves.is_empty() {
            waves.push(PlannedWave {
                name: "all".into(),
                hosts: hosts.clone(),
            });
            left.clear();
        } else {
            let mut taken: BTreeMap<&str, &str> = BTreeMap::new();
            let mut lists: Vec<Option<Vec<String>>> = Vec::new();
            for wave in &spec.waves {
                let Some(list) = &wave.hosts else {
                    lists.push(None);
                    continue;
                };
                let mut mine = BTreeSet::new();
                for host in list {
                    if !hosts.contains(host) {
                        errors.push(ResolveError::UnknownHost {
                            wave: wave.name.clone(),
                            host: host.clone(),
                        });
                    } else if let Some(first) = taken.insert(host, &wave.name) {
                        errors.push(ResolveError::HostInTwoWaves {
                            wave: wave.name.clone(),
                            host: host.clone(),
                            first: first.to_string(),
                        });
                    } else {
                        left.remove(host.as_str());
                        mine.insert(host.clone());
                    }
                }
                lists.push(Some(mine.into_iter().collect()));
            }
            for (wave, list) in spec.waves.iter().zip(lists) {
                let size = match (list, wave.count, wave.percent) {
                    (Some(list), ..) => {
                        waves.push(PlannedWave {
                            name: wave.name.clone(),
                            hosts: list,
                        });
                        continue;
                    }
                    (None, Some(n), _) => n as usize,
                    (None, None, Some(p)) => {
                        CountOrPercent::Percent(p).resolve(total, true) as usize
                    }
                    (None, None, None) => left.len(),
                };
                let mine: Vec<String> = left.iter().take(size).map(|h| h.to_string()).collect();
                for h in &mine {
                    left.remove(h.as_str());
                }
                waves.push(PlannedWave {
                    name: wave.name.clone(),
                    hosts: mine,
                });
            }
        }
        for wave in &waves {
            if wave.hosts.is_empty() && !errors.iter().any(|e| names_wave(e, &wave.name)) {
                errors.push(ResolveError::EmptyWave {
                    wave: wave.name.clone(),
                });
            }
        }
        if !left.is_empty() {
            errors.push(ResolveError::LeftOver {
                hosts: left.iter().map(|h| h.to_string()).collect(),
            });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let one = CountOrPercent::Count(1);
        Ok(RolloutPlan {
            name: self.rollout.metadata.name.clone(),
            digest: self.digest.to_string(),
            policy: PlannedPolicy {
                text: self.policy.text.clone(),
                digest: self.policy.digest.to_string(),
                path: std::path::absolute(&self.policy.file)
                    .unwrap_or_else(|_| self.policy.file.clone())
                    .display()
                    .to_string(),
            },
            waves,
            max_unavailable: spec.max_unavailable.unwrap_or(one).resolve(total, false),
            error_budget: spec.error_budget.unwrap_or(one).resolve(total, true),
            between_waves: BetweenWaves {
                pause: spec
                    .between_waves
                    .pause
                    .map(|p| p.as_duration())
                    .unwrap_or_default(),
                approval: spec.between_waves.approval,
            },
            windows: spec
                .windows
                .iter()
                .map(|w| RecurringWindow {
                    days: w.days.iter().map(|d| d.as_str().to_string()).collect(),
                    start: w.start.clone(),
                    length: w.length.as_duration(),
                    time_zone: w.time_zone.clone(),
                })
                .collect(),
        })
    }
}

fn names_wave(error: &ResolveError, wave: &str) -> bool {
    matches!(error, ResolveError::UnknownHost { wave: w, .. } | ResolveError::HostInTwoWaves { wave: w, .. } if w == wave)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const POLICY: &str = "  policy:
    inline:
      apiVersion: duplex.dev/v1alpha1
      kind: UpgradePolicy
      metadata: { name: inline }
      spec:
        target: { name: t, plugin: p }
        software:
          - { name: a, version: '1', source: a.pkg, sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5 }
        plugins:
          - { name: p, source: p.wasm, sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5 }
";

    fn rollout(spec: &str) -> LoadedRollout {
        let text = format!(
            "apiVersion: duplex.dev/v1alpha1\nkind: Rollout\nmetadata: {{ name: r }}\nspec:\n{POLICY}{spec}"
        );
        match super::super::load_text(&text, Path::new("/fleet/r.yaml")) {
            Ok(r) => r,
            Err(super::super::RolloutLoadError::Invalid(d)) => {
                panic!(
                    "{}",
                    d.iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            }
            Err(e) => panic!("{e}"),
        }
    }

    fn inventory() -> Vec<InventoryHost> {
        (1..=8)
            .map(|i| InventoryHost {
                name: format!("ft-{i:02}"),
                labels: [(
                    "site".to_string(),
                    if i <= 6 { "berlin" } else { "paris" }.to_string(),
                )]
                .into(),
            })
            .collect()
    }

    fn waves(plan: &RolloutPlan) -> Vec<(String, Vec<String>)> {
        plan.waves
            .iter()
            .map(|w| (w.name.clone(), w.hosts.clone()))
            .collect()
    }

    #[test]
    fn canary_percent_and_rest_over_names_and_a_selector() {
        let r = rollout(
            "  hosts:
    names: [ft-08, zz-new]
    selectors: [ { matchLabels: { site: berlin } } ]
  waves:
    - { name: canary, count: 1 }
    - { name: named, hosts: [ft-03] }
    - { name: half, percent: 50 }
    - { name: rest }
  maxUnavailable: 25%
  errorBudget: 10%
  betweenWaves: { pause: 10m, approval: true }
",
        );
        let plan = r.resolve(&inventory()).unwrap();
        // ft-01..06 by selector, ft-08 and zz-new by name (not registered): 8.
        let w = waves(&plan);
        assert_eq!(w[0], ("canary".into(), vec!["ft-01".into()]));
        assert_eq!(w[1], ("named".into(), vec!["ft-03".into()]));
        // 50% of 8 = 4, from the hosts left in name order.
        assert_eq!(
            w[2].1,
            ["ft-02", "ft-04", "ft-05", "ft-06"].map(String::from)
        );
        assert_eq!(w[3].1, ["ft-08", "zz-new"].map(String::from));
        assert_eq!(plan.max_unavailable, 2); // floor(25% of 8)
        assert_eq!(plan.error_budget, 1); // ceil(10% of 8) = 1
        assert_eq!(
            plan.between_waves.pause,
            std::time::Duration::from_secs(600)
        );
        assert!(plan.between_waves.approval);
        assert_eq!(plan.host_count(), 8);
        assert_eq!(plan.digest, r.digest.to_string());
        assert_eq!(plan.policy.path, "/fleet/r.yaml");
        assert!(plan.policy.text.contains("kind: UpgradePolicy"));
        assert_eq!(
            plan.policy.digest,
            crate::policy::Sha256::of(plan.policy.text.as_bytes()).to_string()
        );
    }

    #[test]
    fn without_waves_one_wave_takes_all_and_defaults_are_one() {
        let r = rollout("  hosts: { names: [b, a] }\n");
        let plan = r.resolve(&[]).unwrap();
        assert_eq!(
            waves(&plan),
            vec![("all".into(), vec!["a".into(), "b".into()])]
        );
        assert_eq!((plan.max_unavailable, plan.error_budget), (1, 1));
    }

    #[test]
    fn percentages_round_as_documented_and_are_at_least_one() {
        assert_eq!(CountOrPercent::Percent(10).resolve(3, false), 1);
        assert_eq!(CountOrPercent::Percent(10).resolve(3, true), 1);
        assert_eq!(CountOrPercent::Percent(30).resolve(10, true), 3);
        assert_eq!(CountOrPercent::Percent(25).resolve(7, false), 1);
        assert_eq!(CountOrPercent::Percent(25).resolve(7, true), 2);
        assert_eq!(CountOrPercent::Percent(100).resolve(7, false), 7);
        assert_eq!(CountOrPercent::Count(3).resolve(100, false), 3);
    }

    #[test]
    fn errors_name_the_wave_and_the_hosts() {
        let r = rollout(
            "  hosts:
    selectors: [ { matchLabels: { site: paris } } ]
  waves:
    - { name: one, hosts: [ft-01] }
    - { name: two, count: 1 }
    - { name: three, count: 1 }
    - { name: four, count: 1 }
",
        );
        let errors = r.resolve(&inventory()).unwrap_err();
        assert_eq!(
            errors,
            vec![
                ResolveError::UnknownHost {
                    wave: "one".into(),
                    host: "ft-01".into()
                },
                ResolveError::EmptyWave {
                    wave: "four".into()
                },
            ]
        );
        let r = rollout("  hosts: { names: [a, b, c] }\n  waves:\n    - { name: one, count: 1 }\n");
        let errors = r.resolve(&[]).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "hosts are in no wave: b, c; give the last wave no size so it takes the rest, or list them"
        );
        let r = rollout("  hosts:\n    selectors: [ { matchLabels: { site: rome } } ]\n");
        assert_eq!(
            r.resolve(&inventory()).unwrap_err(),
            vec![ResolveError::NoHosts]
        );
    }
}
