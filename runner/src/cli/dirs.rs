//! Where the CLI keeps things: the state dir and the compiled-plugin cache,
//! chosen from flags, the environment and the effective user. The core takes
//! both as plain paths.

use std::ffi::OsString;
use std::path::PathBuf;

/// `$DUPLEX_STATE_DIR`: the state dir when `--state-dir` is not given.
pub const STATE_DIR_ENV: &str = "DUPLEX_STATE_DIR";
/// The state dir for root when neither the flag nor the variable is set.
pub const SYSTEM_STATE_DIR: &str = "/var/lib/duplex";
/// `$DUPLEX_CACHE_DIR`: where compiled plugins are cached.
pub const CACHE_DIR_ENV: &str = "DUPLEX_CACHE_DIR";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "cannot choose a state dir: pass --state-dir, or set DUPLEX_STATE_DIR, XDG_STATE_HOME or HOME"
)]
pub struct NoStateDir;

/// The state dir to use: the `--state-dir` flag, else `$DUPLEX_STATE_DIR`,
/// else `/var/lib/duplex` when running as root, else
/// `$XDG_STATE_HOME/duplex`, else `~/.local/state/duplex`. Empty variables
/// count as unset, and a relative `XDG_STATE_HOME` is ignored (as the XDG
/// spec says).
pub fn resolve_state_dir(
    cli_flag: Option<PathBuf>,
    env: impl Fn(&str) -> Option<OsString>,
    is_root: bool,
) -> Result<PathBuf, NoStateDir> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(flag) = cli_flag.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(flag);
    }
    if let Some(dir) = var(STATE_DIR_ENV) {
        return Ok(dir);
    }
    if is_root {
        return Ok(PathBuf::from(SYSTEM_STATE_DIR));
    }
    if let Some(xdg) = var("XDG_STATE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("duplex"));
    }
    if let Some(home) = var("HOME").filter(|p| p.is_absolute()) {
        return Ok(home.join(".local/state/duplex"));
    }
    Err(NoStateDir)
}

/// [`resolve_state_dir`] with this process's environment and euid.
pub fn state_dir(cli_flag: Option<PathBuf>) -> Result<PathBuf, NoStateDir> {
    resolve_state_dir(cli_flag, |name| std::env::var_os(name), euid_is_root())
}

/// The cache for root when `$DUPLEX_CACHE_DIR` is not set.
pub const SYSTEM_CACHE_DIR: &str = "/var/cache/duplex/plugins";

/// The compiled-plugin cache: `$DUPLEX_CACHE_DIR`, else `/var/cache/duplex/
/// plugins` for root, else `$XDG_CACHE_HOME/duplex/plugins`, else
/// `~/.cache/duplex/plugins`. One per user, shared by every state dir (entries
/// are keyed by component digest and engine), so a plugin compiles once per
/// machine and user, not once per state dir.
pub fn default_cache_dir() -> PathBuf {
    resolve_cache_dir(|name| std::env::var_os(name), euid_is_root())
}

pub fn resolve_cache_dir(env: impl Fn(&str) -> Option<OsString>, is_root: bool) -> PathBuf {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var(CACHE_DIR_ENV) {
        return dir;
    }
    if is_root {
        return PathBuf::from(SYSTEM_CACHE_DIR);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("duplex/plugins");
    }
    if let Some(home) = var("HOME").filter(|p| p.is_absolute()) {
        return home.join(".cache/duplex/plugins");
    }
    std::env::temp_dir().join(format!("duplex-plugins-{}", unsafe { libc::geteuid() }))
}

/// Whether the effective user is root (decides the default state dir).
pub fn euid_is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment holding exactly `vars`.
    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn the_state_dir_is_the_flag_then_the_variable_then_root_or_xdg_then_home() {
        let all: &[(&str, &str)] = &[
            ("DUPLEX_STATE_DIR", "/env/dir"),
            ("XDG_STATE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        let resolve = |flag: Option<&str>, vars, root| {
            resolve_state_dir(flag.map(Into::into), env(vars), root)
                .map(|p| p.display().to_string())
        };
        assert_eq!(resolve(Some("/flag"), all, true).unwrap(), "/flag");
        assert_eq!(resolve(None, all, true).unwrap(), "/env/dir");
        assert_eq!(resolve(None, &all[1..], true).unwrap(), "/var/lib/duplex");
        assert_eq!(resolve(None, &all[1..], false).unwrap(), "/xdg/duplex");
        assert_eq!(
            resolve(None, &all[2..], false).unwrap(),
            "/home/u/.local/state/duplex"
        );
        let relative_xdg: &[(&str, &str)] = &[
            ("DUPLEX_STATE_DIR", ""),
            ("XDG_STATE_HOME", "rel"),
            ("HOME", "/h"),
        ];
        assert_eq!(
            resolve(Some(""), relative_xdg, false).unwrap(),
            "/h/.local/state/duplex"
        );
        assert_eq!(resolve(None, &[], false), Err(NoStateDir));
    }

    #[test]
    fn the_cache_is_the_variable_then_per_user() {
        let all: &[(&str, &str)] = &[
            ("DUPLEX_CACHE_DIR", "/c"),
            ("XDG_CACHE_HOME", "/xdg"),
            ("HOME", "/home/u"),
        ];
        assert_eq!(resolve_cache_dir(env(all), true), PathBuf::from("/c"));
        assert_eq!(
            resolve_cache_dir(env(&all[1..]), true),
            PathBuf::from(SYSTEM_CACHE_DIR)
        );
        assert_eq!(
            resolve_cache_dir(env(&all[1..]), false),
            PathBuf::from("/xdg/duplex/plugins")
        );
        assert_eq!(
            resolve_cache_dir(env(&all[2..]), false),
            PathBuf::from("/home/u/.cache/duplex/plugins")
        );
    }
}
