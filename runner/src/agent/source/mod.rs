//! Where the agent's policy comes from: a directory on disk, or a branch of
//! a git repository (a local checkout read in place, or a URL fetched into
//! the agent's own clone), materialised whole so that paths the policy
//! names relative to itself resolve.
//!
//! [`PolicySource::fetch`] is blocking (run it on a blocking thread); it
//! returns a [`Snapshot`]: the commit, where the policy came from as a
//! session records it, the path to load and the policy file's digest.
//! Fetching an unchanged branch is cheap: the same head gives the same
//! snapshot without touching the checkout. Between fetches the agent waits
//! on [`watch`] (the directories [`PolicySource::watch_paths`] names) and on
//! its fetch interval; nothing here polls.
//!
//! Git sources:
//!
//! - A URL without a scheme (`/srv/policies`, `../repo`) is a repository on
//!   this machine, a checkout (non-bare) or a bare one, read in place with
//!   gix: the *committed* head of `refs/heads/<branch>`, never the working
//!   tree. Nothing is spawned and nothing is copied but the tree.
//! - Any other URL (`https://`, `http://`, `ssh://`, `git://`, `file://`)
//!   is fetched into a bare clone under `<workdir>/repos/`, the branch only
//!   (`+refs/heads/<branch>:refs/remotes/origin/<branch>`, no tags), so a
//!   force-pushed branch is followed. http(s) is gix's smart-HTTP client
//!   over reqwest with rustls, verifying against the system's trust store;
//!   gix's `file://` and `ssh://` transports spawn a program
//!   (`git-upload-pack`, `ssh`), as git does.
//!
//! Either way the commit's whole tree is written to
//! `<workdir>/checkouts/<commit>/` (a temporary directory renamed into
//! place, files fsync'd first, so a directory of that name is complete), the
//! newest [`KEEP_CHECKOUTS`] are kept, and older ones deleted. Files keep
//! their executable bit; symlinks in the tree are created as symlinks (as
//! `git checkout` does); submodules become empty directories; entry names
//! that cannot be written safely (`..`, `.git`, a `/` or NUL) refuse the
//! commit.

mod checkout;
mod git;
mod watch;

#[cfg(test)]
mod git_http;
#[cfg(test)]
mod tests;

use std::path::{Component, Path, PathBuf};

use duplex_core::policy::{LoadError, LoadedPolicy, MAX_POLICY_BYTES, Sha256};

// The agent loop (wired later) is its user; the tests already are.
#[allow(unused_imports)]
pub use watch::watch;

/// How many materialised commits are kept (the current one always is).
pub const KEEP_CHECKOUTS: usize = 3;

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A directory on disk holding the policy file (and whatever it
    /// references by relative path).
    Dir {
        dir: PathBuf,
        /// Relative to `dir`.
        file: PathBuf,
    },
    /// A git repository: a URL (`file://`, `ssh://`, `git://`, or a path to
    /// a repository on this machine, bare or a checkout), a branch, and the
    /// policy file's path inside the repository.
    Git {
        url: String,
        branch: String,
        file: PathBuf,
        /// The agent's own directory for the clone and the checkouts, e.g.
        /// `<state>/agent/git`.
        workdir: PathBuf,
    },
}

/// The policy as one fetch found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The full commit id for git; `None` for a directory.
    pub revision: Option<String>,
    /// Where the policy came from, as a session records it:
    /// `git+<url>@<branch>:<file>` (the URL without credentials) or the
    /// policy file's path.
    pub source_path: String,
    /// The policy file, ready for `duplex_core::policy::load_file`; for git
    /// it lies in the commit's whole materialised tree.
    pub policy_path: PathBuf,
    /// The root of the tree the policy lies in (the directory, or the
    /// materialised commit).
    pub root: PathBuf,
    /// SHA-256 of the policy file's bytes (what `LoadedPolicy::digest` is).
    pub digest: Sha256,
    /// The policy's text when it was not read from `policy_path` (the
    /// fleet stores it); `policy_path` then only places relative paths.
    pub text: Option<String>,
}

impl Snapshot {
    /// Load and check the policy this fetch found.
    pub fn load(&self) -> Result<LoadedPolicy, LoadError> {
        load(&self.policy_path, self.text.as_deref())
    }
}

/// Load a policy: its text when a source handed it over (the fleet), with
/// `path` placing its relative paths; else the file at `path`.
pub fn load(path: &Path, text: Option<&str>) -> Result<LoadedPolicy, LoadError> {
    match text {
        Some(text) => duplex_core::policy::load_text(text, path),
        None => duplex_core::policy::load_file(path),
    }
}

/// What went wrong fetching a policy, naming what and where.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the policy file `{}` cannot be read: {message}", .path.display())]
    PolicyUnreadable { path: PathBuf, message: String },
    #[error("the policy path `{}` is not usable: {reason}", .file.display())]
    InvalidPath { file: PathBuf, reason: &'static str },
    #[error("`{url}` is not a git URL: {message}")]
    InvalidUrl { url: String, message: String },
    #[error("`{branch}` is not a valid branch name")]
    InvalidBranch { branch: String },
    #[error("no git repository at `{url}`: {message}")]
    RepositoryNotFound { url: String, message: String },
    #[error("the repository `{url}` has no branch `{branch}`")]
    BranchMissing { url: String, branch: String },
    #[error("`{}` is not in commit {commit} (branch `{branch}` of `{url}`)", .file.display())]
    FileNotInCommit {
        url: String,
        branch: String,
        commit: String,
        file: PathBuf,
    },
    #[error("`{}` in commit {commit} is {kind}, not a regular file", .file.display())]
    NotAFile {
        commit: String,
        file: PathBuf,
        kind: &'static str,
    },
    #[error("fetching branch `{branch}` from `{url}` failed: {message}")]
    FetchFailed {
        url: String,
        branch: String,
        message: String,
    },
    #[error("reading {what} in the repository `{url}` failed: {message}")]
    Repository {
        url: String,
        what: String,
        message: String,
    },
    #[error("commit {commit} cannot be checked out: `{}` {reason}", .entry.display())]
    UnsafeEntry {
        commit: String,
        entry: PathBuf,
        reason: &'static str,
    },
    #[error("cannot {op} `{}`: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot watch `{}` for changes: {message}", .path.display())]
    Watch { path: PathBuf, message: String },
}

/// A policy source, fetched on demand.
pub struct PolicySource {
    kind: Kind,
}

enum Kind {
    Dir { policy: PathBuf },
    Git(Box<git::GitSource>),
}

impl PolicySource {
    /// Check the spec (nothing is read yet): the policy path must be
    /// relative and stay inside its tree, the branch a valid name, the URL
    /// a URL. Relative directories are made absolute against the current
    /// directory now.
    pub fn new(spec: SourceSpec) -> Result<PolicySource, SourceError> {
        let kind = match spec {
            SourceSpec::Dir { dir, file } => {
                check_relative(&file)?;
                Kind::Dir {
                    policy: absolute(&dir)?.join(file),
                }
            }
            SourceSpec::Git {
                url,
                branch,
                file,
                workdir,
            } => {
                check_relative(&file)?;
                Kind::Git(Box::new(git::GitSource::new(
                    url,
                    branch,
                    file,
                    absolute(&workdir)?,
                )?))
            }
        };
        Ok(PolicySource { kind })
    }

    /// Blocking. For git: fetch the branch (cloning on first use) or read
    /// it in place, and materialise its head commit's tree (reused when
    /// already there); for a directory: read the file. The current snapshot.
    pub fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        match &mut self.kind {
            Kind::Dir { policy } => fetch_dir(policy),
            Kind::Git(git) => git.fetch(),
        }
    }

    /// What to watch for changes between fetches: a directory source's
    /// policy directory; for a local checkout, its policy directory and the
    /// directory holding the branch's ref (a commit lands there; the rest of
    /// `.git` is too noisy). Empty for fetched URLs: only the interval
    /// applies. Paths that do not exist are left out.
    pub fn watch_paths(&self) -> Vec<PathBuf> {
        match &self.kind {
            Kind::Dir { policy } => policy
                .parent()
                .filter(|dir| dir.is_dir())
                .map(Path::to_path_buf)
                .into_iter()
                .collect(),
            Kind::Git(git) => git.watch_paths(),
        }
    }

    /// A flag that, once set, makes a fetch in progress stop at its next
    /// check (gix's interrupt); the source is unusable for fetching after.
    pub fn interrupt_flag(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
        match &self.kind {
            Kind::Dir { .. } => None,
            Kind::Git(git) => Some(git.interrupt_flag()),
        }
    }
}

fn fetch_dir(policy: &Path) -> Result<Snapshot, SourceError> {
    let bytes = duplex_core::files::read_regular(policy, "a policy file", MAX_POLICY_BYTES)
        .map_err(|err| SourceError::PolicyUnreadable {
            path: policy.to_path_buf(),
            message: if err.kind() == std::io::ErrorKind::NotFound {
                "there is no such file".to_string()
            } else {
                err.to_string()
            },
        })?;
    Ok(Snapshot {
        revision: None,
        source_path: policy.display().to_string(),
        policy_path: policy.to_path_buf(),
        root: policy.parent().unwrap_or(Path::new("/")).to_path_buf(),
        digest: Sha256::of(&bytes),
        text: None,
    })
}

/// A policy path must name a file inside its tree.
fn check_relative(file: &Path) -> Result<(), SourceError> {
    let invalid = |reason| {
        Err(SourceError::InvalidPath {
            file: file.to_path_buf(),
            reason,
        })
    };
    if file.as_os_str().is_empty() {
        return invalid("it is empty");
    }
    let mut normal = 0;
    for component in file.components() {
        match component {
            Component::Normal(_) => normal += 1,
            Component::CurDir => {}
            Component::ParentDir => return invalid("it may not contain `..`"),
            Component::RootDir | Component::Prefix(_) => {
                return invalid("it must be relative to the source's root");
            }
        }
    }
    if normal == 0 {
        return invalid("it names no file");
    }
    Ok(())
}

fn absolute(path: &Path) -> Result<PathBuf, SourceError> {
    std::path::absolute(path).map_err(|source| SourceError::Io {
        op: "make absolute",
        path: path.to_path_buf(),
        source,
    })
}

/// An error and its sources, one line.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(next) = source {
        let more = next.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = next.source();
    }
    text
}
