//! Plugins from an OCI registry, against a real registry on the loopback
//! (Debian's docker-registry, started by the harness in
//! tests/support/registry.rs): `duplex plugin push`, a policy pinned by the
//! printed reference through `validate` and `apply`, offline use once
//! pulled, a tag alone refused, a registry serving wrong bytes refused with
//! nothing cached, an unknown digest.

mod support;
use support::registry::{CorruptingProxy, Registry};
use support::*;

use std::path::{Path, PathBuf};

/// A test's scratch place with a plugin cache of its own (so what one test
/// pulls is not another's cache hit).
struct Place {
    site: Site,
    cache: tempfile::TempDir,
}

impl Place {
    fn new() -> Place {
        Place {
            site: Site::new(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn cache_dir(&self) -> PathBuf {
        self.cache.path().join("plugins")
    }

    /// `duplex ARGS...` in the scratch dir, with this place's cache and
    /// state dir.
    fn duplex(&self, args: &[&str]) -> Run {
        run(duplex()
            .current_dir(self.site.dir.path())
            .env("DUPLEX_CACHE_DIR", self.cache_dir())
            .env("DUPLEX_OPERATOR", "tester")
            .arg("--state-dir")
            .arg(self.site.state_dir())
            .args(args))
    }

    /// Writes `policy.yaml` (the simulated system) with the two plugins'
    /// sources replaced by `duplex_source` and `checks_source`.
    fn policy(&self, duplex_source: &str, checks_source: &str) -> PathBuf {
        let path = self.site.policy("", "");
        let dist = repo_root().join("plugins/dist");
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace(
                &format!("{}/sim-duplex.wasm", dist.display()),
                duplex_source,
            )
            .replace(
                &format!("{}/sim-checks.wasm", dist.display()),
                checks_source,
            );
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The files in the cache's OCI store (`manifests/...`, `blobs/...`).
    fn cached(&self) -> Vec<String> {
        let root = self.cache_dir().join("oci");
        let mut out = Vec::new();
        for sub in ["manifests/sha256", "blobs/sha256", "tmp"] {
            if let Ok(dir) = std::fs::read_dir(root.join(sub)) {
                for e in dir.flatten() {
                    out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }
}

/// What `duplex plugin push --output json` printed.
struct Pushed {
    reference: String,
    sha256: String,
    manifest: String,
}

fn push(file: &Path, to: &str) -> Pushed {
    let out = duplex_run(&[
        "--output",
        "json",
        "plugin",
        "push",
        file.to_str().unwrap(),
        to,
    ]);
    assert_eq!(out.code, 0, "push: {}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    Pushed {
        reference: v["reference"].as_str().unwrap().to_string(),
        sha256: v["sha256"].as_str().unwrap().to_string(),
        manifest: v["manifestDigest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_string(),
    }
}

fn dist(name: &str) -> PathBuf {
    repo_root().join(format!("plugins/dist/{name}.wasm"))
}

fn golden(name: &str) -> PathBuf {
    repo_root().join(format!("tests/data/oci/{name}"))
}

#[test]
fn push_then_validate_and_apply_then_offline() {
    let mut registry = Registry::start();
    let at = registry.address();
    let d = push(
        &dist("sim-duplex"),
        &format!("oci://{at}/duplex/sim-duplex:0.1.0"),
    );
    let c = push(
        &dist("sim-checks"),
        &format!("oci://{at}/duplex/sim-checks"),
    );
    assert_eq!(d.sha256, plugin_digest("sim-duplex"));
    assert_eq!(c.sha256, plugin_digest("sim-checks"));
    assert!(
        d.reference
            .starts_with(&format!("oci://{at}/duplex/sim-duplex:0.1.0@sha256:"))
    );
    assert_eq!(
        c.reference,
        format!("oci://{at}/duplex/sim-checks@sha256:{}", c.manifest)
    );

    // The human form prints the pinned reference and the component digest.
    let out = duplex_run(&[
        "plugin",
        "push",
        dist("sim-checks").to_str().unwrap(),
        &format!("oci://{at}/duplex/sim-checks:0.1.0"),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.contains(&format!("  sha256: {}", c.sha256)),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "  source: oci://{at}/duplex/sim-checks:0.1.0@sha256:"
        )),
        "{}",
        out.stdout
    );

    let place = Place::new();
    place.policy(&d.reference, &c.reference);
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 0, "validate: {}", out.stderr);
    assert!(
        out.stdout.starts_with("policy.yaml: valid"),
        "{}",
        out.stdout
    );
    // Pulled: both manifests and both components, by digest.
    let mut expected = vec![
        format!("blobs/sha256/{}", c.sha256),
        format!("blobs/sha256/{}", d.sha256),
        format!("manifests/sha256/{}", c.manifest),
        format!("manifests/sha256/{}", d.manifest),
    ];
    expected.sort();
    assert_eq!(place.cached(), expected);

    let out = place.duplex(&["apply", "policy.yaml"]);
    assert_eq!(out.code, 0, "apply: {}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Upgrade committed and finished"),
        "{}",
        out.stdout
    );

    // The registry goes away: what was pulled is used from the cache.
    registry.stop();
    let offline = Place {
        site: Site::new(),
        cache: place.cache,
    };
    offline.policy(&d.reference, &c.reference);
    let out = offline.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 0, "offline validate: {}", out.stderr);
    let out = offline.duplex(&["apply", "policy.yaml"]);
    assert_eq!(out.code, 0, "offline apply: {}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("Upgrade committed and finished"));

    // A cache without them, offline: the error names the registry.
    let cold = Place::new();
    cold.policy(&d.reference, &c.reference);
    let out = cold.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "registry {at} ({}): cannot reach it: ",
            d.reference
        )),
        "{}",
        out.stderr
    );
    assert_eq!(cold.cached(), Vec::<String>::new());
}

/// A tag alone, a malformed reference and a digest that is not the
/// manifest's: placed errors at validate, before any network.
#[test]
fn unpinned_or_malformed_references_are_refused() {
    let place = Place::new();
    place.policy(
        "oci://127.0.0.1:9/duplex/sim-duplex:0.1.0",
        "oci://127.0.0.1:9/Duplex/sim-checks@sha256:abc",
    );
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_golden(&golden("unpinned.expected"), &out.stderr);
}

#[test]
fn wrong_bytes_from_the_registry_are_refused_and_nothing_is_cached() {
    let registry = Registry::start();
    let c = push(
        &dist("sim-checks"),
        &format!("oci://{}/duplex/sim-checks:0.1.0", registry.address()),
    );
    let d = push(
        &dist("sim-duplex"),
        &format!("oci://{}/duplex/sim-duplex:0.1.0", registry.address()),
    );
    let proxy = CorruptingProxy::start(registry.port, &format!("/blobs/sha256:{}", c.sha256));
    let through = |r: &str| r.replace(&registry.address(), &format!("127.0.0.1:{}", proxy.port));
    let place = Place::new();
    place.policy(&through(&d.reference), &through(&c.reference));
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(proxy.corrupted.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    // sim-duplex, served intact, is cached; nothing of sim-checks is, and
    // no partial download is left behind.
    let mut expected = vec![
        format!("blobs/sha256/{}", d.sha256),
        format!("manifests/sha256/{}", d.manifest),
    ];
    expected.sort();
    assert_eq!(place.cached(), expected);
    let stable = out
        .stderr
        .replace(&proxy.port.to_string(), "PORT")
        .replace(&c.manifest, "MANIFEST");
    assert_golden(&golden("wrong-bytes.expected"), &stable);

    // The same reference straight from the registry is fine.
    let direct = Place::new();
    direct.policy(&d.reference, &c.reference);
    let out = direct.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// `plugin inspect` and `plugin verify` take a pinned reference: the
/// component is pulled into the plugin cache (verified), then shown or
/// checked as a file would be; a tag alone is refused before any pull.
#[test]
fn inspect_and_verify_take_a_pinned_reference() {
    let registry = Registry::start();
    let c = push(
        &dist("sim-checks"),
        &format!("oci://{}/duplex/sim-checks:0.1.0", registry.address()),
    );
    let place = Place::new();
    let out = place.duplex(&["--output", "json", "plugin", "inspect", &c.reference]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["file"], c.reference.as_str());
    assert_eq!(v["sha256"], c.sha256.as_str());
    assert_eq!(v["plugin"]["name"], "sim-checks");
    assert!(
        place
            .cached()
            .contains(&format!("blobs/sha256/{}", c.sha256)),
        "{:?}",
        place.cached()
    );

    let ok = place.duplex(&["plugin", "verify", &c.reference, "--sha256", &c.sha256]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert_eq!(
        ok.stdout,
        format!("ok: {} has sha256 {}\n", c.reference, c.sha256)
    );
    let wrong = place.duplex(&[
        "plugin",
        "verify",
        &c.reference,
        "--sha256",
        &"a".repeat(64),
    ]);
    assert_eq!(wrong.code, 1, "{}", wrong.stderr);
    assert!(wrong.stderr.starts_with("mismatch: "), "{}", wrong.stderr);

    let tag = format!("oci://{}/duplex/sim-checks:0.1.0", registry.address());
    let refused = place.duplex(&["plugin", "inspect", &tag]);
    assert_eq!(refused.code, 2, "{}", refused.stdout);
    assert!(refused.stderr.contains("sha256"), "{}", refused.stderr);

    // A digest the registry does not have: exit 1, naming the plugin by
    // its repository.
    let unknown = format!(
        "oci://{}/duplex/sim-checks@sha256:{}",
        registry.address(),
        "0".repeat(64)
    );
    let missing = place.duplex(&["plugin", "inspect", &unknown]);
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    assert!(
        missing.stderr.starts_with("error: plugin `sim-checks`: "),
        "{}",
        missing.stderr
    );
}

#[test]
fn an_unknown_digest_is_a_clear_error() {
    let registry = Registry::start();
    let d = push(
        &dist("sim-duplex"),
        &format!("oci://{}/duplex/sim-duplex:0.1.0", registry.address()),
    );
    let unknown = format!(
        "oci://{}/duplex/sim-checks@sha256:{}",
        registry.address(),
        "0".repeat(64)
    );
    let place = Place::new();
    place.policy(&d.reference, &unknown);
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let stable = out.stderr.replace(&registry.port.to_string(), "PORT");
    assert_golden(&golden("unknown-digest.expected"), &stable);
    assert!(!place.cached().iter().any(|f| f.contains(&"0".repeat(64))));
}

#[test]
fn push_refuses_what_is_not_a_plugin_or_a_pinned_target() {
    // Checked before any network: nothing listens on port 9.
    let sums = repo_root().join("plugins/dist/SHA256SUMS");
    let out = duplex_run(&[
        "plugin",
        "push",
        sums.to_str().unwrap(),
        "oci://127.0.0.1:9/duplex/x",
    ]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert!(
        out.stderr
            .starts_with("error: not pushed: plugin `SHA256SUMS`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("is not a valid WebAssembly component"),
        "{}",
        out.stderr
    );

    let file = dist("sim-checks");
    let out = duplex_run(&[
        "plugin",
        "push",
        file.to_str().unwrap(),
        &format!("oci://127.0.0.1:9/duplex/x@sha256:{}", "0".repeat(64)),
    ]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("names a digest"), "{}", out.stderr);
    let out = duplex_run(&["plugin", "push", file.to_str().unwrap(), "ghcr.io/x/y"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("must start with `oci://`"),
        "{}",
        out.stderr
    );
}

/// A signature beside the file travels in the manifest and comes back
/// from the cache beside the component.
#[test]
fn a_signature_beside_the_file_is_pushed_and_kept_in_the_cache() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim-checks.wasm");
    std::fs::copy(dist("sim-checks"), &file).unwrap();
    let sig = "untrusted comment: signature from minisign secret key\nRWQtest\n";
    std::fs::write(dir.path().join("sim-checks.wasm.minisig"), sig).unwrap();
    let c = push(
        &file,
        &format!("oci://{}/duplex/signed", registry.address()),
    );
    let d = push(
        &dist("sim-duplex"),
        &format!("oci://{}/duplex/sim-duplex", registry.address()),
    );
    let place = Place::new();
    place.policy(&d.reference, &c.reference);
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kept = place
        .cache_dir()
        .join(format!("oci/blobs/sha256/{}.minisig", c.sha256));
    assert_eq!(std::fs::read_to_string(kept).unwrap(), sig);
    let store = duplex_oci::Store::new(place.cache_dir().join("oci"));
    let reference = duplex_oci::Reference::parse_pinned(&c.reference).unwrap();
    let pulled = store.cached(&reference, 64 << 20).unwrap().unwrap();
    assert_eq!(pulled.signature(), Some(sig));
    let unsigned = duplex_oci::Reference::parse_pinned(&d.reference).unwrap();
    assert_eq!(
        store
            .cached(&unsigned, 64 << 20)
            .unwrap()
            .unwrap()
            .signature(),
        None
    );
}

/// An `oci://` source may leave `sha256` to its manifest; when given, it
/// must be the manifest's component. A session started without it
/// records the digests it loaded, so a resume pins the same components.
#[test]
fn sha256_is_optional_for_an_oci_source_and_must_agree_when_given() {
    let registry = Registry::start();
    let at = registry.address();
    let d = push(
        &dist("sim-duplex"),
        &format!("oci://{at}/duplex/sim-duplex"),
    );
    let c = push(
        &dist("sim-checks"),
        &format!("oci://{at}/duplex/sim-checks"),
    );
    let place = Place::new();
    let path = place.policy(&d.reference, &c.reference);
    let without: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&d.sha256) && !l.contains(&c.sha256))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(!without.contains(&d.sha256));
    std::fs::write(&path, &without).unwrap();
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = place.duplex(&["apply", "policy.yaml", "--until", "Split"]);
    assert_eq!(out.code, 6, "{}\n{}", out.stdout, out.stderr);
    let sessions = place.site.state_dir().join("sessions");
    let session = std::fs::read_dir(&sessions)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .unwrap();
    let pins: serde_json::Value =
        serde_json::from_slice(&std::fs::read(session.join("plugins/oci-pins.json")).unwrap())
            .unwrap();
    assert_eq!(pins["sim-duplex"], d.sha256.as_str());
    assert_eq!(pins["sim-checks"], c.sha256.as_str());
    // A digest that is not the manifest's component: refused, placed.
    let wrong = Place::new();
    let path = wrong.policy(&d.reference, &c.reference);
    let text = std::fs::read_to_string(&path).unwrap().replacen(
        &format!("sha256: {}", c.sha256),
        &format!("sha256: {}", d.sha256),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = wrong.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let stable = out
        .stderr
        .replace(&registry.port.to_string(), "PORT")
        .replace(&c.manifest, "MANIFEST");
    assert_golden(&golden("sha256-disagrees.expected"), &stable);

    // Resumed with the registry gone and the OCI store emptied: the
    // session's own copies, pinned by the recorded digests.
    drop(registry);
    std::fs::remove_dir_all(place.cache_dir().join("oci")).unwrap();
    let out = place.duplex(&["resume"]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("Upgrade committed and finished"),
        "{}",
        out.stdout
    );
}

/// A file source still needs its `sha256`.
#[test]
fn a_file_source_without_sha256_is_refused() {
    let place = Place::new();
    let path = place.site.policy("", "");
    let text: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .filter(|l| !l.contains(&plugin_digest("sim-checks")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, text).unwrap();
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    assert_golden(&golden("file-without-sha256.expected"), &out.stderr);
}

/// The store refuses a component over the size limit before downloading
/// it, pulls a damaged entry again, and refuses a store directory others
/// can write.
#[test]
fn the_store_limits_size_and_trusts_only_private_directories() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Registry::start();
    let c = push(
        &dist("sim-checks"),
        &format!("oci://{}/duplex/sim-checks", registry.address()),
    );
    let reference = duplex_oci::Reference::parse_pinned(&c.reference).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = duplex_oci::Store::new(dir.path().join("oci"));
    match store.pull(&reference, 100_000) {
        Err(duplex_oci::Error::TooLarge { size, limit, .. }) => {
            assert_eq!((size, limit), (269_942, 100_000));
        }
        other => panic!("{other:?}"),
    }
    let blobs = dir.path().join("oci/blobs/sha256");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    let pulled = store.pull(&reference, 64 << 20).unwrap();
    assert!(!pulled.from_cache);
    assert_eq!(pulled.sha256, c.sha256);
    assert!(store.pull(&reference, 64 << 20).unwrap().from_cache);

    // A damaged component in the cache is not used: pulled again.
    let mut bytes = std::fs::read(&pulled.path).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(&pulled.path, &bytes).unwrap();
    assert!(store.cached(&reference, 64 << 20).unwrap().is_none());
    let again = store.pull(&reference, 64 << 20).unwrap();
    assert!(!again.from_cache);
    assert_eq!(
        duplex_core::plugins::sha256_hex(&std::fs::read(&again.path).unwrap()),
        c.sha256
    );

    std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = store.pull(&reference, 64 << 20).unwrap_err().to_string();
    assert!(
        err.contains("it is writable by every user (mode 0777)"),
        "{err}"
    );
}

/// A signature pushed with a component is what `signedBy` verifies, and
/// the lock file records the manifest digest and who signed it; a plugin
/// pushed unsigned is refused where the policy requires a signature.
#[test]
fn a_signed_plugin_from_a_registry_is_verified_and_locked() {
    let registry = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sim-checks.wasm");
    std::fs::copy(dist("sim-checks"), &file).unwrap();
    let key = repo_root().join("tests/data/signing/vendor.key");
    let out = duplex_run(&[
        "plugin",
        "sign",
        file.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.code, 0, "sign: {}", out.stderr);
    let c = push(
        &file,
        &format!("oci://{}/duplex/checks:1", registry.address()),
    );
    let d = push(
        &dist("sim-duplex"),
        &format!("oci://{}/duplex/sim-duplex:1", registry.address()),
    );
    let public =
        std::fs::read_to_string(repo_root().join("tests/data/signing/vendor.pub")).unwrap();
    let public = public.lines().nth(1).unwrap();
    let place = Place::new();
    let path = place.policy(&d.reference, &c.reference);
    let require = |who: &str| {
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replacen(
            "spec:\n",
            &format!("spec:\n  trustedKeys:\n    - name: vendor\n      publicKey: {public}\n"),
            1,
        );
        let source = if who == "sim-checks" {
            &c.reference
        } else {
            &d.reference
        };
        let text = text.replacen(
            &format!("source: {source}\n"),
            &format!("source: {source}\n      signedBy: [vendor]\n"),
            1,
        );
        assert!(text.contains("signedBy"), "{text}");
        std::fs::write(&path, text).unwrap();
    };

    require("sim-checks");
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = place.duplex(&["lock", "policy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lock: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path.with_extension("yaml.lock")).unwrap())
            .unwrap();
    let checks = &lock["plugins"]["sim-checks"];
    assert_eq!(checks["ociManifest"], format!("sha256:{}", c.manifest));
    assert_eq!(checks["sha256"], c.sha256.as_str());
    assert_eq!(checks["signature"]["status"], "verified");
    assert_eq!(checks["signature"]["key"], "vendor");
    assert_eq!(
        lock["plugins"]["sim-duplex"]["signature"]["status"],
        "unsigned"
    );
    assert_eq!(
        lock["plugins"]["sim-duplex"]["ociManifest"],
        format!("sha256:{}", d.manifest)
    );
    let out = place.duplex(&["apply", "policy.yaml"]);
    assert_eq!(out.code, 0, "{}", out.stderr);

    // The same policy requiring the unsigned one too.
    std::fs::remove_file(path.with_extension("yaml.lock")).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replacen(
        &format!("source: {}\n", d.reference),
        &format!("source: {}\n      signedBy: [vendor]\n", d.reference),
        1,
    );
    std::fs::write(&path, text).unwrap();
    let out = place.duplex(&["validate", "policy.yaml"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("plugin `sim-duplex` must be signed by `vendor`, but it is unsigned: the registry's manifest"),
        "{}",
        out.stderr
    );
}
