//! On-disk cache of precompiled components.
//!
//! An entry is `<component sha256>-<engine hash>.cwasm` plus a `.sum` file with the
//! sha256 of the `.cwasm`. The engine hash is derived from
//! [`wasmtime::Engine::precompile_compatibility_hash`], so a different wasmtime or
//! engine configuration never sees another's entries. An entry is used only when
//! its bytes match its recorded checksum; anything else (missing sum, torn write,
//! bit rot, a deserialize error) is rebuilt and overwritten, never trusted.
//!
//! The cache directory is trusted the way the runner binary is: whoever can
//! write it can run native code in the runner. The checksum guards against
//! corruption, not against an attacker (who could rewrite both files).

use super::digest::sha256_hex;
use std::fs::{self, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// An entry existed but was corrupt or stale: compiled and replaced.
    Rebuilt,
    /// No cache configured: compiled.
    Disabled,
}

pub(crate) struct Cache {
    dir: Option<PathBuf>,
    engine_hash: String,
}

impl Cache {
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> io::Result<Cache> {
        if let Some(dir) = &dir {
            fs::create_dir_all(dir)?;
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
    /// is only called when no valid entry exists.
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
        if let Ok(art) = fs::read(&path) {
            status = CacheStatus::Rebuilt;
            let sum = fs::read_to_string(&sum_path).unwrap_or_default();
            if sum.trim() == sha256_hex(&art) {
                // SAFETY: `Component::deserialize` runs the bytes as native code
                // without validating them. These bytes are exactly what
                // `Engine::precompile_component` of an engine with the same
                // compatibility hash (part of the file name) wrote into our own
                // cache directory: their checksum was verified above on the same
                // in-memory buffer we deserialize (no re-read, no TOCTOU), and the
                // directory is as trusted as the runner binary (module docs).
                if let Ok(c) = unsafe { Component::deserialize(engine, &art) } {
                    return Ok((c, CacheStatus::Hit));
                }
            }
        }
        let art = compile()?;
        // SAFETY: `art` was produced just now by this very engine.
        let component = unsafe { Component::deserialize(engine, &art)? };
        // A cache we cannot write only costs time: ignore write errors.
        let _ = write_atomic(&path, &art)
            .and_then(|()| write_atomic(&sum_path, sha256_hex(&art).as_bytes()));
        Ok((component, status))
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        path.file_name().and_then(|n| n.to_str()).unwrap_or("entry")
    ));
    let res = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}
