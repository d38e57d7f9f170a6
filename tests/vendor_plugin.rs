//! A plugin vendor's workflow, outside this repository: `duplex plugin new`,
//! the scaffold's own native tests, `duplex plugin build`, `duplex plugin
//! inspect`, and a policy pinning the result that `duplex validate` accepts.
//!
//! The build needs the wasm toolchain (scripts/test.sh installs it through
//! scripts/install-wasm-toolchain.sh) and the crates Duplex's Cargo.lock
//! names in the cargo cache: everything here runs offline.

mod support;
use support::*;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target dir scripts/build-plugins.sh builds plugins/dist in (it runs
/// first in scripts/test.sh): std, rebuilt for wasm on the Debian route, and
/// the SDK's dependencies are compiled there already, and every run of this
/// test reuses them. The build flags do not depend on where a crate lives.
fn shared_target_dir() -> PathBuf {
    std::env::var_os("DUPLEX_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/wasm"))
}

/// `duplex ARGS...` run from `dir`, as someone working there would.
fn duplex_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = duplex();
    cmd.current_dir(dir).args(args);
    cmd.env("CARGO_TARGET_DIR", shared_target_dir())
        .env("CARGO_NET_OFFLINE", "true");
    run(&mut cmd)
}

/// `cargo ARGS...` in `dir`, offline, with the shared target dir.
fn cargo_in(dir: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new("cargo");
    cmd.current_dir(dir)
        .args(args)
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env("CARGO_NET_OFFLINE", "true");
    run(&mut cmd)
}

/// A scratch directory that is not inside this repository.
fn outside_the_repository() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root().canonicalize().unwrap();
    assert!(
        !dir.path().canonicalize().unwrap().starts_with(&root),
        "the temporary directory {} is inside the repository",
        dir.path().display()
    );
    dir
}

/// The versions of `name` a Cargo.lock pins.
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    let needle = format!("name = \"{name}\"\nversion = \"");
    lock.match_indices(&needle)
        .map(|(at, _)| {
            let rest = &lock[at + needle.len()..];
            rest[..rest.find('"').unwrap()].to_string()
        })
        .collect()
}

/// The value after `label` on the line of human output that starts with it.
fn line_value(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{output}"))
        .trim()
        .to_string()
}

#[test]
fn a_vendor_scaffolds_tests_builds_inspects_and_pins_a_plugin_outside_the_repository() {
    let site = outside_the_repository();
    let home = site.path();

    // 1. Scaffold.
    let new = duplex_in(home, &["plugin", "new", "acme-checks"]);
    assert_eq!(new.code, 0, "{}", new.stderr);
    assert!(new.stdout.contains("cd acme-checks\n"), "{}", new.stdout);
    let krate = home.join("acme-checks");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let root = repo_root().canonicalize().unwrap();
    assert!(
        !manifest.contains(root.to_str().unwrap()),
        "the scaffold points into the Duplex checkout:\n{manifest}"
    );

    // 2. Its own native tests, offline.
    let test = cargo_in(&krate, &["test", "--offline"]);
    assert_eq!(test.code, 0, "{}\n{}", test.stdout, test.stderr);
    assert!(
        test.stdout.contains("test result: ok. 6 passed"),
        "{}",
        test.stdout
    );
    let fmt = cargo_in(&krate, &["fmt", "--check", "--package", "acme-checks"]);
    assert_eq!(
        fmt.code, 0,
        "the scaffold is not rustfmt-clean:\n{}",
        fmt.stdout
    );

    // 3. Build the component from the crate's directory.
    let build = duplex_in(&krate, &["plugin", "build"]);
    assert_eq!(build.code, 0, "{}\n{}", build.stdout, build.stderr);
    assert_eq!(
        line_value(&build.stdout, "Built "),
        format!("dist/acme-checks.wasm ({} bytes)", {
            std::fs::metadata(krate.join("dist/acme-checks.wasm"))
                .unwrap()
                .len()
        })
    );
    let sha256 = line_value(&build.stdout, "sha256:");
    let verify = duplex_in(
        &krate,
        &[
            "plugin",
            "verify",
            "dist/acme-checks.wasm",
            "--sha256",
            &sha256,
        ],
    );
    assert_eq!(
        verify.code, 0,
        "printed sha256 is not the file's: {}",
        verify.stderr
    );

    // The lock kept Duplex's versions through both builds.
    let lock = std::fs::read_to_string(krate.join("Cargo.lock")).unwrap();
    let workspace_lock = std::fs::read_to_string(repo_root().join("Cargo.lock")).unwrap();
    let sdk_deps = ["wit-bindgen", "schemars", "serde", "serde_json"];
    for name in sdk_deps {
        let pinned = locked_versions(&lock, name);
        assert_eq!(pinned.len(), 1, "{name}: {pinned:?}");
        assert!(
            locked_versions(&workspace_lock, name).contains(&pinned[0]),
            "{name} {} is not the version Duplex uses",
            pinned[0]
        );
    }

    // The same source built elsewhere is the same component.
    let elsewhere = outside_the_repository();
    let copy = elsewhere.path().join("vendor-repo/acme-checks");
    copy_tree(&krate, &copy, &["dist"]);
    let out = elsewhere.path().join("out/acme.wasm");
    let again = duplex_in(
        elsewhere.path(),
        &[
            "--output",
            "json",
            "plugin",
            "build",
            copy.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["file"], out.to_str().unwrap());
    assert_eq!(again["sha256"], sha256.as_str(), "not reproducible");
    assert_eq!(again["plugin"], "acme-checks");

    // 4. Inspect it.
    let inspect = duplex_in(&krate, &["plugin", "inspect", "dist/acme-checks.wasm"]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let shown = &inspect.stdout;
    assert!(shown.starts_with("acme-checks 0.1.0\n"), "{shown}");
    assert!(shown.contains(&format!("sha256:    {sha256}")), "{shown}");
    assert!(
        shown.contains("  disk-space  Enough free space on the Upgrade Side"),
        "{shown}"
    );
    assert!(shown.contains("\"min-free-bytes\""), "{shown}");

    // 5. Pin it in a policy next to the crate, and validate.
    let policy = |with: &str| {
        let text = std::fs::read_to_string(repo_root().join("policies/demo.yaml"))
            .unwrap()
            .replace(
                "../plugins/dist/",
                &format!("{}/", repo_root().join("plugins/dist").display()),
            )
            .replace(
                "artifacts/",
                &format!("{}/", repo_root().join("policies/artifacts").display()),
            )
            .replace(
                "  plugins:\n",
                &format!(
                    "  plugins:
    - name: acme-checks
      source: acme-checks/dist/acme-checks.wasm
      sha256: {sha256}
      capabilities:
        storage: true
"
                ),
            )
            .replace(
                "  gates:\n    prepareSplit:\n",
                &format!(
                    "  gates:
    prepareSplit:
      - name: enough-disk
        plugin: acme-checks
        check: disk-space
        with: {with}
"
                ),
            );
        let path = home.join("policy.yaml");
        std::fs::write(&path, text).unwrap();
        path
    };
    policy("{min-free-bytes: 4294967296, margin-percent: 10}");
    let valid = duplex_in(home, &["validate", "policy.yaml"]);
    assert_eq!(valid.code, 0, "{}", valid.stderr);

    // Its parameter schema is the one the scaffold's type declares.
    policy("{min-free-bytes: 4294967296, margin-percent: 150}");
    let invalid = duplex_in(home, &["validate", "policy.yaml"]);
    assert_eq!(invalid.code, 1, "{}", invalid.stderr);
    assert!(
        invalid.stderr.contains("margin-percent"),
        "{}",
        invalid.stderr
    );
}

/// Copies `from` to `to`, leaving out the entries named in `skip`.
fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if skip.iter().any(|s| name == *s) {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&name), &[]);
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

#[test]
fn new_writes_a_crate_that_carries_the_sdk_and_pins_duplexs_versions() {
    let site = outside_the_repository();
    let dir = site.path().join("work/vendor/acme");
    let new = duplex_in(
        site.path(),
        &[
            "--output",
            "json",
            "plugin",
            "new",
            "acme-checks",
            "--dir",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(new.code, 0, "{}", new.stderr);
    let created: Value = serde_json::from_str(&new.stdout).unwrap();
    assert_eq!(created["dir"], dir.to_str().unwrap());
    let files: Vec<&str> = created["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap())
        .collect();
    for f in &files {
        assert!(dir.join(f).is_file(), "{f} listed but not written");
    }
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "src/lib.rs",
        "tests/checks.rs",
        "README.md",
    ] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    // The SDK is the repository's, byte for byte.
    for f in [
        "Cargo.toml",
        "src/lib.rs",
        "src/host.rs",
        "src/manifest.rs",
        "src/testing.rs",
        "wit/plugin.wit",
    ] {
        let vendored = std::fs::read(dir.join("vendor/duplex-plugin-sdk").join(f)).unwrap();
        let source = std::fs::read(repo_root().join("plugin-sdk").join(f)).unwrap();
        assert!(
            vendored == source,
            "vendor/duplex-plugin-sdk/{f} differs from plugin-sdk/{f}"
        );
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    for step in [
        "cargo test",
        "duplex plugin build",
        "duplex plugin inspect dist/acme-checks.wasm",
        "duplex validate",
    ] {
        assert!(readme.contains(step), "README.md does not say `{step}`");
    }
}

#[test]
fn new_refuses_bad_names_and_existing_directories() {
    let site = outside_the_repository();
    std::fs::create_dir(site.path().join("taken")).unwrap();
    let mut transcript = String::new();
    for args in [
        &["Acme_Checks"][..],
        &["acme-"],
        &[""],
        &["fn"],
        &["std"],
        &["taken"],
        &["acme-checks", "--dir", "taken"],
    ] {
        let mut argv = vec!["plugin", "new"];
        argv.extend_from_slice(args);
        let out = duplex_in(site.path(), &argv);
        transcript.push_str(&format!(
            "$ duplex {}\nexit {}\n{}{}\n",
            argv.iter()
                .map(|a| if a.is_empty() { "''" } else { a })
                .collect::<Vec<_>>()
                .join(" "),
            out.code,
            out.stdout,
            out.stderr
        ));
    }
    assert_golden(
        &repo_root().join("tests/data/vendor/new-refusals.expected"),
        &transcript,
    );
    // Nothing was written for a refused name; the existing directory is untouched.
    let mut left: Vec<String> = std::fs::read_dir(site.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["taken"]);
    assert_eq!(
        std::fs::read_dir(site.path().join("taken"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn new_help_shows_an_example() {
    let help = duplex_run(&["plugin", "new", "--help"]);
    assert_eq!(help.code, 0);
    assert!(
        help.stdout
            .contains("Example:\n  duplex plugin new acme-checks\n  cd acme-checks\n"),
        "{}",
        help.stdout
    );
}

#[test]
fn build_says_what_is_wrong_with_a_directory_that_is_no_plugin_crate() {
    let site = outside_the_repository();
    let dir = site.path();

    // No crate at all.
    let none = duplex_in(dir, &["plugin", "build", "nothing-here"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(
        none.stderr.starts_with(
            "error: no plugin crate in nothing-here: cannot read nothing-here/Cargo.toml"
        ),
        "{}",
        none.stderr
    );

    // A library crate that is no cdylib.
    let lib = dir.join("plain-lib");
    std::fs::create_dir_all(lib.join("src")).unwrap();
    std::fs::write(lib.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        lib.join("Cargo.toml"),
        "[package]\nname = \"plain-lib\"\nversion = \"0.1.0\"\nedition = \"2024\"\n[workspace]\n",
    )
    .unwrap();
    let plain = duplex_in(dir, &["plugin", "build", "plain-lib"]);
    assert_eq!(plain.code, 1, "{}", plain.stderr);
    assert!(
        plain.stderr.contains(
            "error: `plain-lib` is not a plugin crate: its library is not a cdylib. Add this to"
        ) && plain
            .stderr
            .contains("[lib]\ncrate-type = [\"cdylib\", \"rlib\"]"),
        "{}",
        plain.stderr
    );

    // A cdylib whose workspace has no plugin profile.
    let manifest = std::fs::read_to_string(lib.join("Cargo.toml")).unwrap();
    std::fs::write(
        lib.join("Cargo.toml"),
        manifest.replace(
            "[workspace]",
            "[lib]\ncrate-type = [\"cdylib\"]\n[workspace]",
        ),
    )
    .unwrap();
    let profileless = duplex_in(dir, &["plugin", "build", "plain-lib"]);
    assert_eq!(profileless.code, 1, "{}", profileless.stderr);
    assert!(
        profileless.stderr.contains("has no [profile.plugin]")
            && profileless
                .stderr
                .contains("[profile.plugin]\ninherits = \"release\"\npanic = \"abort\""),
        "{}",
        profileless.stderr
    );
}

#[test]
fn build_says_what_to_install_when_there_is_no_wasm_toolchain() {
    let site = outside_the_repository();
    let new = duplex_in(site.path(), &["plugin", "new", "acme-checks"]);
    assert_eq!(new.code, 0, "{}", new.stderr);
    // A PATH with cargo on it and nothing else: no rustup, no wasm-ld-22.
    let bin = site.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO"), bin.join("cargo")).unwrap();

    let mut cmd = duplex();
    cmd.current_dir(site.path().join("acme-checks"))
        .args(["plugin", "build"])
        .env("PATH", &bin);
    let out = run(&mut cmd);
    assert_eq!(out.code, 1, "{}", out.stderr);
    for needed in [
        "error: no WebAssembly toolchain here to build plugins for wasm32-unknown-unknown:\n",
        "  - rustup is not on PATH\n",
        "no wasm-ld-22 on PATH (package lld-22)",
        "  rustup target add wasm32-unknown-unknown\n",
        "  apt-get update && apt-get install -y --no-install-recommends rustc-web cargo-web rust-web-src lld-22\n",
        "scripts/install-wasm-toolchain.sh",
    ] {
        assert!(
            out.stderr.contains(needed),
            "`{needed}` not in:\n{}",
            out.stderr
        );
    }
    assert!(!site.path().join("acme-checks/dist").exists());
}
