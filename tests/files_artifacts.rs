//! The `files` and `artifacts` capabilities and artifact staging, hostile
//! cases first: a hand-written WAT plugin (tests/data/plugins/files.wat)
//! drives every host function with the paths a plugin could try (`..`,
//! absolute paths, symbolic links planted inside a grant pointing out), and
//! artifacts are staged from files and from a loopback HTTP server that
//! breaks off, ignores ranges or serves the wrong bytes.

mod support;
use support::*;

#[path = "support/wat.rs"]
mod wat;

use duplex_core::artifact::{self, ArtifactError};
use duplex_core::model::UpgradeState;
use duplex_core::plugins::*;
use duplex_core::policy::{LoadedPolicy, Sha256};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The files plugin, with `f` setting its grants.
fn load(dir: &Path, f: impl FnOnce(&mut Capabilities)) -> Result<LoadedPlugin, PluginError> {
    let (path, sha256) = wat::write(Some("files"), dir);
    let mut capabilities = Capabilities::default();
    f(&mut capabilities);
    shared_host().load(&PluginSpec {
        name: "hostile".into(),
        path,
        sha256,
        capabilities,
        limits: Limits::default(),
        param_schemas: Default::default(),
    })
}

fn root(name: &str, path: &Path, read_only: bool) -> FileRoot {
    FileRoot {
        name: name.into(),
        path: path.to_path_buf(),
        read_only,
    }
}

/// A grant of `data` (read-write) and `ro` (read-only), plus artifacts.
struct Grant {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    ro: PathBuf,
    outside: PathBuf,
    plugin: LoadedPlugin,
}

fn grant(staged: Vec<StagedArtifact>) -> Grant {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let ro = tmp.path().join("ro");
    let outside = tmp.path().join("outside");
    for d in [&data, &ro, &outside] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(outside.join("secret"), "outside").unwrap();
    std::fs::write(ro.join("keep"), "kept").unwrap();
    let plugin = load(tmp.path(), |c| {
        c.files.roots = vec![root("data", &data, false), root("ro", &ro, true)];
        c.artifacts = ArtifactsGrant {
            granted: true,
            staged,
        };
    })
    .unwrap();
    Grant {
        _tmp: tmp,
        data,
        ro,
        outside,
        plugin,
    }
}

/// Runs operation `op` on `root`/`path` with `arg`: `Ok(message)` when the
/// host function returned ok, `Err(error)` otherwise.
fn call(p: &LoadedPlugin, op: &str, root: &str, path: &str, arg: &str) -> Result<String, String> {
    let mut ctx = CallContext::new(root, UpgradeState::Split, format!("{op}{path}"));
    ctx.params = serde_json::Value::String(arg.into());
    let out = p
        .check(&ctx, "gate")
        .unwrap_or_else(|e| panic!("{op} {path}: {e}"));
    match out.value.verdict {
        Verdict::Pass => Ok(out.value.message),
        _ => Err(out.value.message),
    }
}

#[test]
fn a_plugin_reads_writes_links_renames_and_removes_beneath_its_grant() {
    let g = grant(Vec::new());
    let p = &g.plugin;
    assert!(
        call(p, "w", "data", "a/b/file", "x").is_err(),
        "no parent yet"
    );
    call(p, "m", "data", "a/b", "").unwrap();
    call(p, "w", "data", "a/b/file", "hello").unwrap();
    assert_eq!(call(p, "r", "data", "a/b/file", "").unwrap(), "hello");
    call(p, "a", "data", "a/b/file", " world").unwrap();
    assert_eq!(
        std::fs::read_to_string(g.data.join("a/b/file")).unwrap(),
        "hello world"
    );
    // `..` that stays beneath the root is fine.
    assert_eq!(
        call(p, "r", "data", "a/../a/b/file", "").unwrap(),
        "hello world"
    );
    call(p, "s", "data", "current", "a/b").unwrap();
    assert_eq!(
        std::fs::read_link(g.data.join("current")).unwrap(),
        Path::new("a/b")
    );
    assert_eq!(
        call(p, "r", "data", "current/file", "").unwrap(),
        "hello world"
    );
    call(p, "n", "data", "a/b/file", "moved").unwrap();
    assert_eq!(call(p, "r", "data", "moved", "").unwrap(), "hello world");
    call(p, "d", "data", "a", "").unwrap();
    assert!(!g.data.join("a").exists());
    // Removing what is not there is fine.
    call(p, "d", "data", "a", "").unwrap();
    // No temporary file is left behind by the writes.
    let mut left: Vec<String> = std::fs::read_dir(&g.data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["current", "moved"]);
}

#[test]
fn dot_dot_and_absolute_paths_are_refused() {
    let g = grant(Vec::new());
    let p = &g.plugin;
    let e = call(p, "r", "data", "../outside/secret", "").unwrap_err();
    assert!(
        e.contains("leads outside the granted directory `data`"),
        "{e}"
    );
    std::fs::create_dir(g.data.join("a")).unwrap();
    let e = call(p, "r", "data", "a/../../outside/secret", "").unwrap_err();
    assert!(e.contains("leads outside"), "{e}");
    let abs = g.outside.join("secret");
    let e = call(p, "r", "data", abs.to_str().unwrap(), "").unwrap_err();
    assert!(
        e.contains("is absolute: paths are relative to the granted directory `data`"),
        "{e}"
    );
    let e = call(p, "w", "data", "../outside/new", "x").unwrap_err();
    assert!(e.contains("leads outside"), "{e}");
    let e = call(p, "w", "data", abs.to_str().unwrap(), "x").unwrap_err();
    assert!(e.contains("is absolute"), "{e}");
    let e = call(p, "d", "data", "../outside", "").unwrap_err();
    assert!(e.contains("leads outside"), "{e}");
    let e = call(p, "d", "data", "..", "").unwrap_err();
    assert!(e.contains("names no entry of its own"), "{e}");
    let e = call(p, "n", "data", "x", "../outside/x").unwrap_err();
    assert!(e.contains("leads outside"), "{e}");
    assert_eq!(
        std::fs::read_to_string(g.outside.join("secret")).unwrap(),
        "outside"
    );
    assert!(!g.outside.join("new").exists());
    assert!(g.outside.exists());
}

#[test]
fn symlinks_planted_inside_pointing_out_are_not_followed_out() {
    let g = grant(Vec::new());
    let p = &g.plugin;
    // Planted by someone else (not through the plugin, which cannot).
    std::os::unix::fs::symlink(g.outside.join("secret"), g.data.join("file-out")).unwrap();
    std::os::unix::fs::symlink(&g.outside, g.data.join("dir-out")).unwrap();
    std::os::unix::fs::symlink("../outside", g.data.join("rel-out")).unwrap();

    for path in ["file-out", "dir-out/secret", "rel-out/secret"] {
        let e = call(p, "r", "data", path, "").unwrap_err();
        assert!(
            e.contains("leads outside the granted directory `data`"),
            "{path}: {e}"
        );
    }
    // Writing through a linked parent directory.
    for path in ["dir-out/new", "rel-out/new"] {
        let e = call(p, "w", "data", path, "x").unwrap_err();
        assert!(e.contains("leads outside"), "{path}: {e}");
        let e = call(p, "m", "data", &format!("{path}/sub"), "").unwrap_err();
        assert!(e.contains("leads outside"), "{path}: {e}");
    }
    // Appending follows a final link only beneath the root.
    let e = call(p, "a", "data", "file-out", "x").unwrap_err();
    assert!(e.contains("leads outside"), "{e}");
    // A write replaces the link itself, never what it points to.
    call(p, "w", "data", "file-out", "mine").unwrap();
    assert_eq!(
        std::fs::read_to_string(g.data.join("file-out")).unwrap(),
        "mine"
    );
    // Removing a link removes the link, not the tree it points to.
    call(p, "d", "data", "dir-out", "").unwrap();
    assert!(!g.data.join("dir-out").exists());
    // Renaming through a linked parent.
    call(p, "w", "data", "x", "x").unwrap();
    let e = call(p, "n", "data", "x", "rel-out/x").unwrap_err();
    assert!(e.contains("leads outside"), "{e}");

    assert_eq!(
        std::fs::read_to_string(g.outside.join("secret")).unwrap(),
        "outside"
    );
    let outside: Vec<_> = std::fs::read_dir(&g.outside).unwrap().collect();
    assert_eq!(outside.len(), 1, "nothing was created outside");
}

#[test]
fn a_link_the_plugin_makes_must_be_relative_and_stay_beneath() {
    let g = grant(Vec::new());
    let p = &g.plugin;
    let e = call(p, "s", "data", "out", "../outside").unwrap_err();
    assert!(e.contains("climbs out of the granted directory"), "{e}");
    let e = call(p, "s", "data", "a/out", "../../outside").unwrap_err();
    assert!(e.contains("climbs out"), "{e}");
    let target = g.outside.to_str().unwrap().to_string();
    let e = call(p, "s", "data", "out", &target).unwrap_err();
    assert!(e.contains("the target is absolute"), "{e}");
    assert!(std::fs::symlink_metadata(g.data.join("out")).is_err());
}

#[test]
fn a_read_only_grant_refuses_every_change() {
    let g = grant(Vec::new());
    let p = &g.plugin;
    assert_eq!(call(p, "r", "ro", "keep", "").unwrap(), "kept");
    for (op, arg) in [
        ("w", "x"),
        ("a", "x"),
        ("d", ""),
        ("n", "moved"),
        ("s", "keep"),
        ("m", ""),
    ] {
        let e = call(p, op, "ro", "keep", arg).unwrap_err();
        assert!(
            e.contains("the files grant `ro` is read-only (`readOnly: false` in the policy makes it writable)"),
            "{op}: {e}"
        );
    }
    assert_eq!(std::fs::read_to_string(g.ro.join("keep")).unwrap(), "kept");
    assert_eq!(std::fs::read_dir(&g.ro).unwrap().count(), 1);
}

#[test]
fn an_unknown_root_names_the_granted_ones() {
    let g = grant(Vec::new());
    let e = call(&g.plugin, "r", "releases", "x", "").unwrap_err();
    assert_eq!(
        e,
        "no files grant named `releases` for plugin `hostile`; it is granted: `data`, `ro`"
    );
}

#[test]
fn a_fifo_in_a_grant_is_refused_without_waiting() {
    let g = grant(Vec::new());
    let fifo = g.data.join("pipe");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let e = call(&g.plugin, "r", "data", "pipe", "").unwrap_err();
    assert!(e.contains("a named pipe (FIFO), not a regular file"), "{e}");
}

#[test]
fn importing_files_or_artifacts_without_a_grant_is_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let Err(PluginError::Grant { problems, .. }) = load(tmp.path(), |_| {}) else {
        panic!("loaded without grants");
    };
    let messages: Vec<_> = problems.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(problems.len(), 2, "{messages:?}");
    assert!(problems.iter().all(|p| p.at.is_empty()), "{problems:?}");
    assert!(
        messages[0].contains("imports duplex:plugin/files but the policy grants it no directory"),
        "{messages:?}"
    );
    assert!(
        messages[1].contains(
            "imports duplex:plugin/artifacts but the policy does not grant it: add `capabilities.artifacts: true`"
        ),
        "{messages:?}"
    );
}

#[test]
fn bad_files_grants_are_placed_at_their_field() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let (path, sha256) = wat::write(Some("files"), tmp.path());
    let mut capabilities = Capabilities::default();
    capabilities.artifacts.granted = true;
    let free = tmp.path().join("free");
    std::fs::create_dir(&free).unwrap();
    capabilities.files.roots = vec![
        root("a", &free, true),
        root("a", &tmp.path().join("missing"), true),
        root("b", tmp.path(), false),
        root("c", &state, true),
    ];
    let protected = [ProtectedPath {
        path: state.clone(),
        what: "the state dir".into(),
        readable: false,
    }];
    let spec = PluginSpec {
        name: "hostile".into(),
        path,
        sha256,
        capabilities,
        limits: Limits::default(),
        param_schemas: Default::default(),
    };
    let Err(PluginError::Grant { problems, .. }) = shared_host().validate(&spec, &protected) else {
        panic!("accepted");
    };
    let at: Vec<_> = problems.iter().map(|p| p.at.as_str()).collect();
    assert_eq!(
        at,
        [
            "/capabilities/files/1/name",
            "/capabilities/files/1/path",
            "/capabilities/files/2/path",
            "/capabilities/files/3/path"
        ],
        "{problems:#?}"
    );
    assert!(problems[1].message.contains("is not a directory"));
    assert!(problems[2].message.contains("grants read-write access to"));
    assert!(problems[2].message.contains("which holds the state dir"));
    assert!(problems[3].message.contains("grants read access to"));
}

// ---- artifacts -------------------------------------------------------------

fn sha(bytes: &[u8]) -> Sha256 {
    Sha256::of_reader(bytes).unwrap().0
}

/// A policy (never run) with one artifact `app` from `source`, pinned to `pin`.
fn policy(dir: &Path, source: &str, pin: &Sha256) -> LoadedPolicy {
    let text = format!(
        "apiVersion: duplex.dev/v1alpha1
kind: UpgradePolicy
metadata: {{name: t}}
spec:
  target: {{name: t, plugin: p}}
  software:
    - {{name: app, version: \"1\", source: \"{source}\", sha256: {pin}}}
  plugins:
    - {{name: p, source: p.wasm, sha256: {zero}}}
",
        zero = "0".repeat(64)
    );
    let file = dir.join("policy.yaml");
    std::fs::write(&file, &text).unwrap();
    duplex_core::policy::load_text(&text, &file).unwrap()
}

fn staged_files(state: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(state.join("artifacts/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_artifact_is_staged_read_only_and_its_digest_mismatch_stages_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let body = b"release 2.0\n".repeat(1000);
    std::fs::write(tmp.path().join("app.tar.gz"), &body).unwrap();

    let wrong = sha(b"something else");
    let pol = policy(tmp.path(), "app.tar.gz", &wrong);
    let e = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap_err();
    let ArtifactError::DigestMismatch {
        name,
        pinned,
        actual,
        ..
    } = &e
    else {
        panic!("{e}");
    };
    assert_eq!(
        (name.as_str(), pinned, actual),
        ("app", &wrong, &sha(&body))
    );
    let message = e.to_string();
    assert!(
        message.contains(&format!(
            "pins sha256 {wrong}, the file has sha256 {}",
            sha(&body)
        )),
        "{message}"
    );
    assert_eq!(staged_files(&state), Vec::<String>::new());

    let pin = sha(&body);
    let pol = policy(tmp.path(), "app.tar.gz", &pin);
    let s = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap();
    assert!(!s.reused);
    assert_eq!(s.path, artifact::staged_path(&state, &pin));
    assert_eq!(std::fs::read(&s.path).unwrap(), body);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&s.path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    assert_eq!(staged_files(&state), [pin.to_string()]);
    // Staged again: reused after its digest is checked.
    assert!(
        artifact::stage(&pol, &pol.policy.spec.software[0], &state)
            .unwrap()
            .reused
    );

    // A damaged staged copy is found and replaced from the source.
    std::fs::set_permissions(&s.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&s.path, b"corrupted").unwrap();
    let again = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap();
    assert!(!again.reused);
    assert_eq!(std::fs::read(&s.path).unwrap(), body);
}

#[test]
fn the_plugin_reads_the_staged_bytes_even_after_the_source_is_swapped() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let source = tmp.path().join("app.txt");
    std::fs::write(&source, "verified v2").unwrap();
    let pin = sha(b"verified v2");
    let pol = policy(tmp.path(), "app.txt", &pin);
    let s = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap();

    // After verification the source is changed in place and replaced.
    std::fs::write(&source, "evil bytes!").unwrap();
    let evil = tmp.path().join("evil");
    std::fs::write(&evil, "evil v3").unwrap();
    std::fs::rename(&evil, &source).unwrap();

    let g = grant(vec![StagedArtifact {
        name: "app".into(),
        sha256: pin.to_string(),
        path: s.path.clone(),
    }]);
    assert_eq!(call(&g.plugin, "A", "", "app", "").unwrap(), "verified v2");
    call(&g.plugin, "C", "data", "install/app.txt", "app").unwrap_err();
    call(&g.plugin, "m", "data", "install", "").unwrap();
    call(&g.plugin, "C", "data", "install/app.txt", "app").unwrap();
    assert_eq!(
        std::fs::read_to_string(g.data.join("install/app.txt")).unwrap(),
        "verified v2"
    );
    // Into a read-only grant: refused.
    let e = call(&g.plugin, "C", "ro", "app.txt", "app").unwrap_err();
    assert!(e.contains("is read-only"), "{e}");
    let e = call(&g.plugin, "A", "", "other", "").unwrap_err();
    assert_eq!(e, "no artifact named `other`; the policy's software: `app`");
}

#[test]
fn an_artifact_not_staged_is_a_clear_error() {
    let g = grant(vec![StagedArtifact {
        name: "app".into(),
        sha256: "0".repeat(64),
        path: PathBuf::from("/nonexistent/artifacts/sha256/x"),
    }]);
    let e = call(&g.plugin, "A", "", "app", "").unwrap_err();
    assert!(e.contains("artifact `app` is not staged"), "{e}");
}

/// A tiny HTTP/1.1 server on loopback serving `body` at any path; records
/// each request's `Range` header.
struct Server {
    url: String,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
}

#[derive(Clone, Copy)]
enum Mode {
    /// Honours `Range: bytes=N-`.
    Ranges,
    /// Answers every request with the whole body (200).
    IgnoresRanges,
    /// The first response stops after this many bytes of the body.
    BreaksOnceAfter(usize),
}

fn serve(body: Vec<u8>, mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/app.tar.gz", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        let mut first = true;
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if stream.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let range = head.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("range: bytes=")
                    .map(|r| r.trim_end_matches('-').trim().to_string())
            });
            seen.lock().unwrap().push(range.clone());
            let from = match (mode, &range) {
                (Mode::IgnoresRanges, _) | (_, None) => None,
                (_, Some(r)) => r.parse::<usize>().ok(),
            };
            let (status, part) = match from {
                Some(n) if n < body.len() => (
                    format!(
                        "206 Partial Content\r\nContent-Range: bytes {n}-{}/{}",
                        body.len() - 1,
                        body.len()
                    ),
                    &body[n..],
                ),
                Some(_) => ("416 Range Not Satisfiable".to_string(), &body[..0]),
                None => ("200 OK".to_string(), &body[..]),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                part.len()
            );
            let cut = match mode {
                Mode::BreaksOnceAfter(n) if first => n.min(part.len()),
                _ => part.len(),
            };
            first = false;
            let _ = stream.write_all(&part[..cut]);
            let _ = stream.flush();
        }
    });
    Server { url, ranges }
}

fn body(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn a_url_is_downloaded_with_the_digest_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let data = body(300_000);
    let server = serve(data.clone(), Mode::Ranges);
    let pol = policy(tmp.path(), &server.url, &sha(&data));
    let s = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap();
    assert_eq!(std::fs::read(&s.path).unwrap(), data);
    assert_eq!(s.artifact.size, data.len() as u64);
    assert_eq!(staged_files(&state), [sha(&data).to_string()]);
    assert_eq!(*server.ranges.lock().unwrap(), [None]);
}

#[test]
fn a_download_with_the_wrong_bytes_stages_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let data = body(10_000);
    let server = serve(data.clone(), Mode::Ranges);
    let pin = sha(b"what the policy pins");
    let pol = policy(tmp.path(), &server.url, &pin);
    let e = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap_err();
    assert!(matches!(e, ArtifactError::DigestMismatch { .. }), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "the policy pins sha256 {pin}, the download has sha256 {}",
            sha(&data)
        )),
        "{e}"
    );
    assert_eq!(
        staged_files(&state),
        Vec::<String>::new(),
        "no partial either"
    );
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let data = body(2_000_000);
    let server = serve(data.clone(), Mode::BreaksOnceAfter(700_000));
    let pol = policy(tmp.path(), &server.url, &sha(&data));
    let e = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap_err();
    assert!(matches!(e, ArtifactError::Download { .. }), "{e}");
    assert!(e.to_string().contains("staging again resumes it"), "{e}");
    let partial = format!("{}.partial", sha(&data));
    assert_eq!(staged_files(&state), std::slice::from_ref(&partial));
    let kept = std::fs::metadata(state.join("artifacts/sha256").join(&partial))
        .unwrap()
        .len();
    assert!(kept > 0, "bytes of the first attempt are kept");

    let s = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap();
    assert_eq!(std::fs::read(&s.path).unwrap(), data);
    assert_eq!(staged_files(&state), [sha(&data).to_string()]);
    assert_eq!(
        *server.ranges.lock().unwrap(),
        [None, Some(kept.to_string())]
    );
}

#[test]
fn a_server_ignoring_ranges_restarts_the_download_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let data = body(500_000);
    let server = serve(data.clone(), Mode::IgnoresRanges);
    let pin = sha(&data);
    // What an earlier attempt left: not even a prefix of the file.
    let dir = state.join("artifacts/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{pin}.partial")), b"garbage from before").unwrap();
    let pol = policy(tmp.path(), &server.url, &pin);
    let s = artifact::stage(&pol, &pol.policy.spec.software[0], &state).unwrap();
    assert_eq!(std::fs::read(&s.path).unwrap(), data);
    assert_eq!(staged_files(&state), [pin.to_string()]);
    assert_eq!(*server.ranges.lock().unwrap(), [Some("19".to_string())]);
}

/// Peak resident memory of this process, in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Run by `staging_a_100_mb_artifact_is_streamed` in a process of its own,
/// so no other test's memory counts.
#[test]
#[ignore = "run in its own process by staging_a_100_mb_artifact_is_streamed"]
fn stage_100_mb_alone() {
    let dir = PathBuf::from(std::env::var("DUPLEX_TEST_STAGE_DIR").unwrap());
    let source = dir.join("big.bin");
    let file = std::fs::File::create(&source).unwrap();
    file.set_len(100 << 20).unwrap();
    let pin = Sha256::of_reader(std::fs::File::open(&source).unwrap())
        .unwrap()
        .0;
    let pol = policy(&dir, "big.bin", &pin);
    let before = peak_rss_kib();
    let s = artifact::stage(&pol, &pol.policy.spec.software[0], &dir.join("state")).unwrap();
    let grown = peak_rss_kib().saturating_sub(before);
    assert_eq!(s.artifact.size, 100 << 20);
    assert!(
        grown < 16 << 10,
        "peak RSS grew by {grown} KiB staging 100 MiB"
    );
}

#[test]
fn staging_a_100_mb_artifact_is_streamed() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stage_100_mb_alone",
            "--ignored",
            "--test-threads",
            "1",
        ])
        .env("DUPLEX_TEST_STAGE_DIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 passed"));
}

// ---- through the binary ----------------------------------------------------

#[test]
fn validate_refuses_a_plugin_importing_files_and_artifacts_without_grants() {
    let site = Site::new();
    let (path, digest) = wat::write(Some("files"), site.dir.path());
    let policy = site.policy(
        "",
        &format!(
            "    - name: hostile\n      source: {}\n      sha256: {digest}\n",
            path.display()
        ),
    );
    let out = site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_ne!(out.code, 0, "{}", out.stdout);
    let text = format!("{}{}", out.stdout, out.stderr);
    // The plugin entry is the last one: its line in the policy.
    let line = std::fs::read_to_string(&policy)
        .unwrap()
        .lines()
        .position(|l| l.contains("- name: hostile"))
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("policy.yaml:{line}:")),
        "placed at the plugin entry (line {line}): {text}"
    );
    assert!(
        text.contains(
            "plugin `hostile` imports duplex:plugin/files but the policy grants it no directory"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "plugin `hostile` imports duplex:plugin/artifacts but the policy does not grant it"
        ),
        "{text}"
    );

    // Granted: validate passes.
    let granted = tempfile::tempdir().unwrap();
    site.policy(
        "",
        &format!(
            "    - name: hostile\n      source: {}\n      sha256: {digest}\n      capabilities:\n        artifacts: true\n        files: [{{name: data, path: {}, readOnly: false}}]\n",
            path.display(),
            granted.path().display()
        ),
    );
    let out = site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
}

#[test]
fn apply_downloads_a_url_artifact_once_and_installs_the_staged_copy() {
    let site = Site::new();
    let policy = site.policy("", "");
    let app = repo_root().join("policies/artifacts/acme-app-2.4.1.pkg");
    let bytes = std::fs::read(&app).unwrap();
    let server = serve(bytes.clone(), Mode::Ranges);
    let text = std::fs::read_to_string(&policy).unwrap().replace(
        &format!("source: {}", app.display()),
        &format!("source: {}", server.url),
    );
    assert!(text.contains(&server.url));
    std::fs::write(&policy, text).unwrap();

    // validate accepts the URL without fetching it.
    let out = site.duplex(&["validate", policy.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(server.ranges.lock().unwrap().is_empty());

    let out = site.apply(&[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let staged = site
        .state_dir()
        .join("artifacts/sha256/5df80e6b86efa50d1aaf17c7d4aa5ead9cc6eafc4e09a13563af898770475fb5");
    assert_eq!(std::fs::read(&staged).unwrap(), bytes);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&staged).unwrap().permissions().mode() & 0o777,
        0o444
    );
    // Downloaded once at the start; the install re-verified the staged copy.
    assert_eq!(*server.ranges.lock().unwrap(), [None]);
}
