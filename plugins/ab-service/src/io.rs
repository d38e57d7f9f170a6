//! Every reach of the plugin outside its sandbox, through the SDK's
//! capabilities: the release directory (`files`), the site's control command
//! (`exec`), health endpoints (`http`) and the verified artifact
//! (`artifacts`). The rest of the plugin only decides.

use duplex_plugin_sdk::EntryKind;
use duplex_plugin_sdk::prelude::*;

/// What an HTTP probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// It answered: status and body (trimmed).
    Answered(u16, String),
    /// Nothing listens (connection refused).
    Refused,
    /// Something else went wrong (timeout, reset), with the reason.
    NoAnswer(String),
}

pub fn probe(cx: &mut Cx<'_>, url: &str, timeout_ms: u32) -> Probe {
    match cx.http().get(url).timeout_ms(timeout_ms).send() {
        Ok(r) => Probe::Answered(
            r.status,
            String::from_utf8_lossy(&r.body).trim().to_string(),
        ),
        Err(e) => {
            let m = e.to_string();
            if m.to_ascii_lowercase().contains("refused") {
                Probe::Refused
            } else {
                Probe::NoAnswer(m)
            }
        }
    }
}

/// The outcome of one step of the control command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctl {
    Running,
    Exited { code: Option<i32>, output: String },
}

/// Runs (or polls) `ctl VERB INSTANCE` under `key`, waiting up to `wait_ms`.
pub fn ctl(
    cx: &mut Cx<'_>,
    program: &str,
    verb: &str,
    instance: &str,
    key: &str,
    wait_ms: u32,
) -> Result<Ctl, Error> {
    let status = cx
        .exec(program)
        .arg(verb)
        .arg(instance)
        .key(key)
        .wait_ms(wait_ms)
        .run()?;
    Ok(match status {
        ExecStatus::Running(_) => Ctl::Running,
        ExecStatus::Exited(e) => {
            let mut output = String::from_utf8_lossy(&e.stdout).trim().to_string();
            let err = String::from_utf8_lossy(&e.stderr);
            if !err.trim().is_empty() {
                if !output.is_empty() {
                    output.push_str("; ");
                }
                output.push_str(err.trim());
            }
            Ctl::Exited {
                code: e.code,
                output,
            }
        }
    })
}

/// The target of the link at `path` under the release root, if any.
pub fn link(cx: &mut Cx<'_>, root: &str, path: &str) -> Result<Option<String>, Error> {
    let mut fs = cx.fs(root);
    match fs.stat(path)? {
        Some(m) if m.kind == EntryKind::Symlink => Ok(Some(fs.read_link(path)?)),
        Some(_) => Err(Error::new(format!(
            "`{path}` in `{root}` is not a symbolic link"
        ))),
        None => Ok(None),
    }
}

/// Points `path` at `target` atomically: a new link beside it, renamed over it.
pub fn set_link(cx: &mut Cx<'_>, root: &str, path: &str, target: &str) -> Result<(), Error> {
    let mut fs = cx.fs(root);
    let next = format!("{path}.next");
    fs.remove(&next)?;
    fs.symlink(target, &next)?;
    fs.rename(&next, path)
}

pub fn exists(cx: &mut Cx<'_>, root: &str, path: &str) -> Result<bool, Error> {
    Ok(cx.fs(root).stat(path)?.is_some())
}

pub fn read_text(cx: &mut Cx<'_>, root: &str, path: &str) -> Result<Option<String>, Error> {
    let mut fs = cx.fs(root);
    if fs.stat(path)?.is_none() {
        return Ok(None);
    }
    let bytes = fs.read_to_end(path)?;
    Ok(Some(String::from_utf8_lossy(&bytes).trim().to_string()))
}

pub fn write(cx: &mut Cx<'_>, root: &str, path: &str, data: &[u8]) -> Result<(), Error> {
    cx.fs(root).write(path, data)
}

pub fn set_mode(cx: &mut Cx<'_>, root: &str, path: &str, mode: u32) -> Result<(), Error> {
    cx.fs(root).set_mode(path, mode)
}

pub fn create_dir(cx: &mut Cx<'_>, root: &str, path: &str) -> Result<(), Error> {
    cx.fs(root).create_dir(path)
}

pub fn remove(cx: &mut Cx<'_>, root: &str, path: &str) -> Result<(), Error> {
    cx.fs(root).remove(path)
}

pub fn rename(cx: &mut Cx<'_>, root: &str, from: &str, to: &str) -> Result<(), Error> {
    cx.fs(root).rename(from, to)
}

/// Names in a directory of the root, with whether each is a directory and
/// its modification time.
pub fn list(cx: &mut Cx<'_>, root: &str, path: &str) -> Result<Vec<(String, bool, u64)>, Error> {
    let mut fs = cx.fs(root);
    if fs.stat(path)?.is_none() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in fs.list(path)? {
        let full = format!("{path}/{}", e.name);
        let modified = fs.stat(&full)?.map(|m| m.modified_ms).unwrap_or(0);
        out.push((e.name, e.kind == EntryKind::Directory, modified));
    }
    Ok(out)
}

pub fn free_space(cx: &mut Cx<'_>, root: &str) -> Result<u64, Error> {
    cx.fs(root).free_space()
}

pub fn symlink(cx: &mut Cx<'_>, root: &str, target: &str, path: &str) -> Result<(), Error> {
    cx.fs(root).symlink(target, path)
}

/// The whole verified artifact (a release is small; the plugin's memory
/// limit bounds it).
pub fn artifact_bytes(cx: &mut Cx<'_>, name: &str) -> Result<Vec<u8>, Error> {
    cx.artifact(name).read_to_end()
}
