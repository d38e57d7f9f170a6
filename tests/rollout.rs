//! `duplex rollout`: the rollout document checked (`validate`, golden
//! messages from the schema, the semantic checks and an inline policy) and
//! resolved against an inventory (`plan`, golden output), and its schema.

mod support;
use support::*;

/// `duplex rollout ARGS` from the repository's root: its golden stdout or
/// stderr (whichever it writes) and its exit code.
fn golden(args: &[&str], code: i32, expected: &str) {
    let mut all = vec!["rollout"];
    all.extend_from_slice(args);
    let out = duplex_run(&all);
    assert_eq!(out.code, code, "{}\n{}", out.stdout, out.stderr);
    let text = if code == 0 { &out.stdout } else { &out.stderr };
    assert_golden(
        &repo_root().join("tests/data/rollouts").join(expected),
        text,
    );
}

#[test]
fn validate_a_valid_rollout_and_its_policy() {
    golden(
        &["validate", "policies/fleet-rollout.yaml"],
        0,
        "fleet-rollout.validate.expected",
    );
}

#[test]
fn validate_reports_schema_errors_in_the_rollout_and_its_inline_policy() {
    golden(
        &["validate", "tests/data/rollouts/invalid/schema-errors.yaml"],
        1,
        "invalid/schema-errors.expected",
    );
}

#[test]
fn validate_reports_semantic_errors_in_the_rollout_and_its_inline_policy() {
    golden(
        &[
            "validate",
            "tests/data/rollouts/invalid/semantic-errors.yaml",
        ],
        1,
        "invalid/semantic-errors.expected",
    );
}

#[test]
fn validate_reports_a_policy_files_errors_in_that_file() {
    golden(
        &[
            "validate",
            "tests/data/rollouts/invalid/policy-file-errors.yaml",
        ],
        1,
        "invalid/policy-file-errors.expected",
    );
}

#[test]
fn plan_of_the_example_fleet_rollout() {
    golden(
        &[
            "plan",
            "policies/fleet-rollout.yaml",
            "--hosts",
            "tests/data/rollouts/inventory.yaml",
        ],
        0,
        "fleet-rollout.plan.expected",
    );
}

#[test]
fn plan_with_names_selectors_percentages_and_windows_across_dst() {
    golden(
        &[
            "plan",
            "tests/data/rollouts/windows.yaml",
            "--hosts",
            "tests/data/rollouts/inventory.yaml",
            "--at",
            "2026-03-28T12:00:00Z",
        ],
        0,
        "windows.plan.expected",
    );
}

#[test]
fn plan_json_is_the_rollout_plan() {
    let out = duplex_run(&[
        "rollout",
        "plan",
        "--output",
        "json",
        "policies/fleet-rollout.yaml",
        "--hosts",
        "tests/data/rollouts/inventory.yaml",
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: duplex_core::rollout::RolloutPlan = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan.name, "fleet-demo");
    assert_eq!(plan.host_count(), 8);
    assert_eq!(plan.waves.len(), 3);
    assert_eq!((plan.max_unavailable, plan.error_budget), (2, 1));
    let policy = repo_root().join("policies/fleet-demo.yaml");
    assert_eq!(plan.policy.path, policy.display().to_string());
    assert_eq!(plan.policy.text, std::fs::read_to_string(&policy).unwrap());
}

#[test]
fn plan_refuses_what_does_not_resolve_and_unreadable_inventories() {
    let site = Site::new();
    let inventory = site.dir.path().join("hosts.yaml");
    std::fs::write(&inventory, "- { name: other, labels: { fleet: db } }\n").unwrap();
    let inventory = inventory.display().to_string();
    let out = duplex_run(&[
        "rollout",
        "plan",
        "policies/fleet-rollout.yaml",
        "--hosts",
        &inventory,
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the rollout has no hosts"),
        "{}",
        out.stderr
    );
    let out = duplex_run(&[
        "rollout",
        "plan",
        "policies/fleet-rollout.yaml",
        "--hosts",
        "no/such/inventory.yaml",
    ]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = duplex_run(&["rollout", "plan", "policies/fleet-rollout.yaml"]);
    assert_eq!(out.code, 2, "--hosts is required: {}", out.stderr);
}

#[test]
fn every_example_rollout_is_valid_and_points_editors_at_its_schema() {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("\nkind: Rollout\n")
        })
        .map(|p| format!("policies/{}", p.file_name().unwrap().to_str().unwrap()))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut args = vec!["rollout", "validate"];
    args.extend(files.iter().map(String::as_str));
    let out = duplex_run(&args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for f in &files {
        assert!(
            out.stdout.contains(&format!("{f}: valid")),
            "{}",
            out.stdout
        );
        let text = std::fs::read_to_string(repo_root().join(f)).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../schemas/rollout.schema.json\n"),
            "{f} does not point editors at the schema"
        );
    }
}
