//! The state dir: where it is, its lock, and its sessions.

use super::JournalError;
use super::session::{AfterSnapshot, Follower, ReadReport, RecordStream, SessionId, SessionWriter};
use super::sys;
use crate::files;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Deref;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const SESSIONS: &str = "sessions";
const JOURNAL: &str = "journal";
const FINISHED: &str = "finished";
const TMP_PREFIX: &str = ".tmp-";
/// `<state dir>/newest`: which session is the newest, a hint for readers.
const NEWEST: &str = "newest";
const NEWEST_TMP: &str = ".newest.tmp";

/// The contents of `<state dir>/newest`: the newest session's id and what
/// `sessions/` looked like right after it was created.
#[derive(Serialize, Deserialize)]
struct NewestHint {
    id: String,
    mtime: i64,
    mtime_nsec: i64,
    ino: u64,
}

pub(crate) fn finished_path(session_dir: &Path) -> PathBuf {
    session_dir.join(FINISHED)
}

// ─── Sessions ───────────────────────────────────────────────────────────────

/// A session as listed in the state dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    /// `<state dir>/sessions/<id>`.
    pub dir: PathBuf,
    /// `<state dir>/sessions/<id>/journal`.
    pub journal: PathBuf,
    /// Set once [`SessionWriter::finish`] has run: the session is history.
    pub finished: Option<Finished>,
}

impl SessionInfo {
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }
}

/// The contents of a session's `finished` marker.
///
/// Markers written before `last` and `summary` existed hold only
/// `last_seq` and `ts_ms`; they are still read (a reader then replays the
/// journal), and older releases read the new ones (unknown fields are
/// ignored, and a marker stays under [`MAX_MARKER_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finished {
    /// The last record of the session: the journal must hold exactly this
    /// many records, which every read checks.
    pub last_seq: u64,
    /// When the session was finished (ms since the epoch).
    pub ts_ms: u64,
    /// Where the last record is, so a reader can check the journal's end
    /// with one read instead of reading it all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<RecordPos>,
    /// What the journal's owner says of the finished session (the engine:
    /// its outcome, final state and times), so that `history` and
    /// `status` need not replay the journal. Opaque to the journal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
}

/// Where one record is in a journal, and what it is: verified with one
/// read (the bytes at `offset..end` are exactly one record, number `seq`,
/// whose line hashes to `crc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordPos {
    pub seq: u64,
    /// Byte offset of the record's first byte.
    pub offset: u64,
    /// Byte offset just past its newline.
    pub end: u64,
    /// CRC-32 of the whole line, header and newline included.
    pub crc: u32,
}

// ─── The lock ───────────────────────────────────────────────────────────────

/// Who holds a state dir's lock, as it wrote in `<state dir>/lock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockHolder {
    pub pid: u32,
    /// When the lock was taken (ms since the epoch).
    pub since_ms: u64,
    /// The process's start time (clock ticks since boot, Linux), which
    /// tells the holder apart from a later process that reused its pid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proc_start: Option<u64>,
}

impl LockHolder {
    fn me() -> LockHolder {
        let pid = std::process::id();
        LockHolder {
            pid,
            since_ms: sys::now_ms(),
            proc_start: sys::process_start(pid),
        }
    }

    /// Whether the holder process still runs.
    pub fn is_alive(&self) -> bool {
        sys::process_alive(self.pid, self.proc_start)
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (since {})",
            self.pid,
            sys::format_utc(self.since_ms)
        )
    }
}

/// The held lock. Dropping the last handle clears the holder details and
/// releases the lock (closing the file releases the `flock`).
#[derive(Debug)]
pub(crate) struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Still holding the lock here, so no other locker can be writing.
        let _ = self.file.set_len(0);
    }
}

/// What [`force_unlock`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum UnlockOutcome {
    /// No process held the lock (a process that dies loses its lock, so a
    /// dead `duplex apply` leaves nothing to break); the stale holder
    /// details it left, if any, were cleared.
    NotHeld { stale: Option<LockHolder> },
    /// The recorded holder is dead, yet the lock was still held (a process
    /// that inherited its descriptor): the lock file was removed, so the
    /// next locker creates and locks a new one.
    Broken { holder: LockHolder },
}

/// Holder details are a line of JSON; anything longer is not ours.
const MAX_HOLDER_BYTES: u64 = 4096;
/// A `finished` marker is a line of JSON. (Releases before the marker's
/// summary read at most this much too: a marker whose summary would make it
/// longer is written without one.)
pub(crate) const MAX_MARKER_BYTES: u64 = 4096;

fn read_holder(lock_path: &Path) -> Option<LockHolder> {
    // Only a regular file, and only a little of it: a lock file replaced by
    // a link to a device must not be read without end.
    let text = files::read_regular(lock_path, "a lock file", MAX_HOLDER_BYTES).ok()?;
    serde_json::from_slice(&text).ok()
}

/// The holder details, waiting briefly for a holder that has just taken
/// the lock and not written them yet.
fn read_holder_patiently(lock_path: &Path) -> Option<LockHolder> {
    for _ in 0..10 {
        if let Some(holder) = read_holder(lock_path) {
            return Some(holder);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn same_file(file: &File, path: &Path) -> io::Result<bool> {
    let open = file.metadata()?;
    match fs::metadata(path) {
        Ok(named) => Ok(open.dev() == named.dev() && open.ino() == named.ino()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// Break the lock of a state dir whose holder is dead (`duplex unlock
/// --force`). Refuses, naming it, while the recorded holder is alive.
pub fn force_unlock(path: impl AsRef<Path>) -> Result<UnlockOutcome, JournalError> {
    let path = path.as_ref();
    if !path.is_dir() {
        return Err(JournalError::StateDirMissing {
            path: path.to_path_buf(),
        });
    }
    let lock_path = sys::lock_path(path);
    let io = |op: &'static str| {
        let lock_path = lock_path.clone();
        move |source| JournalError::Io {
            op,
            path: lock_path,
            source,
        }
    };
    let file = match OpenOptions::new().read(true).write(true).open(&lock_path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Ok(UnlockOutcome::NotHeld { stale: None });
        }
        Err(err) => return Err(io("open")(err)),
    };
    for _ in 0..20 {
        match file.try_lock() {
            Ok(()) => {
                let stale = read_holder(&lock_path);
                file.set_len(0).map_err(io("clear"))?;
                return Ok(UnlockOutcome::NotHeld { stale });
            }
            Err(fs::TryLockError::Error(err)) => return Err(io("lock")(err)),
            Err(fs::TryLockError::WouldBlock) => match read_holder(&lock_path) {
                Some(holder) if holder.is_alive() => {
                    return Err(JournalError::HeldByLiveProcess {
                        path: path.to_path_buf(),
                        holder,
                    });
                }
                Some(holder) => {
                    fs::remove_file(&lock_path).map_err(io("remove"))?;
                    sys::fsync_dir(path)?;
                    return Ok(UnlockOutcome::Broken { holder });
                }
                // A locker between taking the lock and writing its details,
                // or a holder releasing it: look again.
                None => std::thread::sleep(Duration::from_millis(50)),
            },
        }
    }
    Err(JournalError::HeldByUnknown {
        path: path.to_path_buf(),
    })
}

// ─── The state dir ──────────────────────────────────────────────────────────

/// A state dir, for reading: sessions, their journals, the lock's holder.
/// Reading works while a writer appends and needs no lock.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Open a state dir for reading (`status`, `log`, `history`); it must
    /// exist. Takes no lock and changes nothing.
    pub fn read_only(path: impl Into<PathBuf>) -> Result<StateDir, JournalError> {
        let path = path.into();
        if !path.is_dir() {
            return Err(JournalError::StateDirMissing { path });
        }
        Ok(StateDir { path })
    }

    /// Open a state dir for writing, creating it if needed, and take its
    /// exclusive lock without waiting: if another process holds it, fail at
    /// once with [`JournalError::Locked`] naming that process.
    ///
    /// The lock is an OS advisory lock (`flock`) on `<dir>/lock`, which
    /// the kernel releases when its holder exits however it dies, so a
    /// crashed `duplex apply` never leaves the state dir locked. The file
    /// holds the holder's pid and start time, for messages only.
    pub fn lock(path: impl Into<PathBuf>) -> Result<LockedStateDir, JournalError> {
        let path = path.into();
        sys::create_dir_durable(&path)?;
        Self::lock_dir(path)
    }

    /// [`StateDir::lock`] a state dir that must already exist: commands on
    /// a session in flight never create an empty state dir.
    pub fn lock_existing(path: impl Into<PathBuf>) -> Result<LockedStateDir, JournalError> {
        let path = path.into();
        if !path.is_dir() {
            return Err(JournalError::StateDirMissing { path });
        }
        Self::lock_dir(path)
    }

    fn lock_dir(path: PathBuf) -> Result<LockedStateDir, JournalError> {
        sys::create_dir_durable(&path.join(SESSIONS))?;
        let lock_path = sys::lock_path(&path);
        let io = |op: &'static str| {
            let lock_path = lock_path.clone();
            move |source| JournalError::Io {
                op,
                path: lock_path,
                source,
            }
        };
        // Retried only when `force_unlock` replaces the lock file between
        // our open and our lock.
        for _ in 0..100 {
            let (file, created) = match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&lock_path)
            {
                Ok(file) => (file, true),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    match OpenOptions::new().read(true).write(true).open(&lock_path) {
                        Ok(file) => (file, false),
                        Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                        Err(err) => return Err(io("open")(err)),
                    }
                }
                Err(err) => return Err(io("create")(err)),
            };
            if created {
                sys::fsync_dir(&path)?;
            }
            match file.try_lock() {
                Ok(()) => {}
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(JournalError::Locked {
                        holder: read_holder_patiently(&lock_path),
                        path,
                    });
                }
                Err(fs::TryLockError::Error(err)) => return Err(io("lock")(err)),
            }
            if !same_file(&file, &lock_path).map_err(io("stat"))? {
                continue;
            }
            let holder = LockHolder::me();
            let details = serde_json::to_vec(&holder).expect("plain struct");
            file.set_len(0).map_err(io("write"))?;
            file.write_all_at(&details, 0).map_err(io("write"))?;
            return Ok(LockedStateDir {
                dir: StateDir { path },
                guard: Arc::new(LockGuard { file }),
                holder,
            });
        }
        Err(JournalError::Io {
            op: "lock",
            path: lock_path,
            source: io::Error::other("the lock file keeps being replaced"),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sessions_dir(&self) -> PathBuf {
        self.path.join(SESSIONS)
    }

    /// Every session, oldest first (ids sort in creation order).
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, JournalError> {
        self.session_ids()?
            .into_iter()
            .map(|id| self.info(id))
            .collect()
    }

    /// Every session's id, oldest first: the directory listing alone, no
    /// marker read.
    pub fn session_ids(&self) -> Result<Vec<SessionId>, JournalError> {
        let root = self.sessions_dir();
        let entries = match fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(JournalError::Io {
                    op: "list",
                    path: root,
                    source,
                });
            }
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| JournalError::Io {
                op: "list",
                path: root.clone(),
                source,
            })?;
            let name = entry.file_name();
            match name.to_str().map(SessionId::parse) {
                Some(Ok(id)) => ids.push(id),
                // A session being created is not one yet.
                Some(Err(_)) if name.to_string_lossy().starts_with(TMP_PREFIX) => {}
                // A journal under a name that is no id: a session this
                // duplex cannot order, perhaps in flight. Never skipped.
                _ if entry.path().join(JOURNAL).symlink_metadata().is_ok() => {
                    return Err(JournalError::UnnamedSession { path: entry.path() });
                }
                // Anything else (a file a person left) is not a session.
                _ => {}
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The newest session (the highest id), finished or not, for readers:
    /// named by the state dir's `newest` hint when the hint checks out (no
    /// listing, one marker read, whatever the number of sessions), else
    /// found by listing `sessions/`.
    pub fn newest_session(&self) -> Result<Option<SessionInfo>, JournalError> {
        match self.newest_hint() {
            Some(id) => self.info(id).map(Some),
            None => self.listed_newest(),
        }
    }

    /// The newest session by listing `sessions/`.
    fn listed_newest(&self) -> Result<Option<SessionInfo>, JournalError> {
        self.session_ids()?
            .pop()
            .map(|id| self.info(id))
            .transpose()
    }

    /// The id in `<state dir>/newest`, if `sessions/` has not changed since
    /// it was written: its modification time is the one the hint recorded
    /// right after creating the session it names (any session created,
    /// renamed or removed since changes it), and that session is there.
    /// The hint is not fsynced: one lost, torn or stale is simply not used.
    fn newest_hint(&self) -> Option<SessionId> {
        let bytes =
            files::read_regular(&self.path.join(NEWEST), "a regular file", MAX_MARKER_BYTES)
                .ok()?;
        let hint: NewestHint = serde_json::from_slice(&bytes).ok()?;
        let sessions = fs::metadata(self.sessions_dir()).ok()?;
        let id = SessionId::parse(&hint.id).ok()?;
        let unchanged = (sessions.mtime(), sessions.mtime_nsec(), sessions.ino())
            == (hint.mtime, hint.mtime_nsec, hint.ino);
        (unchanged && self.sessions_dir().join(id.as_str()).is_dir()).then_some(id)
    }

    /// Record `id` as the newest session (see [`StateDir::newest_hint`]):
    /// written under a temporary name and renamed, not fsynced.
    fn write_newest_hint(&self, id: &SessionId) -> io::Result<()> {
        let sessions = fs::metadata(self.sessions_dir())?;
        let hint = NewestHint {
            id: id.to_string(),
            mtime: sessions.mtime(),
            mtime_nsec: sessions.mtime_nsec(),
            ino: sessions.ino(),
        };
        let tmp = self.path.join(NEWEST_TMP);
        fs::write(&tmp, serde_json::to_vec(&hint).map_err(io::Error::other)?)?;
        fs::rename(&tmp, self.path.join(NEWEST))
    }

    fn info(&self, id: SessionId) -> Result<SessionInfo, JournalError> {
        let dir = self.sessions_dir().join(id.as_str());
        let marker = finished_path(&dir);
        let finished = match files::read_regular(&marker, "a regular file", MAX_MARKER_BYTES) {
            Ok(bytes) => {
                Some(
                    serde_json::from_slice(&bytes).map_err(|err| JournalError::BadMarker {
                        path: marker.clone(),
                        what: err.to_string(),
                    })?,
                )
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => None,
            Err(source) => return Err(JournalError::reading(&marker, source)),
        };
        Ok(SessionInfo {
            journal: dir.join(JOURNAL),
            dir,
            id,
            finished,
        })
    }

    /// One session.
    pub fn session(&self, id: &SessionId) -> Result<SessionInfo, JournalError> {
        let dir = self.sessions_dir().join(id.as_str());
        if !dir.is_dir() {
            return Err(JournalError::SessionNotFound {
                path: self.path.clone(),
                id: id.clone(),
            });
        }
        self.info(id.clone())
    }

    /// The session in progress, if any. A state dir has at most one, and it
    /// is the newest: a session is created only when the newest one is
    /// finished, and ids grow. So only the newest session's marker is read
    /// (found by listing `sessions/`: writers do not go by the hint).
    pub fn current_session(&self) -> Result<Option<SessionInfo>, JournalError> {
        Ok(self.listed_newest()?.filter(|s| !s.is_finished()))
    }

    /// Read a session's records without changing anything: a torn tail is
    /// reported (with `cut: false`), not cut. Corruption is an error.
    pub fn read_session<T: DeserializeOwned>(
        &self,
        id: &SessionId,
    ) -> Result<ReadReport<T>, JournalError> {
        super::session::read_session(&self.session(id)?)
    }

    /// Read an unfinished session from its writer's last snapshot on: the
    /// saved state once checked against the journal (see
    /// [`SessionWriter::save_snapshot`]), and the records after it. Without
    /// a usable snapshot, or for a finished session, every record, as
    /// [`read_session`](StateDir::read_session) reads them.
    pub fn read_session_after_snapshot<S: DeserializeOwned, T: DeserializeOwned>(
        &self,
        info: &SessionInfo,
    ) -> Result<AfterSnapshot<S, T>, JournalError> {
        super::session::read_after_snapshot(info)
    }

    /// A session's records as a stream read a chunk at a time, checked
    /// whole before the first one is returned.
    pub fn stream_session<T: DeserializeOwned>(
        &self,
        info: &SessionInfo,
    ) -> Result<RecordStream<T>, JournalError> {
        RecordStream::open(info)
    }

    /// Whether a finished session's journal ends as its marker says: its
    /// length (one `stat`) and, with `check_record`, its last record (one
    /// read). `false` for a marker written before markers said where the
    /// last record is.
    pub fn ends_as_marked(&self, info: &SessionInfo, check_record: bool) -> bool {
        super::session::ends_as_marked(info, check_record)
    }

    /// Follow a session's records as they are appended.
    pub fn follow<T: DeserializeOwned>(&self, id: &SessionId) -> Result<Follower<T>, JournalError> {
        Follower::new(&self.session(id)?)
    }

    /// The live process holding the lock, as it recorded itself (`None`
    /// when the lock is free, or its holder is dead).
    pub fn lock_holder(&self) -> Option<LockHolder> {
        read_holder(&sys::lock_path(&self.path)).filter(LockHolder::is_alive)
    }
}

/// A state dir with its exclusive lock held: the only way to write. Reads
/// go through [`StateDir`] (it derefs to one). The lock is released when
/// this and every [`SessionWriter`] made from it are dropped.
#[derive(Debug)]
pub struct LockedStateDir {
    dir: StateDir,
    guard: Arc<LockGuard>,
    holder: LockHolder,
}

impl Deref for LockedStateDir {
    type Target = StateDir;
    fn deref(&self) -> &StateDir {
        &self.dir
    }
}

impl LockedStateDir {
    /// This process, as recorded in the lock file.
    pub fn holder(&self) -> &LockHolder {
        &self.holder
    }

    /// Start a new session with an empty journal. Refused while another
    /// session is unfinished. The session appears atomically: it is built
    /// under `sessions/.tmp-<id>` and renamed into place, with the file and
    /// both directories fsynced, so a crash leaves either no session or a
    /// complete, empty one.
    pub fn create_session(&self) -> Result<SessionWriter, JournalError> {
        self.create(None, &[])
    }

    /// Start a new session whose journal already holds its first record
    /// (`first`, stamped `ts_ms`) and whose directory holds `files` (paths
    /// relative to the session dir, e.g. the session's copy of its policy).
    /// Everything appears at once, in one rename, so no reader ever sees a
    /// session without its first record or its files.
    pub fn create_session_with<T: Serialize>(
        &self,
        ts_ms: u64,
        first: &T,
        files: &[(PathBuf, Vec<u8>)],
    ) -> Result<SessionWriter, JournalError> {
        let frame = super::frame::encode(1, ts_ms, first).map_err(|err| match err {
            super::frame::EncodeError::Json(what) => JournalError::Encode(what),
            super::frame::EncodeError::TooLarge { bytes } => JournalError::RecordTooLarge {
                path: self.sessions_dir().join("<new session>"),
                seq: 1,
                bytes,
            },
        })?;
        self.create(Some(frame), files)
    }

    fn create(
        &self,
        first: Option<Vec<u8>>,
        files: &[(PathBuf, Vec<u8>)],
    ) -> Result<SessionWriter, JournalError> {
        let newest = self.listed_newest()?;
        if let Some(open) = newest.as_ref().filter(|s| !s.is_finished()) {
            return Err(JournalError::SessionInProgress {
                path: self.path().to_path_buf(),
                id: open.id.clone(),
            });
        }
        let root = self.sessions_dir();
        self.remove_leftovers(&root)?;
        let id = SessionId::next(newest.as_ref().map(|s| &s.id), sys::now_ms() / 1000).ok_or_else(
            || JournalError::SessionNumbersUsedUp {
                path: self.path().to_path_buf(),
            },
        )?;
        let tmp = root.join(format!("{TMP_PREFIX}{id}"));
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { op, path, source }
        };
        fs::create_dir(&tmp).map_err(io("create directory", &tmp))?;
        let tmp_journal = tmp.join(JOURNAL);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&tmp_journal)
            .map_err(io("create", &tmp_journal))?;
        // The crash tests' hook covers the first record too: a kill before,
        // in the middle of or after writing it.
        let crash = sys::crash_point_from_env()?
            .filter(|(seq, _)| first.is_some() && *seq == 1)
            .map(|(_, point)| point);
        let (next_seq, end) = match &first {
            Some(frame) => {
                use std::io::Write;
                if crash == Some(sys::CrashPoint::BeforeWrite) {
                    sys::crash_now();
                }
                if crash == Some(sys::CrashPoint::MidWrite) {
                    let _ = file.write_all(&frame[..frame.len() / 2]);
                    sys::crash_now();
                }
                file.write_all(frame).map_err(io("write", &tmp_journal))?;
                if crash == Some(sys::CrashPoint::AfterWrite) {
                    sys::crash_now();
                }
                (2, frame.len() as u64)
            }
            None => (1, 0),
        };
        sys::sync(&file).map_err(|source| JournalError::Fsync {
            path: tmp_journal.clone(),
            source,
        })?;
        for (relative, bytes) in files {
            let path = tmp.join(relative);
            if let Some(parent) = path.parent()
                && !parent.is_dir()
            {
                fs::create_dir_all(parent).map_err(io("create directory", parent))?;
                sys::fsync_dir(parent)?;
            }
            let mut f = File::create(&path).map_err(io("create", &path))?;
            std::io::Write::write_all(&mut f, bytes).map_err(io("write", &path))?;
            sys::sync(&f).map_err(|source| JournalError::Fsync {
                path: path.clone(),
                source,
            })?;
        }
        sys::fsync_dir(&tmp)?;
        let dir = root.join(id.as_str());
        fs::rename(&tmp, &dir).map_err(io("rename into place", &dir))?;
        sys::fsync_dir(&root)?;
        // Only saves readers a listing: one that cannot be written is not.
        let _ = self.write_newest_hint(&id);
        if crash == Some(sys::CrashPoint::AfterSync) {
            sys::crash_now();
        }
        let info = SessionInfo {
            journal: dir.join(JOURNAL),
            dir,
            id,
            finished: None,
        };
        let last = first.as_ref().map(|frame| RecordPos {
            seq: 1,
            offset: 0,
            end,
            crc: crc32fast::hash(frame),
        });
        SessionWriter::new(&info, file, next_seq, last, self.guard.clone())
    }

    /// Reopen an unfinished session to append to it (`duplex resume`): its
    /// records, checked, and a torn tail cut (reported in the
    /// [`ReadReport`]).
    pub fn open_session<T: DeserializeOwned>(
        &self,
        id: &SessionId,
    ) -> Result<(SessionWriter, ReadReport<T>), JournalError> {
        let info = self.session(id)?;
        if info.is_finished() {
            return Err(JournalError::SessionFinished {
                path: self.path().to_path_buf(),
                id: id.clone(),
            });
        }
        SessionWriter::open(&info, self.guard.clone())
    }

    /// Remove an unfinished session whose journal holds no record at all
    /// (an older release created sessions empty; a crash before the first
    /// record left one behind). Refused for anything with a record in it.
    pub fn discard_empty_session(&self, id: &SessionId) -> Result<(), JournalError> {
        let info = self.session(id)?;
        let len = fs::metadata(&info.journal)
            .map_err(|source| JournalError::Io {
                op: "stat",
                path: info.journal.clone(),
                source,
            })?
            .len();
        if info.is_finished() || len != 0 {
            return Err(JournalError::SessionInProgress {
                path: self.path().to_path_buf(),
                id: id.clone(),
            });
        }
        fs::remove_dir_all(&info.dir).map_err(|source| JournalError::Io {
            op: "remove the empty session",
            path: info.dir.clone(),
            source,
        })?;
        sys::fsync_dir(&self.sessions_dir())
    }

    /// Sessions whose creation a crash interrupted, before the rename that
    /// makes them exist.
    fn remove_leftovers(&self, root: &Path) -> Result<(), JournalError> {
        let entries = fs::read_dir(root).map_err(|source| JournalError::Io {
            op: "list",
            path: root.to_path_buf(),
            source,
        })?;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let path = entry.path();
                fs::remove_dir_all(&path).map_err(|source| JournalError::Io {
                    op: "remove the interrupted session",
                    path,
                    source,
                })?;
            }
        }
        Ok(())
    }
}
