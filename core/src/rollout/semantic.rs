//! Checks of a rollout a schema cannot express: exactly one policy source,
//! an inline policy's own checks, unique names, wave sizes, percentages,
//! windows (time zones against the system's time zone database). Pure:
//! a policy given by path is loaded (and checked) by `load`.

use super::types::*;
use super::window::MAX_WINDOW_LENGTH;
use crate::policy::{Finding, UpgradePolicy, semantic as policy_semantic};
use std::collections::{HashMap, HashSet};

/// Where an inline policy sits in a rollout document.
pub const INLINE: &str = "/spec/policy/inline";

pub fn check(rollout: &Rollout) -> Vec<Finding> {
    let mut out = Vec::new();
    let spec = &rollout.spec;
    policy(&spec.policy, &mut out);
    hosts(&spec.hosts, &mut out);
    waves(spec, &mut out);
    for (field, value) in [
        ("maxUnavailable", spec.max_unavailable),
        ("errorBudget", spec.error_budget),
    ] {
        if let Some(CountOrPercent::Percent(p)) = value
            && !(1..=100).contains(&p)
        {
            out.push(Finding::value(
                format!("/spec/{field}"),
                format!("a percentage must be from 1% to 100%, found {p}%"),
            ));
        }
    }
    for (i, w) in spec.windows.iter().enumerate() {
        window(i, w, &mut out);
    }
    out
}

fn policy(source: &PolicySource, out: &mut Vec<Finding>) {
    match (&source.path, &source.inline) {
        (Some(_), Some(_)) => out.push(Finding::value(
            "/spec/policy",
            "give the policy as `path` or as `inline`, not both",
        )),
        (None, None) => out.push(Finding::value(
            "/spec/policy",
            "missing the policy: give `path` (a policy file) or `inline` (an UpgradePolicy)",
        )),
        (None, Some(inline)) => match serde_json::from_value::<UpgradePolicy>(inline.clone()) {
            Ok(policy) => out.extend(
                policy_semantic::check(&policy)
                    .into_iter()
                    .map(|f| f.under(INLINE)),
            ),
            Err(err) => out.push(Finding::value(INLINE, err.to_string())),
        },
        (Some(_), None) => {}
    }
}

fn hosts(hosts: &Hosts, out: &mut Vec<Finding>) {
    if hosts.names.is_empty() && hosts.selectors.is_empty() {
        out.push(Finding::value(
            "/spec/hosts",
            "name at least one host (`names`) or selector (`selectors`)",
        ));
    }
    let mut seen = HashSet::new();
    for (i, name) in hosts.names.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            out.push(Finding::value(
                format!("/spec/hosts/names/{i}"),
                format!("host `{name}` is listed twice"),
            ));
        }
    }
    for (i, s) in hosts.selectors.iter().enumerate() {
        if s.match_labels.is_empty() {
            out.push(Finding::value(
                format!("/spec/hosts/selectors/{i}/matchLabels"),
                "a selector must list at least one label (an empty one would match every host)",
            ));
        }
    }
}

fn waves(spec: &RolloutSpec, out: &mut Vec<Finding>) {
    let names: HashSet<&str> = spec.hosts.names.iter().map(String::as_str).collect();
    let mut known: Vec<&str> = names.iter().copied().collect();
    known.sort_unstable();
    let mut wave_names = HashSet::new();
    let mut listed: HashMap<&str, &str> = HashMap::new();
    let last = spec.waves.len().saturating_sub(1);
    for (i, wave) in spec.waves.iter().enumerate() {
        let at = format!("/spec/waves/{i}");
        if !wave_names.insert(wave.name.as_str()) {
            out.push(Finding::value(
                format!("{at}/name"),
                format!("wave `{}` is named twice", wave.name),
            ));
        }
        let sizes = [
            wave.count.is_some(),
            wave.percent.is_some(),
            wave.hosts.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if sizes > 1 {
            out.push(Finding::value(
                at.clone(),
                format!(
                    "wave `{}` gives more than one of `count`, `percent` and `hosts`; give one",
                    wave.name
                ),
            ));
        }
        if sizes == 0 && i != last {
            out.push(Finding::value(
                at.clone(),
                format!(
                    "wave `{}` has no size: only the last wave may leave it out (and takes the rest); give `count`, `percent` or `hosts`",
                    wave.name
                ),
            ));
        }
        for (j, host) in wave.hosts.iter().flatten().enumerate() {
            let at = format!("{at}/hosts/{j}");
            if let Some(first) = listed.insert(host.as_str(), wave.name.as_str()) {
                out.push(Finding::value(
                    at.clone(),
                    format!("host `{host}` is already in wave `{first}`"),
                ));
            }
            // With selectors, whether a host is in the rollout is known
            // only against the inventory (`resolve`).
            if spec.hosts.selectors.is_empty() && !names.contains(host.as_str()) {
                out.push(Finding::value(
                    at,
                    format!(
                        "host `{host}` is not one of the rollout's hosts; `spec.hosts.names` lists: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
}

fn window(i: usize, w: &WindowSpec, out: &mut Vec<Finding>) {
    let at = format!("/spec/windows/{i}");
    let mut days = HashSet::new();
    for (j, day) in w.days.iter().enumerate() {
        if !days.insert(*day) {
            out.push(Finding::value(
                format!("{at}/days/{j}"),
                format!("`{}` is listed twice", day.as_str()),
            ));
        }
    }
    let length = w.length.as_duration();
    if length.is_zero() {
        out.push(Finding::value(
            format!("{at}/length"),
            "must be longer than 0s",
        ));
    } else if length > MAX_WINDOW_LENGTH {
        out.push(Finding::value(
            format!("{at}/length"),
            format!(
                "{} is longer than a week (7d): a weekly window would overlap itself",
                w.length
            ),
        ));
    }
    if jiff::tz::TimeZone::get(&w.time_zone).is_err() {
        out.push(Finding::value(
            format!("{at}/timeZone"),
            format!(
                "unknown time zone `{}`: expected an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`",
                w.time_zone
            ),
        ));
    }
}
