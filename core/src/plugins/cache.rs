//! On-disk cache of precompiled components.
//!
//! An entry is `<component sha256>-<engine hash>.cwasm` plus a `.sum` file with
//! the CRC-32 of the `.cwasm` (`crc32:<8 hex digits>`), and a `.describe`
//! file with what the component's `describe` returned under given limits
//! (its first line the CRC-32 of the rest). The engine hash is derived from
//! [`wasmtime::Engine::precompile_compatibility_hash`], so a different
//! wasmtime or engine configuration never sees another's entries. An entry
//! is used only when its bytes match its recorded checksum; anything else
//! (missing sum, torn write, bit rot, a deserialize error) is rebuilt and
//! overwritten, never trusted.
//!
//! A cache entry is native code the runner executes: whoever can write the
//! cache can run code as the runner. The checksum guards against corruption,
//! not against an attacker (who could rewrite both files), so the cache is
//! trusted only as far as ssh trusts `~/.ssh`: the directory must be owned
//! by the runner's user (or root) and writable by nobody else, and so must
//! every directory above it that is not sticky (`/tmp` is fine: nobody else
//! can rename a directory out of it). A cache dir that fails this is
//! refused with the reason; an entry or checksum file owned by another user
//! or writable by others is not read (it is rebuilt and replaced). Files
//! are opened without following symlinks and checked on the opened file, so
//! what is checked is what is read.
//!
//! Because integrity against tampering comes from these rules, not from the
//! checksum, the checksum is a fast one (CRC-32, several GB/s) rather than
//! sha256: it only has to catch torn writes and bit rot. (The component's
//! own sha256, which the policy pins, is still computed on every load.)
//! Entries are mapped, not read: the mapping that was checksummed maps the
//! same inode wasmtime then maps (see [`Cache::load`]).

use super::spec::Limits;
use duplex_oci::trust::{euid, owned_and_private};
use std::fs::{self, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Engine, Result};

/// Where an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheStatus {
    /// Deserialized from a valid cache entry.
    Hit,
    /// No entry: compiled and stored.
    Miss,
    /// An entry existed but was corrupt, stale or not trusted: compiled and
    /// replaced.
    Rebuilt,
    /// No cache configured: compiled.
    Disabled,
    /// Already loaded in this process: taken from the host's table of
    /// loaded components (the file was still verified against its pin).
    Memory,
}

pub(crate) struct Cache {
    dir: Option<PathBuf>,
    engine_hash: String,
}

/// The cache dir cannot be trusted.
#[derive(Debug, thiserror::Error)]
#[error("cannot use {} as the plugin cache: {why}", dir.display())]
pub(crate) struct Untrusted {
    dir: PathBuf,
    why: String,
}

impl Cache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> std::result::Result<Cache, Untrusted> {
        if let Some(dir) = &dir {
            let untrusted = |why: String| Untrusted {
                dir: dir.clone(),
                why,
            };
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .map_err(|e| untrusted(e.to_string()))?;
            trusted_dir(dir).map_err(untrusted)?;
        }
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        // Entries were compiled after passing this runner's static limits
        // (code_limits): a runner with other limits must not take them.
        super::code_limits::LIMITS_VERSION.hash(&mut h);
        Ok(Cache {
            dir,
            engine_hash: format!("{:016x}", h.finish()),
        })
    }

    pub fn entry_path(&self, digest: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{digest}-{}.cwasm", self.engine_hash)))
    }

    /// The compiled component whose source has sha256 `digest`; `compile`
    /// is only called when no valid, trusted entry exists.
    pub fn load(
        &self,
        engine: &Engine,
        digest: &str,
        compile: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<(Component, CacheStatus)> {
        let Some(path) = self.entry_path(digest) else {
            let art = compile()?;
            // SAFETY: `art` was produced just now by this very engine.
            let component = unsafe { Component::deserialize(engine, &art)? };
            return Ok((component, CacheStatus::Disabled));
        };
        let sum_path = path.with_extension("sum");
        let mut status = CacheStatus::Miss;
        if let Some(entry) = open_trusted(&path) {
            status = CacheStatus::Rebuilt;
            let sum = read_trusted(&sum_path).unwrap_or_default();
            if let Some(c) = deserialize_checked(engine, &entry, &sum) {
                return Ok((c, CacheStatus::Hit));
            }
        } else if path.symlink_metadata().is_ok() {
            // There, but not trusted.
            status = CacheStatus::Rebuilt;
        }
        let art = compile()?;
        // SAFETY: `art` was produced just now by this very engine.
        let component = unsafe { Component::deserialize(engine, &art)? };
        // A cache we cannot write only costs time: ignore write errors.
        let _ = write_atomic(&path, &art)
            .and_then(|()| write_atomic(&sum_path, checksum(&art).as_bytes()));
        Ok((component, status))
    }

    fn describe_path(&self, digest: &str) -> Option<PathBuf> {
        self.entry_path(digest)
            .map(|p| p.with_extension("describe"))
    }

    /// What `describe` returned for the component with sha256 `digest`
    /// when called under `limits`, if a trusted, intact record of it exists.
    pub fn described<T: serde::de::DeserializeOwned>(
        &self,
        digest: &str,
        limits: &Limits,
    ) -> Option<T> {
        let bytes = read_trusted(&self.describe_path(digest)?)?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (sum, json) = text.split_once('\n')?;
        if sum != checksum(json.as_bytes()) {
            return None;
        }
        let record: Described<T> = serde_json::from_str(json).ok()?;
        (record.limits == *limits).then_some(record.info)
    }

    /// Records what `describe` returned (see [`Cache::described`]).
    pub fn record_described<T: serde::Serialize>(&self, digest: &str, limits: &Limits, info: T) {
        let Some(path) = self.describe_path(digest) else {
            return;
        };
        let Ok(json) = serde_json::to_string(&Described {
            limits: *limits,
            info,
        }) else {
            return;
        };
        let text = format!("{}\n{json}", checksum(json.as_bytes()));
        let _ = write_atomic(&path, text.as_bytes());
    }
}

/// A `describe` record: the limits it ran under and what it returned. The
/// call depends on nothing but the component and the limits (it gets no
/// capability), so the component's digest and these limits determine it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Described<T> {
    limits: Limits,
    info: T,
}

/// The checksum of a cache file, as its `.sum` records it.
fn checksum(bytes: &[u8]) -> String {
    format!("crc32:{:08x}", crc32fast::hash(bytes))
}

/// The component in the open cache entry `file` if its bytes match `sum`.
fn deserialize_checked(engine: &Engine, file: &fs::File, sum: &[u8]) -> Option<Component> {
    let map = Mapped::new(file)?;
    if String::from_utf8_lossy(sum).trim() != checksum(map.bytes()) {
        return None;
    }
    // SAFETY: `Component::deserialize*` runs the bytes as native code without
    // validating them. These bytes were written by a runner of this user (or
    // root) into a directory nobody else can write (both checked on the open
    // file, see the module docs), by `Engine::precompile_component` of an
    // engine with the same compatibility hash (part of the file name); their
    // checksum was verified just above over a mapping of the open file.
    //
    // wasmtime maps the entry itself: `/proc/self/fd/N` reopens the inode we
    // opened (without following symlinks) and checked, not whatever the
    // entry's name points to now. That inode is the one whose mapped bytes
    // were checksummed: only this user or root can write it, and runners
    // never write an entry in place (a new file is renamed over the old
    // name, `write_atomic`), so its contents do not change once it has a
    // name. Without `/proc`, the checksummed mapping itself is deserialized
    // (copied by wasmtime).
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    unsafe {
        Component::deserialize_file(engine, &fd_path)
            .or_else(|_| Component::deserialize(engine, map.bytes()))
            .ok()
    }
}

/// A read-only private mapping of a whole file.
struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapped {
    fn new(file: &fs::File) -> Option<Mapped> {
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh read-only mapping of an open file; unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        (ptr != libc::MAP_FAILED).then_some(Mapped { ptr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `len` readable bytes for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Mapped::new`, unmapped once.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// The cache dir and the directories above it can be written only by the
/// runner's user or root (sticky directories such as `/tmp` excepted above
/// the cache dir).
fn trusted_dir(dir: &Path) -> std::result::Result<(), String> {
    let dir = dir.canonicalize().map_err(|e| e.to_string())?;
    let meta = fs::metadata(&dir).map_err(|e| e.to_string())?;
    owned_and_private(&meta).map_err(|why| {
        format!(
            "{why}: whoever can write it can run code as this runner; make it yours and writable only by you (`chmod go-w {}`), or use another directory",
            dir.display()
        )
    })?;
    for above in dir.ancestors().skip(1) {
        let meta = fs::metadata(above).map_err(|e| format!("{}: {e}", above.display()))?;
        let sticky = meta.permissions().mode() & 0o1000 != 0;
        if sticky && (meta.uid() == 0 || meta.uid() == euid()) {
            continue;
        }
        owned_and_private(&meta).map_err(|why| {
            format!(
                "{} above it: {why}: whoever can write it can replace the cache with their own; use a directory whose parents only you or root can write",
                above.display()
            )
        })?;
    }
    Ok(())
}

/// The open file if it is a regular file (not a symlink) owned by the
/// runner's user or root and writable by nobody else.
fn open_trusted(path: &Path) -> Option<fs::File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() || owned_and_private(&meta).is_err() {
        return None;
    }
    Some(file)
}

/// The bytes of [`open_trusted`]'s file.
fn read_trusted(path: &Path) -> Option<Vec<u8>> {
    let mut file = open_trusted(path)?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    crate::files::write_atomic(path, bytes, 0o644, crate::files::Durability::Cache)
        .map_err(|e| e.source)
}
