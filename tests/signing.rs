//! Plugin signatures and the lock file, through the `duplex` binary:
//! `duplex plugin keygen|sign`, `spec.trustedKeys` and `signedBy` enforced
//! by validate, plan and apply (golden messages, one test per golden file
//! under tests/data/signing/), interoperability with Debian's minisign
//! (installed by scripts/install-test-deps.sh), and `duplex lock`.
//!
//! The key pairs under tests/data/signing/ are test keys, published here on
//! purpose (made with `minisign -G -W`), so the golden messages can name
//! their key IDs.

mod support;
use std::path::{Path, PathBuf};
use support::*;

const VENDOR_PUB: &str = "RWSzIPmnZwUSQ1nK7b+VronWTjPqI9KR66VCSaV8QrE1wx+BteXRAI+w";
const OTHER_PUB: &str = "RWRYYlCRPUcsBzSbpBshXVhtvDuGQIStPcF61O1wKMf8i86s0YCY5yEX";

fn data(name: &str) -> PathBuf {
    repo_root().join("tests/data/signing").join(name)
}

/// A scratch dir with copies of the simulator's plugins (signatures are
/// written beside them, never beside the repository's) and a policy that
/// refers to them by relative paths.
struct Scratch {
    site: Site,
}

impl Scratch {
    fn new() -> Scratch {
        let site = Site::new();
        for name in ["sim-duplex", "sim-checks"] {
            std::fs::copy(
                repo_root().join(format!("plugins/dist/{name}.wasm")),
                site.dir.path().join(format!("{name}.wasm")),
            )
            .unwrap();
        }
        Scratch { site }
    }

    fn dir(&self) -> &Path {
        self.site.dir.path()
    }

    fn path(&self, name: &str) -> String {
        self.dir().join(name).display().to_string()
    }

    /// The policy, with `keys` as its `spec.trustedKeys` block (YAML flow
    /// list) and `signed_by` on sim-checks (a YAML flow list, or "").
    fn policy(&self, keys: &str, signed_by: &str) -> String {
        let root = repo_root();
        let app = root.join("policies/artifacts/acme-app-2.4.1.pkg");
        let signed = if signed_by.is_empty() {
            String::new()
        } else {
            format!("\n      signedBy: {signed_by}")
        };
        let keys = if keys.is_empty() {
            String::new()
        } else {
            format!("  trustedKeys: {keys}\n")
        };
        let text = format!(
            "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata:
  name: signed-upgrade
spec:
  target:
    name: sim-test
    plugin: sim-duplex
    with: {{time-scale: 0}}
  software:
    - name: acme-app
      version: \"2.4.1\"
      source: {app}
      sha256: 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5
  plugins:
    - name: sim-duplex
      source: sim-duplex.wasm
      sha256: {d}
      capabilities: {{storage: true, storageNamespace: sim}}
    - name: sim-checks
      source: sim-checks.wasm
      sha256: {c}
      capabilities: {{storage: true, storageNamespace: sim}}{signed}
{keys}{GATES}",
            app = app.display(),
            d = plugin_digest("sim-duplex"),
            c = plugin_digest("sim-checks"),
        );
        std::fs::write(self.site.policy_path(), text).unwrap();
        self.site.policy_path().display().to_string()
    }

    fn duplex(&self, args: &[&str]) -> Run {
        self.site.duplex(args)
    }

    fn sign(&self, plugin: &str, key: &str) {
        let out = self.duplex(&[
            "plugin",
            "sign",
            &self.path(plugin),
            "--key",
            data(key).to_str().unwrap(),
        ]);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }

    /// What a command said, with the scratch dir's path as `$DIR`.
    fn normalized(&self, text: &str) -> String {
        text.replace(&self.dir().display().to_string(), "$DIR")
    }
}

fn keys(entries: &[(&str, &str)]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|(n, k)| format!("{{name: {n}, publicKey: \"{k}\"}}"))
        .collect();
    format!("[{}]", items.join(", "))
}

/// validate, plan and apply each refuse the policy with exit 1 and the
/// same messages; the golden file holds validate's.
fn refused_everywhere(s: &Scratch, golden: &str) {
    let policy = s.path("policy.yaml");
    let validate = s.duplex(&["validate", &policy]);
    assert_eq!(validate.code, 1, "{}{}", validate.stdout, validate.stderr);
    let messages = s.normalized(&validate.stderr);
    assert_golden(&data(golden), &messages);
    let plan = s.duplex(&["plan", &policy]);
    assert_eq!(plan.code, 1, "{}{}", plan.stdout, plan.stderr);
    assert_eq!(
        s.normalized(&plan.stderr),
        messages,
        "plan says what validate says"
    );
    let apply = s.duplex(&["apply", &policy]);
    assert_eq!(apply.code, 1, "{}{}", apply.stdout, apply.stderr);
    for line in messages.lines() {
        assert!(
            s.normalized(&apply.stderr).contains(line),
            "apply does not say {line:?}:\n{}",
            apply.stderr
        );
    }
    assert_eq!(s.site.records(), "", "nothing was started");
}

#[test]
fn keygen_writes_a_secret_key_readable_only_by_its_owner_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let (sk, pk) = (s.path("k.key"), s.path("k.pub"));
    let out = s.duplex(&["plugin", "keygen", "--secret-key", &sk, "--public-key", &pk]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mode = std::fs::metadata(&sk).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let public = std::fs::read_to_string(&pk).unwrap();
    let line = public.lines().nth(1).unwrap();
    assert!(out.stdout.contains(line), "{}", out.stdout);
    let before = std::fs::read(&sk).unwrap();
    let again = s.duplex(&[
        "plugin",
        "keygen",
        "--secret-key",
        &sk,
        "--public-key",
        &s.path("other.pub"),
    ]);
    assert_eq!(again.code, 1);
    assert!(
        again.stderr.contains("exists; not overwriting a key"),
        "{}",
        again.stderr
    );
    assert_eq!(std::fs::read(&sk).unwrap(), before);
    assert!(!s.dir().join("other.pub").exists());

    // A key made here signs a plugin that a policy trusting it accepts.
    let sign = s.duplex(&["plugin", "sign", &s.path("sim-checks.wasm"), "--key", &sk]);
    assert_eq!(sign.code, 0, "{}", sign.stderr);
    let policy = s.policy(&keys(&[("mine", line)]), "[mine]");
    let ok = s.duplex(&["validate", &policy]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
}

#[test]
fn a_signed_plugin_validates_plans_and_applies_and_the_signature_names_it() {
    let s = Scratch::new();
    s.sign("sim-checks.wasm", "vendor.key");
    let sig = std::fs::read_to_string(s.dir().join("sim-checks.wasm.minisig")).unwrap();
    assert!(
        sig.contains(&format!(
            "trusted comment: plugin:sim-checks.wasm sha256:{}",
            plugin_digest("sim-checks")
        )),
        "{sig}"
    );
    let policy = s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendor]");
    let validate = s.duplex(&["validate", &policy]);
    assert_eq!(validate.code, 0, "{}", validate.stderr);
    let plan = s.duplex(&["plan", &policy]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let apply = s.duplex(&["apply", &policy]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
    assert!(!s.site.records().is_empty(), "a session ran");
}

#[test]
fn an_unsigned_plugin_is_refused() {
    let s = Scratch::new();
    s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendor]");
    refused_everywhere(&s, "unsigned.expected");
}

#[test]
fn a_signature_by_an_untrusted_key_is_refused() {
    let s = Scratch::new();
    s.sign("sim-checks.wasm", "other.key");
    s.policy(
        &keys(&[("vendor", VENDOR_PUB), ("other", OTHER_PUB)]),
        "[vendor]",
    );
    refused_everywhere(&s, "untrusted-key.expected");
}

#[test]
fn a_bad_signature_is_refused() {
    let s = Scratch::new();
    // A signature of other bytes, put beside this plugin.
    s.sign("sim-duplex.wasm", "vendor.key");
    std::fs::rename(
        s.dir().join("sim-duplex.wasm.minisig"),
        s.dir().join("sim-checks.wasm.minisig"),
    )
    .unwrap();
    s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendor]");
    refused_everywhere(&s, "bad-signature.expected");
}

#[test]
fn a_malformed_signature_file_is_refused() {
    let s = Scratch::new();
    std::fs::write(s.dir().join("sim-checks.wasm.minisig"), "not a signature\n").unwrap();
    s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendor]");
    refused_everywhere(&s, "malformed-signature.expected");
}

#[test]
fn an_unknown_key_name_is_refused() {
    let s = Scratch::new();
    s.sign("sim-checks.wasm", "vendor.key");
    s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendr]");
    let out = s.duplex(&["validate", &s.path("policy.yaml")]);
    assert_eq!(out.code, 1);
    assert_golden(&data("unknown-key.expected"), &s.normalized(&out.stderr));
}

#[test]
fn a_malformed_public_key_is_refused() {
    let s = Scratch::new();
    s.sign("sim-checks.wasm", "vendor.key");
    s.policy(
        &keys(&[("vendor", "RWSzIPmnZwUSQ1nK7b+not-a-key")]),
        "[vendor]",
    );
    let out = s.duplex(&["validate", &s.path("policy.yaml")]);
    assert_eq!(out.code, 1);
    assert_golden(&data("malformed-key.expected"), &s.normalized(&out.stderr));
}

/// Our signature verifies with `minisign -V`, and minisign's with us.
#[test]
fn signatures_interoperate_with_minisign() {
    let s = Scratch::new();
    s.sign("sim-checks.wasm", "vendor.key");
    let verified = run(std::process::Command::new("minisign")
        .arg("-V")
        .arg("-p")
        .arg(data("vendor.pub"))
        .arg("-m")
        .arg(s.dir().join("sim-checks.wasm")));
    assert_eq!(
        verified.code, 0,
        "minisign -V refused duplex's signature: {}{}",
        verified.stdout, verified.stderr
    );
    assert!(
        verified
            .stdout
            .contains("Signature and comment signature verified")
    );

    // minisign signs sim-duplex with the `other` key; we verify it.
    let signed = run(std::process::Command::new("minisign")
        .arg("-S")
        .arg("-s")
        .arg(data("other.key"))
        .arg("-t")
        .arg("signed by minisign")
        .arg("-m")
        .arg(s.dir().join("sim-duplex.wasm")));
    assert_eq!(signed.code, 0, "{}{}", signed.stdout, signed.stderr);
    let policy = s.policy(
        &keys(&[("vendor", VENDOR_PUB), ("other", OTHER_PUB)]),
        "[vendor]",
    );
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "      source: sim-duplex.wasm\n",
        "      source: sim-duplex.wasm\n      signedBy: [other]\n",
    );
    std::fs::write(&policy, text).unwrap();
    let out = s.duplex(&["validate", &policy]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock = s.duplex(&["lock", &policy]);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{policy}.lock")).unwrap()).unwrap();
    assert_eq!(lock["plugins"]["sim-duplex"]["signature"]["key"], "other");
    assert_eq!(
        lock["plugins"]["sim-duplex"]["signature"]["keyId"],
        "72C473D91506258"
    );
}

#[test]
fn lock_records_digests_and_signatures_and_a_disagreeing_lock_is_refused() {
    let s = Scratch::new();
    s.sign("sim-checks.wasm", "vendor.key");
    let policy = s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendor]");
    let lock_path = format!("{policy}.lock");

    // No lock file: everything proceeds as before.
    assert_eq!(s.duplex(&["validate", &policy]).code, 0);

    let first = s.duplex(&["lock", &policy]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.stdout, format!("{lock_path}: written\n"));
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    assert_eq!(lock["lockVersion"], 1);
    assert_eq!(lock["policy"], "signed-upgrade");
    assert_eq!(
        lock["plugins"]["sim-checks"],
        serde_json::json!({
            "source": "sim-checks.wasm",
            "sha256": plugin_digest("sim-checks"),
            "signature": {"status": "verified", "key": "vendor", "keyId": "43120567A7F920B3"},
        })
    );
    assert_eq!(
        lock["plugins"]["sim-duplex"]["signature"],
        serde_json::json!({"status": "unsigned"})
    );
    assert_eq!(
        lock["artifacts"]["acme-app"]["sha256"],
        "5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5"
    );
    let again = s.duplex(&["lock", &policy]);
    assert_eq!(again.stdout, format!("{lock_path}: up to date\n"));

    // The lock agrees: validate, plan and apply proceed.
    assert_eq!(s.duplex(&["validate", &policy]).code, 0);
    assert_eq!(s.duplex(&["plan", &policy]).code, 0);

    // The policy changes (sim-duplex now signed and required so): the lock
    // disagrees, everything refuses, naming the field and both values.
    s.sign("sim-duplex.wasm", "vendor.key");
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        "      source: sim-duplex.wasm\n",
        "      source: sim-duplex.wasm\n      signedBy: [vendor]\n",
    );
    std::fs::write(&policy, text).unwrap();
    refused_everywhere(&s, "lock-disagrees.expected");
    let refused = s.duplex(&["lock", &policy]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("run `duplex lock --update"),
        "{}",
        refused.stderr
    );
    let updated = s.duplex(&["lock", "--update", &policy]);
    assert_eq!(updated.code, 0, "{}", updated.stderr);
    assert_eq!(updated.stdout, format!("{lock_path}: updated\n"));
    assert_eq!(s.duplex(&["validate", &policy]).code, 0);
    let apply = s.duplex(&["apply", &policy]);
    assert_eq!(apply.code, 0, "{}{}", apply.stdout, apply.stderr);
}

#[test]
fn a_malformed_lock_file_is_an_error_naming_its_path() {
    let s = Scratch::new();
    let policy = s.policy("", "");
    let lock_path = format!("{policy}.lock");
    std::fs::write(&lock_path, "{\"lockVersion\": 1, \"plugins\": 3}\n").unwrap();
    let validate = s.duplex(&["validate", &policy]);
    assert_eq!(validate.code, 1);
    assert_golden(
        &data("malformed-lock.expected"),
        &s.normalized(&validate.stderr),
    );
    let lock = s.duplex(&["lock", &policy]);
    assert_eq!(lock.code, 1);
    assert!(
        lock.stderr
            .contains(&format!("the lock file {lock_path} is malformed")),
        "{}",
        lock.stderr
    );
    let update = s.duplex(&["lock", "--update", &policy]);
    assert_eq!(update.code, 0, "{}", update.stderr);
    assert_eq!(s.duplex(&["validate", &policy]).code, 0);
}

/// A changed artifact pin and an extra entry in the lock file are each
/// named, with both values; `plan` and `apply` refuse what `validate` does.
#[test]
fn a_lock_file_names_a_changed_artifact_pin_and_a_plugin_the_policy_dropped() {
    let s = Scratch::new();
    let policy = s.policy("", "");
    let lock_path = format!("{policy}.lock");
    assert_eq!(s.duplex(&["lock", &policy]).code, 0);
    // The lock file says acme-app had another digest and lists a plugin
    // the policy does not declare.
    let mut lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&lock_path).unwrap()).unwrap();
    let old = "0000000000000000000000000000000000000000000000000000000000000000";
    lock["artifacts"]["acme-app"]["sha256"] = old.into();
    lock["plugins"]["retired"] = lock["plugins"]["sim-checks"].clone();
    std::fs::write(&lock_path, serde_json::to_string_pretty(&lock).unwrap()).unwrap();
    for verb in ["validate", "plan", "apply"] {
        let out = s.duplex(&[verb, &policy]);
        assert_eq!(out.code, 1, "{verb}: {}", out.stderr);
        let text = s.normalized(&out.stderr);
        assert!(
            text.contains(&format!(
                "spec.software[0].sha256: artifact `acme-app`: sha256 is now \
                 5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5, but {old} in \
                 the lock file $DIR/policy.yaml.lock; if the change is intended, run \
                 `duplex lock --update $DIR/policy.yaml`"
            )),
            "{verb}: {text}"
        );
        assert!(
            text.contains(
                "the lock file $DIR/policy.yaml.lock records plugin `retired`, which the policy \
                 no longer declares"
            ),
            "{verb}: {text}"
        );
    }
    assert_eq!(s.site.records(), "");
    assert_eq!(s.duplex(&["lock", "--update", &policy]).code, 0);
    assert_eq!(s.duplex(&["plan", &policy]).code, 0);
}

/// The lock file is no policy: `duplex validate` of every `*.yaml` beside
/// it does not pick it up, and validating it as a policy says so plainly.
#[test]
fn the_lock_file_is_not_taken_for_a_policy() {
    let s = Scratch::new();
    let policy = s.policy("", "");
    assert_eq!(s.duplex(&["lock", &policy]).code, 0);
    let yaml: Vec<String> = std::fs::read_dir(s.dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    assert_eq!(yaml, ["policy.yaml"]);
    let out = s.duplex(&["validate", &format!("{policy}.lock")]);
    assert_eq!(out.code, 1, "{}", out.stderr);
}

/// The agent refuses what `apply` refuses: a committed policy whose
/// plugin is unsigned starts nothing, nor one whose lock file disagrees;
/// once the signature and an agreeing lock file are committed beside it,
/// the policy runs to the end. The policy file itself never changes: a
/// commit of a signature or a lock file is enough for the agent to try the
/// same policy again.
#[test]
fn the_agent_refuses_an_unsigned_plugin_and_a_disagreeing_lock_then_runs_the_fixed_policy() {
    use support::agent::*;
    let s = Scratch::new();
    let text =
        std::fs::read_to_string(s.policy(&keys(&[("vendor", VENDOR_PUB)]), "[vendor]")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let policies = repo.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    for name in ["sim-duplex.wasm", "sim-checks.wasm"] {
        std::fs::copy(s.dir().join(name), policies.join(name)).unwrap();
    }
    std::fs::write(policies.join("p.yaml"), &text).unwrap();
    git(&repo, &["add", "-A"]);
    git(
        &repo,
        &["commit", "-qm", "a policy whose plugin is unsigned"],
    );
    let agent = start_agent(dir.path(), &repo);
    let sessions = || {
        std::fs::read_dir(agent.state.join("sessions"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let wait_log = |needle: &str| {
        let started = std::time::Instant::now();
        while !agent.log().contains(needle) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(120),
                "the agent never said {needle:?}:\n{}",
                agent.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    wait_log("must be signed by `vendor`, but it is unsigned");
    assert_eq!(sessions(), 0);

    // Signed now, but the committed lock file records another digest for
    // the artifact: still nothing starts.
    let sign = s.duplex(&[
        "plugin",
        "sign",
        policies.join("sim-checks.wasm").to_str().unwrap(),
        "--key",
        data("vendor.key").to_str().unwrap(),
    ]);
    assert_eq!(sign.code, 0, "{}", sign.stderr);
    let policy = policies.join("p.yaml");
    let lock = s.duplex(&["lock", policy.to_str().unwrap()]);
    assert_eq!(lock.code, 0, "{}", lock.stderr);
    let lock_path = policies.join("p.yaml.lock");
    let good_lock = std::fs::read_to_string(&lock_path).unwrap();
    let old = "0000000000000000000000000000000000000000000000000000000000000000";
    std::fs::write(
        &lock_path,
        good_lock.replace(
            "5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5",
            old,
        ),
    )
    .unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "signed, with a stale lock file"]);
    wait_log(&format!("but {old} in the lock file"));
    assert_eq!(sessions(), 0);

    // The lock file agrees (the only change committed): the policy runs to
    // the end.
    std::fs::write(&lock_path, &good_lock).unwrap();
    let up_to_date = s.duplex(&["lock", policy.to_str().unwrap()]);
    assert_eq!(up_to_date.code, 0, "{}", up_to_date.stderr);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "the lock file fixed"]);
    let done = agent.wait_for("the signed, locked policy is achieved", |v| {
        !v["agent"]["achieved"].is_null()
    });
    let ended = done["status"]["session"]["session"]["ended"]
        .as_str()
        .unwrap_or_default();
    assert!(ended.eq_ignore_ascii_case("committed"), "{done}");
}

/// An encrypted (password-protected) minisign key without its password is
/// refused, saying what to do; duplex never prompts. (Signing with
/// `--password-file` runs scrypt with 1 GiB, too heavy for the suite; it
/// was checked by hand against `minisign -V`.)
#[test]
fn an_encrypted_key_without_its_password_is_refused_plainly() {
    let s = Scratch::new();
    let out = s.duplex(&[
        "plugin",
        "sign",
        &s.path("sim-checks.wasm"),
        "--key",
        data("encrypted.key").to_str().unwrap(),
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "encrypted.key: it is encrypted (password-protected): give its password with \
             --password-file, or use an unencrypted key (`duplex plugin keygen`, or `minisign -G -W`)"
        ),
        "{}",
        out.stderr
    );
    assert!(!s.dir().join("sim-checks.wasm.minisig").exists());
}
