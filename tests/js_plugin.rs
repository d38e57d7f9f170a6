//! A readiness check written in JavaScript, as a vendor ships one: the
//! component plugins/js-file-checks (built with componentize-js by
//! scripts/build-plugins-js.sh) gating `policies/js-plugin.yaml` over a real
//! directory, end to end with the `duplex` binary; and a vendor's own JS plugin
//! from `duplex plugin new --lang js` to `duplex apply`, outside the repository.
//!
//! Compiling a JS component (~12 MB: the JS engine is inside) takes about a
//! minute and a half with a debug `duplex`; the compiled-plugin cache every
//! test shares (tests/support) pays it once for js-file-checks.

mod support;
use std::path::Path;
use support::*;

/// Compiles js-file-checks into the shared cache once, before any test
/// applies a policy that loads it (concurrent tests wait here instead of
/// each compiling it).
fn warm_cache() {
    static WARM: std::sync::Once = std::sync::Once::new();
    WARM.call_once(|| {
        let out = duplex_run(&["validate", "policies/js-plugin.yaml"]);
        assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    });
}

/// policies/js-plugin.yaml in `dir`, with its plugins and artifact by absolute
/// path and its `files` grant on `release` (a directory the test made).
fn policy_in(dir: &Path, release: &Path) -> std::path::PathBuf {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("policies/js-plugin.yaml"))
        .unwrap()
        .replace(
            "../plugins/dist/",
            &format!("{}/", root.join("plugins/dist").display()),
        )
        .replace(
            "source: artifacts/",
            &format!("source: {}/", root.join("policies/artifacts").display()),
        )
        .replace("path: js-release", &format!("path: {}", release.display()));
    let path = dir.join("js-plugin.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn release(dir: &Path, version: &str, status: &str) -> std::path::PathBuf {
    let release = dir.join("release");
    std::fs::create_dir_all(release.join("current")).unwrap();
    std::fs::write(release.join("current/VERSION"), format!("{version}\n")).unwrap();
    std::fs::write(release.join("status.json"), status).unwrap();
    release
}

#[test]
fn the_js_plugin_policy_gates_the_upgrade_and_commits() {
    warm_cache();
    let site = Site::new();
    let out = site.duplex(&["apply", "policies/js-plugin.yaml"]);
    assert_committed(&site, &out);
    let log = site.log_text();
    for needle in [
        "check `release-version`: pass: release/current/VERSION says 2.4.1",
        "check `release-ready`: pass: release/status.json says ready (version 2.4.1)",
    ] {
        assert!(log.contains(needle), "log lacks `{needle}`:\n{log}");
    }
}

#[test]
fn a_wrong_release_on_disk_fails_the_gate_and_the_policy_aborts() {
    warm_cache();
    let site = Site::new();
    let release = release(
        site.dir.path(),
        "2.4.0",
        r#"{"status": "ready", "version": "2.4.0"}"#,
    );
    let policy = policy_in(site.dir.path(), &release);
    let out = site.duplex(&["apply", policy.to_str().unwrap()]);
    // autoAbort: retriesExhausted → abort; the session ends aborted.
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains(
            "js-file-checks check [check/release-version]: fail: release/current/VERSION says 2.4.0, expected 2.4.1"
        ),
        "{log}"
    );
    assert!(
        log.contains("auto-abort rule `retriesExhausted` fired (abort)"),
        "{log}"
    );
    assert_eq!(
        site.states(),
        [
            "Idle",
            "PrepareSplit",
            "Split",
            "PrepareMerge",
            "Abort",
            "Finish",
            "Idle"
        ]
    );
    assert_eq!(site.status_json()["outcome"], "aborted");
}

#[test]
fn a_status_file_not_ready_after_the_merge_aborts() {
    warm_cache();
    let site = Site::new();
    let release = release(
        site.dir.path(),
        "2.4.1",
        r#"{"status": "starting", "version": "2.4.1"}"#,
    );
    let policy = policy_in(site.dir.path(), &release);
    let out = site.duplex(&["apply", policy.to_str().unwrap()]);
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let log = site.log_text();
    assert!(
        log.contains(
            r#"js-file-checks check [check/release-ready]: fail: release/status.json says "starting", not "ready""#
        ),
        "{log}"
    );
    assert_eq!(site.status_json()["outcome"], "aborted");
}

#[test]
fn the_js_plugin_is_refused_a_capability_its_policy_does_not_grant() {
    warm_cache();
    let site = Site::new();
    let release = release(site.dir.path(), "2.4.1", "{}");
    let policy = policy_in(site.dir.path(), &release);
    // Without its `files` grant the component's import of files is refused
    // (the grant ends the policy).
    let text = std::fs::read_to_string(&policy).unwrap();
    let start = text.find("      capabilities:\n        files:").unwrap();
    std::fs::write(&policy, &text[..start]).unwrap();
    let out = site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(
        all.contains("js-file-checks") && all.contains("files"),
        "{all}"
    );
}

/// A vendor's own JavaScript plugin, outside the repository: `duplex plugin
/// new --lang js` → `duplex plugin build` → `duplex plugin inspect` → pinned
/// in a policy that grants it a directory → `duplex apply` commits.
#[test]
fn a_scaffolded_js_plugin_builds_and_gates_an_upgrade() {
    let site = Site::new();
    let work = site.dir.path();
    let out = run(duplex()
        .current_dir(work)
        .args(["plugin", "new", "acme-js", "--lang", "js"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("duplex plugin build"), "{}", out.stdout);
    let project = work.join("acme-js");
    for file in [
        "package.json",
        "src/plugin.js",
        "wit/world.wit",
        "README.md",
        "vendor/duplex-plugin-sdk/js/duplex.js",
        "vendor/duplex-plugin-sdk/wit/plugin.wit",
    ] {
        assert!(project.join(file).is_file(), "no {file}");
    }

    // From outside the project, as `duplex plugin build DIR`.
    let out = run(duplex()
        .current_dir(work)
        .args(["--output", "json", "plugin", "build", "acme-js"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let built: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(built["plugin"], "acme-js");
    assert_eq!(built["route"], "componentize-js");
    let wasm = project.join("dist/acme-js.wasm");
    let sha = sha256_hex(&std::fs::read(&wasm).unwrap());
    assert_eq!(built["sha256"], sha.as_str());

    let out = run(duplex().current_dir(&project).args([
        "--output",
        "json",
        "plugin",
        "inspect",
        "dist/acme-js.wasm",
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let inspected: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let imports: Vec<&str> = inspected["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    // Only what its world imports: no WASI, no ungranted capability.
    assert_eq!(
        imports,
        [
            "duplex:plugin/types@0.1.0",
            "duplex:plugin/host@0.1.0",
            "duplex:plugin/files@0.1.0"
        ],
        "{}",
        out.stdout
    );
    assert_eq!(inspected["plugin"]["checks"][0]["name"], "free-space");

    let data = work.join("data");
    std::fs::create_dir(&data).unwrap();
    site.policy(
        "",
        &format!(
            "    - name: acme-js
      source: {wasm}
      sha256: {sha}
      capabilities:
        files: [{{name: data, path: {data}}}]
  gates:
    prepareSplit:
      - {{name: enough-space, plugin: acme-js, check: free-space, with: {{root: data, min-free-bytes: 1}}}}
",
            wasm = wasm.display(),
            data = data.display(),
        ),
    );
    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Upgrade committed and finished: sim-test runs acme-app 2.4.1."),
        "{}",
        out.stdout
    );
    let log = site.log_text();
    assert!(
        log.contains("acme-js check [check/enough-space]: pass:"),
        "{log}"
    );
}

#[test]
fn building_a_js_plugin_without_the_toolchain_names_the_install_script() {
    let site = Site::new();
    let out = run(duplex()
        .current_dir(site.dir.path())
        .args(["plugin", "new", "acme-js", "--lang", "js"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let empty = site.dir.path().join("no-toolchains");
    let out = run(duplex()
        .current_dir(site.dir.path().join("acme-js"))
        .env("DUPLEX_TOOLCHAINS", &empty)
        .args(["plugin", "build"]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "error: no JavaScript plugin toolchain in {}/js: install it with scripts/install-plugin-toolchain-js.sh",
            empty.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!site.dir.path().join("acme-js/dist").exists());
}

/// policies/js-plugin.yaml pins the plugins as built in plugins/dist (the JS
/// one included: rebuilding it changes its digest, and this fails until the
/// policy pins the new one).
#[test]
fn the_js_plugin_policy_pins_the_built_plugins() {
    let text = std::fs::read_to_string(repo_root().join("policies/js-plugin.yaml")).unwrap();
    for plugin in ["sim-duplex", "sim-checks", "js-file-checks"] {
        let pinned = format!(
            "source: ../plugins/dist/{plugin}.wasm\n      sha256: {}",
            plugin_digest(plugin)
        );
        assert!(
            text.contains(&pinned),
            "policies/js-plugin.yaml does not pin the built {plugin} ({})",
            plugin_digest(plugin)
        );
    }
}

/// The SDK's own logic (tests/js_sdk/sdk.test.mjs), natively with node:
/// parameters, results, logging and the `files`, `storage` and `http`
/// helpers over stand-ins of the imported interfaces (the real imports are
/// proven through the components above).
#[test]
fn the_js_sdks_unit_tests_pass() {
    let dir = repo_root().join("tests/js_sdk");
    let out = run(std::process::Command::new("node").current_dir(&dir).args([
        "--import",
        "./register.mjs",
        "--test",
        "sdk.test.mjs",
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("# pass 5"), "{}", out.stdout);
}
