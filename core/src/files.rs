//! Opening the files Duplex reads by a path someone else chose (a policy,
//! an artifact, a journal): what kind of file it is, known before a byte is
//! read.
//!
//! A path can name a FIFO (opening it for reading waits for a writer, and
//! reading it waits for data), a device (`/dev/zero` never ends), a
//! directory or a socket. [`open`] opens without blocking (`O_NONBLOCK`) and
//! reports the kind from the open descriptor, so nothing can swap the file
//! between the check and the read.

use std::fmt;
use std::fs::{File, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
    Other,
}

impl FileKind {
    pub fn of(metadata: &Metadata) -> FileKind {
        let t = metadata.file_type();
        if t.is_file() {
            FileKind::Regular
        } else if t.is_dir() {
            FileKind::Directory
        } else if t.is_fifo() {
            FileKind::Fifo
        } else if t.is_socket() {
            FileKind::Socket
        } else if t.is_char_device() {
            FileKind::CharDevice
        } else if t.is_block_device() {
            FileKind::BlockDevice
        } else {
            FileKind::Other
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Regular => "a regular file",
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a named pipe (FIFO)",
            FileKind::Socket => "a socket",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Other => "not a file",
        })
    }
}

/// A path that names something other than what the reader accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it is {kind}, not {wanted}")]
pub struct WrongKind {
    pub kind: FileKind,
    /// What the reader accepts, e.g. "a regular file".
    pub wanted: &'static str,
}

impl WrongKind {
    /// As an `io::Error` (kind `InvalidInput`) that keeps this error inside.
    pub fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, self)
    }
}

/// Open `path` for reading without waiting on a FIFO, and say what it is.
/// The descriptor is non-blocking: call [`blocking`] before reading a pipe.
pub fn open(path: &Path) -> io::Result<(File, FileKind)> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        // Opening a socket fails with ENXIO: say what it is instead.
        Err(err) if err.raw_os_error() == Some(libc::ENXIO) => {
            let kind = std::fs::metadata(path).map(|m| FileKind::of(&m));
            return match kind {
                Ok(kind) if kind != FileKind::Regular => Err(WrongKind {
                    kind,
                    wanted: "a file",
                }
                .into_io()),
                _ => Err(err),
            };
        }
        Err(err) => return Err(err),
    };
    let kind = FileKind::of(&file.metadata()?);
    Ok((file, kind))
}

/// Open a regular file for reading; anything else is refused, saying what it
/// is, without a byte read from it.
pub fn open_regular(path: &Path, wanted: &'static str) -> io::Result<File> {
    let (file, kind) = open(path).map_err(|err| rename_wanted(err, wanted))?;
    if kind != FileKind::Regular {
        return Err(WrongKind { kind, wanted }.into_io());
    }
    Ok(file)
}

/// Read a whole regular file, refusing anything else (see [`open_regular`])
/// and anything longer than `max` bytes.
pub fn read_regular(path: &Path, wanted: &'static str, max: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_regular(path, wanted)?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is longer than {max} bytes"),
        ));
    }
    Ok(bytes)
}

/// Make a descriptor from [`open`] blocking again, to read a pipe as a
/// stream (a pipe with no writer reads as empty).
pub fn blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor this `File` owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn rename_wanted(err: io::Error, wanted: &'static str) -> io::Error {
    match err.get_ref().and_then(|e| e.downcast_ref::<WrongKind>()) {
        Some(wrong) => WrongKind {
            kind: wrong.kind,
            wanted,
        }
        .into_io(),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_directories_and_fifos_are_named_without_reading_them() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        for (path, kind) in [
            (Path::new("/dev/zero"), FileKind::CharDevice),
            (dir.path(), FileKind::Directory),
            (fifo.as_path(), FileKind::Fifo),
        ] {
            // Opening the FIFO does not wait for a writer.
            assert_eq!(open(path).unwrap().1, kind, "{}", path.display());
            let err = read_regular(path, "a journal file", 10).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("it is {kind}, not a journal file"),
                "{}",
                path.display()
            );
        }
        // A socket cannot even be opened (ENXIO): it is named all the same.
        let socket = dir.path().join("socket");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let err = read_regular(&socket, "a policy file", 10).unwrap_err();
        assert_eq!(err.to_string(), "it is a socket, not a policy file");
        let file = dir.path().join("f");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_regular(&file, "x", 5).unwrap(), b"12345");
        assert!(read_regular(&file, "x", 4).is_err());
    }
}

/// Why [`write_atomic`] failed: which step, on which file.
#[derive(Debug)]
pub struct AtomicWriteError {
    /// `create`, `write`, `fsync`, `rename into place` or `fsync the directory of`.
    pub op: &'static str,
    pub path: std::path::PathBuf,
    pub source: io::Error,
}

impl AtomicWriteError {
    /// An fsync failed: the data may not be on disk even if a retry succeeds.
    pub fn is_sync(&self) -> bool {
        self.op.starts_with("fsync")
    }
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot {} {}: {}",
            self.op,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Whether an atomic write must survive a power loss once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The file and its directory entry are fsynced (journal markers, plugin
    /// storage).
    Durable,
    /// The file is fsynced, the directory not (a cache rebuilds what it loses).
    Cache,
}

/// Replace `path` with `contents` atomically: a temporary file in the same
/// directory (`.tmp-<pid>-<n>-<name>`, so a later cleanup can tell a dead
/// writer's leftovers), fsync, rename over `path`, and for
/// [`Durability::Durable`] an fsync of the directory. A reader sees the old
/// contents or the new, never a mix; a failed write leaves no temporary file.
pub fn write_atomic(
    path: &Path,
    contents: &[u8],
    mode: u32,
    durability: Durability,
) -> Result<(), AtomicWriteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        // A hint of the name, short enough that the temporary name stays
        // within NAME_MAX whatever the target's length.
        path.file_name()
            .map(|n| n.to_string_lossy().chars().take(64).collect::<String>())
            .unwrap_or_default()
    ));
    let fail = |op: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| AtomicWriteError {
            op,
            path: p,
            source,
        }
    };
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(fail("create", &tmp))?;
        file.write_all(contents).map_err(fail("write", &tmp))?;
        file.sync_all().map_err(fail("fsync", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(fail("rename into place", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if durability == Durability::Durable {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(fail("fsync the directory of", path))?;
    }
    Ok(())
}
