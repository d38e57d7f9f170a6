//! sha256 helpers (lower-case hex, the form policies pin).

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Whether `s` is a sha256 digest as a policy pins it: 64 lower-case hex
/// digits (the policy's own rule, [`crate::policy::Sha256`]).
pub fn is_sha256_hex(s: &str) -> bool {
    s.parse::<crate::policy::Sha256>().is_ok()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(super::is_sha256_hex(&super::sha256_hex(b"")));
        assert!(!super::is_sha256_hex("abc"));
        assert!(!super::is_sha256_hex(
            &super::sha256_hex(b"").to_uppercase()
        ));
    }
}
