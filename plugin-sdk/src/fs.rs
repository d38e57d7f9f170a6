//! The `files` and `artifacts` capabilities: [`Cx::fs`] and [`Cx::artifact`].
//!
//! ```
//! use duplex_plugin_sdk::prelude::*;
//! use duplex_plugin_sdk::testing::TestHost;
//! # fn demo(cx: &mut Cx<'_>) -> Result<(), Error> {
//! // Policy: capabilities: {files: [{name: releases, path: /srv/acme, readOnly: false}],
//! //                        artifacts: true}
//! let mut releases = cx.fs("releases");
//! releases.create_dir("v2")?;
//! releases.write("v2/VERSION", "2.0.0\n")?;
//! releases.symlink("v2", "next")?; // relative, beneath the root
//! releases.rename("next", "current")?; // atomic switch
//! assert_eq!(releases.read_to_string("current/VERSION")?, "2.0.0\n");
//! // The artifact the runner verified, streamed (e.g. into flate2 + tar):
//! let mut bytes = Vec::new();
//! std::io::Read::read_to_end(&mut cx.artifact("app").reader(), &mut bytes).unwrap();
//! assert_eq!(bytes, b"app bytes");
//! cx.artifact("app").copy_to("releases", "v2/app.tar.gz")?;
//! # Ok(()) }
//! # let dir = std::env::temp_dir().join(format!("duplex-sdk-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let mut host = TestHost::new();
//! # host.grant_dir("releases", &dir, false);
//! # host.grant_artifact("app", b"app bytes".to_vec());
//! # let ctx = duplex_plugin_sdk::testing::context(UpgradeState::Split, serde_json::json!({}));
//! # demo(&mut Cx::new(&ctx, &mut host)).unwrap();
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::Error;
use crate::host::{Cx, Host};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crate::bindings::duplex::plugin::files::{DirEntry, EntryKind, Metadata};

/// How much one host call reads (the host's own cap is 4 MiB).
pub const CHUNK_BYTES: u32 = 1 << 20;

impl<'a> Cx<'a> {
    /// The directory the policy grants under `root` (`capabilities.files`).
    /// Paths are relative to it; nothing outside it is reachable.
    pub fn fs(&mut self, root: &str) -> Fs<'_> {
        Fs {
            host: &mut *self.host,
            root: root.to_string(),
        }
    }

    /// The artifact `name` of the policy's software, exactly the bytes the
    /// runner verified (`capabilities.artifacts: true`).
    pub fn artifact(&mut self, name: &str) -> ArtifactFile<'_> {
        ArtifactFile {
            host: &mut *self.host,
            name: name.to_string(),
        }
    }
}

/// A granted directory (see [`Cx::fs`]).
pub struct Fs<'a> {
    host: &'a mut dyn Host,
    root: String,
}

impl Fs<'_> {
    /// Up to `max` bytes of `path` from `offset`; empty at the end.
    pub fn read(&mut self, path: &str, offset: u64, max: u32) -> Result<Vec<u8>, Error> {
        crate::host::files_read(&mut *self.host, &self.root, path, offset, max).map_err(Error)
    }

    /// The whole file, read in chunks.
    pub fn read_to_end(&mut self, path: &str) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(path, out.len() as u64, CHUNK_BYTES)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    pub fn read_to_string(&mut self, path: &str) -> Result<String, Error> {
        String::from_utf8(self.read_to_end(path)?)
            .map_err(|_| Error(format!("files `{}`: `{path}` is not UTF-8 text", self.root)))
    }

    pub fn read_json<T: DeserializeOwned>(&mut self, path: &str) -> Result<T, Error> {
        serde_json::from_slice(&self.read_to_end(path)?).map_err(|e| {
            Error(format!(
                "files `{}`: `{path}` does not hold the expected JSON: {e}",
                self.root
            ))
        })
    }

    /// A [`std::io::Read`] over the file (chunked host calls).
    pub fn reader(&mut self, path: &str) -> ChunkReader<'_> {
        ChunkReader::new(
            &mut *self.host,
            Source::File {
                root: self.root.clone(),
                path: path.to_string(),
            },
        )
    }

    /// Replaces the file atomically.
    pub fn write(&mut self, path: &str, data: impl AsRef<[u8]>) -> Result<(), Error> {
        crate::host::files_write(&mut *self.host, &self.root, path, data.as_ref()).map_err(Error)
    }

    pub fn write_json<T: Serialize + ?Sized>(
        &mut self,
        path: &str,
        value: &T,
    ) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
            Error(format!(
                "files `{}`: cannot encode `{path}`: {e}",
                self.root
            ))
        })?;
        self.write(path, bytes)
    }

    /// Appends, creating the file.
    pub fn append(&mut self, path: &str, data: impl AsRef<[u8]>) -> Result<(), Error> {
        crate::host::files_append(&mut *self.host, &self.root, path, data.as_ref()).map_err(Error)
    }

    /// Permission bits (0o777 at most).
    pub fn set_mode(&mut self, path: &str, mode: u32) -> Result<(), Error> {
        crate::host::files_set_mode(&mut *self.host, &self.root, path, mode).map_err(Error)
    }

    /// Creates the directory and its parents; fine if it exists.
    pub fn create_dir(&mut self, path: &str) -> Result<(), Error> {
        crate::host::files_create_dir(&mut *self.host, &self.root, path).map_err(Error)
    }

    /// The entries of a directory (`""` is the root), sorted by name.
    pub fn list(&mut self, path: &str) -> Result<Vec<DirEntry>, Error> {
        crate::host::files_list(&mut *self.host, &self.root, path).map_err(Error)
    }

    /// Without following a final link; `None` when nothing is there.
    pub fn stat(&mut self, path: &str) -> Result<Option<Metadata>, Error> {
        crate::host::files_stat(&mut *self.host, &self.root, path).map_err(Error)
    }

    pub fn exists(&mut self, path: &str) -> Result<bool, Error> {
        Ok(self.stat(path)?.is_some())
    }

    pub fn read_link(&mut self, path: &str) -> Result<String, Error> {
        crate::host::files_read_link(&mut *self.host, &self.root, path).map_err(Error)
    }

    /// Atomically replaces whatever is at `to`.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), Error> {
        crate::host::files_rename(&mut *self.host, &self.root, from, to).map_err(Error)
    }

    /// A link at `path` to `target` (relative, staying beneath the root).
    pub fn symlink(&mut self, target: &str, path: &str) -> Result<(), Error> {
        crate::host::files_symlink(&mut *self.host, &self.root, target, path).map_err(Error)
    }

    /// A file, a link or a whole tree; fine if nothing is there.
    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        crate::host::files_remove(&mut *self.host, &self.root, path).map_err(Error)
    }

    /// Bytes available to an unprivileged user on the root's file system.
    pub fn free_space(&mut self) -> Result<u64, Error> {
        crate::host::files_free_space(&mut *self.host, &self.root).map_err(Error)
    }
}

/// One of the policy's artifacts (see [`Cx::artifact`]).
pub struct ArtifactFile<'a> {
    host: &'a mut dyn Host,
    name: String,
}

impl ArtifactFile<'_> {
    /// Up to `max` bytes from `offset`; empty at the end.
    pub fn read(&mut self, offset: u64, max: u32) -> Result<Vec<u8>, Error> {
        crate::host::artifact_read(&mut *self.host, &self.name, offset, max).map_err(Error)
    }

    /// The whole artifact (mind the plugin's memory limit; prefer
    /// [`ArtifactFile::reader`] or [`ArtifactFile::copy_to`] for large ones).
    pub fn read_to_end(&mut self) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        loop {
            let chunk = self.read(out.len() as u64, CHUNK_BYTES)?;
            if chunk.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&chunk);
        }
    }

    /// A [`std::io::Read`] over the artifact, one chunk in memory at a
    /// time (e.g. `tar::Archive::new(flate2::read::GzDecoder::new(reader))`).
    pub fn reader(&mut self) -> ChunkReader<'_> {
        ChunkReader::new(
            &mut *self.host,
            Source::Artifact {
                name: self.name.clone(),
            },
        )
    }

    /// Copies the artifact into a read-write files grant, atomically;
    /// returns its size.
    pub fn copy_to(&mut self, root: &str, path: &str) -> Result<u64, Error> {
        crate::host::artifact_copy_to(&mut *self.host, &self.name, root, path).map_err(Error)
    }
}

enum Source {
    File { root: String, path: String },
    Artifact { name: String },
}

/// [`std::io::Read`] over a file or an artifact, a chunk per host call.
pub struct ChunkReader<'a> {
    host: &'a mut dyn Host,
    source: Source,
    offset: u64,
    buf: Vec<u8>,
    pos: usize,
    done: bool,
}

impl<'a> ChunkReader<'a> {
    fn new(host: &'a mut dyn Host, source: Source) -> Self {
        ChunkReader {
            host,
            source,
            offset: 0,
            buf: Vec::new(),
            pos: 0,
            done: false,
        }
    }
}

impl std::io::Read for ChunkReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() && !self.done {
            let chunk = match &self.source {
                Source::File { root, path } => {
                    crate::host::files_read(&mut *self.host, root, path, self.offset, CHUNK_BYTES)
                }
                Source::Artifact { name } => {
                    crate::host::artifact_read(&mut *self.host, name, self.offset, CHUNK_BYTES)
                }
            }
            .map_err(std::io::Error::other)?;
            self.offset += chunk.len() as u64;
            self.done = chunk.is_empty();
            self.buf = chunk;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
