//! Reading a plugin's file: a regular file of at most [`MAX_PLUGIN_BYTES`],
//! checked on the open file before a byte is read.
//!
//! Opening is non-blocking (a FIFO does not wait for a writer) and the
//! checks are made on the opened file (`fstat`), so the file read is the one
//! checked: a FIFO would hang `duplex validate`, `/dev/zero` would be read
//! until memory runs out, and a sparse 2 GiB file would cost 2 GiB before
//! its digest could be compared.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Largest plugin file accepted (64 MiB): the largest components built for
/// this contract (componentize-py's, with a Python runtime, about 18 MiB)
/// fit more than three times over.
pub const MAX_PLUGIN_BYTES: u64 = 64 << 20;

/// Why a plugin file is not read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("it is {kind}, not a regular file: a plugin is a `.wasm` component file")]
    NotAFile { kind: &'static str },
    #[error(
        "it is {}, more than the limit of {} for a plugin",
        super::error::fmt_bytes(*size),
        super::error::fmt_bytes(MAX_PLUGIN_BYTES)
    )]
    TooLarge { size: u64 },
}

/// The bytes of a plugin file.
pub fn read_plugin_file(path: &Path) -> Result<Vec<u8>, SourceError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(SourceError::NotAFile { kind });
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(SourceError::TooLarge { size: meta.len() });
    }
    // The size may change between the check and the read: never read more
    // than the limit allows.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_PLUGIN_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_PLUGIN_BYTES {
        return Err(SourceError::TooLarge {
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}
