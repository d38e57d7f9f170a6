//! `duplex validate`: golden messages for malformed policies, exit codes,
//! JSON output, and the example policies.

mod support;
use support::*;

/// One named test per malformed policy under tests/data/invalid/: each is
/// refused with exit 1, and its messages are exactly those in the
/// `.expected` file beside it. A case per test, so one changed message does
/// not hide the others; `every_malformed_policy_has_a_golden_test` fails
/// when a `.yaml` there has no case here.
macro_rules! golden_cases {
    ($($case:ident),* $(,)?) => {
        mod golden {
            $(
                #[test]
                fn $case() {
                    super::golden_case(&stringify!($case).replace('_', "-"));
                }
            )*
        }
        /// The file stems the cases above check.
        const GOLDEN_CASES: &[&str] = &[$(stringify!($case)),*];
    };
}

golden_cases!(
    abort_in_impossible_state,
    alias_bomb,
    alias_bomb_padded,
    artifact_url,
    artifacts_wrong_or_missing,
    bad_approvals,
    bad_duration,
    bad_name,
    bad_retries,
    bad_rule_action,
    bad_sha256,
    deep_nesting,
    duplicate_key,
    duplicate_plugin,
    duration_without_unit,
    empty,
    empty_software,
    grant_overlaps_plugin,
    grant_unusable,
    missing_kind,
    missing_target_plugin,
    not_a_mapping,
    not_utf8,
    plugin_params_rejected,
    plugin_wrong_digest,
    timeout_too_short,
    unknown_field,
    unknown_plugin,
    unknown_rule,
    unquoted_version,
    verification_interval_with_space,
    verification_misspelt_field,
    verification_soak_with_space,
    window_end_before_start,
    window_end_not_rfc3339,
    window_rule_without_window,
    wrong_api_version,
    wrong_type,
    yaml_syntax_error,
    zero_threshold,
);

#[test]
fn every_malformed_policy_has_a_golden_test() {
    let dir = repo_root().join("tests/data/invalid");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().replace('-', "_"))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = GOLDEN_CASES.iter().map(|c| c.to_string()).collect();
    listed.sort();
    let missing: Vec<&String> = on_disk.iter().filter(|c| !listed.contains(c)).collect();
    let stale: Vec<&String> = listed.iter().filter(|c| !on_disk.contains(c)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "add to golden_cases!: {missing:?}; no such file under {}: {stale:?}",
        dir.display()
    );
    for case in &on_disk {
        let expected = dir.join(format!("{}.expected", case.replace('_', "-")));
        assert!(expected.is_file(), "{} is missing", expected.display());
    }
}

/// Where the golden cases run: a folder beside the built plugins, the test
/// plugins and an empty `app.pkg` (the artifact most cases pin, by the
/// digest of no bytes), so the messages name files the same way on every
/// machine and build.
fn scratch() -> &'static std::path::Path {
    static SCRATCH: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    SCRATCH.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("invalid-policies");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut beside: Vec<std::path::PathBuf> =
            std::fs::read_dir(repo_root().join("tests/data/plugins"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
        beside.push(repo_root().join("plugins/dist/sim-duplex.wasm"));
        beside.push(repo_root().join("plugins/dist/sim-checks.wasm"));
        for file in beside {
            std::fs::copy(&file, dir.join(file.file_name().unwrap())).unwrap();
        }
        std::fs::write(dir.join("app.pkg"), b"").unwrap();
        dir
    })
}

/// `tests/data/invalid/<stem>.yaml`, with the built plugins' digests filled
/// in, validated in the scratch folder against `<stem>.expected`.
fn golden_case(stem: &str) {
    let case = repo_root().join(format!("tests/data/invalid/{stem}.yaml"));
    let name = format!("{stem}.yaml");
    let text = std::fs::read(&case).unwrap();
    let text = replace(
        &text,
        b"@SIM_DUPLEX_SHA256@",
        plugin_digest("sim-duplex").as_bytes(),
    );
    let text = replace(
        &text,
        b"@SIM_CHECKS_SHA256@",
        plugin_digest("sim-checks").as_bytes(),
    );
    std::fs::write(scratch().join(&name), text).unwrap();
    let out = run(duplex().current_dir(scratch()).args(["validate", &name]));
    assert_eq!(out.code, 1, "{name}: exit code\n{}", out.stderr);
    assert_eq!(out.stdout, "", "{name}: nothing on stdout");
    for line in out.stderr.lines() {
        assert!(
            line.starts_with(&format!("{name}:")),
            "{name}: `{line}` does not name the file"
        );
    }
    assert_golden(&case.with_extension("expected"), &out.stderr);
}

fn replace(haystack: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

#[test]
fn a_ten_megabyte_file_is_refused_without_parsing_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("huge.yaml");
    let mut text = String::from(
        "apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\nmetadata:\n  name: huge\n  description: ",
    );
    text.push_str(&"x".repeat(10 * 1024 * 1024));
    std::fs::write(&file, &text).unwrap();
    let out = run(duplex()
        .current_dir(dir.path())
        .args(["validate", "huge.yaml"]));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "huge.yaml:1:1: the file is {} bytes; a policy may be at most 1048576 bytes (1 MiB)\n",
            text.len()
        )
    );
}

#[test]
fn every_example_policy_is_valid() {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("policies"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| format!("policies/{}", p.file_name().unwrap().to_str().unwrap()))
        // It names a production host's paths (/srv/acme, /usr/local/bin/acme-ctl),
        // which this machine does not have: tests/real_host.rs validates it
        // rendered for a temporary home, as scripts/demo-real-host.sh runs it.
        .filter(|f| f != "policies/real-host.yaml")
        // Rollouts (`kind: Rollout`) are `duplex rollout validate`'s: tests/rollout.rs.
        .filter(|f| {
            !std::fs::read_to_string(repo_root().join(f))
                .unwrap()
                .contains("\nkind: Rollout\n")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    let mut args = vec!["validate"];
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
            text.starts_with(
                "# yaml-language-server: $schema=../schemas/upgrade-policy.schema.json\n"
            ),
            "{f} does not point editors at the schema"
        );
    }
}

#[test]
fn exit_codes_distinguish_invalid_from_unreadable() {
    let ok = "policies/demo.yaml";
    let bad = "tests/data/invalid/unknown-plugin.yaml";
    assert_eq!(duplex_run(&["validate", ok]).code, 0);
    assert_eq!(duplex_run(&["validate", ok, bad]).code, 1);
    let missing = duplex_run(&["validate", ok, "no/such/policy.yaml"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .starts_with("error: cannot read no/such/policy.yaml: "),
        "{}",
        missing.stderr
    );
    let usage = duplex_run(&["validate"]);
    assert_eq!(usage.code, 2);
    assert!(usage.stderr.contains("required"), "{}", usage.stderr);
}

#[test]
fn json_output_lists_every_error_with_its_position() {
    let out = duplex_run(&[
        "validate",
        "--output",
        "json",
        "policies/demo.yaml",
        "tests/data/invalid/bad-duration.yaml",
    ]);
    assert_eq!(out.code, 1);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["files"][0]["valid"], true);
    assert_eq!(report["files"][0]["policy"], "demo");
    let errors = report["files"][1]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0]["line"], 23);
    assert_eq!(errors[0]["column"], 19);
    assert_eq!(errors[0]["path"], "spec.gates.prepareSplit[0].interval");
    assert_eq!(errors[1]["path"], "spec.gates.prepareSplit[0].timeout");
}

/// The example policies pin the plugins as built in plugins/dist.
#[test]
fn example_policies_pin_the_built_plugins() {
    for file in ["demo.yaml", "approvals.yaml", "retries-and-auto-abort.yaml"] {
        let text = std::fs::read_to_string(repo_root().join("policies").join(file)).unwrap();
        for plugin in ["sim-duplex", "sim-checks"] {
            let pinned = format!(
                "source: ../plugins/dist/{plugin}.wasm\n      sha256: {}",
                plugin_digest(plugin)
            );
            assert!(
                text.contains(&pinned),
                "{file} does not pin the built {plugin} ({})",
                plugin_digest(plugin)
            );
        }
    }
}

/// A window that has closed is worth a warning, not an error: `validate`
/// and `plan` exit 0, say when it ended (placed at `spec.window.end`, on
/// stderr, or as `warnings` in JSON), and `plan` shows the window.
#[test]
fn a_closed_maintenance_window_is_a_warning_in_validate_and_plan() {
    let site = Site::new();
    let policy = site.policy(
        "",
        "  window:\n    start: \"2020-01-01T00:00:00Z\"\n    end: \"2020-01-02T00:00:00Z\"\n",
    );
    let file = policy.to_str().unwrap();
    let line = std::fs::read_to_string(&policy)
        .unwrap()
        .lines()
        .position(|l| l.trim_start().starts_with("end:"))
        .unwrap()
        + 1;
    let warning = format!(
        "{file}:{line}:10: warning: spec.window.end: the maintenance window ended at \
         2020-01-02T00:00:00Z ("
    );
    let said =
        "ago): `duplex apply` will not start a session outside it; move the window, or remove it\n";

    let out = duplex_run(&["validate", file]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with(&format!("{file}: valid\n  sim-duplex:\n")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with(&warning) && out.stderr.ends_with(said),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    let out = duplex_run(&["validate", "--output", "json", file]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    let warnings = report["files"][0]["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0]["path"], "spec.window.end");
    assert_eq!(warnings[0]["line"], line);
    assert!(report["files"][0].get("errors").is_none());

    let out = duplex_run(&["plan", file]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .contains("\nMaintenance window: 2020-01-01T00:00:00Z to 2020-01-02T00:00:00Z\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.starts_with(&warning) && out.stderr.ends_with(said),
        "{}",
        out.stderr
    );

    let out = duplex_run(&["plan", "--output", "json", file]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["window"]["start"], "2020-01-01T00:00:00Z");
    assert_eq!(plan["window"]["end"], "2020-01-02T00:00:00Z");
    assert_eq!(plan["warnings"][0]["path"], "spec.window.end");

    // A window still to come, or none: no warning, and plan says which.
    site.policy(
        "",
        "  window: {start: \"2099-01-01T00:00:00Z\", end: \"2099-01-02T00:00:00Z\"}\n",
    );
    let out = duplex_run(&["validate", file]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    let out = duplex_run(&["plan", "--output", "json", file]);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(plan["window"]["end"], "2099-01-02T00:00:00Z");
    assert_eq!(plan["warnings"], serde_json::json!([]));
    site.policy("", "");
    let out = duplex_run(&["plan", file]);
    assert_eq!(out.stderr, "");
    assert!(
        out.stdout
            .contains("\nMaintenance window: none (a session may start at any time)\n"),
        "{}",
        out.stdout
    );
}

/// Run `cmd`, failing the test if it has not exited after a minute: a
/// guard against a hang (a FIFO read), not a measure of speed.
fn run_or_hang(cmd: &mut std::process::Command) -> Run {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

fn mkfifo(path: &std::path::Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// An artifact that is not a regular file is refused, at its `source`,
/// without reading it: a FIFO used to hang `validate` and `apply`, and
/// `/dev/zero` to be read until memory ran out.
#[test]
fn artifacts_that_are_not_regular_files_are_refused_without_reading_them() {
    let site = Site::new();
    let fifo = site.dir.path().join("app.fifo");
    mkfifo(&fifo);
    let app = repo_root().join("policies/artifacts/acme-app-2.4.1.pkg");
    for (source, kind) in [
        (fifo.to_str().unwrap(), "a named pipe (FIFO)"),
        ("/dev/zero", "a character device"),
    ] {
        let policy = site.policy("", "");
        let text = std::fs::read_to_string(&policy)
            .unwrap()
            .replace(app.to_str().unwrap(), source);
        std::fs::write(&policy, text).unwrap();
        let expected = format!(
            "spec.software[0].source: artifact `acme-app` ({source}) is {kind}, not a regular file; \
             give the path of the artifact file itself"
        );
        let out = run_or_hang(duplex().args(["validate", policy.to_str().unwrap()]));
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.trim_end().ends_with(&expected),
            "{source}: {}",
            out.stderr
        );
        let out = run_or_hang(
            duplex()
                .arg("--state-dir")
                .arg(site.state_dir())
                .args(["apply", policy.to_str().unwrap()]),
        );
        assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
        assert!(out.stderr.contains(&expected), "{source}: {}", out.stderr);
        assert!(
            !site.state_dir().join("sessions").exists()
                || std::fs::read_dir(site.state_dir().join("sessions"))
                    .unwrap()
                    .next()
                    .is_none(),
            "a session was started"
        );
    }
}

/// The artifact is hashed as a stream: with its data segment limited to
/// 64 MiB, `validate` checks a 256 MiB artifact (it used to read the whole
/// file into memory, and fail).
#[test]
fn a_large_artifact_is_hashed_in_constant_memory() {
    use std::os::unix::process::CommandExt;
    let site = Site::new();
    let artifact = site.dir.path().join("big.pkg");
    let file = std::fs::File::create(&artifact).unwrap();
    file.set_len(256 << 20).unwrap(); // sparse: no disk used
    drop(file);
    let policy = site.policy("", "");
    let app = repo_root().join("policies/artifacts/acme-app-2.4.1.pkg");
    let text = std::fs::read_to_string(&policy).unwrap();
    let text = text.replace(app.to_str().unwrap(), artifact.to_str().unwrap());
    // The digest of 256 MiB of zero bytes.
    let text = text.replace(
        "5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5",
        "a6d72ac7690f53be6ae46ba88506bd97302a093f7108472bd9efc3cefda06484",
    );
    std::fs::write(&policy, text).unwrap();
    let mut cmd = duplex();
    cmd.args(["validate", policy.to_str().unwrap()]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 20,
                rlim_max: 64 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_DATA, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = run(&mut cmd);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// A policy is read once, up to the size limit: from a file or a pipe
/// (`duplex validate /dev/stdin < policy.yaml`), never from a device or a
/// directory.
#[test]
fn a_policy_is_read_from_a_file_or_a_pipe_but_not_from_a_device_or_a_directory() {
    use std::io::Write;
    use std::process::Stdio;
    let site = Site::new();
    let text = std::fs::read(site.policy("", "")).unwrap();
    let piped = |bytes: Vec<u8>, args: &[&str]| {
        let mut child = duplex()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // The reader may stop at the size limit and close the pipe.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&bytes);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Run {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    };
    let out = piped(text.clone(), &["validate", "/dev/stdin"]);
    assert_eq!((out.code, out.stderr.as_str()), (0, ""));
    assert!(
        out.stdout.starts_with("/dev/stdin: valid\n"),
        "{}",
        out.stdout
    );
    let out = piped(text, &["plan", "/dev/stdin"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.starts_with("Policy test-upgrade (/dev/stdin)"),
        "{}",
        out.stdout
    );

    let mut big = b"# ".to_vec();
    big.extend(vec![b'x'; 2 << 20]);
    let out = piped(big, &["validate", "/dev/stdin"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "/dev/stdin:1:1: the file is more than 1048576 bytes; a policy may be at most 1048576 bytes (1 MiB)\n"
    );

    for (path, kind) in [
        ("/dev/zero", "a character device"),
        (site.dir.path().to_str().unwrap(), "a directory"),
    ] {
        let out = duplex_run(&["validate", path]);
        assert_eq!(out.code, 2, "{path}");
        assert_eq!(
            out.stderr,
            format!(
                "error: cannot read {path}: it is {kind}, not a policy file (a regular file, or a pipe)\n"
            )
        );
        let out = duplex_run(&["plan", path]);
        assert_eq!(out.code, 2, "{path}");
    }
}

/// yaml_serde's own limit on aliases grows with the document, so padding
/// made a bomb expensive (this one, 102 KB, took 24 s and 4 GB in validate).
/// The budget is absolute: the padded bomb is refused at its alias.
#[test]
fn a_bomb_padded_to_a_hundred_kilobytes_is_refused_at_its_alias() {
    let mut text = String::from(
        "apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\nmetadata:\n  name: padded\n\
         spec:\n  target:\n    name: x\n    plugin: hw\n    with:\n",
    );
    // One event per two bytes: as much room under yaml_serde's limit as
    // a file this size can buy.
    text.push_str(&format!("      pad: [{}1]\n", "1,".repeat(50_499)));
    let bomb_line = text.lines().count() + 1;
    text.push_str(
        "      a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        text.push_str(&format!(
            "      a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(",")
        ));
    }
    assert!(text.len() > 100_000, "{}", text.len());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bomb.yaml"), &text).unwrap();
    let out = run(duplex()
        .current_dir(dir.path())
        .args(["validate", "bomb.yaml"]));
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "bomb.yaml:{}:16: spec.target.with.a4[0]: alias `*a3` expands to 7381 nodes, taking \
             the aliases of this file past 10000 expanded nodes, the most a policy may use (an \
             alias bomb?); write the values out\n",
            bomb_line + 4
        )
    );
}
