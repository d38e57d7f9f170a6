//! `duplex plugin push FILE REF`: publishes a plugin component to an OCI
//! registry (through the `duplex-oci` crate) with what its `describe`
//! returns as manifest annotations, and prints the reference pinned by the
//! manifest digest, ready for a policy's `source`.

use super::{Output, exit, fail, load_for_inspection, output, read};
use duplex_core::plugins;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The component (`.wasm`). A `FILE.minisig` beside it (a minisign
    /// signature) is published with it, as the manifest annotation
    /// `dev.duplex.signature.minisign`.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to publish: `oci://REGISTRY[:PORT]/REPOSITORY[:TAG]` (no
    /// digest: the push computes it). Plain HTTP on the loopback only.
    #[arg(value_name = "REF")]
    pub reference: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Pushed {
    file: String,
    /// The reference pinned by the manifest digest: a policy's `source`.
    reference: String,
    manifest_digest: String,
    /// The component's sha256: a policy's `sha256`.
    sha256: String,
    size: u64,
    signed: bool,
    annotations: BTreeMap<String, String>,
}

pub fn run(args: &Args, out: Output) -> u8 {
    let file = args.file.as_path();
    let reference = match duplex_oci::Reference::parse(&args.reference) {
        Ok(r) if r.digest.is_some() => {
            return fail(
                file,
                None,
                format!(
                    "`{}` names a digest: push to `oci://REGISTRY/REPOSITORY[:TAG]`; the digest is what the push prints",
                    args.reference
                ),
                exit::USAGE,
                out,
            );
        }
        Ok(r) => r,
        Err(e) => return fail(file, None, e.to_string(), exit::USAGE, out),
    };
    let bytes = match read(file, out) {
        Ok(b) => b,
        Err(code) => return code,
    };
    let sha256 = plugins::sha256_hex(&bytes);
    // Nothing reaches the registry unless it is a plugin this runner loads.
    let not_pushed = |e: &dyn std::fmt::Display| {
        fail(
            file,
            Some(sha256.clone()),
            format!("not pushed: {e}"),
            exit::INVALID,
            out,
        )
    };
    let plugin = match load_for_inspection(file, &sha256) {
        Ok(p) => p,
        Err(e) => return not_pushed(&e),
    };
    let signature = match read_signature(file) {
        Ok(s) => s,
        Err(e) => return fail(file, Some(sha256.clone()), e, exit::USAGE, out),
    };
    let info = plugin.info();
    let mut annotations = BTreeMap::new();
    let mut note = |k: &str, v: String| {
        annotations.insert(k.to_string(), v);
    };
    note("org.opencontainers.image.title", info.name.clone());
    note(
        "org.opencontainers.image.description",
        info.description.clone(),
    );
    note("org.opencontainers.image.version", info.version.clone());
    note(
        "org.opencontainers.image.created",
        jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string(),
    );
    note("dev.duplex.plugin.contract", plugins::CONTRACT.to_string());
    let names = |v: Vec<String>| v.join(",");
    note(
        "dev.duplex.plugin.checks",
        names(info.checks.iter().map(|c| c.name.clone()).collect()),
    );
    note(
        "dev.duplex.plugin.operations",
        names(info.operations.iter().map(|o| o.op.to_string()).collect()),
    );
    note(
        "dev.duplex.plugin.installers",
        names(info.installers.iter().map(|i| i.name.clone()).collect()),
    );
    note(
        "dev.duplex.plugin.reports-partner",
        info.reports_partner.to_string(),
    );
    if let Some(sig) = &signature {
        note(duplex_oci::SIGNATURE_ANNOTATION, sig.clone());
    }
    let pushed = match duplex_oci::push(&reference, &bytes, &annotations) {
        Ok(p) => p,
        Err(e) => return not_pushed(&e),
    };
    match out {
        Output::Json => output::json_pretty(&Pushed {
            file: file.display().to_string(),
            reference: pushed.reference.to_string(),
            manifest_digest: format!("sha256:{}", pushed.manifest_digest),
            sha256: pushed.sha256.clone(),
            size: bytes.len() as u64,
            signed: signature.is_some(),
            annotations,
        }),
        Output::Human => {
            output::line(&format!(
                "pushed {} {} ({} bytes{}) to {reference}",
                info.name,
                info.version,
                bytes.len(),
                if signature.is_some() {
                    ", with its signature"
                } else {
                    ""
                }
            ));
            output::line("pin it in a policy's plugins:");
            output::line(&format!("  source: {}", pushed.reference));
            output::line(&format!("  sha256: {}", pushed.sha256));
        }
    }
    exit::OK
}

/// The text of `FILE.minisig`, if there is one.
fn read_signature(file: &Path) -> Result<Option<String>, String> {
    let mut path = file.as_os_str().to_owned();
    path.push(".minisig");
    let path = PathBuf::from(path);
    if path.symlink_metadata().is_err() {
        return Ok(None);
    }
    let bytes = duplex_core::files::read_regular(&path, "a signature", 64 << 10)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{} is not text: a minisign signature is", path.display()))
}
