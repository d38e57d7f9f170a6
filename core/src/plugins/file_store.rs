//! The store behind the `storage` capability: a key-value store, one file
//! per key under the granted directory, each write atomic and durable (write
//! a temp file, fsync it, rename it over the old one, fsync the directory) so
//! a runner killed at any point leaves either the old or the new value.
//!
//! Errors say whose fault they are: [`StoreError::Refused`] is the plugin's
//! (a bad key, a value too large), [`StoreError::Io`] the host's (the disk is
//! full, the directory is read-only): the call then ends as a host fault.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// Longest key accepted, in bytes once encoded as a file name: `A-Z`,
/// `a-z`, `0-9`, `_` and `-` take one byte each, every other byte three
/// (`%XX`). File names are at most 255 bytes, the suffix takes two.
pub const MAX_KEY_BYTES: usize = 250;
/// Largest value accepted (bytes).
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Most keys a store may hold.
pub const MAX_KEYS: usize = 4096;

const SUFFIX: &str = ".v";
const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The request breaks the store's rules (the plugin's fault).
    Refused(String),
    /// The file system failed (the host's fault).
    Io(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Refused(m) | StoreError::Io(m) => f.write_str(m),
        }
    }
}

fn io(what: String) -> impl FnOnce(io::Error) -> StoreError {
    move |e| StoreError::Io(format!("storage: {what}: {e}"))
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`, and removes the temp
    /// files a killed runner left behind.
    pub fn open(dir: &Path) -> io::Result<FileStore> {
        fs::create_dir_all(dir)?;
        let store = FileStore {
            dir: dir.to_path_buf(),
        };
        store.remove_stale_temps()?;
        Ok(store)
    }

    /// A temp file is `.tmp-<pid>-<n>`: one whose writer is neither this
    /// process nor alive was left by a kill mid-write (its value was never
    /// renamed into place). One runner writes a state dir at a time, so
    /// another live writer is rare, and its files are left alone.
    fn remove_stale_temps(&self) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(TMP_PREFIX))
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != std::process::id() && !alive(pid) {
                match fs::remove_file(entry.path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(format!("cannot read key `{key}`"))(e)),
        }
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let path = self.path(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(StoreError::Refused(format!(
                "storage: value of key `{key}` is {} bytes, more than the limit of {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        if !path.exists() && self.count_keys()? >= MAX_KEYS {
            return Err(StoreError::Refused(format!(
                "storage: the store already holds {MAX_KEYS} keys"
            )));
        }
        crate::files::write_atomic(&path, value, 0o600, crate::files::Durability::Durable)
            .map_err(|e| io(format!("cannot write key `{key}`"))(e.source))
    }

    pub fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir).map_err(io(format!("cannot delete key `{key}`"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(format!("cannot delete key `{key}`"))(e)),
        }
    }

    /// All keys, sorted.
    pub fn list_keys(&self) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let entries = fs::read_dir(&self.dir).map_err(io("cannot list keys".into()))?;
        for entry in entries {
            let entry = entry.map_err(io("cannot list keys".into()))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(enc) = name.strip_suffix(SUFFIX)
                && let Some(key) = decode_key(enc)
            {
                keys.push(key);
            }
        }
        keys.sort();
        Ok(keys)
    }

    fn count_keys(&self) -> Result<usize, StoreError> {
        Ok(self.list_keys()?.len())
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if key.is_empty() {
            return Err(StoreError::Refused(
                "storage: the empty key is not allowed".into(),
            ));
        }
        let encoded = encode_key(key);
        if encoded.len() > MAX_KEY_BYTES {
            return Err(StoreError::Refused(format!(
                "storage: a key of {} bytes is {} bytes once stored as a file name (each byte other than A-Z, a-z, 0-9, `_` and `-` takes 3), more than the limit of {MAX_KEY_BYTES}",
                key.len(),
                encoded.len()
            )));
        }
        Ok(self.dir.join(format!("{encoded}{SUFFIX}")))
    }
}

/// Whether a process with this pid exists (signal 0 checks, sends nothing).
fn alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Keys become file names: `[A-Za-z0-9_-]` as is, every other byte `%XX`
/// (so no `/`, `.`, `..`, or case-folding surprises).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode_key(enc: &str) -> Option<String> {
    let bytes = enc.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = enc.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_file_names() {
        for key in ["world", "a/b", "../etc", "ünï", "x.y", "%41"] {
            assert_eq!(decode_key(&encode_key(key)).as_deref(), Some(key));
            assert!(!encode_key(key).contains(['/', '.']));
        }
    }

    #[test]
    fn opening_removes_the_temp_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(format!("{TMP_PREFIX}{dead}-0"));
        let ours = dir
            .path()
            .join(format!("{TMP_PREFIX}{}-7", std::process::id()));
        let init = dir.path().join(format!("{TMP_PREFIX}1-3"));
        for f in [&stale, &ours, &init] {
            std::fs::write(f, b"half a value").unwrap();
        }
        FileStore::open(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(ours.exists() && init.exists());
    }

    #[test]
    fn set_get_delete_list_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.get("a").unwrap(), None);
        s.set("a", b"1").unwrap();
        s.set("b/c", b"2").unwrap();
        s.set("a", b"3").unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        assert_eq!(s.get("a").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(
            s.list_keys().unwrap(),
            vec!["a".to_string(), "b/c".to_string()]
        );
        s.delete("a").unwrap();
        s.delete("a").unwrap();
        assert_eq!(s.list_keys().unwrap(), vec!["b/c".to_string()]);
        assert!(s.set("", b"").is_err());
        assert!(s.set(&"k".repeat(MAX_KEY_BYTES + 1), b"").is_err());
        // The limit is on the stored name: keys up to it can be written.
        s.set(&"k".repeat(MAX_KEY_BYTES), b"x").unwrap();
        s.set(&"/".repeat(MAX_KEY_BYTES / 3), b"x").unwrap();
        let e = s.set(&"/".repeat(256), b"x").unwrap_err();
        assert!(
            matches!(&e, StoreError::Refused(m) if m.contains("is 768 bytes once stored as a file name")),
            "{e}"
        );
        assert!(s.set("big", &vec![0; MAX_VALUE_BYTES + 1]).is_err());
    }
}
