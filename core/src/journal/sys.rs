//! The few operating-system facts the journal needs: durable directory
//! creation, directory fsync, wall-clock time in UTC, process liveness, and
//! the test-only crash points.

use super::JournalError;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

// ─── Durability ─────────────────────────────────────────────────────────────

static FSYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// fsyncs (files and directories) this process has asked for, for
/// benchmarks and diagnostics.
pub fn fsync_count() -> u64 {
    FSYNCS.load(std::sync::atomic::Ordering::Relaxed)
}

/// `sync_all`, counted.
pub(crate) fn sync(file: &File) -> io::Result<()> {
    FSYNCS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    file.sync_all()
}

/// fsync a directory, so that entries created or renamed in it survive a
/// power loss. A failure is [`JournalError::Fsync`]: never retried.
pub(crate) fn fsync_dir(dir: &Path) -> Result<(), JournalError> {
    let dir = non_empty(dir);
    let handle = File::open(dir).map_err(|source| JournalError::Io {
        op: "open directory",
        path: dir.to_path_buf(),
        source,
    })?;
    sync(&handle).map_err(|source| JournalError::Fsync {
        path: dir.to_path_buf(),
        source,
    })
}

/// `create_dir_all`, but every directory it creates is made durable by
/// fsyncing its parent.
pub(crate) fn create_dir_durable(path: &Path) -> Result<(), JournalError> {
    if path.is_dir() {
        return Ok(());
    }
    let parent = path.parent().map(non_empty).unwrap_or(Path::new("."));
    if !parent.is_dir() {
        create_dir_durable(parent)?;
    }
    match fs::create_dir(path) {
        Ok(()) => fsync_dir(parent),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(source) => Err(JournalError::Io {
            op: "create directory",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Write `contents` to `path` atomically and durably (see
/// [`crate::files::write_atomic`]); an fsync failure is
/// [`JournalError::Fsync`], never retried.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), JournalError> {
    FSYNCS.fetch_add(2, std::sync::atomic::Ordering::Relaxed);
    crate::files::write_atomic(path, contents, 0o644, crate::files::Durability::Durable).map_err(
        |e| {
            if e.is_sync() {
                JournalError::Fsync {
                    path: e.path,
                    source: e.source,
                }
            } else {
                JournalError::Io {
                    op: e.op,
                    path: e.path,
                    source: e.source,
                }
            }
        },
    )
}

fn non_empty(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

// ─── Time ───────────────────────────────────────────────────────────────────

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().try_into().unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `2026-11-25T01:30:00Z` for a time in milliseconds since the epoch.
pub fn format_utc(ms: u64) -> String {
    utc(ms / 1000).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `20261125T013000Z`: the compact form used in session ids.
pub(crate) fn format_compact(secs: u64) -> String {
    utc(secs).strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// Inverse of [`format_compact`]; `None` unless `text` is exactly that form
/// of a real date and time (years 1970 to 9999).
pub(crate) fn parse_compact(text: &str) -> Option<u64> {
    let (date, time) = compact_parts(text)?;
    let days = date.since(jiff::civil::date(1970, 1, 1)).ok()?.get_days();
    let secs = i64::from(days) * 86_400
        + i64::from(time.hour()) * 3600
        + i64::from(time.minute()) * 60
        + i64::from(time.second());
    u64::try_from(secs).ok()
}

/// Whether [`parse_compact`] reads `text`, without the date arithmetic
/// (every session id in a listing is checked).
pub(crate) fn is_compact(text: &str) -> bool {
    compact_parts(text).is_some()
}

fn compact_parts(text: &str) -> Option<(jiff::civil::Date, jiff::civil::Time)> {
    let b = text.as_bytes();
    if b.len() != 16
        || b[8] != b'T'
        || b[15] != b'Z'
        || !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text[r].parse::<i16>().ok();
    let (year, month, day) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hour, minute, second) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if year < 1970 {
        return None;
    }
    // jiff refuses what is not a real date or time (February 30, 24:00).
    let date =
        jiff::civil::Date::new(year, i8::try_from(month).ok()?, i8::try_from(day).ok()?).ok()?;
    let time = jiff::civil::Time::new(
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    Some((date, time))
}

/// A time in seconds since the epoch, as a UTC date and time (clamped at
/// 9999-12-31T23:59:59, far past any clock). Civil arithmetic, not
/// `jiff::Timestamp`, whose range stops a day short of that.
fn utc(secs: u64) -> jiff::civil::DateTime {
    let epoch = jiff::civil::date(1970, 1, 1).at(0, 0, 0, 0);
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    jiff::Span::new()
        .try_seconds(secs)
        .ok()
        .and_then(|span| epoch.checked_add(span).ok())
        .unwrap_or(jiff::civil::DateTime::MAX)
        .with()
        .subsec_nanosecond(0)
        .build()
        .unwrap_or(jiff::civil::DateTime::MAX)
}

// ─── Processes ──────────────────────────────────────────────────────────────

/// The start time of a process in clock ticks since boot (Linux
/// `/proc/<pid>/stat` field 22), which tells a live holder from a later
/// process that reused its pid. `None` where `/proc` does not say.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether process `pid` is alive and, when its start time was recorded,
/// is still the same process.
pub(crate) fn process_alive(pid: u32, start: Option<u64>) -> bool {
    let Ok(raw) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if raw <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(raw, 0) } == 0
        || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
        return false;
    }
    match (start, process_start(pid)) {
        (Some(recorded), Some(now)) => recorded == now,
        _ => true,
    }
}

// ─── Crash points (for crash-recovery tests) ────────────────────────────────

/// The environment variable that makes a journal writer kill its own
/// process with SIGKILL at a chosen point, for crash-recovery tests:
/// `DUPLEX_JOURNAL_CRASH=<seq>:<point>`, point one of `before-write`,
/// `mid-write` (half the record written), `after-write` (written, not
/// fsynced) and `after-sync` (durable, but `append` has not returned).
pub const CRASH_ENV: &str = "DUPLEX_JOURNAL_CRASH";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    BeforeWrite,
    MidWrite,
    AfterWrite,
    AfterSync,
}

/// The crash point set in the environment for record `seq`, if any.
// The one environment variable the core reads: a fault-injection hook for
// the crash tests, inert unless set, not configuration.
#[allow(clippy::disallowed_methods)]
pub(crate) fn crash_point_from_env() -> Result<Option<(u64, CrashPoint)>, JournalError> {
    let Some(value) = std::env::var_os(CRASH_ENV) else {
        return Ok(None);
    };
    let value = value.to_string_lossy().into_owned();
    if value.is_empty() {
        return Ok(None);
    }
    parse_crash_point(&value)
        .map(Some)
        .ok_or(JournalError::BadCrashPoint { value })
}

pub(crate) fn parse_crash_point(value: &str) -> Option<(u64, CrashPoint)> {
    let (seq, point) = value.split_once(':')?;
    let seq: u64 = seq.parse().ok().filter(|s| *s > 0)?;
    let point = match point {
        "before-write" => CrashPoint::BeforeWrite,
        "mid-write" => CrashPoint::MidWrite,
        "after-write" => CrashPoint::AfterWrite,
        "after-sync" => CrashPoint::AfterSync,
        _ => return None,
    };
    Some((seq, point))
}

/// Die the way `kill -9` kills: no destructors, no buffered output flushed.
pub(crate) fn crash_now() -> ! {
    // SAFETY: sending SIGKILL to ourselves has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; this is never reached.
    std::process::abort()
}

/// The path of the lock file of a state dir.
pub(crate) fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}
