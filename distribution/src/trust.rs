//! Whom a plugin cache trusts: the one statement of the rule for both the
//! compiled-plugin cache (`duplex_core::plugins::cache`) and this crate's
//! store of pulled components. It lives here because the core depends on
//! this crate, not the other way round.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

/// The effective user id of the runner.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Owned by the runner's user or root, and writable by nobody else: whoever
/// can write a cache entry can run code as this runner.
pub fn owned_and_private(meta: &fs::Metadata) -> Result<(), String> {
    let uid = meta.uid();
    if uid != euid() && uid != 0 {
        return Err(format!(
            "it is owned by user {uid}, not by this runner's user ({}) or root",
            euid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & 0o022 != 0 {
        return Err(format!(
            "it is writable by {} (mode {:04o})",
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            },
            mode & 0o7777
        ));
    }
    Ok(())
}
