//! The CLI surface: help, the schema, and `plan`.

mod support;
use support::*;

#[test]
fn help_explains_each_verb_in_one_line() {
    let out = duplex_run(&["--help"]);
    assert_eq!(out.code, 0);
    for verb in ["validate", "schema", "plan"] {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with(verb))
            .unwrap_or_else(|| panic!("no `{verb}` in help:\n{}", out.stdout));
        assert!(
            line.len() > verb.len() + 10,
            "`{verb}` has no explanation: {line}"
        );
    }
}

#[test]
fn unknown_verbs_and_flags_are_usage_errors() {
    assert_eq!(duplex_run(&["frobnicate"]).code, 2);
    assert_eq!(
        duplex_run(&["plan", "--output", "xml", "policies/demo.yaml"]).code,
        2
    );
}

/// The checked-in schema is what the types generate: regenerate it with
/// `cargo run -p duplex -- schema > schemas/upgrade-policy.schema.json`.
#[test]
fn the_checked_in_schema_is_not_stale() {
    let out = duplex_run(&["schema"]);
    assert_eq!(out.code, 0);
    let path = repo_root().join("schemas/upgrade-policy.schema.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out.stdout).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        out.stdout == checked_in,
        "schemas/upgrade-policy.schema.json is stale: run `cargo run -p duplex -- schema > schemas/upgrade-policy.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
    assert_eq!(schema["title"], "UpgradePolicy");
}

/// The same for the rollout's schema: `cargo run -p duplex -- schema
/// --kind rollout > schemas/rollout.schema.json`; `duplex schema` alone
/// is still the policy's.
#[test]
fn the_checked_in_rollout_schema_is_not_stale() {
    let out = duplex_run(&["schema", "--kind", "rollout"]);
    assert_eq!(out.code, 0);
    let path = repo_root().join("schemas/rollout.schema.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &out.stdout).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap();
    assert!(
        out.stdout == checked_in,
        "schemas/rollout.schema.json is stale: run `cargo run -p duplex -- schema --kind rollout > schemas/rollout.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&checked_in).unwrap();
    assert_eq!(schema["title"], "Rollout");
}

#[test]
fn plan_walks_the_state_model_with_the_policys_work() {
    let out = duplex_run(&["plan", "policies/approvals.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = &out.stdout;
    let mut from = 0;
    for state in &FORWARD[..7] {
        let at = text[from..]
            .find(&format!("\n  {state}\n"))
            .unwrap_or_else(|| panic!("{state} missing or out of order:\n{text}"));
        from += at + 1;
    }
    assert!(
        text.contains("gate `free-space`: sim-checks/free-space"),
        "{text}"
    );
    assert!(
        text.contains("install kernel-firmware 6.12.3 on the Upgrade Side via sim-duplex"),
        "{text}"
    );
    assert!(
        text.contains("wait for `duplex approve` before Merge (approvers: ops-oncall)"),
        "{text}"
    );
    assert!(
        text.contains("wait for `duplex approve` before Commit (approvers: change-board)"),
        "{text}"
    );
    assert!(text.contains("point of no return"), "{text}");
    assert!(
        text.contains("Abort (possible from PrepareSplit, Split, PrepareMerge, Merge)"),
        "{text}"
    );
    assert!(
        text.contains("when the partner side is Hung or Crashed: abort"),
        "{text}"
    );
}

#[test]
fn plan_json_is_machine_readable() {
    let out = duplex_run(&[
        "plan",
        "--output",
        "json",
        "policies/retries-and-auto-abort.yaml",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let states: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, FORWARD);
    assert_eq!(plan["unattended"], true);
    assert_eq!(
        plan["steps"][2]["retries"],
        "up to 4 retries, waiting 100ms ×2 up to 2s (±10%)"
    );
    assert_eq!(
        plan["steps"][5]["retries"],
        "up to 10 retries, waiting 1s ×2 up to 30s (±20%)"
    );
    assert_eq!(plan["autoAbort"].as_array().unwrap().len(), 6);
}

#[test]
fn plan_of_an_invalid_policy_fails_like_validate() {
    let out = duplex_run(&["plan", "tests/data/invalid/unknown-plugin.yaml"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("unknown plugin `hardware`"),
        "{}",
        out.stderr
    );
}

/// README's policy reference is generated from the schema.
#[test]
fn the_readme_policy_reference_is_not_stale() {
    let path = repo_root().join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let (start, end) = (
        "<!-- policy-reference:start -->\n",
        "<!-- policy-reference:end -->",
    );
    let a = readme
        .find(start)
        .expect("README has the reference start marker")
        + start.len();
    let b = readme
        .find(end)
        .expect("README has the reference end marker");
    let generated = duplex_core::policy::reference::markdown();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(
            &path,
            format!("{}{}{}", &readme[..a], generated, &readme[b..]),
        )
        .unwrap();
        return;
    }
    assert!(
        readme[a..b] == generated,
        "README.md's policy reference is stale: run `UPDATE_GOLDEN=1 cargo test -p duplex --test cli`"
    );
}
