//! [`TestHost`](super::TestHost)'s `files` and `artifacts`: each grant a
//! real directory (a temporary one in tests), under the runner's rules —
//! paths relative and beneath the root (no `..`, absolute path or symbolic
//! link out), writes refused on a read-only grant, an unknown root named
//! with the granted ones, link targets relative and beneath the root — so a
//! plugin's native tests meet the errors it meets in the runner.

use crate::fs::{DirEntry, EntryKind, Metadata};
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

/// One granted directory of the fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRoot {
    pub path: PathBuf,
    pub read_only: bool,
    /// What `free_space` reports.
    pub free_space: u64,
}

/// The grant named `name`, or the runner's error.
pub(crate) fn find<'r>(
    roots: &'r BTreeMap<String, FakeRoot>,
    name: &str,
    plugin: &str,
) -> Result<&'r FakeRoot, String> {
    if roots.is_empty() {
        return Err(format!(
            "capability `files` not granted to plugin `{plugin}` by the policy"
        ));
    }
    roots.get(name).ok_or_else(|| {
        format!(
            "no files grant named `{name}` for plugin `{plugin}`; it is granted: {}",
            roots
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

fn outside(name: &str, path: &str) -> String {
    format!(
        "`{name}/{path}`: it leads outside the granted directory `{name}` (through `..` or a symbolic link)"
    )
}

fn io(name: &str, path: &str, e: std::io::Error) -> String {
    format!("`{name}/{path}`: {e}")
}

/// `path` with symlinks resolved as far as it exists.
fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path.to_path_buf();
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest
                .iter()
                .rev()
                .fold(real, |p, c: &std::ffi::OsString| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(last)) => {
                rest.push(last.to_owned());
                at = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

impl FakeRoot {
    /// `path` checked and made absolute; `follow`: the final component may
    /// be a link (it must then stay beneath the root too).
    fn at(&self, name: &str, path: &str, follow: bool) -> Result<PathBuf, String> {
        if path.starts_with('/') {
            return Err(format!(
                "`{path}` is absolute: paths are relative to the granted directory `{name}`"
            ));
        }
        let mut rel = PathBuf::new();
        for c in Path::new(path).components() {
            match c {
                Component::Normal(part) => rel.push(part),
                Component::CurDir => {}
                Component::ParentDir => {
                    if !rel.pop() {
                        return Err(outside(name, path));
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(outside(name, path)),
            }
        }
        let full = self.path.join(&rel);
        let probe = if follow || rel.as_os_str().is_empty() {
            full.clone()
        } else {
            full.parent().map(Path::to_path_buf).unwrap_or_default()
        };
        let root = canonical(&self.path);
        if !canonical(&probe).starts_with(&root) {
            return Err(outside(name, path));
        }
        Ok(full)
    }

    /// An entry's own path (its final component not followed).
    fn entry(&self, name: &str, path: &str) -> Result<PathBuf, String> {
        let full = self.at(name, path, false)?;
        if full == self.path || path.trim_end_matches('/').ends_with("..") {
            return Err(format!("`{path}` names no entry of its own"));
        }
        Ok(full)
    }

    fn writable(&self, name: &str, what: &str, path: &str) -> Result<(), String> {
        if self.read_only {
            Err(format!(
                "cannot {what} `{name}/{path}`: the files grant `{name}` is read-only (`readOnly: false` in the policy makes it writable)"
            ))
        } else {
            Ok(())
        }
    }

    pub(crate) fn read(
        &self,
        name: &str,
        path: &str,
        offset: u64,
        max: u32,
    ) -> Result<Vec<u8>, String> {
        let full = self.at(name, path, true)?;
        let bytes = std::fs::read(&full).map_err(|e| io(name, path, e))?;
        let start = (offset as usize).min(bytes.len());
        let end = start
            .saturating_add(max.min(4 << 20) as usize)
            .min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    pub(crate) fn write(&self, name: &str, path: &str, data: &[u8]) -> Result<(), String> {
        self.writable(name, "write", path)?;
        let full = self.entry(name, path)?;
        let tmp = full.with_file_name(format!(
            ".{}.duplex-test.tmp",
            full.file_name().unwrap_or_default().to_string_lossy()
        ));
        std::fs::write(&tmp, data)
            .and_then(|()| std::fs::rename(&tmp, &full))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                io(name, path, e)
            })
    }

    pub(crate) fn append(&self, name: &str, path: &str, data: &[u8]) -> Result<(), String> {
        use std::io::Write;
        self.writable(name, "append to", path)?;
        let full = self.at(name, path, true)?;
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&full)
            .and_then(|mut f| f.write_all(data))
            .map_err(|e| io(name, path, e))
    }

    pub(crate) fn set_mode(&self, name: &str, path: &str, mode: u32) -> Result<(), String> {
        use std::os::unix::fs::PermissionsExt;
        self.writable(name, "change the mode of", path)?;
        if mode & !0o777 != 0 {
            return Err(format!(
                "mode {mode:#o} for `{name}/{path}`: only permission bits (0o777) can be set; setuid, setgid and sticky are refused"
            ));
        }
        let full = self.entry(name, path)?;
        let meta = std::fs::symlink_metadata(&full).map_err(|e| io(name, path, e))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "`{name}/{path}` is a symbolic link: set the mode of what it points to"
            ));
        }
        std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io(name, path, e))
    }

    pub(crate) fn create_dir(&self, name: &str, path: &str) -> Result<(), String> {
        self.writable(name, "create", path)?;
        let full = self.at(name, path, true)?;
        std::fs::create_dir_all(&full).map_err(|e| io(name, path, e))?;
        self.at(name, path, true).map(drop)
    }

    pub(crate) fn list(&self, name: &str, path: &str) -> Result<Vec<DirEntry>, String> {
        let full = self.at(name, path, true)?;
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&full).map_err(|e| io(name, path, e))? {
            let entry = entry.map_err(|e| io(name, path, e))?;
            let t = entry.file_type().map_err(|e| io(name, path, e))?;
            out.push(DirEntry {
                name: entry.file_name().to_string_lossy().into_owned(),
                kind: kind(&t),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) fn stat(&self, name: &str, path: &str) -> Result<Option<Metadata>, String> {
        use std::os::unix::fs::MetadataExt;
        let full = self.at(name, path, false)?;
        match std::fs::symlink_metadata(&full) {
            Ok(m) => Ok(Some(Metadata {
                kind: kind(&m.file_type()),
                size: m.len(),
                modified_ms: (m.mtime().max(0) as u64) * 1000 + m.mtime_nsec() as u64 / 1_000_000,
                mode: m.mode() & 0o7777,
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(name, path, e)),
        }
    }

    pub(crate) fn read_link(&self, name: &str, path: &str) -> Result<String, String> {
        let full = self.entry(name, path)?;
        std::fs::read_link(&full)
            .map(|t| t.to_string_lossy().into_owned())
            .map_err(|e| io(name, path, e))
    }

    pub(crate) fn rename(&self, name: &str, from: &str, to: &str) -> Result<(), String> {
        self.writable(name, "rename", from)?;
        let a = self.entry(name, from)?;
        let b = self.entry(name, to)?;
        std::fs::rename(&a, &b).map_err(|e| io(name, from, e))
    }

    pub(crate) fn symlink(&self, name: &str, target: &str, path: &str) -> Result<(), String> {
        self.writable(name, "create a link at", path)?;
        let why = if target.is_empty() {
            Some("the target is empty")
        } else if target.starts_with('/') {
            Some("the target is absolute: it must be relative and stay beneath the root")
        } else {
            let mut depth: Vec<&str> = path.split('/').collect();
            depth.pop();
            let mut at: Vec<&str> = Vec::new();
            let mut out = false;
            for part in depth.into_iter().chain(target.split('/')) {
                match part {
                    "" | "." => {}
                    ".." => out |= at.pop().is_none(),
                    p => at.push(p),
                }
            }
            out.then_some("the target climbs out of the granted directory")
        };
        if let Some(why) = why {
            return Err(format!("a link at `{name}/{path}` to `{target}`: {why}"));
        }
        let full = self.entry(name, path)?;
        std::os::unix::fs::symlink(target, &full).map_err(|e| io(name, path, e))
    }

    pub(crate) fn remove(&self, name: &str, path: &str) -> Result<(), String> {
        self.writable(name, "remove", path)?;
        let full = self.entry(name, path)?;
        let result = match std::fs::symlink_metadata(&full) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => Err(e),
            Ok(m) if m.is_dir() => std::fs::remove_dir_all(&full),
            Ok(_) => std::fs::remove_file(&full),
        };
        result.map_err(|e| io(name, path, e))
    }
}

fn kind(t: &std::fs::FileType) -> EntryKind {
    if t.is_symlink() {
        EntryKind::Symlink
    } else if t.is_dir() {
        EntryKind::Directory
    } else if t.is_file() {
        EntryKind::File
    } else {
        EntryKind::Other
    }
}

/// The artifact `name`, or the runner's error.
pub(crate) fn artifact<'a>(
    artifacts: &'a Option<BTreeMap<String, Vec<u8>>>,
    name: &str,
    plugin: &str,
) -> Result<&'a [u8], String> {
    let Some(all) = artifacts else {
        return Err(format!(
            "capability `artifacts` not granted to plugin `{plugin}` by the policy"
        ));
    };
    all.get(name).map(Vec::as_slice).ok_or_else(|| {
        format!(
            "no artifact named `{name}`; the policy's software: {}",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.keys()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::{TestHost, context};
    use crate::{Cx, UpgradeState};
    use std::io::Read;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn dir(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("duplex-sdk-fake-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("outside/secret"), "outside").unwrap();
        Dir(d)
    }

    #[test]
    fn the_fake_keeps_the_runners_rules() {
        let d = dir("rules");
        let mut host = TestHost::new();
        host.grant_dir("data", d.0.join("data"), false);
        host.grant_dir("ro", d.0.join("outside"), true);
        std::os::unix::fs::symlink(d.0.join("outside"), d.0.join("data/out")).unwrap();
        let ctx = context(UpgradeState::Split, serde_json::json!({}));
        let mut cx = Cx::new(&ctx, &mut host);
        let mut fs = cx.fs("data");
        fs.write("a.json", "{\"v\": 2}").unwrap();
        let v: serde_json::Value = fs.read_json("a.json").unwrap();
        assert_eq!(v["v"], 2);
        for path in ["../outside/secret", "out/secret"] {
            let e = fs.read_to_end(path).unwrap_err().to_string();
            assert!(
                e.contains("leads outside the granted directory `data`"),
                "{e}"
            );
        }
        let e = fs.write("out/new", "x").unwrap_err().to_string();
        assert!(e.contains("leads outside"), "{e}");
        let e = fs.read_to_end("/etc/passwd").unwrap_err().to_string();
        assert!(e.contains("is absolute"), "{e}");
        let e = fs.symlink("../outside", "link").unwrap_err().to_string();
        assert!(e.contains("climbs out"), "{e}");
        fs.symlink("a.json", "link").unwrap();
        assert_eq!(fs.read_link("link").unwrap(), "a.json");
        let e = cx.fs("ro").write("secret", "x").unwrap_err().to_string();
        assert!(e.contains("the files grant `ro` is read-only"), "{e}");
        let e = cx.fs("nope").read_to_end("x").unwrap_err().to_string();
        assert_eq!(
            e,
            "no files grant named `nope` for plugin `test`; it is granted: `data`, `ro`"
        );
        let e = cx.artifact("app").read_to_end().unwrap_err().to_string();
        assert!(e.contains("capability `artifacts` not granted"), "{e}");
        assert_eq!(
            std::fs::read_to_string(d.0.join("outside/secret")).unwrap(),
            "outside"
        );
    }

    #[test]
    fn an_artifact_reads_in_chunks_and_copies_into_a_grant() {
        let d = dir("artifact");
        let mut host = TestHost::new();
        host.grant_dir("data", d.0.join("data"), false);
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        host.grant_artifact("app", big.clone());
        let ctx = context(UpgradeState::Split, serde_json::json!({}));
        let mut cx = Cx::new(&ctx, &mut host);
        let mut read = Vec::new();
        cx.artifact("app").reader().read_to_end(&mut read).unwrap();
        assert_eq!(read, big);
        assert_eq!(
            cx.artifact("app").copy_to("data", "app.bin").unwrap(),
            3_000_000
        );
        assert_eq!(std::fs::read(d.0.join("data/app.bin")).unwrap(), big);
        let e = cx.artifact("other").read_to_end().unwrap_err().to_string();
        assert_eq!(e, "no artifact named `other`; the policy's software: `app`");
    }
}
