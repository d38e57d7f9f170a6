//! Artifacts: the software a policy installs, verified against the digest
//! the policy pins and staged once, content-addressed, in the state dir.
//!
//! **Staging** ([`stage`]): the runner copies each artifact from its
//! `source` (a path relative to the policy file, or an `http(s)://` URL) to
//! `<state>/artifacts/sha256/<hex>`, hashing it as it streams (a fixed-size
//! buffer: memory does not grow with the artifact) into a temporary file,
//! which is renamed into place only when its size and sha256 are the pinned
//! ones, after an fsync, read-only (mode 0444); the directory is synced
//! after the rename. A mismatch is [`ArtifactError::DigestMismatch`], naming
//! the artifact, the pinned and the actual digest, and leaves nothing
//! staged. Plugins read the staged copy (the `artifacts` capability), never
//! the source: replacing the source after it was verified changes nothing.
//!
//! **Reuse**: an artifact already staged is hashed again (streamed) every
//! time it is staged — when a session starts and right before each install
//! — and used only when its digest still matches; a copy that does not
//! (corrupted on disk, changed by hand) is removed and staged afresh from
//! the source. Size and name alone are not trusted: re-hashing costs one
//! sequential read of the file (see benches/RESULTS.md) and catches a
//! damaged copy before any plugin reads it.
//!
//! **Downloads**: an `http(s)://` source is fetched (ureq, rustls) into
//! `<hex>.partial` next to the staged copy, hashed as it arrives. A download
//! that breaks off keeps its `.partial`; the next staging hashes what is
//! there and continues with a `Range` request. A server that answers the
//! range with the whole file (`200`) or refuses it (`416`) restarts the
//! download cleanly from the first byte. A complete download whose digest
//! does not match is removed. `duplex validate` checks a URL's form only: it
//! never fetches.
//!
//! A local source is opened without waiting (a FIFO must not hang the
//! runner) and refused unless it is a regular file (a device such as
//! `/dev/zero` never ends).

use crate::files::{self, FileKind, WrongKind};
use crate::plugins;
use crate::policy::{Diagnostic, Finding, LoadedPolicy, Sha256, Software};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The size of the buffer an artifact streams through.
const CHUNK: usize = 1 << 20;

/// Why an artifact cannot be handed over.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("artifact `{name}` ({}): cannot read it: {source}", .path.display())]
    Unreadable {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "artifact `{name}` ({}) is {kind}, not a regular file; give the path of the artifact file itself",
        .path.display()
    )]
    NotARegularFile {
        name: String,
        path: PathBuf,
        kind: FileKind,
    },
    #[error(
        "artifact `{name}` ({from}) does not match its pinned digest: the policy pins sha256 {pinned}, the {what} has sha256 {actual}",
        what = if .from.contains("://") { "download" } else { "file" }
    )]
    DigestMismatch {
        name: String,
        /// The source, as a path or a URL.
        from: String,
        pinned: Sha256,
        actual: Sha256,
    },
    #[error("artifact `{name}`: cannot download {url}: {message}")]
    Download {
        name: String,
        url: String,
        message: String,
    },
    #[error("artifact `{name}`: `{url}` is not a URL duplex can download: {message}")]
    BadUrl {
        name: String,
        url: String,
        message: String,
    },
    #[error("artifact `{name}`: cannot stage it in {}: {source}", .path.display())]
    Stage {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ArtifactError {
    /// The field of the software item the problem is with.
    pub fn field(&self) -> &'static str {
        match self {
            ArtifactError::DigestMismatch { .. } => "sha256",
            ArtifactError::Unreadable { .. }
            | ArtifactError::NotARegularFile { .. }
            | ArtifactError::Download { .. }
            | ArtifactError::BadUrl { .. }
            | ArtifactError::Stage { .. } => "source",
        }
    }
}

/// Whether a software `source` is a URL (`http://`, `https://`, or any
/// other `scheme://`, which is refused).
pub fn is_url(source: &str) -> bool {
    source.contains("://")
}

/// Where the artifact with this digest is staged.
pub fn staged_path(state_dir: &Path, sha256: &Sha256) -> PathBuf {
    staging_dir(state_dir).join(sha256.to_string())
}

fn staging_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("artifacts").join("sha256")
}

/// An artifact staged and verified.
#[derive(Debug, Clone)]
pub struct Staged {
    pub artifact: plugins::Artifact,
    /// The staged copy.
    pub path: PathBuf,
    /// It was staged before and still matched (nothing was copied).
    pub reused: bool,
}

/// Stage `software` in the state dir (or reuse its intact staged copy).
pub fn stage(
    policy: &LoadedPolicy,
    software: &Software,
    state_dir: &Path,
) -> Result<Staged, ArtifactError> {
    let dir = staging_dir(state_dir);
    let path = staged_path(state_dir, &software.sha256);
    let name = &software.name;
    let stage_err = |source: io::Error| ArtifactError::Stage {
        name: name.clone(),
        path: dir.clone(),
        source,
    };
    let staged = |size: u64, reused: bool| Staged {
        artifact: plugins::Artifact {
            name: software.name.clone(),
            version: software.version.clone(),
            sha256: software.sha256.to_string(),
            size,
            source: software.source.clone(),
        },
        path: path.clone(),
        reused,
    };
    // An intact staged copy is used as it is; a damaged one is replaced.
    match files::open_regular(&path, "a regular file") {
        Ok(file) => {
            let (actual, size) = Sha256::of_reader(file).map_err(stage_err)?;
            if actual == software.sha256 {
                return Ok(staged(size, true));
            }
            std::fs::remove_file(&path).map_err(stage_err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(_) => {
            // Something else is in the way (a directory, a FIFO): ours to clear.
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
    std::fs::create_dir_all(&dir).map_err(stage_err)?;
    let size = if is_url(&software.source) {
        download(software, &dir)?
    } else {
        copy_local(policy, software, &dir)?
    };
    sync_dir(&dir).map_err(stage_err)?;
    Ok(staged(size, false))
}

/// Copies a local artifact to a temporary file while hashing it, and
/// renames it into place when it matches.
fn copy_local(
    policy: &LoadedPolicy,
    software: &Software,
    dir: &Path,
) -> Result<u64, ArtifactError> {
    let source = policy.resolve(&software.source);
    let mut from = open_source(software, &source)?;
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        software.sha256,
        std::process::id(),
        fastrand::u64(..)
    ));
    let stage_err = |source: io::Error| ArtifactError::Stage {
        name: software.name.clone(),
        path: dir.to_path_buf(),
        source,
    };
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(stage_err)?;
    let mut hasher = Hasher::default();
    let copied = pump(&mut from, &mut to, &mut hasher);
    let result = match copied {
        Err(Pumped::Read(e)) => Err(ArtifactError::Unreadable {
            name: software.name.clone(),
            path: source.clone(),
            source: e,
        }),
        Err(Pumped::Write(e)) => Err(stage_err(e)),
        Ok(()) => finish(
            software,
            source.display().to_string(),
            hasher,
            to,
            &tmp,
            dir,
        ),
    };
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn open_source(software: &Software, path: &Path) -> Result<File, ArtifactError> {
    files::open_regular(path, "a regular file").map_err(|source| {
        match source.get_ref().and_then(|e| e.downcast_ref::<WrongKind>()) {
            Some(wrong) => ArtifactError::NotARegularFile {
                name: software.name.clone(),
                path: path.to_path_buf(),
                kind: wrong.kind,
            },
            None => ArtifactError::Unreadable {
                name: software.name.clone(),
                path: path.to_path_buf(),
                source,
            },
        }
    })
}

/// Checks what was written to `file` (at `tmp`) against the pin and, when
/// it matches, makes it the staged copy.
fn finish(
    software: &Software,
    from: String,
    hasher: Hasher,
    file: File,
    tmp: &Path,
    dir: &Path,
) -> Result<u64, ArtifactError> {
    let (actual, size) = hasher.finish();
    if actual != software.sha256 {
        let _ = std::fs::remove_file(tmp);
        return Err(ArtifactError::DigestMismatch {
            name: software.name.clone(),
            from,
            pinned: software.sha256.clone(),
            actual,
        });
    }
    let stage_err = |source: io::Error| ArtifactError::Stage {
        name: software.name.clone(),
        path: dir.to_path_buf(),
        source,
    };
    file.set_permissions(std::fs::Permissions::from_mode(0o444))
        .map_err(stage_err)?;
    file.sync_all().map_err(stage_err)?;
    drop(file);
    std::fs::rename(tmp, dir.join(software.sha256.to_string())).map_err(stage_err)?;
    Ok(size)
}

/// A streamed sha256 and byte count.
#[derive(Default)]
struct Hasher {
    inner: sha2::Sha256,
    size: u64,
}

impl Hasher {
    fn update(&mut self, bytes: &[u8]) {
        use sha2::Digest;
        self.inner.update(bytes);
        self.size += bytes.len() as u64;
    }

    fn finish(self) -> (Sha256, u64) {
        use sha2::Digest;
        let hex: String = self
            .inner
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (
            hex.parse().expect("a sha256 digest is 64 hex digits"),
            self.size,
        )
    }
}

enum Pumped {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` through a fixed buffer, hashing what passes.
fn pump(from: &mut impl Read, to: &mut impl Write, hasher: &mut Hasher) -> Result<(), Pumped> {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Pumped::Read(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(Pumped::Write)?;
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// How long a download may wait for a connection, for the response, and
/// for each read of its body.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Downloads `software.source` into `<hex>.partial` (resuming what a
/// previous attempt left) and renames it into place when it matches.
fn download(software: &Software, dir: &Path) -> Result<u64, ArtifactError> {
    let url = software.source.as_str();
    let name = &software.name;
    check_url(name, url)?;
    let failed = |message: String| ArtifactError::Download {
        name: name.clone(),
        url: url.to_string(),
        message,
    };
    let stage_err = |source: io::Error| ArtifactError::Stage {
        name: name.clone(),
        path: dir.to_path_buf(),
        source,
    };
    let partial = dir.join(format!("{}.partial", software.sha256));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&partial)
        .map_err(stage_err)?;
    // What an earlier attempt fetched, hashed again.
    let mut hasher = Hasher::default();
    pump(&mut file, &mut io::sink(), &mut hasher).map_err(|e| match e {
        Pumped::Read(e) | Pumped::Write(e) => stage_err(e),
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_per_read(Some(READ_TIMEOUT))
        .user_agent(concat!("duplex/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let get = |from: u64| {
        let mut request = agent.get(url).header("Accept-Encoding", "identity");
        if from > 0 {
            request = request.header("Range", format!("bytes={from}-"));
        }
        request.call().map_err(|e| failed(e.to_string()))
    };
    let mut have = hasher.size;
    let mut response = get(have)?;
    if have > 0 {
        let status = response.status().as_u16();
        let resumes = status == 206
            && response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().starts_with(&format!("bytes {have}-")));
        if !resumes {
            // The whole file again (the server ignores ranges, or the part
            // kept is not a prefix it recognises): start from the first byte.
            file.set_len(0).map_err(stage_err)?;
            hasher = Hasher::default();
            have = 0;
            if status != 200 {
                response = get(0)?;
            }
        }
    }
    let status = response.status().as_u16();
    let expected = if have > 0 { 206 } else { 200 };
    if status != expected {
        return Err(failed(format!(
            "the server answered {status} {}",
            response.status().canonical_reason().unwrap_or("")
        )));
    }
    file.seek(io::SeekFrom::Start(have)).map_err(stage_err)?;
    let mut body = response.into_body().into_reader();
    match pump(&mut body, &mut file, &mut hasher) {
        Ok(()) => {}
        Err(Pumped::Read(e)) => {
            // What arrived stays in the `.partial` for the next attempt.
            let _ = file.sync_data();
            return Err(failed(format!(
                "the transfer broke off after {} bytes ({e}); staging again resumes it",
                hasher.size
            )));
        }
        Err(Pumped::Write(e)) => return Err(stage_err(e)),
    }
    finish(software, url.to_string(), hasher, file, &partial, dir)
}

/// Whether `url` is one duplex downloads: `http://` or `https://` with a host.
fn check_url(name: &str, url: &str) -> Result<(), ArtifactError> {
    let bad = |message: &str| ArtifactError::BadUrl {
        name: name.to_string(),
        url: url.to_string(),
        message: message.to_string(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("only http:// and https:// sources are downloaded"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() {
        return Err(bad("it names no host"));
    }
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL would be written to the journal; serve it without them",
        ));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    Ok(())
}

/// Read a local artifact, as a stream, and check it against its pinned
/// digest (what `validate` does; staging does the same while copying).
pub fn verify_artifact(
    policy: &LoadedPolicy,
    software: &Software,
) -> Result<plugins::Artifact, ArtifactError> {
    let path = policy.resolve(&software.source);
    let file = open_source(software, &path)?;
    let (actual, size) = Sha256::of_reader(file).map_err(|source| ArtifactError::Unreadable {
        name: software.name.clone(),
        path: path.clone(),
        source,
    })?;
    if actual != software.sha256 {
        return Err(ArtifactError::DigestMismatch {
            name: software.name.clone(),
            from: path.display().to_string(),
            pinned: software.sha256.clone(),
            actual,
        });
    }
    Ok(plugins::Artifact {
        name: software.name.clone(),
        version: software.version.clone(),
        sha256: software.sha256.to_string(),
        size,
        source: software.source.clone(),
    })
}

/// Every artifact problem `validate` can see without downloading: each
/// local file read and checked against its digest, each URL checked for
/// its form only (it is fetched when a session starts). Placed at the
/// software item's field (`source`, or `sha256` for a mismatch).
pub fn findings(policy: &LoadedPolicy) -> Vec<Finding> {
    policy
        .policy
        .spec
        .software
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let checked = if is_url(&s.source) {
                check_url(&s.name, &s.source)
            } else {
                verify_artifact(policy, s).map(drop)
            };
            checked
                .err()
                .map(|e| Finding::value(format!("/spec/software/{i}/{}", e.field()), e.to_string()))
        })
        .collect()
}

/// Stage every artifact before a session starts; the problems placed in
/// the policy file.
pub fn stage_all(policy: &LoadedPolicy, state_dir: &Path) -> Result<Vec<Staged>, Vec<Diagnostic>> {
    let mut staged = Vec::new();
    let mut findings = Vec::new();
    for (i, s) in policy.policy.spec.software.iter().enumerate() {
        match stage(policy, s, state_dir) {
            Ok(one) => staged.push(one),
            Err(e) => findings.push(Finding::value(
                format!("/spec/software/{i}/{}", e.field()),
                e.to_string(),
            )),
        }
    }
    if findings.is_empty() {
        Ok(staged)
    } else {
        Err(policy.place(findings))
    }
}
