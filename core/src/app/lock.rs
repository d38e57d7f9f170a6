//! Plugin signatures and the lock file: what a policy resolves to now
//! (every plugin's and artifact's digest, each plugin's signature status),
//! checked against the keys the policy trusts and against the lock file
//! committed beside it (`<policy file>.lock`, as Terraform's
//! `.terraform.lock.hcl`).
//!
//! [`check`] is what every front end runs before it uses a policy's
//! plugins (`validate`, `plan`, `apply`, the agent): a plugin whose
//! `signedBy` no valid signature satisfies, or a policy whose lock file
//! disagrees with it, is refused, each problem placed in the policy file.
//! No lock file: nothing to agree with. [`lock`] writes the lock file
//! (`duplex lock`).

use crate::plugins::signature::{self, Signature, TrustedKey, Verdict};
use crate::policy::{Finding, LoadedPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The lock file's format version.
pub const LOCK_VERSION: u32 = 1;

/// What a lock file's name adds to its policy file's (`p.yaml` →
/// `p.yaml.lock`): not `.yaml`, so nothing that looks for policies by
/// their extension takes it for one, and one per policy file.
pub const LOCK_SUFFIX: &str = ".lock";

/// Largest lock file read.
pub const MAX_LOCK_BYTES: u64 = 4 << 20;

/// The lock file of the policy file `policy_file`: `<policy_file>.lock`.
pub fn lock_path(policy_file: &Path) -> PathBuf {
    let mut name = policy_file.as_os_str().to_owned();
    name.push(LOCK_SUFFIX);
    PathBuf::from(name)
}

/// A lock file: what a policy resolved to when it was locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockFile {
    pub lock_version: u32,
    /// The policy's `metadata.name`.
    pub policy: String,
    pub plugins: BTreeMap<String, LockedPlugin>,
    pub artifacts: BTreeMap<String, LockedArtifact>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedPlugin {
    pub source: String,
    pub sha256: String,
    /// The OCI manifest digest an `oci://` source resolved to (none for
    /// file sources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci_manifest: Option<String>,
    pub signature: SignatureStatus,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedArtifact {
    pub source: String,
    pub sha256: String,
}

/// Whether a plugin's signature verified, and with which trusted key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "status",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum SignatureStatus {
    /// No signature verified by a key the policy trusts.
    Unsigned,
    /// A valid signature by the trusted key `key` (its minisign key ID).
    Verified { key: String, key_id: String },
}

impl std::fmt::Display for SignatureStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureStatus::Unsigned => f.write_str("unsigned"),
            SignatureStatus::Verified { key, key_id } => {
                write!(f, "signed by `{key}` (key ID {key_id})")
            }
        }
    }
}

/// Where a plugin entry's component is (a file of the policy, or an
/// `oci://` source found in or pulled into the cache) and the digest it is
/// pinned to, or why it cannot be had: `App` passes
/// `engine::setup::component_source` over its plugin host.
pub type Sources<'a> =
    dyn Fn(&crate::policy::PluginRef) -> Result<crate::engine::setup::ComponentSource, String> + 'a;

/// An `oci://` source's manifest digest (`sha256:<hex>`), for the lock.
fn oci_manifest(source: &str) -> Option<String> {
    if !duplex_oci::is_oci(source) {
        return None;
    }
    duplex_oci::Reference::parse_pinned(source)
        .ok()
        .and_then(|r| r.digest)
        .map(|hex| format!("sha256:{hex}"))
}

/// What a policy resolves to now, and what is wrong with its signatures.
pub struct Resolution {
    pub lock: LockFile,
    pub findings: Vec<Finding>,
}

/// Resolve every plugin and artifact of `policy`, verifying each plugin's
/// signature (through [`signature::signature_text`], the one lookup)
/// against the keys the policy trusts. `strict` (for `duplex lock`): a
/// plugin file that cannot be read or does not match its pin is a finding
/// too (elsewhere the plugin loader says so).
pub fn resolve(policy: &LoadedPolicy, strict: bool, sources: &Sources<'_>) -> Resolution {
    let spec = &policy.policy.spec;
    let keys: Vec<(&str, Option<TrustedKey>)> = spec
        .trusted_keys
        .iter()
        .map(|k| (k.name.as_str(), TrustedKey::parse(&k.public_key).ok()))
        .collect();
    let mut findings = Vec::new();
    let mut plugins = BTreeMap::new();
    for (i, p) in spec.plugins.iter().enumerate() {
        let at = format!("/spec/plugins/{i}/signedBy");
        let pinned = p
            .sha256
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let source = match sources(p) {
            Ok(source) => source,
            Err(why) => {
                if strict {
                    findings.push(Finding::value(format!("/spec/plugins/{i}/source"), why));
                }
                plugins.insert(
                    p.name.clone(),
                    LockedPlugin {
                        source: p.source.clone(),
                        sha256: pinned,
                        oci_manifest: oci_manifest(&p.source),
                        signature: SignatureStatus::Unsigned,
                    },
                );
                continue;
            }
        };
        let path = source.path.clone();
        let bytes = match crate::plugins::read_plugin_file(&path) {
            Ok(bytes) if crate::plugins::sha256_hex(&bytes) == source.sha256 => Some(bytes),
            Ok(bytes) => {
                if strict {
                    findings.push(Finding::value(
                        format!("/spec/plugins/{i}/sha256"),
                        format!(
                            "plugin `{}`: {} has sha256 {}, not the pinned {}",
                            p.name,
                            path.display(),
                            crate::plugins::sha256_hex(&bytes),
                            source.sha256
                        ),
                    ));
                }
                None
            }
            Err(e) => {
                if strict {
                    findings.push(Finding::value(
                        format!("/spec/plugins/{i}/source"),
                        format!("plugin `{}`: cannot read {}: {e}", p.name, path.display()),
                    ));
                }
                None
            }
        };
        let status = match &bytes {
            Some(bytes) => match status(p, &path, bytes, &keys) {
                Ok(status) => status,
                Err(message) => {
                    findings.push(Finding::value(at, message));
                    SignatureStatus::Unsigned
                }
            },
            None => SignatureStatus::Unsigned,
        };
        plugins.insert(
            p.name.clone(),
            LockedPlugin {
                source: p.source.clone(),
                sha256: source.sha256,
                oci_manifest: oci_manifest(&p.source),
                signature: status,
            },
        );
    }
    let artifacts = spec
        .software
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                LockedArtifact {
                    source: s.source.clone(),
                    sha256: s.sha256.to_string(),
                },
            )
        })
        .collect();
    Resolution {
        lock: LockFile {
            lock_version: LOCK_VERSION,
            policy: policy.policy.metadata.name.clone(),
            plugins,
            artifacts,
        },
        findings,
    }
}

/// A plugin's signature status, or why its `signedBy` is not satisfied.
fn status(
    p: &crate::policy::PluginRef,
    path: &Path,
    bytes: &[u8],
    keys: &[(&str, Option<TrustedKey>)],
) -> Result<SignatureStatus, String> {
    let required = !p.signed_by.is_empty();
    let sig_path = signature::signature_path(path);
    let text = match signature::signature_text(path) {
        Ok(Some(text)) => text,
        Ok(None) if required && duplex_oci::is_oci(&p.source) => {
            return Err(format!(
                "plugin `{}` must be signed by {}, but it is unsigned: the registry's manifest \
                 for {} carries no `{}` annotation (sign the file with `duplex plugin sign FILE \
                 --key SECRET_KEY`, then push it again: the signature travels with it)",
                p.name,
                names(&p.signed_by),
                p.source,
                duplex_oci::SIGNATURE_ANNOTATION
            ));
        }
        Ok(None) if required => {
            return Err(format!(
                "plugin `{}` must be signed by {}, but it is unsigned: there is no {} beside {} \
                 (sign it with `duplex plugin sign {} --key SECRET_KEY`)",
                p.name,
                names(&p.signed_by),
                sig_path.display(),
                path.display(),
                path.display()
            ));
        }
        Ok(None) => return Ok(SignatureStatus::Unsigned),
        Err(why) if required => {
            return Err(format!(
                "plugin `{}` must be signed by {}, but its signature cannot be read: {why}",
                p.name,
                names(&p.signed_by)
            ));
        }
        Err(_) => return Ok(SignatureStatus::Unsigned),
    };
    let sig = match Signature::parse(&text) {
        Ok(sig) => sig,
        Err(why) if required => {
            return Err(format!(
                "plugin `{}` must be signed by {}, but {} is malformed: {why}",
                p.name,
                names(&p.signed_by),
                sig_path.display()
            ));
        }
        Err(_) => return Ok(SignatureStatus::Unsigned),
    };
    let key_of = |name: &str| {
        keys.iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, k)| k.as_ref())
    };
    let candidates: Vec<&str> = if required {
        p.signed_by.iter().map(String::as_str).collect()
    } else {
        keys.iter().map(|(n, _)| *n).collect()
    };
    let mut bad = None;
    for name in &candidates {
        let Some(key) = key_of(name) else { continue };
        match sig.verify(bytes, key) {
            Verdict::Valid { .. } => {
                return Ok(SignatureStatus::Verified {
                    key: name.to_string(),
                    key_id: key.key_id(),
                });
            }
            Verdict::Bad => bad = Some((*name, key.key_id())),
            Verdict::OtherKey { .. } => {}
        }
    }
    if !required {
        return Ok(SignatureStatus::Unsigned);
    }
    if let Some((name, id)) = bad {
        return Err(format!(
            "plugin `{}`: bad signature: {} is by trusted key `{name}` (key ID {id}) but does not \
             verify over {}: the component or its signature changed after signing",
            p.name,
            sig_path.display(),
            path.display()
        ));
    }
    let by = sig.key_id();
    let elsewhere = keys
        .iter()
        .find(|(_, k)| k.as_ref().is_some_and(|k| k.key_id() == by))
        .map(|(n, _)| format!(" (the policy trusts it as `{n}`, but not for this plugin)"))
        .unwrap_or_default();
    let wanted: Vec<String> = p
        .signed_by
        .iter()
        .filter_map(|n| key_of(n).map(|k| format!("`{n}` (key ID {})", k.key_id())))
        .collect();
    Err(format!(
        "plugin `{}`: {} is signed by key ID {by}, an untrusted key{elsewhere}; it must be \
         signed by {}",
        p.name,
        sig_path.display(),
        if wanted.is_empty() {
            names(&p.signed_by)
        } else {
            wanted.join(" or ")
        }
    ))
}

fn names(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// Read a lock file: `None` when there is none.
pub fn read_lock(path: &Path) -> Result<Option<LockFile>, String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "the lock file {} cannot be read: {e}",
                path.display()
            ));
        }
        Ok(_) => {}
    }
    let bytes = crate::files::read_regular(path, "a lock file", MAX_LOCK_BYTES)
        .map_err(|e| format!("the lock file {} cannot be read: {e}", path.display()))?;
    let lock: LockFile = serde_json::from_slice(&bytes).map_err(|e| {
        format!(
            "the lock file {} is malformed: {e}; fix it, or write it again with `duplex lock --update`",
            path.display()
        )
    })?;
    if lock.lock_version != LOCK_VERSION {
        return Err(format!(
            "the lock file {} has lockVersion {}; this duplex reads lockVersion {LOCK_VERSION}",
            path.display(),
            lock.lock_version
        ));
    }
    Ok(Some(lock))
}

/// Where `now` (what the policy resolves to) disagrees with `locked` (the
/// lock file at `path`), each difference placed in the policy.
pub fn differences(
    policy: &LoadedPolicy,
    now: &LockFile,
    locked: &LockFile,
    path: &Path,
) -> Vec<Finding> {
    let spec = &policy.policy.spec;
    let file = policy.file.display();
    let update = format!(
        "if the change is intended, run `duplex lock --update {file}` and commit {}",
        path.display()
    );
    let differs = |what: &str, name: &str, field: &str, locked: &str, now: &str| {
        format!(
            "{what} `{name}`: {field} is now {now}, but {locked} in the lock file {}; {update}",
            path.display()
        )
    };
    let mut out = Vec::new();
    if now.policy != locked.policy {
        out.push(Finding::value(
            "/metadata/name",
            differs(
                "policy",
                &now.policy,
                "the name",
                &locked.policy,
                &now.policy,
            ),
        ));
    }
    for (i, p) in spec.plugins.iter().enumerate() {
        let at = |field: &str| format!("/spec/plugins/{i}/{field}");
        let current = &now.plugins[&p.name];
        let Some(was) = locked.plugins.get(&p.name) else {
            out.push(Finding::value(
                at("name"),
                format!(
                    "plugin `{}` is not in the lock file {}; {update}",
                    p.name,
                    path.display()
                ),
            ));
            continue;
        };
        if current.source != was.source {
            out.push(Finding::value(
                at("source"),
                differs("plugin", &p.name, "source", &was.source, &current.source),
            ));
        }
        if current.sha256 != was.sha256 {
            out.push(Finding::value(
                at("sha256"),
                differs("plugin", &p.name, "sha256", &was.sha256, &current.sha256),
            ));
        }
        if current.oci_manifest != was.oci_manifest {
            let show = |m: &Option<String>| m.clone().unwrap_or_else(|| "none".into());
            out.push(Finding::value(
                at("source"),
                differs(
                    "plugin",
                    &p.name,
                    "the OCI manifest digest",
                    &show(&was.oci_manifest),
                    &show(&current.oci_manifest),
                ),
            ));
        }
        if current.signature != was.signature {
            let field = if p.signed_by.is_empty() {
                "name"
            } else {
                "signedBy"
            };
            out.push(Finding::value(
                at(field),
                differs(
                    "plugin",
                    &p.name,
                    "its signature status",
                    &was.signature.to_string(),
                    &current.signature.to_string(),
                ),
            ));
        }
    }
    for (i, s) in spec.software.iter().enumerate() {
        let at = |field: &str| format!("/spec/software/{i}/{field}");
        let current = &now.artifacts[&s.name];
        let Some(was) = locked.artifacts.get(&s.name) else {
            out.push(Finding::value(
                at("name"),
                format!(
                    "artifact `{}` is not in the lock file {}; {update}",
                    s.name,
                    path.display()
                ),
            ));
            continue;
        };
        if current.source != was.source {
            out.push(Finding::value(
                at("source"),
                differs("artifact", &s.name, "source", &was.source, &current.source),
            ));
        }
        if current.sha256 != was.sha256 {
            out.push(Finding::value(
                at("sha256"),
                differs("artifact", &s.name, "sha256", &was.sha256, &current.sha256),
            ));
        }
    }
    for name in locked
        .plugins
        .keys()
        .filter(|n| !now.plugins.contains_key(*n))
    {
        out.push(Finding::value(
            "/spec/plugins",
            format!(
                "the lock file {} records plugin `{name}`, which the policy no longer declares; {update}",
                path.display()
            ),
        ));
    }
    for name in locked
        .artifacts
        .keys()
        .filter(|n| !now.artifacts.contains_key(*n))
    {
        out.push(Finding::value(
            "/spec/software",
            format!(
                "the lock file {} records artifact `{name}`, which the policy no longer lists; {update}",
                path.display()
            ),
        ));
    }
    out
}

/// What every front end checks before using a policy's plugins: each
/// plugin's required signature, and agreement with the lock file beside
/// the policy (when there is one). Each problem placed in the policy.
pub fn check(policy: &LoadedPolicy, sources: &Sources<'_>) -> Vec<Finding> {
    let path = lock_path(&policy.file);
    let locked = read_lock(&path);
    let required = policy
        .policy
        .spec
        .plugins
        .iter()
        .any(|p| !p.signed_by.is_empty());
    if !required && matches!(locked, Ok(None)) {
        // No signature required, no lock file: nothing to read (as before both existed).
        return Vec::new();
    }
    let Resolution { lock, mut findings } = resolve(policy, false, sources);
    match locked {
        Ok(None) => {}
        Ok(Some(locked)) => findings.extend(differences(policy, &lock, &locked, &path)),
        Err(why) => findings.push(Finding::value("/metadata/name", why)),
    }
    findings
}

/// What [`lock`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locked {
    /// There was no lock file; it was written.
    Written(PathBuf),
    /// The lock file already agreed; it was left as it was.
    UpToDate(PathBuf),
    /// The lock file disagreed (or was malformed) and `update` rewrote it.
    Updated(PathBuf),
}

/// Why [`lock`] wrote nothing.
#[derive(Debug)]
pub enum LockRefused {
    /// Problems placed in the policy (signatures, unreadable plugins, or
    /// a lock file that disagrees without `update`).
    Findings(Vec<Finding>),
    /// The lock file is unreadable or malformed (and no `update`).
    Unusable(String),
    /// Writing it failed.
    Write(String),
}

/// Write the lock file of `policy` (`duplex lock`): what the policy
/// resolves to now. An existing lock file that disagrees (or is malformed)
/// is replaced only with `update`.
pub fn lock(
    policy: &LoadedPolicy,
    update: bool,
    sources: &Sources<'_>,
) -> Result<Locked, LockRefused> {
    let Resolution { lock, findings } = resolve(policy, true, sources);
    if !findings.is_empty() {
        return Err(LockRefused::Findings(findings));
    }
    let path = lock_path(&policy.file);
    let existed = match read_lock(&path) {
        Ok(Some(locked)) if locked == lock => return Ok(Locked::UpToDate(path)),
        Ok(Some(locked)) if !update => {
            return Err(LockRefused::Findings(differences(
                policy, &lock, &locked, &path,
            )));
        }
        Ok(Some(_)) => true,
        Ok(None) => false,
        Err(why) if !update => return Err(LockRefused::Unusable(why)),
        Err(_) => true,
    };
    let mut text = serde_json::to_string_pretty(&lock).expect("a lock file serializes");
    text.push('\n');
    let tmp = {
        let mut name = path.as_os_str().to_owned();
        name.push(".tmp");
        PathBuf::from(name)
    };
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            LockRefused::Write(format!("cannot write {}: {e}", path.display()))
        })?;
    Ok(if existed {
        Locked::Updated(path)
    } else {
        Locked::Written(path)
    })
}
