//! The content-addressed cache of pulled plugins.
//!
//! Layout under the store's root: `manifests/sha256/<hex>` (a manifest's
//! bytes, named by their sha256), `blobs/sha256/<hex>` (a component's
//! bytes, named by theirs) and, when the manifest carries a signature,
//! `blobs/sha256/<hex>.minisig` beside the component. Downloads go to
//! `tmp/` and are renamed to their digest's name only once their bytes
//! were verified; the component before its manifest, so a manifest in the
//! cache means its component is there. Reading an entry verifies it again
//! (a manifest and its component are small, and the cache may have been
//! damaged): a damaged entry is pulled again.
//!
//! Trust: a cache entry is code the runner will run, so the store follows
//! the compiled-plugin cache's rules: its directories and files must be
//! owned by the runner's user (or root) and writable by nobody else; files
//! are opened without following symlinks and checked on the open file. The
//! directories above the root are checked by whoever chose it (the plugin
//! host puts the store inside its own checked cache directory).

use crate::trust::owned_and_private;
use crate::{
    CONFIG_MEDIA_TYPE, Error, LAYER_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, MAX_MANIFEST_BYTES, Reference,
    SIGNATURE_ANNOTATION, sha256_hex,
};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A content-addressed cache of manifests and components.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A plugin pulled (or found in the cache): its component's file, verified.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The pinned reference it was pulled for.
    pub reference: Reference,
    /// The component's file in the cache.
    pub path: PathBuf,
    /// The component's sha256 (hex): the manifest's layer digest.
    pub sha256: String,
    pub size: u64,
    /// The manifest's annotations (`org.opencontainers.image.*`,
    /// `dev.duplex.*`).
    pub annotations: BTreeMap<String, String>,
    /// Whether it came from the cache without touching the network.
    pub from_cache: bool,
}

impl Pulled {
    /// The component's minisign signature (the text of a `.minisig` file)
    /// the manifest carried, if any.
    pub fn signature(&self) -> Option<&str> {
        self.annotations
            .get(SIGNATURE_ANNOTATION)
            .map(String::as_str)
    }
}

/// What a manifest says, once checked.
struct Manifest {
    layer: String,
    size: u64,
    annotations: BTreeMap<String, String>,
}

impl Store {
    /// A store rooted at `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn manifest_path(&self, hex: &str) -> PathBuf {
        self.root.join("manifests/sha256").join(hex)
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    /// The plugin `reference` (pinned) names, if the cache holds it intact:
    /// never touches the network.
    pub fn cached(&self, reference: &Reference, max_bytes: u64) -> Result<Option<Pulled>, Error> {
        let hex = reference.pinned()?;
        self.check_dirs(false)?;
        let Some(bytes) = read_trusted(&self.manifest_path(hex), MAX_MANIFEST_BYTES as u64) else {
            return Ok(None);
        };
        if sha256_hex(&bytes) != hex {
            return Ok(None);
        }
        let Ok(manifest) = parse_manifest(&bytes, reference, max_bytes) else {
            return Ok(None);
        };
        let path = self.blob_path(&manifest.layer);
        let Some(component) = read_trusted(&path, max_bytes) else {
            return Ok(None);
        };
        if sha256_hex(&component) != manifest.layer {
            return Ok(None);
        }
        Ok(Some(Pulled {
            reference: reference.clone(),
            path,
            sha256: manifest.layer,
            size: component.len() as u64,
            annotations: manifest.annotations,
            from_cache: true,
        }))
    }

    /// The plugin `reference` (pinned) names: from the cache, else pulled
    /// from its registry, verified and cached. A component larger than
    /// `max_bytes` is refused before it is downloaded (or as soon as it
    /// exceeds the limit, when the registry lied about its size).
    pub fn pull(&self, reference: &Reference, max_bytes: u64) -> Result<Pulled, Error> {
        if let Some(pulled) = self.cached(reference, max_bytes)? {
            return Ok(pulled);
        }
        let hex = reference.pinned()?.to_string();
        self.check_dirs(true)?;
        let tmp = self.root.join("tmp");
        remove_stale(&tmp);
        let client = crate::client(reference);
        let image = oci_client::Reference::with_digest(
            reference.registry.clone(),
            reference.repository.clone(),
            format!("sha256:{hex}"),
        );
        let registry_error = |e: &dyn std::fmt::Display| crate::registry_error(reference, e);
        let (manifest_bytes, manifest, staged) = crate::block_on(async {
            let auth = oci_client::secrets::RegistryAuth::Anonymous;
            let (body, _) = client
                .pull_manifest_raw(&image, &auth, &[MANIFEST_MEDIA_TYPE])
                .await
                .map_err(|e| match e {
                    oci_client::errors::OciDistributionError::DigestError(d) => {
                        Error::Registry {
                            registry: reference.registry.clone(),
                            reference: reference.to_string(),
                            message: format!(
                                "it served a manifest that does not have the pinned digest ({d}); nothing was cached"
                            ),
                        }
                    }
                    e => crate::oci_error(reference, e),
                })?;
            if body.len() > MAX_MANIFEST_BYTES {
                return Err(Error::NotAPlugin {
                    reference: reference.to_string(),
                    why: format!(
                        "its manifest is {} bytes, more than {MAX_MANIFEST_BYTES}",
                        body.len()
                    ),
                });
            }
            let actual = sha256_hex(&body);
            if actual != hex {
                return Err(Error::DigestMismatch {
                    registry: reference.registry.clone(),
                    reference: reference.to_string(),
                    what: "the manifest",
                    expected: hex.clone(),
                    actual,
                });
            }
            let manifest = parse_manifest(&body, reference, max_bytes)?;
            let layer = oci_client::manifest::OciDescriptor {
                media_type: LAYER_MEDIA_TYPE.into(),
                digest: format!("sha256:{}", manifest.layer),
                size: manifest.size as i64,
                ..Default::default()
            };
            let mut sized = client
                .pull_blob_stream(&image, &layer)
                .await
                .map_err(|e| crate::oci_error(reference, e))?;
            if let Some(len) = sized.content_length
                && len > max_bytes
            {
                return Err(Error::TooLarge {
                    reference: reference.to_string(),
                    size: len,
                    limit: max_bytes,
                });
            }
            // The component is not the bytes the manifest names.
            let wrong_component = |actual: String| Error::DigestMismatch {
                registry: reference.registry.clone(),
                reference: reference.to_string(),
                what: "the component",
                expected: manifest.layer.clone(),
                actual,
            };
            let mut staged = Staged::new(&tmp)?;
            let mut hasher = Sha256::new();
            let mut count: u64 = 0;
            while let Some(chunk) = sized.stream.next().await {
                match chunk {
                    Ok(bytes) => {
                        count += bytes.len() as u64;
                        if count > max_bytes {
                            return Err(Error::TooLarge {
                                reference: reference.to_string(),
                                size: count,
                                limit: max_bytes,
                            });
                        }
                        if count > manifest.size {
                            return Err(wrong_component(format!(
                                "(unknown: more than the {} bytes the manifest declares)",
                                manifest.size
                            )));
                        }
                        hasher.update(&bytes);
                        staged.write(&bytes)?;
                    }
                    // oci-client verifies too and ends the stream with an
                    // error on a mismatch: say which bytes were wrong.
                    Err(e) => {
                        let actual = crate::hex(&hasher.clone().finalize());
                        if count == manifest.size && actual != manifest.layer {
                            return Err(wrong_component(actual));
                        }
                        return Err(registry_error(&e));
                    }
                }
            }
            let actual = crate::hex(&hasher.finalize());
            if actual != manifest.layer {
                return Err(wrong_component(actual));
            }
            Ok((body, manifest, staged))
        })?;
        // Verified: name the component, its signature, then the manifest.
        let path = self.blob_path(&manifest.layer);
        staged.persist(&path)?;
        if let Some(sig) = manifest.annotations.get(SIGNATURE_ANNOTATION) {
            let mut s = Staged::new(&tmp)?;
            s.write(sig.as_bytes())?;
            s.persist(&path.with_extension("minisig"))?;
        }
        let mut m = Staged::new(&tmp)?;
        m.write(&manifest_bytes)?;
        m.persist(&self.manifest_path(&hex))?;
        Ok(Pulled {
            reference: reference.clone(),
            path,
            sha256: manifest.layer,
            size: manifest.size,
            annotations: manifest.annotations,
            from_cache: false,
        })
    }

    /// Each of the store's directories is a directory (not a symlink)
    /// owned by this user or root and writable by nobody else; `create`
    /// makes the missing ones.
    fn check_dirs(&self, create: bool) -> Result<(), Error> {
        for dir in [
            self.root.clone(),
            self.root.join("manifests"),
            self.root.join("manifests/sha256"),
            self.root.join("blobs"),
            self.root.join("blobs/sha256"),
            self.root.join("tmp"),
        ] {
            match fs::symlink_metadata(&dir) {
                Ok(meta) => {
                    let untrusted = |why: String| Error::Untrusted {
                        path: dir.clone(),
                        why,
                    };
                    if !meta.file_type().is_dir() {
                        return Err(untrusted("it is not a directory".into()));
                    }
                    owned_and_private(&meta).map_err(|why| {
                        untrusted(format!(
                            "{why}: whoever can write it can replace the plugins this runner runs"
                        ))
                    })?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !create {
                        return Ok(());
                    }
                    fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&dir)
                        .map_err(|source| Error::Io {
                            path: dir.clone(),
                            source,
                        })?;
                }
                Err(source) => return Err(Error::Io { path: dir, source }),
            }
        }
        Ok(())
    }
}

/// Checks a manifest is a Duplex plugin's: an OCI image manifest with the
/// wasm config and exactly one wasm layer, no larger than `max_bytes`.
fn parse_manifest(bytes: &[u8], reference: &Reference, max_bytes: u64) -> Result<Manifest, Error> {
    let bad = |why: String| Error::NotAPlugin {
        reference: reference.to_string(),
        why,
    };
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("its manifest is not JSON: {e}")))?;
    if v["schemaVersion"] != 2 {
        return Err(bad("its manifest's schemaVersion is not 2".into()));
    }
    if let Some(mt) = v.get("mediaType")
        && mt != MANIFEST_MEDIA_TYPE
    {
        return Err(bad(format!(
            "its manifest's media type is {mt}, not {MANIFEST_MEDIA_TYPE}"
        )));
    }
    let config_type = &v["config"]["mediaType"];
    if config_type != CONFIG_MEDIA_TYPE {
        return Err(bad(format!(
            "its config's media type is {config_type}, not {CONFIG_MEDIA_TYPE}"
        )));
    }
    let layers = v["layers"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let wasm: Vec<&serde_json::Value> = layers
        .iter()
        .filter(|l| l["mediaType"] == LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        return Err(bad(format!(
            "its manifest has {} layers of media type {LAYER_MEDIA_TYPE} (of {} layers); a plugin has exactly one",
            wasm.len(),
            layers.len()
        )));
    };
    let digest = layer["digest"].as_str().unwrap_or_default();
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| {
            bad(format!(
                "its layer's digest `{digest}` is not a sha256 digest"
            ))
        })?;
    let size = layer["size"]
        .as_u64()
        .ok_or_else(|| bad("its layer has no size".into()))?;
    if size > max_bytes {
        return Err(Error::TooLarge {
            reference: reference.to_string(),
            size,
            limit: max_bytes,
        });
    }
    let annotations = v["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Manifest {
        layer: hex.to_string(),
        size,
        annotations,
    })
}

/// A file being downloaded into `tmp/`: removed unless persisted.
struct Staged {
    path: PathBuf,
    file: Option<File>,
}

impl Staged {
    fn new(tmp: &Path) -> Result<Staged, Error> {
        for _ in 0..16 {
            let path = tmp.join(format!("{}-{:016x}", std::process::id(), random_u64()));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(Staged {
                        path,
                        file: Some(file),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(source) => return Err(Error::Io { path, source }),
            }
        }
        Err(Error::Io {
            path: tmp.to_path_buf(),
            source: std::io::Error::other("cannot create a temporary file"),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let file = self.file.as_mut().expect("written before persisted");
        file.write_all(bytes).map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes the file to disk and renames it to `to`.
    fn persist(mut self, to: &Path) -> Result<(), Error> {
        let file = self.file.take().expect("persisted once");
        let io = |source| Error::Io {
            path: to.to_path_buf(),
            source,
        };
        file.sync_all().map_err(io)?;
        drop(file);
        fs::rename(&self.path, to).map_err(io)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes downloads left in `tmp/` by a process that died more than a day
/// ago (a live pull renames or removes its own file within its timeouts).
fn remove_stale(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    let day = std::time::Duration::from_secs(24 * 3600);
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > day);
        if old {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// The bytes of `path` if it is a regular file (not a symlink) owned by this
/// user or root, writable by nobody else, of at most `max` bytes.
fn read_trusted(path: &Path, max: u64) -> Option<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() || owned_and_private(&meta).is_err() || meta.len() > max {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= max).then_some(bytes)
}
