//! A commit's whole tree written to `<checkouts>/<commit>/`, and the old
//! ones deleted.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::SourceError;

/// Trees nested deeper than this are refused rather than followed.
const MAX_DEPTH: usize = 128;

/// `<checkouts>/<commit>/`, written now unless it is already there and
/// `intact` says it is whole (a damaged one is written again). Written to a
/// temporary directory beside it, every file and directory fsync'd, then
/// renamed into place; its modification time marks it the newest.
pub(super) fn materialise(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    checkouts: &Path,
    url: &str,
    intact: impl Fn(&Path) -> bool,
) -> Result<PathBuf, SourceError> {
    let root = checkouts.join(commit.to_string());
    if root.is_dir() {
        if intact(&root) {
            touch(&root);
            return Ok(root);
        }
        fs::remove_dir_all(&root).map_err(io("remove the damaged checkout", &root))?;
    }
    fs::create_dir_all(checkouts).map_err(io("create", checkouts))?;
    let tmp = temp_name(checkouts, &commit.to_string());
    let result = (|| {
        fs::create_dir(&tmp).map_err(io("create", &tmp))?;
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|err| SourceError::Repository {
                url: url.to_string(),
                what: format!("the tree of commit {commit}"),
                message: super::git::message(&err),
            })?;
        let mut writer = Writer {
            repo,
            commit,
            url,
            root: &tmp,
        };
        writer.tree(&tree, Path::new(""), 0)?;
        sync_dir(&tmp)?;
        fs::rename(&tmp, &root).map_err(io("rename into place", &root))?;
        sync_dir(checkouts)
    })();
    if let Err(err) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(err);
    }
    Ok(root)
}

/// Keep the `keep` newest checkouts (by modification time) and `current`;
/// delete the rest, and temporary directories other processes left. Best
/// effort: what cannot be deleted now is tried again next time.
pub(super) fn prune(checkouts: &Path, current: &Path, keep: usize) {
    let Ok(entries) = fs::read_dir(checkouts) else {
        return;
    };
    let ours = format!(".tmp-{}-", std::process::id());
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let path = entry.path();
        if name.starts_with(".tmp-") {
            if !name.starts_with(&ours) {
                let _ = fs::remove_dir_all(&path);
            }
            continue;
        }
        if path == current || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        found.push((modified, path));
    }
    found.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, path) in found.into_iter().skip(keep.saturating_sub(1)) {
        let _ = fs::remove_dir_all(&path);
    }
}

/// A name for a temporary directory in `dir`: `.tmp-<pid>-<n>-<hint>`.
pub(super) fn temp_name(dir: &Path, hint: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    dir.join(format!(
        ".tmp-{}-{}-{hint}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

struct Writer<'a> {
    repo: &'a gix::Repository,
    commit: gix::ObjectId,
    url: &'a str,
    root: &'a Path,
}

impl Writer<'_> {
    fn tree(&mut self, tree: &gix::Tree<'_>, rel: &Path, depth: usize) -> Result<(), SourceError> {
        if depth > MAX_DEPTH {
            return Err(self.unsafe_entry(rel, "is nested too deep"));
        }
        for entry in tree.iter() {
            let entry = entry.map_err(|err| self.read_error(rel, err))?;
            let name = entry.filename();
            let rel_entry = rel.join(OsStr::from_bytes(name));
            if let Some(reason) = unsafe_name(name) {
                return Err(self.unsafe_entry(&rel_entry, reason));
            }
            let path = self.root.join(&rel_entry);
            use gix::object::tree::EntryKind;
            match entry.mode().kind() {
                EntryKind::Tree => {
                    let sub = self
                        .repo
                        .find_tree(entry.oid())
                        .map_err(|err| self.read_error(&rel_entry, err))?;
                    fs::create_dir(&path).map_err(io("create", &path))?;
                    self.tree(&sub, &rel_entry, depth + 1)?;
                    sync_dir(&path)?;
                }
                kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                    let blob = self
                        .repo
                        .find_blob(entry.oid())
                        .map_err(|err| self.read_error(&rel_entry, err))?;
                    let mode = if kind == EntryKind::BlobExecutable {
                        0o755
                    } else {
                        0o644
                    };
                    // `create_new`: never through a link, never over a file.
                    let mut file = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(mode)
                        .open(&path)
                        .map_err(io("create", &path))?;
                    file.write_all(&blob.data).map_err(io("write", &path))?;
                    file.sync_all().map_err(io("fsync", &path))?;
                }
                EntryKind::Link => {
                    let blob = self
                        .repo
                        .find_blob(entry.oid())
                        .map_err(|err| self.read_error(&rel_entry, err))?;
                    if blob.data.is_empty() || blob.data.contains(&0) {
                        return Err(self
                            .unsafe_entry(&rel_entry, "is a symbolic link with no usable target"));
                    }
                    std::os::unix::fs::symlink(OsStr::from_bytes(&blob.data), &path)
                        .map_err(io("create the symbolic link", &path))?;
                }
                // A submodule: an empty directory, as git leaves it.
                EntryKind::Commit => fs::create_dir(&path).map_err(io("create", &path))?,
            }
        }
        Ok(())
    }

    fn unsafe_entry(&self, entry: &Path, reason: &'static str) -> SourceError {
        SourceError::UnsafeEntry {
            commit: self.commit.to_string(),
            entry: entry.to_path_buf(),
            reason,
        }
    }

    fn read_error(&self, entry: &Path, err: gix::Error) -> SourceError {
        SourceError::Repository {
            url: self.url.to_string(),
            what: format!("`{}` in commit {}", entry.display(), self.commit),
            message: super::git::message(&err),
        }
    }
}

/// Why a tree entry's name cannot be written as one path component.
fn unsafe_name(name: &[u8]) -> Option<&'static str> {
    if name.is_empty() {
        Some("has an empty name")
    } else if name == b"." || name == b".." {
        Some("is named `.` or `..`")
    } else if name.contains(&b'/') || name.contains(&0) {
        Some("has a `/` or NUL in its name")
    } else if name.eq_ignore_ascii_case(b".git") {
        Some("is named `.git`")
    } else {
        None
    }
}

fn sync_dir(path: &Path) -> Result<(), SourceError> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(io("fsync", path))
}

/// Mark a reused checkout the newest (best effort: pruning order only).
fn touch(path: &Path) {
    if let Ok(dir) = File::open(path) {
        let _ = dir.set_modified(std::time::SystemTime::now());
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
    let path = path.to_path_buf();
    move |source| SourceError::Io { op, path, source }
}
