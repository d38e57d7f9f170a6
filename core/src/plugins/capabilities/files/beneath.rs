//! File operations confined beneath a granted directory.
//!
//! Every path is resolved by the kernel with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` from a descriptor of the granted directory,
//! opened once when the plugin is loaded: a `..` that climbs out, an
//! absolute path, or a symbolic link (planted anywhere on the way, final
//! component included) that points outside is refused by the kernel itself
//! (`EXDEV`), so there is no window between a check and the use. Operations
//! on a directory entry itself (write, rename, symlink, remove, stat,
//! read-link) resolve the parent that way and act on the final name with
//! the `*at` calls, which never follow a final symbolic link.
//!
//! Needs Linux 5.6 or later (`openat2`).

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

/// The most one `read` returns.
pub const MAX_READ_BYTES: u32 = 4 << 20;
/// The most entries one `list` returns.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// The longest path accepted.
pub const MAX_PATH_BYTES: usize = 4096;
/// How deep `remove` descends into a tree.
const MAX_REMOVE_DEPTH: usize = 256;

/// One granted directory, open.
#[derive(Debug)]
pub struct Root {
    pub name: String,
    pub read_only: bool,
    dir: File,
}

/// What a file system entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Directory,
    Symlink,
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    pub modified_ms: u64,
    pub mode: u32,
}

fn kind_of(mode: u32) -> Kind {
    match rustix::fs::FileType::from_raw_mode(mode as _) {
        rustix::fs::FileType::RegularFile => Kind::File,
        rustix::fs::FileType::Directory => Kind::Directory,
        rustix::fs::FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    }
}

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

impl Root {
    /// Opens the granted directory.
    pub fn open(name: &str, path: &Path, read_only: bool) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            name: name.to_string(),
            read_only,
            dir: File::from(fd),
        })
    }

    /// `path` as the plugin wrote it, checked: relative, bounded, no NUL.
    fn rel<'p>(&self, path: &'p str) -> Result<&'p str, String> {
        if path.len() > MAX_PATH_BYTES {
            return Err(format!(
                "a path of {} bytes is longer than the limit of {MAX_PATH_BYTES}",
                path.len()
            ));
        }
        if path.contains('\0') {
            return Err(format!("`{}` contains a NUL byte", path.escape_debug()));
        }
        if path.starts_with('/') {
            return Err(format!(
                "`{path}` is absolute: paths are relative to the granted directory `{}`",
                self.name
            ));
        }
        let trimmed = path.trim_end_matches('/');
        Ok(if trimmed.is_empty() { "." } else { trimmed })
    }

    /// The parent and final name of `path`, as written.
    fn split<'p>(&self, path: &'p str) -> Result<(&'p str, &'p str), String> {
        let rel = self.rel(path)?;
        let (parent, name) = match rel.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => (".", rel),
        };
        if name == "." || name == ".." || name.is_empty() {
            return Err(format!(
                "`{path}` names no entry of its own (it ends in `{name}`)"
            ));
        }
        Ok((if parent.is_empty() { "." } else { parent }, name))
    }

    /// The parent (resolved beneath the root) and final name of `path`;
    /// `Ok(Err(..))` when the parent cannot be opened.
    fn entry_or_missing<'p>(&self, path: &'p str) -> Result<io::Result<(File, &'p str)>, String> {
        let (parent, name) = self.split(path)?;
        Ok(self.open_dir(parent).map(|dir| (dir, name)))
    }

    /// The parent (resolved beneath the root) and final name of `path`.
    fn entry<'p>(&self, path: &'p str) -> Result<(File, &'p str), String> {
        self.entry_or_missing(path)?.map_err(|e| self.fail(path, e))
    }

    fn open_beneath(&self, rel: &str, flags: OFlags, mode: u32) -> io::Result<File> {
        // openat2 refuses flags that do not apply to `O_PATH`.
        let extra = if flags.contains(OFlags::PATH) {
            OFlags::CLOEXEC
        } else {
            OFlags::CLOEXEC | OFlags::NOCTTY
        };
        let fd = rustix::fs::openat2(
            &self.dir,
            rel,
            flags | extra,
            Mode::from_raw_mode(mode as _),
            RESOLVE,
        )?;
        Ok(File::from(fd))
    }

    fn open_dir(&self, rel: &str) -> io::Result<File> {
        self.open_beneath(rel, OFlags::RDONLY | OFlags::DIRECTORY, 0)
    }

    /// The message for an I/O failure on `path`.
    fn fail(&self, path: &str, e: io::Error) -> String {
        let why = match e.raw_os_error() {
            Some(libc::EXDEV) => format!(
                "it leads outside the granted directory `{}` (through `..` or a symbolic link)",
                self.name
            ),
            Some(libc::ELOOP) => "too many symbolic links on the way".to_string(),
            _ => e.to_string(),
        };
        format!("`{}/{path}`: {why}", self.name)
    }

    fn writable(&self, what: &str, path: &str) -> Result<(), String> {
        if self.read_only {
            Err(format!(
                "cannot {what} `{}/{path}`: the files grant `{}` is read-only (`readOnly: false` in the policy makes it writable)",
                self.name, self.name
            ))
        } else {
            Ok(())
        }
    }

    pub fn read(&self, path: &str, offset: u64, max: u32) -> Result<Vec<u8>, String> {
        let rel = self.rel(path)?;
        let file = self
            .open_beneath(rel, OFlags::RDONLY | OFlags::NONBLOCK, 0)
            .map_err(|e| self.fail(path, e))?;
        regular(&file).map_err(|e| self.fail(path, e))?;
        read_at(&file, offset, max.min(MAX_READ_BYTES)).map_err(|e| self.fail(path, e))
    }

    pub fn write(&self, path: &str, data: &[u8]) -> Result<(), String> {
        self.writable("write", path)?;
        let (dir, name) = self.entry(path)?;
        replace(&dir, name, |f| f.write_all(data)).map_err(|e| self.fail(path, e))
    }

    pub fn append(&self, path: &str, data: &[u8]) -> Result<(), String> {
        self.writable("append to", path)?;
        let rel = self.rel(path)?;
        let file = self
            .open_beneath(
                rel,
                OFlags::WRONLY | OFlags::APPEND | OFlags::CREATE | OFlags::NONBLOCK,
                0o644,
            )
            .map_err(|e| self.fail(path, e))?;
        regular(&file).map_err(|e| self.fail(path, e))?;
        (&file)
            .write_all(data)
            .and_then(|()| file.sync_data())
            .map_err(|e| self.fail(path, e))
    }

    pub fn set_mode(&self, path: &str, mode: u32) -> Result<(), String> {
        self.writable("change the mode of", path)?;
        if mode & !0o777 != 0 {
            return Err(format!(
                "mode {mode:#o} for `{}/{path}`: only permission bits (0o777) can be set; setuid, setgid and sticky are refused",
                self.name
            ));
        }
        let rel = self.rel(path)?;
        // An `O_PATH` descriptor of the entry itself (no final link
        // followed), changed through its `/proc/self/fd` name.
        let file = self
            .open_beneath(rel, OFlags::PATH | OFlags::NOFOLLOW, 0)
            .map_err(|e| self.fail(path, e))?;
        let st = rustix::fs::fstat(&file).map_err(|e| self.fail(path, e.into()))?;
        if kind_of(st.st_mode) == Kind::Symlink {
            return Err(format!(
                "`{}/{path}` is a symbolic link: set the mode of what it points to",
                self.name
            ));
        }
        let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
        std::fs::set_permissions(&proc, std::fs::Permissions::from_mode(mode))
            .map_err(|e| self.fail(path, e))
    }

    pub fn create_dir(&self, path: &str) -> Result<(), String> {
        self.writable("create", path)?;
        let rel = self.rel(path)?;
        let mut done = String::new();
        for part in rel.split('/').filter(|p| !p.is_empty() && *p != ".") {
            let parent = if done.is_empty() { "." } else { &done };
            let dir = self.open_dir(parent).map_err(|e| self.fail(path, e))?;
            match rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::EXIST => {}
                Err(e) => return Err(self.fail(path, e.into())),
            }
            if !done.is_empty() {
                done.push('/');
            }
            done.push_str(part);
        }
        // What is there now must be a directory beneath the root.
        self.open_dir(rel).map(drop).map_err(|e| self.fail(path, e))
    }

    pub fn list(&self, path: &str) -> Result<Vec<(String, Kind)>, String> {
        let rel = self.rel(path)?;
        let dir = self.open_dir(rel).map_err(|e| self.fail(path, e))?;
        let mut out = Vec::new();
        let entries = rustix::fs::Dir::read_from(&dir).map_err(|e| self.fail(path, e.into()))?;
        for entry in entries {
            let entry = entry.map_err(|e| self.fail(path, e.into()))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            if out.len() == MAX_LIST_ENTRIES {
                return Err(format!(
                    "`{}/{path}` has more than {MAX_LIST_ENTRIES} entries, the most one list returns",
                    self.name
                ));
            }
            let kind = match entry.file_type() {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Directory,
                rustix::fs::FileType::Symlink => Kind::Symlink,
                rustix::fs::FileType::Unknown => {
                    match rustix::fs::statat(&dir, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => kind_of(st.st_mode),
                        Err(_) => Kind::Other,
                    }
                }
                _ => Kind::Other,
            };
            out.push((String::from_utf8_lossy(name).into_owned(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    pub fn stat(&self, path: &str) -> Result<Option<Meta>, String> {
        let rel = self.rel(path)?;
        let st = if rel == "." {
            rustix::fs::fstat(&self.dir)
        } else {
            let (dir, name) = match self.entry_or_missing(path)? {
                Ok(found) => found,
                // A missing or non-directory parent: nothing is there.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    return Ok(None);
                }
                Err(e) => return Err(self.fail(path, e)),
            };
            rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
        };
        match st {
            Ok(st) => Ok(Some(Meta {
                kind: kind_of(st.st_mode),
                size: st.st_size as u64,
                modified_ms: (st.st_mtime.max(0) as u64)
                    .saturating_mul(1000)
                    .saturating_add(st.st_mtime_nsec / 1_000_000),
                mode: st.st_mode & 0o7777,
            })),
            Err(e) if e == rustix::io::Errno::NOENT => Ok(None),
            Err(e) => Err(self.fail(path, e.into())),
        }
    }

    pub fn read_link(&self, path: &str) -> Result<String, String> {
        let (dir, name) = self.entry(path)?;
        let target = rustix::fs::readlinkat(&dir, name, Vec::new())
            .map_err(|e| self.fail(path, e.into()))?;
        Ok(String::from_utf8_lossy(target.as_bytes()).into_owned())
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<(), String> {
        self.writable("rename", from)?;
        let (from_dir, from_name) = self.entry(from)?;
        let (to_dir, to_name) = self.entry(to)?;
        rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name)
            .map_err(|e| self.fail(&format!("{from}` to `{}/{to}", self.name), e.into()))?;
        to_dir.sync_all().map_err(|e| self.fail(to, e))?;
        from_dir.sync_all().map_err(|e| self.fail(from, e))
    }

    pub fn symlink(&self, target: &str, path: &str) -> Result<(), String> {
        self.writable("create a link at", path)?;
        let rel = self.rel(path)?;
        stays_beneath(rel, target)
            .map_err(|why| format!("a link at `{}/{path}` to `{target}`: {why}", self.name))?;
        let (dir, name) = self.entry(path)?;
        rustix::fs::symlinkat(target, &dir, name).map_err(|e| self.fail(path, e.into()))?;
        dir.sync_all().map_err(|e| self.fail(path, e))
    }

    pub fn remove(&self, path: &str) -> Result<(), String> {
        self.writable("remove", path)?;
        let (dir, name) = match self.entry_or_missing(path)? {
            Ok(found) => found,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(self.fail(path, e)),
        };
        match remove_tree(&dir, name, 0) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.fail(path, e)),
        }
        dir.sync_all().map_err(|e| self.fail(path, e))
    }

    pub fn free_space(&self) -> Result<u64, String> {
        let st = rustix::fs::fstatvfs(&self.dir).map_err(|e| self.fail("", e.into()))?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Replaces `path` with what `fill` writes, atomically (for the
    /// `artifacts` capability's `copy-to`).
    pub fn replace_with(
        &self,
        path: &str,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), String> {
        self.writable("write", path)?;
        let (dir, name) = self.entry(path)?;
        replace(&dir, name, fill).map_err(|e| self.fail(path, e))
    }
}

/// Refuses what is not a regular file (a FIFO, a device).
fn regular(file: &File) -> io::Result<()> {
    let meta = file.metadata()?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(crate::files::WrongKind {
            kind: crate::files::FileKind::of(&meta),
            wanted: "a regular file",
        }
        .into_io())
    }
}

/// Up to `max` bytes from `offset`.
pub(crate) fn read_at(file: &File, offset: u64, max: u32) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; max as usize];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Writes a temporary file next to `name` in `dir`, syncs it, renames it
/// over `name` and syncs the directory. A file already at `name` keeps its
/// permission bits.
fn replace(
    dir: &File,
    name: &str,
    fill: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let mode = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if kind_of(st.st_mode) == Kind::File => st.st_mode & 0o777,
        _ => 0o644,
    };
    let tmp = format!(
        ".{name}.duplex-{}-{:016x}.tmp",
        std::process::id(),
        fastrand::u64(..)
    );
    let fd = rustix::fs::openat(
        dir,
        tmp.as_str(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    let mut file = File::from(fd);
    let result = (|| {
        fill(&mut file)?;
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        rustix::fs::renameat(dir, tmp.as_str(), dir, name)?;
        dir.sync_all()
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, tmp.as_str(), AtFlags::empty());
    }
    result
}

/// Removes `name` in `dir`: a file, a link (not what it points to) or a
/// whole tree, never following a link.
fn remove_tree(dir: &File, name: &str, depth: usize) -> io::Result<()> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if kind_of(st.st_mode) != Kind::Directory {
        return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
    }
    if depth >= MAX_REMOVE_DEPTH {
        return Err(io::Error::other(format!(
            "the tree is deeper than {MAX_REMOVE_DEPTH} levels"
        )));
    }
    let sub = File::from(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?);
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(entry.file_name().to_owned());
        }
    }
    for n in names {
        let n = n.to_string_lossy().into_owned();
        match remove_tree(&sub, &n, depth + 1) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)?)
}

/// Whether a link at `link` (relative to the root) to `target` stays
/// beneath the root, read lexically.
pub(crate) fn stays_beneath(link: &str, target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("the target is empty".into());
    }
    if target.starts_with('/') {
        return Err("the target is absolute: it must be relative and stay beneath the root".into());
    }
    if target.contains('\0') {
        return Err("the target contains a NUL byte".into());
    }
    let mut at: Vec<&str> = Vec::new();
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop(); // the link's own name
    for part in parts.into_iter().chain(target.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                if at.pop().is_none() {
                    return Err("the target climbs out of the granted directory".into());
                }
            }
            p => at.push(p),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots() -> (tempfile::TempDir, Root, Root) {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/secret"), "outside").unwrap();
        let rw = Root::open("data", &data, false).unwrap();
        let ro = Root::open("ro", &data, true).unwrap();
        (tmp, rw, ro)
    }

    #[test]
    fn list_stat_mode_and_space() {
        let (tmp, r, ro) = roots();
        r.create_dir("a/b").unwrap();
        r.create_dir("a/b").unwrap(); // fine if it exists
        r.write("a/f", b"12345").unwrap();
        r.symlink("f", "a/link").unwrap();
        let names: Vec<_> = r.list("a").unwrap();
        assert_eq!(
            names,
            [
                ("b".to_string(), Kind::Directory),
                ("f".to_string(), Kind::File),
                ("link".to_string(), Kind::Symlink)
            ]
        );
        let m = r.stat("a/f").unwrap().unwrap();
        assert_eq!((m.kind, m.size, m.mode), (Kind::File, 5, 0o644));
        assert!(m.modified_ms > 0);
        assert_eq!(r.stat("a/link").unwrap().unwrap().kind, Kind::Symlink);
        assert_eq!(r.stat("a/missing").unwrap(), None);
        assert_eq!(r.stat("missing/deeper").unwrap(), None);
        assert_eq!(r.stat("").unwrap().unwrap().kind, Kind::Directory);
        r.set_mode("a/f", 0o755).unwrap();
        assert_eq!(r.stat("a/f").unwrap().unwrap().mode, 0o755);
        // A rewrite keeps the mode.
        r.write("a/f", b"x").unwrap();
        assert_eq!(r.stat("a/f").unwrap().unwrap().mode, 0o755);
        let e = r.set_mode("a/f", 0o4755).unwrap_err();
        assert!(e.contains("setuid, setgid and sticky are refused"), "{e}");
        let e = r.set_mode("a/link", 0o600).unwrap_err();
        assert!(e.contains("is a symbolic link"), "{e}");
        let e = ro.set_mode("a/f", 0o600).unwrap_err();
        assert!(e.contains("is read-only"), "{e}");
        assert!(r.free_space().unwrap() > 0);
        assert_eq!(ro.list("a").unwrap().len(), 3);
        // Reads are cut at the cap and at the end.
        r.write("big", &vec![7u8; 5 << 20]).unwrap();
        assert_eq!(
            r.read("big", 0, u32::MAX).unwrap().len(),
            MAX_READ_BYTES as usize
        );
        assert_eq!(r.read("big", (5 << 20) - 3, 10).unwrap().len(), 3);
        assert!(r.read("big", 6 << 20, 10).unwrap().is_empty());
        drop(tmp);
    }

    #[test]
    fn removing_a_tree_never_follows_a_link_out() {
        let (tmp, r, _) = roots();
        r.create_dir("tree/sub").unwrap();
        r.write("tree/sub/f", b"x").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside"), tmp.path().join("data/tree/out"))
            .unwrap();
        r.remove("tree").unwrap();
        assert!(r.stat("tree").unwrap().is_none());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("outside/secret")).unwrap(),
            "outside"
        );
        // The root itself cannot be removed.
        assert!(
            r.remove("")
                .unwrap_err()
                .contains("names no entry of its own")
        );
        assert!(
            r.remove(".")
                .unwrap_err()
                .contains("names no entry of its own")
        );
    }

    #[test]
    fn a_list_is_capped() {
        let (_tmp, r, _) = roots();
        r.create_dir("many").unwrap();
        for i in 0..=MAX_LIST_ENTRIES {
            std::fs::File::create(_tmp.path().join(format!("data/many/{i}"))).unwrap();
        }
        let e = r.list("many").unwrap_err();
        assert!(e.contains("more than 10000 entries"), "{e}");
    }

    #[test]
    fn links_stay_beneath_lexically() {
        assert!(stays_beneath("current", "releases/v2").is_ok());
        assert!(stays_beneath("a/current", "../releases/v2").is_ok());
        assert!(stays_beneath("current", "../etc").is_err());
        assert!(stays_beneath("a/b", "../../x").is_err());
        assert!(stays_beneath("a/b", "/etc/passwd").is_err());
        assert!(stays_beneath("a/b", "").is_err());
        assert!(stays_beneath("a/b", "x/../../y").is_ok());
        assert!(stays_beneath("a/b", "x/../../../y").is_err());
    }
}
