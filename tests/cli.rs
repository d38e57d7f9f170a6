//! The CLI surface: help, the schema, and `plan`.

mod support;
use std::process::Command;
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

/// `duplex` copied alone, without `duplex-full` beside it: the read-only
/// views still answer (they run in `duplex` itself); any other verb is
/// refused with exit 2 and a message naming the file that is missing.
#[test]
fn duplex_without_duplex_full_runs_the_views_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let front = dir.path().join("duplex");
    std::fs::copy(env!("CARGO_BIN_EXE_duplex"), &front).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    for view in ["status", "history"] {
        let out = run(Command::new(&front)
            .arg("--state-dir")
            .arg(&state)
            .arg(view));
        assert_eq!(out.code, 0, "{view}: {}", out.stderr);
    }
    let plan = run(Command::new(&front)
        .current_dir(repo_root())
        .args(["plan", "policies/demo.yaml"]));
    assert_eq!(plan.code, 2, "{}", plan.stdout);
    assert_eq!(plan.stdout, "");
    let dir_text = dir.path().to_str().unwrap();
    assert_golden(
        &repo_root().join("tests/data/cli/duplex-without-full.expected"),
        &plan.stderr.replace(dir_text, "<dir>"),
    );
}

/// The views `duplex` runs itself (status, log, history) answer help,
/// `--version` and usage errors exactly as `duplex-full` does: both parse
/// them with the same definitions.
#[test]
fn the_views_help_and_usage_errors_are_the_same_in_both_executables() {
    let full = std::path::Path::new(env!("CARGO_BIN_EXE_duplex")).with_file_name("duplex-full");
    let cases: [&[&str]; 8] = [
        &["status", "--help"],
        &["log", "--help"],
        &["history", "-h"],
        &["status", "-V"],
        &["log", "--bogus"],
        &["history", "extra"],
        &["--output", "xml", "status"],
        &["log", "--session"],
    ];
    for args in cases {
        let front = duplex_run(args);
        let whole = run(Command::new(&full).current_dir(repo_root()).args(args));
        assert_eq!(
            (front.code, &front.stdout, &front.stderr),
            (whole.code, &whole.stdout, &whole.stderr),
            "duplex {args:?}"
        );
    }
}

/// `duplex` hands a verb it does not run itself to `duplex-full` with the
/// same arguments, and what comes back is that verb's own answer: a usage
/// error of `plan`'s is the same whichever executable parses it, and `plan`
/// through `duplex` prints what `duplex-full plan` prints.
#[test]
fn duplex_hands_other_verbs_to_duplex_full_unchanged() {
    let full = std::path::Path::new(env!("CARGO_BIN_EXE_duplex")).with_file_name("duplex-full");
    let through_front = duplex_run(&["plan", "policies/approvals.yaml"]);
    let direct = run(Command::new(&full)
        .current_dir(repo_root())
        .args(["plan", "policies/approvals.yaml"]));
    assert_eq!(through_front.code, 0, "{}", through_front.stderr);
    assert_eq!(through_front.stdout, direct.stdout);
    let bad_front = duplex_run(&["plan", "--no-such-flag"]);
    let bad_full = run(Command::new(&full)
        .current_dir(repo_root())
        .args(["plan", "--no-such-flag"]));
    assert_eq!(
        (bad_front.code, &bad_front.stderr),
        (bad_full.code, &bad_full.stderr)
    );
    assert_eq!(bad_front.code, 2);
}
