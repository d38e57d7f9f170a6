//! Checks a schema cannot express: references between parts of the policy,
//! consistent thresholds and times, and rules the state model forbids.
//! Pure: plugin files and artifacts are checked where they are loaded.

use super::diagnostic::Finding;
use super::schema_check::did_you_mean;
use super::types::*;
use super::values::{HumanDuration, Timestamp};
use crate::model::{self, PartnerState, UpgradeState};
use std::collections::{HashMap, HashSet};

pub fn check(policy: &UpgradePolicy) -> Vec<Finding> {
    let mut out = Vec::new();
    let spec = &policy.spec;
    let plugin_names = plugins(spec, &mut out);
    let resolve = |out: &mut Vec<Finding>, pointer: String, name: &str| {
        if !plugin_names.contains(name) {
            let mut known: Vec<&str> = plugin_names.iter().copied().collect();
            known.sort_unstable();
            let mut message = format!("unknown plugin `{name}`");
            message.push_str(&did_you_mean(name, &known));
            message.push_str(&format!(
                "; the policy's `plugins` declare: {}",
                known.join(", ")
            ));
            out.push(Finding::value(pointer, message));
        }
    };

    resolve(&mut out, "/spec/target/plugin".into(), &spec.target.plugin);

    let mut software = HashSet::new();
    for (i, item) in spec.software.iter().enumerate() {
        if !software.insert(item.name.as_str()) {
            out.push(Finding::value(
                format!("/spec/software/{i}/name"),
                format!("software `{}` is listed twice", item.name),
            ));
        }
        if let Some(installer) = &item.installer {
            resolve(&mut out, format!("/spec/software/{i}/installer"), installer);
        }
        if is_url(&item.source)
            && !(item.source.starts_with("http://") || item.source.starts_with("https://"))
        {
            out.push(Finding::value(
                format!("/spec/software/{i}/source"),
                format!(
                    "`{}` is a URL duplex cannot download: give an http:// or https:// URL, \
                     or the file's path (relative to the policy file, or absolute)",
                    item.source
                ),
            ));
        }
    }

    let mut check_names = HashMap::new();
    let mut checks = Vec::new();
    for (i, c) in spec.gates.prepare_split.iter().enumerate() {
        checks.push((format!("/spec/gates/prepareSplit/{i}"), c));
    }
    for (i, c) in spec.gates.prepare_merge.iter().enumerate() {
        checks.push((format!("/spec/gates/prepareMerge/{i}"), c));
    }
    if let Some(v) = &spec.verification {
        for (i, c) in v.checks.iter().enumerate() {
            checks.push((format!("/spec/verification/checks/{i}"), c));
        }
        if v.interval.as_duration().is_zero() {
            out.push(Finding::value(
                "/spec/verification/interval",
                "must be longer than 0s",
            ));
        }
        if v.soak < v.interval {
            out.push(Finding::value(
                "/spec/verification/soak",
                format!(
                    "soak time {} is shorter than the interval {}: the checks would run at most once",
                    v.soak, v.interval
                ),
            ));
        }
    }
    for (pointer, c) in &checks {
        resolve(&mut out, format!("{pointer}/plugin"), &c.plugin);
        if let Some(first) = check_names.insert(c.name.as_str(), pointer.clone()) {
            out.push(Finding::value(
                format!("{pointer}/name"),
                format!(
                    "check name `{}` is already used by {}",
                    c.name,
                    index_path(&first)
                ),
            ));
        }
        check_thresholds(pointer, c, &mut out);
    }

    retries(&spec.retries, &mut out);
    auto_abort(spec, &check_names, &mut out);

    let mut approvals = HashSet::new();
    for (i, a) in spec.approvals.iter().enumerate() {
        if !approvals.insert(a.before) {
            out.push(Finding::value(
                format!("/spec/approvals/{i}/before"),
                format!("an approval before {:?} is already required", a.before),
            ));
        }
    }

    if let Some(w) = &spec.window
        && w.end <= w.start
    {
        out.push(Finding::value(
            "/spec/window/end",
            format!("the window ends ({}) before it starts ({})", w.end, w.start),
        ));
    }
    out
}

/// Whether `source` starts with a URL scheme (`https://`, `file://`, ...).
fn is_url(source: &str) -> bool {
    source.split_once("://").is_some_and(|(scheme, _)| {
        scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c))
    })
}

/// What is worth a warning but does not make the policy invalid, as of
/// `now` (the caller's clock: this module reads none).
pub fn warnings(policy: &UpgradePolicy, now: Timestamp) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(w) = &policy.spec.window
        && w.end <= now
    {
        let ago = now.as_jiff().as_millisecond() - w.end.as_jiff().as_millisecond();
        out.push(Finding::value(
            "/spec/window/end",
            format!(
                "the maintenance window ended at {} ({} ago): `duplex apply` will not start a \
                 session outside it; move the window, or remove it",
                w.end,
                ago_text(ago)
            ),
        ));
    }
    out
}

/// A time span in milliseconds, to the minute (to the second below one).
fn ago_text(ms: i64) -> HumanDuration {
    let ms = u64::try_from(ms).unwrap_or(0);
    let step = if ms < 60_000 { 1_000 } else { 60_000 };
    HumanDuration::from(std::time::Duration::from_millis(ms / step * step))
}

/// Trusted keys: unique names, well-formed keys; each plugin's `signedBy`
/// names one of them.
fn trusted_keys(spec: &Spec, out: &mut Vec<Finding>) {
    let mut keys = HashSet::new();
    for (i, k) in spec.trusted_keys.iter().enumerate() {
        if !keys.insert(k.name.as_str()) {
            out.push(Finding::value(
                format!("/spec/trustedKeys/{i}/name"),
                format!("trusted key `{}` is declared twice", k.name),
            ));
        }
        if let Err(why) = crate::plugins::signature::TrustedKey::parse(&k.public_key) {
            out.push(Finding::value(
                format!("/spec/trustedKeys/{i}/publicKey"),
                format!("trusted key `{}`: {why}", k.name),
            ));
        }
    }
    for (i, p) in spec.plugins.iter().enumerate() {
        for (j, name) in p.signed_by.iter().enumerate() {
            if !keys.contains(name.as_str()) {
                let mut known: Vec<&str> = keys.iter().copied().collect();
                known.sort_unstable();
                let mut message = format!(
                    "plugin `{}` must be signed by `{name}`, but no trusted key is named `{name}`",
                    p.name
                );
                message.push_str(&did_you_mean(name, &known));
                if known.is_empty() {
                    message.push_str("; declare it in `spec.trustedKeys` (name and publicKey)");
                } else {
                    message.push_str(&format!(
                        "; the policy's `trustedKeys` declare: {}",
                        known.join(", ")
                    ));
                }
                out.push(Finding::value(
                    format!("/spec/plugins/{i}/signedBy/{j}"),
                    message,
                ));
            }
        }
    }
}

fn plugins<'p>(spec: &'p Spec, out: &mut Vec<Finding>) -> HashSet<&'p str> {
    trusted_keys(spec, out);
    let mut names = HashSet::new();
    for (i, p) in spec.plugins.iter().enumerate() {
        if !names.insert(p.name.as_str()) {
            out.push(Finding::value(
                format!("/spec/plugins/{i}/name"),
                format!("plugin `{}` is declared twice", p.name),
            ));
        }
        let base = format!("/spec/plugins/{i}");
        if duplex_oci::is_oci(&p.source) {
            if let Err(e) = duplex_oci::Reference::parse_pinned(&p.source) {
                out.push(Finding::value(format!("{base}/source"), e.to_string()));
            }
        } else if p.sha256.is_none() {
            out.push(Finding::value(
                base.clone(),
                format!(
                    "plugin `{}` has no `sha256`: a plugin file is pinned by its digest (`duplex plugin inspect FILE` prints it); only an `oci://` source, pinned by its manifest digest, may leave it out",
                    p.name
                ),
            ));
        }
        if p.limits.timeout.as_duration().is_zero() {
            out.push(Finding::value(
                format!("{base}/limits/timeout"),
                "must be longer than 0s",
            ));
        }
        if p.limits.memory.bytes() < 64 * 1024 {
            out.push(Finding::value(
                format!("{base}/limits/memory"),
                "must be at least 64KiB (one WebAssembly page)",
            ));
        }
        if p.limits.max_output.bytes() < 1024 {
            out.push(Finding::value(
                format!("{base}/limits/maxOutput"),
                "must be at least 1KiB",
            ));
        }
        if p.capabilities.storage_namespace.is_some() && !p.capabilities.storage {
            out.push(Finding::value(
                format!("{base}/capabilities/storageNamespace"),
                "a storage namespace needs `storage: true`",
            ));
        }
        for (j, origin) in p.capabilities.http.iter().enumerate() {
            if let Err(why) = crate::plugins::HttpOrigin::parse_grant(origin) {
                out.push(Finding::value(format!("{base}/capabilities/http/{j}"), why));
            }
        }
        for (j, d) in p.capabilities.dirs.iter().enumerate() {
            if !d.guest.starts_with('/') {
                out.push(Finding::value(
                    format!("{base}/capabilities/dirs/{j}/guest"),
                    format!("`{}` must be an absolute path inside the plugin", d.guest),
                ));
            }
        }
    }
    names
}

fn check_thresholds(pointer: &str, c: &Check, out: &mut Vec<Finding>) {
    if c.interval.as_duration().is_zero() {
        out.push(Finding::value(
            format!("{pointer}/interval"),
            "must be longer than 0s",
        ));
    }
    // Reaching N passes in a row takes at least N−1 intervals.
    let needed = c.interval.as_duration() * c.consecutive_successes.saturating_sub(1);
    if c.timeout.as_duration() < needed {
        out.push(Finding::value(
            format!("{pointer}/timeout"),
            format!(
                "timeout {} is too short for {} consecutive successes {} apart (needs at least {})",
                c.timeout,
                c.consecutive_successes,
                c.interval,
                super::values::HumanDuration::from(needed)
            ),
        ));
    }
}

fn retries(r: &Retries, out: &mut Vec<Finding>) {
    let mut backoffs = vec![(
        "/spec/retries/default/backoff".to_string(),
        &r.default.backoff,
    )];
    let per = &r.per_state;
    for (name, o) in [
        ("prepareSplit", &per.prepare_split),
        ("split", &per.split),
        ("prepareMerge", &per.prepare_merge),
        ("merge", &per.merge),
        ("commit", &per.commit),
        ("abort", &per.abort),
        ("finish", &per.finish),
    ] {
        if let Some(Some(b)) = o.as_ref().map(|o| o.backoff.as_ref()) {
            backoffs.push((format!("/spec/retries/perState/{name}/backoff"), b));
        }
    }
    for (pointer, b) in backoffs {
        if b.initial > b.max {
            out.push(Finding::value(
                format!("{pointer}/initial"),
                format!(
                    "initial wait {} is longer than the maximum {}",
                    b.initial, b.max
                ),
            ));
        }
    }
}

fn auto_abort(spec: &Spec, check_names: &HashMap<&str, String>, out: &mut Vec<Finding>) {
    for (i, rule) in spec.auto_abort.iter().enumerate() {
        let base = format!("/spec/autoAbort/{i}");
        for (j, state) in rule.states().iter().enumerate() {
            let pointer = format!("{base}/states/{j}");
            if *state == UpgradeState::Idle {
                out.push(Finding::value(
                    pointer,
                    "Idle runs no request, so no rule can fire there",
                ));
            } else if rule.action() == RuleAction::Abort && !model::abortable(*state) {
                let abortable: Vec<String> = UpgradeState::ALL
                    .iter()
                    .filter(|s| model::abortable(**s))
                    .map(|s| s.to_string())
                    .collect();
                out.push(Finding::value(
                    pointer,
                    format!(
                        "action `abort` is impossible in {state}: the state model aborts only from {}; use `hold` or drop {state}",
                        abortable.join(", ")
                    ),
                ));
            }
        }
        match rule {
            AutoAbortRule::CheckFailing {
                check: Some(name), ..
            } if !check_names.contains_key(name.as_str()) => {
                let known: Vec<&str> = check_names.keys().copied().collect();
                let mut message = format!("no gate or verification check is named `{name}`");
                message.push_str(&did_you_mean(name, &known));
                out.push(Finding::value(format!("{base}/check"), message));
            }
            AutoAbortRule::Deadline { commit_within, .. }
                if commit_within.as_duration().is_zero() =>
            {
                out.push(Finding::value(
                    format!("{base}/commitWithin"),
                    "must be longer than 0s",
                ));
            }
            AutoAbortRule::WindowClosing { .. } if spec.window.is_none() => {
                out.push(Finding::value(
                    format!("{base}/when"),
                    "`windowClosing` needs a maintenance window: add `spec.window` with `start` and `end`",
                ));
            }
            AutoAbortRule::PartnerUnhealthy { partner_states, .. } => {
                if partner_states.is_empty() {
                    out.push(Finding::value(
                        format!("{base}/partnerStates"),
                        "must list at least one partner state",
                    ));
                }
                for (j, s) in partner_states.iter().enumerate() {
                    if *s == PartnerState::Up {
                        out.push(Finding::value(
                            format!("{base}/partnerStates/{j}"),
                            "Up is the healthy partner state; a rule on it would stop every session",
                        ));
                    }
                }
            }
            _ => {}
        }
    }
}

/// `/spec/gates/prepareSplit/0` → `spec.gates.prepareSplit[0]` for pointers
/// this module builds (their numeric segments are always list indices).
fn index_path(pointer: &str) -> String {
    let mut out = String::new();
    for segment in pointer.split('/').skip(1) {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_worth_a_warning_once_its_end_has_passed_by_the_given_clock() {
        let text = "apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\nmetadata: {name: w}\n\
            spec:\n  target: {name: t, plugin: hw}\n\
            \x20 software: [{name: a, version: '1', source: a.pkg, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}]\n\
            \x20 plugins: [{name: hw, source: hw.wasm, sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855}]\n\
            \x20 window: {start: '2026-11-28T22:00:00Z', end: '2026-11-29T02:00:00Z'}\n";
        let policy = crate::policy::parse(text, "w.yaml").unwrap();
        let at = |t: &str| warnings(&policy, t.parse().unwrap());
        assert_eq!(at("2026-11-28T21:00:00Z"), []);
        assert_eq!(at("2026-11-29T01:59:59Z"), []);
        let closed = at("2026-12-02T04:05:30Z");
        assert_eq!(closed.len(), 1);
        assert_eq!(
            closed[0],
            Finding::value(
                "/spec/window/end",
                "the maintenance window ended at 2026-11-29T02:00:00Z (3d2h5m ago): `duplex apply` \
                 will not start a session outside it; move the window, or remove it"
            )
        );
        assert!(at("2026-11-29T02:00:00Z")[0].message.contains("(0s ago)"));
    }
}
