//! Plugin signatures: minisign-compatible detached ed25519 signatures
//! (<https://jedisct1.github.io/minisign/>). A signature covers the
//! component's bytes and lives beside it as `<file>.minisig`; a policy
//! trusts public keys by name (`spec.trustedKeys`) and requires, per plugin,
//! a valid signature from one of them (`signedBy`).
//!
//! Where a plugin's signature text comes from is one function,
//! [`signature_text`]: for a file source, the text of `<file>.minisig`.
//! Every check goes through it, so another kind of source (a pulled OCI
//! blob, whose signature travels in a manifest annotation) needs only a
//! case there.
//!
//! Pure apart from [`signature_text`] reading a file: no printing (the
//! minisign crate is always called quiet), no password prompts.

use minisign::{PublicKey, PublicKeyBox, SecretKey, SecretKeyBox, SignatureBox};
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// What a signature file's name adds to the signed file's (minisign's).
pub const SIGNATURE_SUFFIX: &str = ".minisig";

/// Largest signature file read (a minisign signature is about 300 bytes
/// plus its trusted comment).
pub const MAX_SIGNATURE_BYTES: u64 = 64 * 1024;

/// Where the signature of the file `file` lives: `<file>.minisig`.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(SIGNATURE_SUFFIX);
    PathBuf::from(name)
}

/// THE signature lookup: the signature text for a resolved plugin source,
/// `None` when it carries none. For a file source, the text of
/// `<file>.minisig` beside it; for an `oci://` source, the path is the
/// component in the cache, beside which the pull stored the manifest's
/// `dev.duplex.signature.minisign` annotation under the same name.
pub fn signature_text(source: &Path) -> Result<Option<String>, String> {
    let path = signature_path(source);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        Ok(_) => {}
    }
    let bytes = crate::files::read_regular(&path, "a signature file", MAX_SIGNATURE_BYTES)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// A public key as a policy gives it: minisign's base64 line (`RW…`, the
/// second line of a `.pub` file).
#[derive(Debug, Clone)]
pub struct TrustedKey {
    key: PublicKey,
}

impl TrustedKey {
    pub fn parse(text: &str) -> Result<TrustedKey, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the public key is empty: give minisign's base64 line (RW…)".into());
        }
        PublicKey::from_base64(text)
            .map(|key| TrustedKey { key })
            .map_err(|_| {
                format!(
                    "`{}` is not a minisign ed25519 public key: give the base64 line (RW…, 56 \
                     characters) of the key's .pub file",
                    short(text)
                )
            })
    }

    /// The key ID minisign prints (16 upper-case hex digits).
    pub fn key_id(&self) -> String {
        key_id_hex(self.key.keynum())
    }
}

/// What a signature says about some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It verifies with the key (and its trusted comment with it).
    Valid { trusted_comment: String },
    /// It was made by another key (its ID).
    OtherKey { key_id: String },
    /// It names this key but does not verify: the bytes or the signature changed.
    Bad,
}

/// A parsed signature file.
pub struct Signature {
    sig: SignatureBox,
}

impl Signature {
    pub fn parse(text: &str) -> Result<Signature, String> {
        SignatureBox::from_string(text)
            .map(|sig| Signature { sig })
            .map_err(|e| format!("it is not a minisign signature ({e})"))
    }

    /// The ID of the key that made it.
    pub fn key_id(&self) -> String {
        key_id_hex(self.sig.keynum())
    }

    /// Whether it is a valid signature of `bytes` by `key`. Legacy
    /// (non-prehashed) signatures are accepted, as `minisign -V` does.
    pub fn verify(&self, bytes: &[u8], key: &TrustedKey) -> Verdict {
        if self.sig.keynum() != key.key.keynum() {
            return Verdict::OtherKey {
                key_id: self.key_id(),
            };
        }
        match minisign::verify(&key.key, &self.sig, Cursor::new(bytes), true, false, true) {
            Ok(()) => Verdict::Valid {
                trusted_comment: self.sig.trusted_comment().unwrap_or_default(),
            },
            Err(_) => Verdict::Bad,
        }
    }
}

/// A new unencrypted key pair (as `minisign -G -W`): the secret key file's
/// text and the public key file's text.
pub fn generate_keypair(comment: &str) -> Result<(String, String), String> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| e.to_string())?;
    let secret = pair
        .sk
        .to_box(Some(comment))
        .map_err(|e| e.to_string())?
        .into_string();
    let public = pair.pk.to_box().map_err(|e| e.to_string())?.into_string();
    Ok((secret, public))
}

/// The public key line (`RW…`) of a public key file's text (or of the line itself).
pub fn public_key_line(public_key_file: &str) -> Result<String, String> {
    let key = PublicKeyBox::from_string(public_key_file)
        .and_then(PublicKeyBox::into_public_key)
        .or_else(|_| PublicKey::from_base64(public_key_file.trim()))
        .map_err(|_| "it is not a minisign public key".to_string())?;
    Ok(key.to_base64())
}

/// A secret key read from its file's text. Encrypted (password-protected)
/// keys need `password`; unencrypted ones (`minisign -G -W`) take none.
pub fn secret_key(text: &str, password: Option<String>) -> Result<SecretKey, String> {
    let boxed = SecretKeyBox::from_string(text)
        .map_err(|e| format!("it is not a minisign secret key ({e})"))?;
    match (boxed.clone().into_unencrypted_secret_key(), password) {
        (Ok(key), _) => Ok(key),
        // minisign 0.11's unencrypted keys (`-G -W`) carry no checksum,
        // which the minisign crate then calls corrupted: such a key is
        // read as it is (signing checks the signature it makes against
        // the key's own public half, so a damaged key still cannot sign).
        (Err(_), None) if let Some(key) = unencrypted_without_checksum(text) => Ok(key),
        (Err(_), Some(password)) => SecretKey::from_box(boxed, Some(password))
            .map_err(|e| format!("cannot decrypt it with the password given ({e})")),
        (Err(_), None) if is_encrypted(text) => Err(
            "it is encrypted (password-protected): give its password with --password-file, \
             or use an unencrypted key (`duplex plugin keygen`, or `minisign -G -W`)"
                .into(),
        ),
        (Err(e), None) => Err(format!("it is not a usable minisign secret key ({e})")),
    }
}

/// Whether a secret key file's key is encrypted (its KDF is not "none").
fn is_encrypted(text: &str) -> bool {
    use ct_codecs::{Base64, Decoder};
    text.lines()
        .nth(1)
        .and_then(|line| Base64::decode_to_vec(line.trim(), None).ok())
        .is_some_and(|bytes| bytes.len() > 4 && bytes[2..4] != [0, 0])
}

/// An unencrypted secret key (KDF "none") whose checksum is all zeros.
fn unencrypted_without_checksum(text: &str) -> Option<SecretKey> {
    use ct_codecs::{Base64, Decoder};
    let line = text.lines().nth(1)?.trim();
    let bytes = Base64::decode_to_vec(line, None).ok()?;
    // sig_alg(2) kdf_alg(2) chk_alg(2) salt(32) ops(8) mem(8) keynum(8) sk(64) chk(32)
    if bytes.len() != 158 || bytes[2..4] != [0, 0] || bytes[126..].iter().any(|b| *b != 0) {
        return None;
    }
    SecretKey::from_bytes(&bytes).ok()
}

/// A detached signature of `bytes` (the text of a `.minisig` file) whose
/// trusted comment is `trusted_comment`.
pub fn sign(key: &SecretKey, bytes: &[u8], trusted_comment: &str) -> Result<String, String> {
    let public = PublicKey::from_secret_key(key).ok();
    minisign::sign(
        public.as_ref(),
        key,
        Cursor::new(bytes),
        Some(trusted_comment),
        Some("signature from duplex plugin sign"),
    )
    .map(SignatureBox::into_string)
    .map_err(|e| e.to_string())
}

/// The key ID of a secret key, as minisign prints it.
pub fn secret_key_id(key: &SecretKey) -> String {
    PublicKey::from_secret_key(key)
        .map(|p| key_id_hex(p.keynum()))
        .unwrap_or_default()
}

fn key_id_hex(keynum: &[u8]) -> String {
    // As the minisign tool prints it: the little-endian u64 in upper-case hex.
    let mut le = [0u8; 8];
    le.copy_from_slice(&keynum[..8.min(keynum.len())]);
    format!("{:X}", u64::from_le_bytes(le))
}

fn short(text: &str) -> String {
    if text.chars().count() > 24 {
        format!("{}…", text.chars().take(24).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_key_only_over_its_bytes() {
        let (secret, public) = generate_keypair("test").unwrap();
        let key = TrustedKey::parse(&public_key_line(&public).unwrap()).unwrap();
        let sk = secret_key(&secret, None).unwrap();
        let text = sign(&sk, b"component", "plugin: x").unwrap();
        let sig = Signature::parse(&text).unwrap();
        assert_eq!(sig.key_id(), key.key_id());
        assert_eq!(
            sig.verify(b"component", &key),
            Verdict::Valid {
                trusted_comment: "plugin: x".into()
            }
        );
        assert_eq!(sig.verify(b"componenT", &key), Verdict::Bad);
        let (_, other) = generate_keypair("other").unwrap();
        let other = TrustedKey::parse(&public_key_line(&other).unwrap()).unwrap();
        assert_eq!(
            sig.verify(b"component", &other),
            Verdict::OtherKey {
                key_id: key.key_id()
            }
        );
        assert!(TrustedKey::parse("RWnotakey").is_err());
        assert!(Signature::parse("nonsense").is_err());
    }
}
