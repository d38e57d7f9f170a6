//! The durable journal: one append-only, checksummed log of events per
//! upgrade session; a session's state is the fold of its records.
//!
//! The journal knows nothing of what an event means: it stores any
//! `Serialize` payload and gives it back as any `DeserializeOwned` type
//! (the engine defines its event enum). Sync only; the engine wraps it.
//!
//! # State dir layout
//!
//! ```text
//! <state dir>/                  --state-dir, $DUPLEX_STATE_DIR, /var/lib/duplex (root),
//!   lock                        $XDG_STATE_HOME/duplex, ~/.local/state/duplex
//!   newest                      hint for readers: the newest session's id (not fsynced)
//!   sessions/
//!     000042-20261125T013000Z-3f9a/   one directory per session, kept as history
//!       journal                 the records
//!       snapshot                the writer's fold so far, for readers (not fsynced)
//!       finished                marker: {"last_seq":N,"ts_ms":…,"last":{…},"summary":{…}},
//!                               once finished
//! ```
//!
//! * **One writer.** [`StateDir::lock`] takes an exclusive `flock` on
//!   `lock` without waiting; a second writer gets [`JournalError::Locked`]
//!   naming the holder's pid (written in the file for messages). The kernel
//!   drops the lock when its process dies, however it dies, so a `kill -9`
//!   never leaves a stale lock. (A child forked while the lock is held
//!   shares it until its `exec` closes the descriptor, which std opens
//!   close-on-exec: a moment at most.) [`force_unlock`] is for the remaining
//!   case, a dead holder whose descriptor lives on in another process (a
//!   child that never exec'd, or one that inherited it): it removes
//!   the lock file, and lockers check after locking that the file they
//!   locked is still the one named `lock`. It refuses while the recorded
//!   holder is alive (pid plus process start time, so a reused pid is not
//!   mistaken for the holder).
//! * **Readers** ([`StateDir::read_only`]) take no lock: `status`, `log`
//!   and `log --follow` ([`Follower`]) work while a writer runs.
//! * **Sessions** are created atomically (built in `sessions/.tmp-<id>`,
//!   fsynced, renamed, parent fsynced). An id is the state dir's next
//!   session number, the UTC creation second and 4 random hex digits
//!   ([`SessionId`]); ids sort by number, so sorting by id is creation
//!   order whatever the wall clock said (ids of the first format, with no
//!   number, sort before numbered ones, by their time). At most one session
//!   is unfinished; [`StateDir::current_session`] returns it. A directory
//!   in `sessions/` that holds a journal but is not named by an id is an
//!   error ([`JournalError::UnnamedSession`]) for every reader and writer,
//!   never skipped: a session nobody sees could be a second one in flight.
//! * **Readers do not read what they need not.** The newest session is
//!   named by `newest`, written (not fsynced) after each session is
//!   created with the modification time `sessions/` had then; a reader uses
//!   it only while `sessions/` still has that time and the session is
//!   there, and lists `sessions/` otherwise (writers always list). An
//!   unfinished session's reader starts from its `snapshot` when it checks
//!   out ([`SessionWriter::save_snapshot`]: the record it names is in the
//!   journal at its offset with its checksum), replaying only the records
//!   after it; a finished session's reader takes what it needs from the
//!   marker's `summary` when the journal ends where the marker's `last`
//!   says (its length; for `status` also that record's bytes). Whatever
//!   does not check out — a hint, snapshot or marker of an older release,
//!   lost, torn or stale — sends the reader to the listing or the whole
//!   journal, which read to the same answer. `log` streams: it checks the
//!   whole journal a chunk at a time, then reads it again as it prints.
//! * **Finished** is a marker file written atomically by
//!   [`SessionWriter::finish`] after the engine's last record. A crash
//!   between the two leaves the session current; the engine folds it, sees
//!   it is over, and finishes it again. The marker records the last seq
//!   (and, since markers carry it, where that record is): every whole read
//!   of a finished session checks that the journal still holds exactly that
//!   many records, and the marker's shortcut is taken only when the journal
//!   ends at that record, so history that lost its tail is an error, not a
//!   silently shorter story. The marker also carries the owner's summary
//!   of the session ([`SessionWriter::finish_with`]), unless that would
//!   make it longer than the 4 KiB a marker may be (older releases read
//!   new markers, ignoring what they do not know).
//!
//! # Record format
//!
//! One line per record, greppable and readable with `cut`/`jq`:
//!
//! ```text
//! <crc32 of body: 8 lowercase hex> <body length: decimal> <body>\n
//! ed5a83c8 59 {"seq":1,"ts_ms":1764034200000,"event":{"command":"start"}}
//! ```
//!
//! The body is compact JSON `{"seq","ts_ms","event"}`; compact JSON never
//! holds a raw newline (the writer checks), so the newline ends the record
//! and nothing else. CRC-32 (IEEE, `crc32fast`) detects every burst of up
//! to 32 bits, and every error of up to three bits in a body under 11 KiB; the
//! header fields are parsed strictly (lowercase hex, no leading zero), so
//! every single-bit flip anywhere in a journal is detected: it breaks the
//! checksum, the header syntax, the declared length, or a line boundary.
//! `seq` runs 1, 2, 3, … and is checked on every read; a gap or a repeat is
//! corruption. `ts_ms` is the wall clock (the caller's, or now).
//!
//! A body is at most [`MAX_RECORD_BYTES`] (1 MiB). The writer refuses a
//! larger record with [`JournalError::RecordTooLarge`] before writing
//! anything (the writer stays usable: the caller decides what to record
//! instead), and a reader treats a header declaring a longer body as
//! corruption as soon as its length field passes the limit, complete line
//! or not, so no reader waits for, or cuts as torn, a body that cannot be.
//!
//! Journals, `finished` markers and the lock's holder details are read only
//! from regular files, opened without blocking: a journal replaced by a
//! link to `/dev/zero` or by a FIFO is [`JournalError::NotARegularFile`],
//! naming it, rather than a read without end.
//!
//! A text line rather than a binary frame: the journal is also the audit
//! trail a person greps during an incident, and the cost (hex and decimal
//! header, JSON body) is nothing next to the fsync each record pays.
//!
//! # Crash safety
//!
//! An append writes the whole line in one `write` and returns only after
//! `fsync` succeeds; the engine acts on a step only after its record
//! is appended. So a record that was acknowledged ends with its newline on
//! disk. What a crash can leave after the last newline is a prefix of the
//! record being appended (kill -9 leaves exactly what `write` copied; on
//! power loss, a file whose new size reached the disk before its data can
//! also read as zero bytes). The reader's rule:
//!
//! 1. Every newline-terminated line must be a valid record: length,
//!    checksum, JSON, next seq. Otherwise [`JournalError::Corrupt`], naming
//!    the file, the record and the byte offset. This holds for the last line
//!    too: an interrupted write cannot produce a complete line with a bad
//!    checksum, and a complete line may have been acknowledged and acted
//!    on, so cutting it could forget a step that happened.
//! 2. Bytes after the last newline are a **torn tail** when they are a
//!    prefix of a well-formed record (header syntax so far, body no longer
//!    than declared, and if the body is all there its checksum matches),
//!    optionally followed by zero bytes. Such a record was never
//!    acknowledged, so nothing was done on its strength: the writer cuts it
//!    (`ftruncate` + fsync, under the lock, before appending) and reports a
//!    [`TornTail`] to print as a warning. Readers report it without
//!    touching the file; the [`Follower`] treats it as not written yet.
//! 3. Anything else after the last newline (bytes past the declared length,
//!    a complete body failing its checksum, a header no writer produces) is
//!    corruption: no crash leaves it. In particular a flipped bit in the
//!    newline of the last record is reported, not mistaken for a torn write.
//!
//! Hence truncating a journal anywhere yields the records before the cut
//! and a torn tail, and flipping any bit anywhere yields `Corrupt` — both
//! tested exhaustively. A finished session may have no torn tail at all.
//!
//! fsync: the file after every append and after cutting a torn tail (a full
//! `fsync`, not `fdatasync`: every append changes the size anyway, so it
//! costs the same and leaves no doubt about metadata); the directory after
//! every create or rename (state dir, `lock`, `sessions/`, the session dir,
//! the marker). So a session costs one fsync per record plus a fixed set:
//! creating it beyond its journal and first record (the policy copy, the
//! new `plugins/` folder, each plugin copy, the new session directory and
//! `sessions/`: 5 with one plugin), finishing it (the marker and its
//! directory: 2), and on a state dir's first use the state dir, its
//! `sessions/` and `lock` (3). `benches/session.rs` counts them. The `newest` hint and
//! the snapshots are never fsynced: readers check them against what is
//! (see above), so losing one costs a reader time, never truth.
//! A failed write or fsync poisons the [`SessionWriter`]: that append
//! returns [`JournalError::Fsync`] (or `Io`) and every later one
//! [`JournalError::Poisoned`]. It is never retried: after a failed fsync
//! Linux may have dropped the dirty pages and marked them clean, so a retry
//! can succeed without the data being on disk. The run stops; `duplex
//! resume` in a new process starts again from what is on disk.
//!
//! # Crash points for tests
//!
//! With `DUPLEX_JOURNAL_CRASH=<seq>:<point>` in its environment, a writer
//! SIGKILLs its own process while appending record `seq`: `before-write`,
//! `mid-write` (half the line written), `after-write` (written, not yet
//! fsynced) or `after-sync` (durable, `append` not yet returned). Crash
//! tests use it to stop at every record boundary deterministically.

mod dir;
mod frame;
mod session;
mod sys;

pub use dir::{
    Finished, LockHolder, LockedStateDir, RecordPos, SessionInfo, StateDir, UnlockOutcome,
    force_unlock,
};
pub use session::{
    AfterSnapshot, Follower, ReadReport, Record, RecordStream, SessionId, SessionWriter, Snapshot,
    TornTail,
};
pub use sys::{CRASH_ENV, format_utc, fsync_count, write_atomic};

use crate::files::FileKind;
use std::path::{Path, PathBuf};

/// The largest record body, in bytes: 1 MiB. An event is a line of JSON
/// about one step (a transition, a plugin call's outcome with its capped
/// output), so a larger one is a bug or a plugin's output let through: the
/// writer refuses it with [`JournalError::RecordTooLarge`], before writing
/// anything, and the reader treats a header declaring a longer body as
/// corruption without looking for that body.
pub const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// Everything that can go wrong with a state dir or a journal. Every
/// message names the path concerned and, where one exists, the way out.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "fsync of {} failed: {source}; stopping without retrying (after a failed fsync the \
         system may have dropped the unwritten data, so a retry could succeed falsely)",
        .path.display()
    )]
    Fsync {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "journal {} accepts no more records: an earlier {what} failed in this process",
        .path.display()
    )]
    Poisoned { path: PathBuf, what: &'static str },

    #[error(
        "journal {} is corrupt at record {record} (byte {offset}): {what}; refusing to guess — \
         restore it from backup or move the session away",
        .path.display()
    )]
    Corrupt {
        path: PathBuf,
        /// 1-based position of the bad record (its expected seq).
        record: u64,
        offset: u64,
        what: String,
    },

    #[error(
        "journal {}: record {seq} (byte {offset}) is intact but is not an event this duplex \
         understands: {source}; was it written by another version of duplex?",
        .path.display()
    )]
    Decode {
        path: PathBuf,
        seq: u64,
        offset: u64,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot encode a journal record: {0}")]
    Encode(String),

    #[error(
        "record {seq} for journal {} is {bytes} bytes; a record holds at most {MAX_RECORD_BYTES} \
         bytes, so it was not written (the journal is unchanged and takes further records)",
        .path.display()
    )]
    RecordTooLarge { path: PathBuf, seq: u64, bytes: u64 },

    #[error(
        "{} is {kind}, not a regular file; duplex reads a state dir's journals and markers \
         only from regular files, so it refuses to read this one: restore it or move the \
         session away",
        .path.display()
    )]
    NotARegularFile { path: PathBuf, kind: FileKind },

    #[error(
        "state dir {} is locked by {}",
        .path.display(),
        holder_text(.holder)
    )]
    Locked {
        path: PathBuf,
        holder: Option<LockHolder>,
    },

    #[error(
        "refusing to unlock state dir {}: {holder} is alive and holds the lock; stop it first",
        .path.display()
    )]
    HeldByLiveProcess { path: PathBuf, holder: LockHolder },

    #[error(
        "refusing to unlock state dir {}: it is locked but the lock file names no holder; \
         find the process with `fuser -v {}` and stop it",
        .path.display(),
        .path.join("lock").display()
    )]
    HeldByUnknown { path: PathBuf },

    #[error(
        "state dir {} does not exist (no session has run with it)",
        .path.display()
    )]
    StateDirMissing { path: PathBuf },

    #[error("there is no session {id} in state dir {}", .path.display())]
    SessionNotFound { path: PathBuf, id: SessionId },

    #[error("session {id} in state dir {} is finished; its journal is read-only history", .path.display())]
    SessionFinished { path: PathBuf, id: SessionId },

    #[error(
        "session {id} in state dir {} is still in progress; resume or abort it before starting another",
        .path.display()
    )]
    SessionInProgress { path: PathBuf, id: SessionId },

    #[error(
        "{id:?} is not a session id (expected NNNNNN-YYYYMMDDTHHMMSSZ-xxxx, e.g. \
         000042-20261125T013000Z-3f9a; older state dirs also have YYYYMMDDTHHMMSSZ-xxxx)"
    )]
    BadSessionId { id: String },

    #[error(
        "state dir {} has used up its session numbers; move its sessions away to start again",
        .path.display()
    )]
    SessionNumbersUsedUp { path: PathBuf },

    #[error(
        "{} holds a journal, but its name is not a session id; refusing to start or list \
         sessions beside a session this duplex cannot order (one named by another version of \
         duplex, or by hand): move it out of the state dir",
        .path.display()
    )]
    UnnamedSession { path: PathBuf },

    #[error(
        "session marker {} is unreadable: {what}; refusing to guess whether the session finished",
        .path.display()
    )]
    BadMarker { path: PathBuf, what: String },

    #[error(
        "{CRASH_ENV}={value:?} is not <seq>:<point> with point one of before-write, mid-write, \
         after-write, after-sync"
    )]
    BadCrashPoint { value: String },
}

fn holder_text(holder: &Option<LockHolder>) -> String {
    match holder {
        Some(holder) => holder.to_string(),
        None => "another process (it has not recorded its pid)".into(),
    }
}

impl JournalError {
    /// A failed read of `path`: a file of the wrong kind, or an I/O error.
    fn reading(path: &Path, source: std::io::Error) -> JournalError {
        match source
            .get_ref()
            .and_then(|e| e.downcast_ref::<crate::files::WrongKind>())
        {
            Some(wrong) => JournalError::NotARegularFile {
                path: path.to_path_buf(),
                kind: wrong.kind,
            },
            None => JournalError::Io {
                op: "read",
                path: path.to_path_buf(),
                source,
            },
        }
    }

    fn corrupt(path: &Path, err: frame::ScanError) -> JournalError {
        JournalError::Corrupt {
            path: path.to_path_buf(),
            record: err.record,
            offset: err.offset,
            what: err.what,
        }
    }
}

#[cfg(test)]
mod tests;
