//! A git branch as a policy source: resolved in place (a repository on
//! this machine) or fetched into the agent's bare clone (any URL), then its
//! head commit materialised by [`super::checkout`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use duplex_core::policy::Sha256;

use super::checkout;
use super::{KEEP_CHECKOUTS, Snapshot, SourceError};

pub(super) struct GitSource {
    /// The URL as given (errors name it).
    url: String,
    location: Location,
    branch: String,
    file: PathBuf,
    workdir: PathBuf,
    /// `git+<url without credentials>@<branch>:<file>`.
    recorded: String,
    last: Option<Snapshot>,
    interrupt: Arc<AtomicBool>,
}

enum Location {
    /// A repository on this machine, read in place.
    Local(PathBuf),
    /// Fetched into `<workdir>/repos/<digest of the URL>.git`.
    Fetched(gix::Url),
}

impl GitSource {
    pub(super) fn new(
        url: String,
        branch: String,
        file: PathBuf,
        workdir: PathBuf,
    ) -> Result<GitSource, SourceError> {
        let full = format!("refs/heads/{branch}");
        if branch.is_empty()
            || branch.starts_with('-')
            || gix::refs::FullName::try_from(full.as_str()).is_err()
        {
            return Err(SourceError::InvalidBranch { branch });
        }
        let parsed =
            gix::url::parse(gix::bstr::BStr::new(&url)).map_err(|err| SourceError::InvalidUrl {
                url: url.clone(),
                message: super::chain(&err),
            })?;
        let local = parsed.scheme == gix::url::Scheme::File && !url.contains("://");
        let (location, shown) = if local {
            let path = super::absolute(Path::new(&url))?;
            let shown = path.display().to_string();
            (Location::Local(path), shown)
        } else {
            let mut shown = parsed.clone();
            // Recorded in every session: never a password or token.
            shown.set_user(None);
            shown.set_password(None);
            (Location::Fetched(parsed), shown.to_bstring().to_string())
        };
        let recorded = format!("git+{shown}@{branch}:{}", file.display());
        Ok(GitSource {
            url,
            location,
            branch,
            file,
            workdir,
            recorded,
            last: None,
            interrupt: Arc::new(AtomicBool::new(false)),
        })
    }

    #[cfg(test)]
    pub(super) fn recorded(&self) -> &str {
        &self.recorded
    }

    pub(super) fn interrupt_flag(&self) -> Arc<AtomicBool> {
        self.interrupt.clone()
    }

    pub(super) fn fetch(&mut self) -> Result<Snapshot, SourceError> {
        let repo = match &self.location {
            Location::Local(path) => self.open_local(path)?,
            Location::Fetched(url) => self.fetch_remote(url)?,
        };
        let commit = self.head(&repo)?;
        let revision = commit.to_string();
        if let Some(last) = &self.last
            && last.revision.as_deref() == Some(revision.as_str())
            && last.root.is_dir()
        {
            return Ok(last.clone());
        }
        let bytes = self.policy_blob(&repo, commit)?;
        let digest = Sha256::of(&bytes);
        let checkouts = self.workdir.join("checkouts");
        let root = checkout::materialise(&repo, commit, &checkouts, &self.url, |root| {
            // A directory already there is reused when its policy file is
            // intact (a renamed directory is complete unless someone
            // changed it since).
            duplex_core::files::read_regular(
                &root.join(&self.file),
                "a policy file",
                duplex_core::policy::MAX_POLICY_BYTES,
            )
            .is_ok_and(|on_disk| on_disk == bytes)
        })?;
        checkout::prune(&checkouts, &root, KEEP_CHECKOUTS);
        let snapshot = Snapshot {
            revision: Some(revision),
            source_path: self.recorded.clone(),
            policy_path: root.join(&self.file),
            root,
            digest,
            text: None,
        };
        self.last = Some(snapshot.clone());
        Ok(snapshot)
    }

    pub(super) fn watch_paths(&self) -> Vec<PathBuf> {
        let Location::Local(path) = &self.location else {
            return Vec::new();
        };
        let mut paths = Vec::new();
        match open(path) {
            Ok(repo) => {
                if let Some(workdir) = repo.workdir() {
                    paths.extend(workdir.join(&self.file).parent().map(Path::to_path_buf));
                }
                // `refs/heads/a/b` lives in `refs/heads/a/`.
                let reference = repo.common_dir().join("refs/heads").join(&self.branch);
                paths.extend(reference.parent().map(Path::to_path_buf));
            }
            Err(_) => paths.extend(path.join(&self.file).parent().map(Path::to_path_buf)),
        }
        paths.retain(|p| p.is_dir());
        paths.dedup();
        paths
    }

    fn open_local(&self, path: &Path) -> Result<gix::Repository, SourceError> {
        open(path).map_err(|err| SourceError::RepositoryNotFound {
            url: self.url.clone(),
            message: message(&err),
        })
    }

    /// The agent's bare clone of `url`, created on first use, with the
    /// branch fetched into `refs/remotes/origin/<branch>`.
    fn fetch_remote(&self, url: &gix::Url) -> Result<gix::Repository, SourceError> {
        if url.scheme == gix::url::Scheme::File && !url.path.is_empty() {
            use std::os::unix::ffi::OsStrExt;
            let path = Path::new(std::ffi::OsStr::from_bytes(&url.path));
            if !path.exists() {
                return Err(SourceError::RepositoryNotFound {
                    url: self.url.clone(),
                    message: format!("`{}` does not exist", path.display()),
                });
            }
        }
        let repos = self.workdir.join("repos");
        let clone = repos.join(format!(
            "{}.git",
            &Sha256::of(self.url.as_bytes()).as_str()[..16]
        ));
        let created = !clone.join("HEAD").is_file();
        let repo = if created {
            init_bare(&repos, &clone).map_err(|err| match err {
                InitError::Io(e) => e,
                InitError::Git(err) => self.repository_error("a new clone", err),
            })?
        } else {
            open(&clone).map_err(|err| self.repository_error("the agent's clone", err))?
        };
        let result = self.fetch_into(&repo, url);
        if result.is_err() && created {
            // Nothing was ever fetched into it: leave no clone of a URL that
            // did not work.
            drop(repo);
            let _ = std::fs::remove_dir_all(&clone);
            return result.map(|()| unreachable!());
        }
        result.map(|()| repo)
    }

    fn fetch_into(&self, repo: &gix::Repository, url: &gix::Url) -> Result<(), SourceError> {
        let failed = |err: gix::Error| SourceError::FetchFailed {
            url: self.url.clone(),
            branch: self.branch.clone(),
            message: message(&err),
        };
        let spec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.branch);
        let remote = repo
            .remote_at(url.clone())
            .and_then(|r| r.with_refspecs([spec.as_str()], gix::remote::Direction::Fetch))
            .map_err(failed)?
            .with_fetch_tags(gix::remote::fetch::Tags::None);
        let connection = remote
            .connect(gix::remote::Direction::Fetch)
            .map_err(failed)?;
        let prepare = connection
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(failed)?;
        let wanted = format!("refs/heads/{}", self.branch);
        if !prepare
            .ref_map()
            .mappings
            .iter()
            .any(|m| m.remote.as_name().is_some_and(|n| n == wanted.as_str()))
        {
            return Err(SourceError::BranchMissing {
                url: self.url.clone(),
                branch: self.branch.clone(),
            });
        }
        prepare
            .receive(gix::progress::Discard, &self.interrupt)
            .map_err(failed)?;
        Ok(())
    }

    /// The commit the branch points at: the local branch for a repository
    /// read in place, the tracking ref the fetch wrote otherwise.
    fn head(&self, repo: &gix::Repository) -> Result<gix::ObjectId, SourceError> {
        let name = match self.location {
            Location::Local(_) => format!("refs/heads/{}", self.branch),
            Location::Fetched(_) => format!("refs/remotes/origin/{}", self.branch),
        };
        let reference = repo
            .try_find_reference(name.as_str())
            .map_err(|err| self.repository_error(&format!("`{name}`"), err))?;
        let Some(mut reference) = reference else {
            return Err(SourceError::BranchMissing {
                url: self.url.clone(),
                branch: self.branch.clone(),
            });
        };
        let id = reference
            .peel_to_commit()
            .map_err(|err| self.repository_error(&format!("the commit `{name}` points at"), err))?
            .id;
        Ok(id)
    }

    /// The policy file's bytes in `commit`.
    fn policy_blob(
        &self,
        repo: &gix::Repository,
        commit: gix::ObjectId,
    ) -> Result<Vec<u8>, SourceError> {
        let what = |thing: &str| format!("{thing} of commit {commit}");
        let tree = repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(|err| self.repository_error(&what("the tree"), err))?;
        let entry = tree
            .lookup_entry_by_path(&self.file)
            .map_err(|err| self.repository_error(&what("the tree"), err))?;
        let Some(entry) = entry else {
            return Err(SourceError::FileNotInCommit {
                url: self.url.clone(),
                branch: self.branch.clone(),
                commit: commit.to_string(),
                file: self.file.clone(),
            });
        };
        use gix::object::tree::EntryKind;
        let kind = match entry.mode().kind() {
            EntryKind::Blob | EntryKind::BlobExecutable => None,
            EntryKind::Tree => Some("a directory"),
            EntryKind::Link => Some("a symbolic link"),
            EntryKind::Commit => Some("a submodule"),
        };
        if let Some(kind) = kind {
            return Err(SourceError::NotAFile {
                commit: commit.to_string(),
                file: self.file.clone(),
                kind,
            });
        }
        let mut blob = repo.find_blob(entry.object_id()).map_err(|err| {
            self.repository_error(&what(&format!("`{}`", self.file.display())), err)
        })?;
        Ok(blob.take_data())
    }

    fn repository_error(&self, what: &str, err: gix::Error) -> SourceError {
        SourceError::Repository {
            url: self.url.clone(),
            what: what.to_string(),
            message: message(&err),
        }
    }
}

/// Open a repository with nothing but its own configuration (no
/// environment, no global or system configuration): what it holds, not how
/// this machine's git is set up.
fn open(path: &Path) -> Result<gix::Repository, gix::Error> {
    gix::open_opts(path, gix::open::Options::isolated())
}

enum InitError {
    Io(SourceError),
    Git(gix::Error),
}

/// A new bare repository at `clone`, created beside it and renamed into
/// place so that a directory of that name is a whole repository.
fn init_bare(repos: &Path, clone: &Path) -> Result<gix::Repository, InitError> {
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| InitError::Io(SourceError::Io { op, path, source })
    };
    std::fs::create_dir_all(repos).map_err(io("create", repos))?;
    let tmp = checkout::temp_name(repos, "clone");
    let result = gix::init_bare(&tmp)
        .map_err(InitError::Git)
        .and_then(|_| std::fs::rename(&tmp, clone).map_err(io("rename into place", clone)));
    if let Err(err) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        // Someone else made it first: use theirs.
        if !clone.join("HEAD").is_file() {
            return Err(err);
        }
    }
    open(clone).map_err(InitError::Git)
}

/// A gix error in one line: every message in its tree, outermost first.
pub(super) fn message(err: &gix::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for part in err.iter_errors().map(|e| e.to_string()) {
        if !part.is_empty() && !parts.iter().any(|p| p.contains(&part)) {
            parts.push(part);
        }
    }
    parts.join(": ")
}
