//! `duplex plugin keygen` and `duplex plugin sign FILE --key SECRET_KEY`:
//! minisign-compatible keys and detached signatures (`FILE.minisig`).

use super::{Output, exit, output};
use duplex_core::plugins::{self, signature};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the secret key (mode 0600; never overwritten).
    #[arg(long, value_name = "FILE", default_value = "duplex.key")]
    pub secret_key: PathBuf,
    /// Where to write the public key (never overwritten).
    #[arg(long, value_name = "FILE", default_value = "duplex.pub")]
    pub public_key: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The plugin component to sign; the signature is written beside it as FILE.minisig.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The minisign secret key file (`duplex plugin keygen`, or `minisign -G`).
    #[arg(long, value_name = "SECRET_KEY")]
    pub key: PathBuf,
    /// A file holding the password of an encrypted secret key (its first line).
    /// Unencrypted keys (`duplex plugin keygen`, `minisign -G -W`) need none.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
}

pub fn keygen(args: &KeygenArgs, format: Output) -> u8 {
    for path in [&args.secret_key, &args.public_key] {
        if std::fs::symlink_metadata(path).is_ok() {
            output::eline(&format!(
                "error: {} exists; not overwriting a key (choose other paths with --secret-key/--public-key)",
                path.display()
            ));
            return exit::INVALID;
        }
    }
    let (secret, public) = match signature::generate_keypair("duplex plugin signing key") {
        Ok(pair) => pair,
        Err(e) => {
            output::eline(&format!("error: cannot generate a key pair: {e}"));
            return exit::INVALID;
        }
    };
    if let Err(e) = write_new(&args.secret_key, &secret, 0o600) {
        output::eline(&format!(
            "error: cannot write {}: {e}",
            args.secret_key.display()
        ));
        return exit::USAGE;
    }
    if let Err(e) = write_new(&args.public_key, &public, 0o644) {
        let _ = std::fs::remove_file(&args.secret_key);
        output::eline(&format!(
            "error: cannot write {}: {e}",
            args.public_key.display()
        ));
        return exit::USAGE;
    }
    let line = signature::public_key_line(&public).unwrap_or_default();
    let key_id = signature::TrustedKey::parse(&line)
        .map(|k| k.key_id())
        .unwrap_or_default();
    match format {
        Output::Json => output::json_pretty(&serde_json::json!({
            "secretKey": args.secret_key.display().to_string(),
            "publicKey": args.public_key.display().to_string(),
            "publicKeyLine": line,
            "keyId": key_id,
        })),
        Output::Human => {
            output::line(&format!(
                "secret key: {} (mode 0600, unencrypted: keep it secret)",
                args.secret_key.display()
            ));
            output::line(&format!("public key: {}", args.public_key.display()));
            output::line(&format!("key ID: {key_id}"));
            output::line("");
            output::line("Trust it in a policy:");
            output::line("  trustedKeys:");
            output::line(&format!("    - name: my-key\n      publicKey: {line}"));
        }
    }
    exit::OK
}

/// Create `path` with `text`, failing if it exists.
fn write_new(path: &Path, text: &str, mode: u32) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

pub fn sign(args: &SignArgs, format: Output) -> u8 {
    let bytes = match plugins::read_plugin_file(&args.file) {
        Ok(bytes) => bytes,
        Err(e) => {
            output::eline(&format!("error: cannot read {}: {e}", args.file.display()));
            return exit::USAGE;
        }
    };
    let key_text = match std::fs::read_to_string(&args.key) {
        Ok(text) => text,
        Err(e) => {
            output::eline(&format!(
                "error: cannot read the secret key {}: {e}",
                args.key.display()
            ));
            return exit::USAGE;
        }
    };
    let password = match &args.password_file {
        None => None,
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => Some(text.lines().next().unwrap_or_default().to_string()),
            Err(e) => {
                output::eline(&format!(
                    "error: cannot read the password file {}: {e}",
                    p.display()
                ));
                return exit::USAGE;
            }
        },
    };
    let key = match signature::secret_key(&key_text, password) {
        Ok(key) => key,
        Err(why) => {
            output::eline(&format!(
                "error: the secret key {}: {why}",
                args.key.display()
            ));
            return exit::INVALID;
        }
    };
    let sha256 = plugins::sha256_hex(&bytes);
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let comment = format!("plugin:{name} sha256:{sha256}");
    let text = match signature::sign(&key, &bytes, &comment) {
        Ok(text) => text,
        Err(e) => {
            output::eline(&format!("error: cannot sign {}: {e}", args.file.display()));
            return exit::INVALID;
        }
    };
    let out = signature::signature_path(&args.file);
    if let Err(e) = std::fs::write(&out, text) {
        output::eline(&format!("error: cannot write {}: {e}", out.display()));
        return exit::USAGE;
    }
    let key_id = signature::secret_key_id(&key);
    match format {
        Output::Json => output::json_pretty(&serde_json::json!({
            "file": args.file.display().to_string(),
            "signature": out.display().to_string(),
            "sha256": sha256,
            "keyId": key_id,
            "trustedComment": comment,
        })),
        Output::Human => output::line(&format!(
            "{}: signed by key ID {key_id} (sha256 {sha256})",
            out.display()
        )),
    }
    exit::OK
}
