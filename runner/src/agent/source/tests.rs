//! Policy sources against directories and repositories on the local disk.
//! The `git` command only creates the repositories; gix reads them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{PolicySource, SourceError, SourceSpec};

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "init.defaultBranch=main", "-c", "core.autocrlf=false"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A checkout on `main` with `policies/p.yaml` and the file it references,
/// `policies/plugins/check.wasm`; returns the first commit.
fn make_repo(dir: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    write(&dir.join("policies/p.yaml"), "version: 1\n");
    write(
        &dir.join("policies/plugins/check.wasm"),
        "not really wasm\n",
    );
    write(&dir.join("README"), "policies\n");
    commit(dir, "A")
}

fn commit(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn git_spec(url: String, workdir: &Path) -> SourceSpec {
    SourceSpec::Git {
        url,
        branch: "main".into(),
        file: "policies/p.yaml".into(),
        workdir: workdir.to_path_buf(),
    }
}

fn checkouts(workdir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workdir.join("checkouts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn local_path(repo: &Path) -> String {
    repo.display().to_string()
}

fn file_url(repo: &Path) -> String {
    format!("file://{}", repo.display())
}

#[test]
fn dir_source_digest_follows_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("sub/p.yaml"), "version: 1\n");
    let mut source = PolicySource::new(SourceSpec::Dir {
        dir: tmp.path().to_path_buf(),
        file: "sub/p.yaml".into(),
    })
    .unwrap();
    let first = source.fetch().unwrap();
    assert_eq!(first.revision, None);
    assert_eq!(first.policy_path, tmp.path().join("sub/p.yaml"));
    assert_eq!(
        first.source_path,
        tmp.path().join("sub/p.yaml").display().to_string()
    );
    assert_eq!(
        first.digest,
        duplex_core::policy::Sha256::of(b"version: 1\n")
    );
    assert_eq!(source.fetch().unwrap(), first);
    write(&tmp.path().join("sub/p.yaml"), "version: 2\n");
    let second = source.fetch().unwrap();
    assert_ne!(second.digest, first.digest);
    assert_eq!(source.watch_paths(), vec![tmp.path().join("sub")]);
}

#[test]
fn dir_source_missing_file_names_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let mut source = PolicySource::new(SourceSpec::Dir {
        dir: tmp.path().to_path_buf(),
        file: "missing.yaml".into(),
    })
    .unwrap();
    let err = source.fetch().unwrap_err();
    assert!(
        matches!(err, SourceError::PolicyUnreadable { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&tmp.path().join("missing.yaml").display().to_string()),
        "{text}"
    );
    assert!(text.contains("no such file"), "{text}");
    // A directory where the file should be is named for what it is.
    std::fs::create_dir(tmp.path().join("missing.yaml")).unwrap();
    let text = source.fetch().unwrap_err().to_string();
    assert!(text.contains("directory"), "{text}");
}

#[test]
fn policy_paths_must_stay_inside_the_source() {
    for file in ["../p.yaml", "/etc/p.yaml", "", "."] {
        let err = PolicySource::new(SourceSpec::Dir {
            dir: "/tmp".into(),
            file: file.into(),
        })
        .err()
        .unwrap_or_else(|| panic!("{file:?} accepted"));
        assert!(matches!(err, SourceError::InvalidPath { .. }), "{err:?}");
    }
    let err = PolicySource::new(SourceSpec::Git {
        url: "/tmp/r".into(),
        branch: "bad..name".into(),
        file: "p.yaml".into(),
        workdir: "/tmp/w".into(),
    })
    .err()
    .unwrap();
    assert!(err.to_string().contains("bad..name"), "{err}");
}

/// The whole story for one kind of URL: first commit, an uncommitted edit
/// (not seen), a second commit, an unchanged head, a rewound branch.
fn follows_the_branch(url_for: impl Fn(&Path) -> String) {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let workdir = tmp.path().join("agent/git");
    let a = make_repo(&repo);
    let mut source = PolicySource::new(git_spec(url_for(&repo), &workdir)).unwrap();

    let first = source.fetch().unwrap();
    assert_eq!(first.revision.as_deref(), Some(a.as_str()));
    assert_eq!(first.root, workdir.join("checkouts").join(&a));
    assert_eq!(first.policy_path, first.root.join("policies/p.yaml"));
    assert_eq!(
        std::fs::read_to_string(&first.policy_path).unwrap(),
        "version: 1\n"
    );
    // The whole tree: what the policy references relatively is there.
    let sibling = first
        .policy_path
        .parent()
        .unwrap()
        .join("plugins/check.wasm");
    assert_eq!(
        std::fs::read_to_string(sibling).unwrap(),
        "not really wasm\n"
    );
    assert!(first.root.join("README").is_file());
    assert_eq!(
        first.digest,
        duplex_core::policy::Sha256::of(b"version: 1\n")
    );
    assert_eq!(
        first.source_path,
        format!("git+{}@main:policies/p.yaml", url_for(&repo))
    );

    // An uncommitted edit is not the branch.
    write(&repo.join("policies/p.yaml"), "version: 2\n");
    assert_eq!(source.fetch().unwrap(), first);

    let b = commit(&repo, "B");
    let second = source.fetch().unwrap();
    assert_eq!(second.revision.as_deref(), Some(b.as_str()));
    assert_ne!(second.digest, first.digest);
    assert_eq!(
        std::fs::read_to_string(&second.policy_path).unwrap(),
        "version: 2\n"
    );

    // Unchanged head: the same snapshot, no new checkout.
    let before = checkouts(&workdir);
    assert_eq!(before, {
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        v
    });
    assert_eq!(source.fetch().unwrap(), second);
    assert_eq!(checkouts(&workdir), before);

    // A rewound branch is just another revision (its checkout reused).
    git(&repo, &["reset", "-q", "--hard", &a]);
    let rewound = source.fetch().unwrap();
    assert_eq!(rewound, first);
    assert_eq!(checkouts(&workdir), before);

    // A fresh source (a restarted agent) reuses what is on disk.
    let mut again = PolicySource::new(git_spec(url_for(&repo), &workdir)).unwrap();
    assert_eq!(again.fetch().unwrap(), first);
    assert_eq!(checkouts(&workdir), before);
}

#[test]
fn git_local_checkout_follows_the_branch() {
    follows_the_branch(local_path);
}

#[test]
fn git_file_url_follows_the_branch() {
    follows_the_branch(file_url);
}

/// Over git's smart HTTP protocol, from `git http-backend` behind a server
/// on loopback (https is the same transport with rustls underneath).
#[test]
fn git_http_url_follows_the_branch() {
    let port = super::git_http::serve();
    follows_the_branch(move |repo| format!("http://127.0.0.1:{port}{}", repo.display()));
}

#[test]
fn git_wrong_branch_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    make_repo(&repo);
    for url in [local_path(&repo), file_url(&repo)] {
        let mut source = PolicySource::new(SourceSpec::Git {
            url: url.clone(),
            branch: "release".into(),
            file: "policies/p.yaml".into(),
            workdir: tmp.path().join("w"),
        })
        .unwrap();
        let err = source.fetch().unwrap_err();
        assert!(
            matches!(err, SourceError::BranchMissing { .. }),
            "{url}: {err:?}"
        );
        let text = err.to_string();
        assert!(text.contains("`release`") && text.contains(&url), "{text}");
    }
    // A URL that never fetched leaves no clone behind.
    let repos = tmp.path().join("w/repos");
    assert_eq!(std::fs::read_dir(&repos).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn git_missing_file_names_file_and_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let a = make_repo(&repo);
    for url in [local_path(&repo), file_url(&repo)] {
        let mut source = PolicySource::new(SourceSpec::Git {
            url: url.clone(),
            branch: "main".into(),
            file: "policies/other.yaml".into(),
            workdir: tmp.path().join("w"),
        })
        .unwrap();
        let err = source.fetch().unwrap_err();
        assert!(
            matches!(err, SourceError::FileNotInCommit { .. }),
            "{url}: {err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("policies/other.yaml") && text.contains(&a),
            "{text}"
        );
    }
    // A directory is not a policy file.
    let mut source = PolicySource::new(SourceSpec::Git {
        url: local_path(&repo),
        branch: "main".into(),
        file: "policies/plugins".into(),
        workdir: tmp.path().join("w"),
    })
    .unwrap();
    let text = source.fetch().unwrap_err().to_string();
    assert!(text.contains("a directory"), "{text}");
}

#[test]
fn git_missing_repository_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    for url in [local_path(&missing), file_url(&missing)] {
        let mut source = PolicySource::new(git_spec(url.clone(), &tmp.path().join("w"))).unwrap();
        let err = source.fetch().unwrap_err();
        assert!(
            matches!(err, SourceError::RepositoryNotFound { .. }),
            "{url}: {err:?}"
        );
        assert!(err.to_string().contains(&url), "{err}");
    }
}

#[test]
fn git_tree_keeps_modes_and_links() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    make_repo(&repo);
    let script = repo.join("policies/hook.sh");
    write(&script, "#!/bin/sh\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("plugins/check.wasm", repo.join("policies/link.wasm")).unwrap();
    commit(&repo, "B");
    let mut source = PolicySource::new(git_spec(local_path(&repo), &tmp.path().join("w"))).unwrap();
    let snap = source.fetch().unwrap();
    let dir = snap.policy_path.parent().unwrap();
    let mode = std::fs::metadata(dir.join("hook.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "{mode:o}");
    let mode = std::fs::metadata(&snap.policy_path)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "{mode:o}");
    assert_eq!(
        std::fs::read_link(dir.join("link.wasm")).unwrap(),
        PathBuf::from("plugins/check.wasm")
    );
}

#[test]
fn old_checkouts_are_pruned() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let workdir = tmp.path().join("w");
    make_repo(&repo);
    let mut source = PolicySource::new(git_spec(local_path(&repo), &workdir)).unwrap();
    let mut commits = Vec::new();
    for n in 0..5 {
        write(&repo.join("policies/p.yaml"), &format!("version: {n}\n"));
        commits.push(commit(&repo, &format!("{n}")));
        source.fetch().unwrap();
        // Modification times order the checkouts.
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut newest: Vec<String> = commits[commits.len() - super::KEEP_CHECKOUTS..].to_vec();
    newest.sort();
    assert_eq!(checkouts(&workdir), newest);
}

#[test]
fn recorded_url_has_no_credentials() {
    let source = super::git::GitSource::new(
        "ssh://deploy:s3cret@git.example.com/policies.git".into(),
        "main".into(),
        "p.yaml".into(),
        "/tmp/w".into(),
    )
    .unwrap();
    assert_eq!(
        source.recorded(),
        "git+ssh://git.example.com/policies.git@main:p.yaml"
    );
    assert!(source.watch_paths().is_empty());
}

#[test]
fn local_checkout_watch_paths() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    make_repo(&repo);
    let source = PolicySource::new(git_spec(local_path(&repo), &tmp.path().join("w"))).unwrap();
    assert_eq!(
        source.watch_paths(),
        vec![repo.join("policies"), repo.join(".git/refs/heads")]
    );
}

#[tokio::test]
async fn watcher_wakes_on_a_write_not_a_read() {
    let tmp = tempfile::tempdir().unwrap();
    write(&tmp.path().join("p.yaml"), "version: 1\n");
    let mut source = PolicySource::new(SourceSpec::Dir {
        dir: tmp.path().to_path_buf(),
        file: "p.yaml".into(),
    })
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _watcher = super::watch(source.watch_paths(), tx).unwrap();
    // The agent reading the policy does not wake it.
    source.fetch().unwrap();
    assert!(
        tokio::time::timeout(Duration::from_millis(500), rx.recv())
            .await
            .is_err(),
        "a read woke the watcher"
    );
    write(&tmp.path().join("p.yaml"), "version: 2\n");
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a write wakes the watcher within 10 s")
        .expect("the watcher is alive");
}

#[test]
fn a_source_moves_to_a_blocking_thread() {
    fn send<T: Send + 'static>() {}
    send::<PolicySource>();
    send::<super::Snapshot>();
    send::<SourceError>();
}
