//! Duplex plugins distributed through OCI registries: the one place that
//! speaks the registry protocol (through the `oci-client` crate).
//!
//! - [`Reference`]: an `oci://` reference (registry, repository, optional
//!   tag) pinned by the manifest digest.
//! - [`Store`]: a content-addressed cache of manifests and components
//!   (`manifests/sha256/<hex>`, `blobs/sha256/<hex>`), filled by
//!   [`Store::pull`]: the manifest by its digest and the component by the
//!   digest the manifest names, each verified (sha256 over the bytes as they
//!   arrive, size-limited) before it gets its name in the cache, so a
//!   mismatch leaves nothing behind. A reference whose manifest is in the
//!   cache never touches the network.
//! - [`push`]: publishes a component as Kubewarden publishes a policy: an
//!   OCI image manifest with config `application/vnd.wasm.config.v0+json`,
//!   one layer `application/vnd.wasm.content.layer.v1+wasm`, and the
//!   metadata as manifest annotations.
//!
//! Registries on the loopback (`localhost`, `127.0.0.0/8`, `::1`) are spoken
//! to over plain HTTP, every other one over HTTPS. Access is anonymous.
//!
//! The API is synchronous: each call runs its own single-threaded tokio
//! runtime on a thread of its own, so it may be called from anywhere,
//! inside another runtime included. Nothing here prints, reads the
//! environment or exits.

mod reference;
mod store;
pub mod trust;

pub use reference::{Reference, ReferenceError, SCHEME, is_oci};
pub use store::{Pulled, Store};

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The manifest media type pushed and accepted.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config media type of a wasm artifact (as Kubewarden's).
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the one layer: the component's bytes.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.wasm.content.layer.v1+wasm";
/// The manifest annotation carrying the component's minisign signature
/// (the text of `<file>.minisig`), when it was pushed with one.
pub const SIGNATURE_ANNOTATION: &str = "dev.duplex.signature.minisign";
/// Largest manifest accepted (the OCI distribution spec's recommended
/// minimum a registry must accept).
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// Why a pull or a push failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error(
        "a plugin from a registry is kept in the plugin cache once pulled, and this runner has no plugin cache"
    )]
    NoCache,
    #[error("cannot use {} as the OCI cache: {why}", path.display())]
    Untrusted { path: PathBuf, why: String },
    #[error("OCI cache {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("registry {registry} ({reference}): {message}")]
    Registry {
        registry: String,
        reference: String,
        message: String,
    },
    #[error(
        "registry {registry} served wrong bytes for {what} of {reference}: expected sha256:{expected}, got sha256:{actual}; nothing was cached"
    )]
    DigestMismatch {
        registry: String,
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("{reference} is not a Duplex plugin artifact: {why}")]
    NotAPlugin { reference: String, why: String },
    #[error(
        "the component of {reference} is {size} bytes, more than the limit of {limit} bytes for a plugin"
    )]
    TooLarge {
        reference: String,
        size: u64,
        limit: u64,
    },
}

/// What [`push`] published.
#[derive(Debug, Clone)]
pub struct Pushed {
    /// The reference pinned by the manifest digest.
    pub reference: Reference,
    /// The component's sha256 (hex): the layer digest, what a policy pins.
    pub sha256: String,
    /// The manifest's sha256 (hex).
    pub manifest_digest: String,
}

/// Publishes `component` at `reference` (its tag, or only by digest when it
/// has none; a digest given in `reference` is refused) with `annotations`
/// on the manifest.
pub fn push(
    reference: &Reference,
    component: &[u8],
    annotations: &BTreeMap<String, String>,
) -> Result<Pushed, Error> {
    if reference.digest.is_some() {
        return Err(Error::Reference(ReferenceError::Malformed {
            reference: reference.to_string(),
            why: "a reference to push to names a repository and optionally a tag, not a digest (the digest is what the push computes)".into(),
        }));
    }
    let layer_hex = sha256_hex(component);
    let config = br#"{"architecture":"wasm","os":"wasip2"}"#;
    let config_hex = sha256_hex(config);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": format!("sha256:{config_hex}"),
            "size": config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": format!("sha256:{layer_hex}"),
            "size": component.len(),
        }],
        "annotations": annotations,
    });
    let body = serde_json::to_vec(&manifest).map_err(|e| registry_error(reference, e))?;
    let manifest_hex = sha256_hex(&body);
    let pinned = reference.with_digest(&manifest_hex);
    let image = match &reference.tag {
        Some(tag) => oci_client::Reference::with_tag(
            reference.registry.clone(),
            reference.repository.clone(),
            tag.clone(),
        ),
        None => oci_client::Reference::with_digest(
            reference.registry.clone(),
            reference.repository.clone(),
            format!("sha256:{manifest_hex}"),
        ),
    };
    let client = client(reference);
    let component = component.to_vec();
    block_on(async move {
        let auth = oci_client::secrets::RegistryAuth::Anonymous;
        client
            .store_auth_if_needed(image.resolve_registry(), &auth)
            .await;
        client
            .push_blob(&image, component, &format!("sha256:{layer_hex}"))
            .await
            .map_err(|e| oci_error(reference, e))?;
        client
            .push_blob(&image, config.to_vec(), &format!("sha256:{config_hex}"))
            .await
            .map_err(|e| oci_error(reference, e))?;
        client
            .push_manifest_raw(
                &image,
                body,
                http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(|e| oci_error(reference, e))?;
        Ok(Pushed {
            reference: pinned,
            sha256: layer_hex,
            manifest_digest: manifest_hex,
        })
    })
}

/// A client for `reference`'s registry: plain HTTP on the loopback only.
fn client(reference: &Reference) -> oci_client::Client {
    use oci_client::client::{ClientConfig, ClientProtocol};
    oci_client::Client::new(ClientConfig {
        protocol: if reference.is_loopback() {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(Duration::from_secs(15)),
        read_timeout: Some(Duration::from_secs(60)),
        // An index would pick a platform's image: a plugin has none.
        platform_resolver: None,
        ..ClientConfig::default()
    })
}

fn registry_error(reference: &Reference, e: impl std::fmt::Display) -> Error {
    Error::Registry {
        registry: reference.registry.clone(),
        reference: reference.to_string(),
        message: e.to_string(),
    }
}

/// What went wrong talking to `reference`'s registry, in words: what the
/// registry said it lacks, or why it could not be reached.
fn oci_error(reference: &Reference, e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode as C};
    let what = match &reference.digest {
        Some(d) => format!("manifest sha256:{d}"),
        None => "manifest".to_string(),
    };
    let message = match &e {
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| e.code == C::ManifestUnknown) =>
        {
            format!(
                "it has no {what} in repository `{}` (pin the reference `duplex plugin push` printed)",
                reference.repository
            )
        }
        E::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| e.code == C::NameUnknown) =>
        {
            format!("it has no repository `{}`", reference.repository)
        }
        E::ImageManifestNotFoundError(_) => {
            format!("it has no {what} in repository `{}`", reference.repository)
        }
        E::UnauthorizedError { .. } => {
            "it refuses anonymous access (Duplex pulls and pushes anonymously)".to_string()
        }
        E::RequestError(r) => {
            let mut text = format!("cannot reach it: {r}");
            let mut source = std::error::Error::source(r);
            while let Some(s) = source {
                text.push_str(&format!(": {s}"));
                source = s.source();
            }
            text
        }
        other => other.to_string(),
    };
    registry_error(reference, message)
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own
/// (so a caller already inside a runtime is not blocked in it).
fn block_on<T: Send>(f: impl Future<Output = Result<T, Error>> + Send) -> Result<T, Error> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::Registry {
                    registry: String::new(),
                    reference: String::new(),
                    message: format!("cannot start the network runtime: {e}"),
                })?;
            rt.block_on(f)
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::Registry {
                registry: String::new(),
                reference: String::new(),
                message: "the registry client panicked".into(),
            })
        })
    })
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
