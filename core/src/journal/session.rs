//! One session's journal: its id, the records read back, the writer that
//! appends them durably, and the follower that streams them.

use super::dir::{Finished, LockGuard, MAX_MARKER_BYTES, RecordPos, SessionInfo};
use super::frame::{self, EncodeError, RawRecord, TailRule};
use super::sys::{self, CrashPoint};
use super::{JournalError, MAX_RECORD_BYTES};
use crate::files::{self, FileKind};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::marker::PhantomData;
use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

// ─── Session ids ────────────────────────────────────────────────────────────

/// A session's name: the state dir's session number, the creation time in
/// UTC to the second, then four random hex digits, e.g.
/// `000042-20261125T013000Z-3f9a`.
///
/// Ids sort by their number, which [`SessionId::next`] makes one more than
/// the last session's: the order of sessions does not depend on the wall
/// clock being right (a clock set years ahead once used to push every later
/// id past year 9999, where it could not be read back). The time is there
/// for people.
///
/// Ids of the first format, `20261125T013000Z-3f9a` (no number), are still
/// read; they sort among themselves by their time, as they were issued,
/// and before every numbered id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId {
    /// 0 for an id of the first format. Compared first.
    number: u64,
    text: String,
}

/// Session numbers are written with at least this many digits, so a
/// directory listing shows them in order.
const NUMBER_WIDTH: usize = 6;
/// One more than the largest session number (18 digits).
const NUMBER_LIMIT: u64 = 1_000_000_000_000_000_000;
/// The last second a session id's time can say: 9999-12-31T23:59:59Z.
const LAST_STAMP_SECS: u64 = 253_402_300_799;

impl SessionId {
    /// Accepts exactly the forms this module generates (and generated), so
    /// an id can never name a path outside the state dir.
    pub fn parse(text: &str) -> Result<SessionId, JournalError> {
        let bad = || JournalError::BadSessionId { id: text.into() };
        let (number, rest) = match text.split_once('-') {
            Some((digits, rest)) if digits.bytes().all(|c| c.is_ascii_digit()) => {
                let number: u64 = digits
                    .parse()
                    .ok()
                    .filter(|n| (1..NUMBER_LIMIT).contains(n))
                    .ok_or_else(bad)?;
                // One spelling per number: `42` and `0042` are not ids of 42
                // (zero-padded to exactly the width, or wider with no
                // leading zero). Checked without formatting: a state dir's
                // listing parses every id.
                let spelled = if number < 10u64.pow(NUMBER_WIDTH as u32) {
                    digits.len() == NUMBER_WIDTH
                } else {
                    !digits.starts_with('0')
                };
                if !spelled {
                    return Err(bad());
                }
                (number, rest)
            }
            _ => (0, text),
        };
        let (stamp, suffix) = rest.split_once('-').ok_or_else(bad)?;
        let hex = suffix.len() == 4
            && suffix
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c));
        if !hex || !sys::is_compact(stamp) {
            return Err(bad());
        }
        Ok(SessionId {
            number,
            text: text.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The state dir's number for this session; 0 for an id of the first
    /// format.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The creation time written in the id, in seconds since the epoch (the
    /// wall clock of the process that created it, whatever it said).
    pub fn created_secs(&self) -> u64 {
        let stamp = if self.number == 0 {
            &self.text[..16]
        } else {
            &self.text[self.text.len() - 21..self.text.len() - 5]
        };
        sys::parse_compact(stamp).expect("validated when the id was made")
    }

    /// The id of a session created after `last` (the state dir's last
    /// session, if any) at `now_secs`: the next number, whatever the clock
    /// says. `None` once the numbers are used up (a state dir would need a
    /// session a second for thirty billion years).
    pub fn next(last: Option<&SessionId>, now_secs: u64) -> Option<SessionId> {
        let number = last.map_or(0, |l| l.number) + 1;
        if number >= NUMBER_LIMIT {
            return None;
        }
        let text = format!(
            "{number:0width$}-{}-{:04x}",
            sys::format_compact(now_secs.min(LAST_STAMP_SECS)),
            random_u16(),
            width = NUMBER_WIDTH
        );
        Some(SessionId { number, text })
    }
}

fn random_u16() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS's randomness; mixing in the time
    // and pid only guards against a platform where it is not.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(sys::now_ms());
    hasher.write_u32(std::process::id());
    (hasher.finish() & 0xffff) as u16
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for SessionId {
    type Err = JournalError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SessionId::parse(text)
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Read back from an API's answer (a console showing an agent's status).
impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        SessionId::parse(&text).map_err(serde::de::Error::custom)
    }
}

// ─── Records read back ──────────────────────────────────────────────────────

/// One journal record, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Record<T> {
    /// 1, 2, 3, … with no gap: checked on every read.
    pub seq: u64,
    /// Wall-clock time of the event, in milliseconds since the Unix epoch,
    /// as given to the writer (not necessarily monotonic).
    pub ts_ms: u64,
    /// Byte offset of the record in the journal file.
    pub offset: u64,
    pub event: T,
}

/// Everything a session's journal holds, and what was found at its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReport<T> {
    pub records: Vec<Record<T>>,
    /// An incomplete last record: what a crash in the middle of an append
    /// leaves. Print it as a warning (its `Display` is the message).
    pub torn_tail: Option<TornTail>,
}

/// An incomplete record at the very end of a journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the incomplete record starts (the journal's length once cut).
    pub offset: u64,
    /// How many bytes it has.
    pub bytes: u64,
    /// Whether it was cut from the file: only a writer, under the state
    /// dir's lock, cuts; a reader just reports it.
    pub cut: bool,
}

impl fmt::Display for TornTail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (path, bytes, offset) = (self.path.display(), self.bytes, self.offset);
        if self.cut {
            write!(
                f,
                "journal {path} ended with an incomplete record ({bytes} bytes at byte {offset}), \
                 left by a write that was interrupted; it was never acknowledged, so it has been cut"
            )
        } else {
            write!(
                f,
                "journal {path} ends with an incomplete record ({bytes} bytes at byte {offset}): \
                 either a write in progress, or one that was interrupted, which the next writer will cut"
            )
        }
    }
}

/// Read and check a whole journal. The caller decides what a torn tail
/// means (cut, or report).
pub(crate) fn read_all<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    finished: Option<&Finished>,
) -> Result<(Vec<Record<T>>, frame::Scan), JournalError> {
    let scan = frame::scan(bytes, 0, 1, TailRule::Check)
        .map_err(|err| JournalError::corrupt(path, err))?;
    check_finished(
        path,
        finished,
        scan.records.len() as u64,
        scan.end,
        scan.tail,
    )?;
    let records = decode(path, &scan.records)?;
    Ok((records, scan))
}

/// A finished session's journal must end with its last record: no torn
/// tail, exactly as many records as the marker says.
fn check_finished(
    path: &Path,
    finished: Option<&Finished>,
    count: u64,
    end: u64,
    tail: u64,
) -> Result<(), JournalError> {
    let Some(done) = finished else {
        return Ok(());
    };
    let what = if tail > 0 {
        format!(
            "the session is finished, yet the journal ends with {tail} bytes of an incomplete record"
        )
    } else if count != done.last_seq {
        format!(
            "the session was finished after record {} but the journal holds {count} records",
            done.last_seq
        )
    } else {
        return Ok(());
    };
    Err(JournalError::Corrupt {
        path: path.to_path_buf(),
        record: count + 1,
        offset: end,
        what,
    })
}

fn decode<T: DeserializeOwned>(
    path: &Path,
    raw: &[RawRecord],
) -> Result<Vec<Record<T>>, JournalError> {
    raw.iter()
        .map(|r| {
            let event = T::deserialize(&r.event).map_err(|source| JournalError::Decode {
                path: path.to_path_buf(),
                seq: r.seq,
                offset: r.offset,
                source,
            })?;
            Ok(Record {
                seq: r.seq,
                ts_ms: r.ts_ms,
                offset: r.offset,
                event,
            })
        })
        .collect()
}

/// A journal's bytes, read only from a regular file (a journal replaced by
/// a link to `/dev/zero` is refused, not read without end).
fn read_journal(path: &Path) -> Result<Vec<u8>, JournalError> {
    let file = open_journal(path)?;
    let mut bytes = Vec::new();
    (&file)
        .read_to_end(&mut bytes)
        .map_err(|e| JournalError::reading(path, e))?;
    Ok(bytes)
}

pub(crate) fn read_session<T: DeserializeOwned>(
    info: &SessionInfo,
) -> Result<ReadReport<T>, JournalError> {
    let bytes = read_journal(&info.journal)?;
    let (records, scan) = read_all(&info.journal, &bytes, info.finished.as_ref())?;
    Ok(ReadReport {
        records,
        torn_tail: torn(info, &scan),
    })
}

fn open_journal(path: &Path) -> Result<File, JournalError> {
    files::open_regular(path, "a regular file").map_err(|e| JournalError::reading(path, e))
}

// ─── Snapshots, and a journal's end checked in one read ─────────────────────

const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = ".snapshot.tmp";
/// The snapshot file's layout; a snapshot of another version is not used.
const SNAPSHOT_VERSION: u32 = 1;
/// A snapshot is a fold's state, far smaller than this; a larger file is
/// not read.
const MAX_SNAPSHOT_BYTES: u64 = 4 * 1024 * 1024;

pub(crate) fn snapshot_path(session_dir: &Path) -> PathBuf {
    session_dir.join(SNAPSHOT)
}

/// `<session>/snapshot`: `{"version":1,"at":{"seq","offset","end","crc"},"state":…}`.
#[derive(Serialize)]
struct SnapshotFile<'a, S> {
    version: u32,
    /// The last record the state folds in.
    at: RecordPos,
    state: &'a S,
}

#[derive(Deserialize)]
struct SnapshotIn<S> {
    version: u32,
    at: RecordPos,
    state: S,
}

/// The session's snapshot, if there is one this release reads.
fn load_snapshot<S: DeserializeOwned>(session_dir: &Path) -> Option<(RecordPos, S)> {
    let bytes = files::read_regular(
        &snapshot_path(session_dir),
        "a regular file",
        MAX_SNAPSHOT_BYTES,
    )
    .ok()?;
    let snapshot: SnapshotIn<S> = serde_json::from_slice(&bytes).ok()?;
    (snapshot.version == SNAPSHOT_VERSION).then_some((snapshot.at, snapshot.state))
}

/// Whether `file` holds, at `pos`, exactly one intact record numbered
/// `pos.seq` whose line hashes to `pos.crc`: one read, however long the
/// journal.
/// Returns the record's timestamp when it is.
fn holds_record(file: &File, pos: &RecordPos) -> Option<u64> {
    let len = pos
        .end
        .checked_sub(pos.offset)
        .filter(|len| (1..=MAX_RECORD_BYTES + 64).contains(len))?;
    let mut line = vec![0; len as usize];
    if file.read_exact_at(&mut line, pos.offset).is_err() || crc32fast::hash(&line) != pos.crc {
        return None;
    }
    let scan = frame::scan(&line, pos.offset, pos.seq, TailRule::Check).ok()?;
    match scan.records.as_slice() {
        [record] if scan.tail == 0 => Some(record.ts_ms),
        _ => None,
    }
}

/// Whether a finished session's journal ends where its marker says: the
/// journal's length is the end of the marked last record and, with
/// `check_record`, that record is there intact (one read). `false` for a
/// marker of an older release (no position) and for any mismatch: the
/// caller then reads the whole journal, which says what is wrong.
pub(crate) fn ends_as_marked(info: &SessionInfo, check_record: bool) -> bool {
    let Some(last) = info
        .finished
        .as_ref()
        .and_then(|f| f.last.filter(|l| l.seq == f.last_seq))
    else {
        return false;
    };
    if !check_record {
        return std::fs::symlink_metadata(&info.journal)
            .is_ok_and(|m| m.is_file() && m.len() == last.end);
    }
    let Ok(file) = open_journal(&info.journal) else {
        return false;
    };
    file.metadata().is_ok_and(|m| m.len() == last.end) && holds_record(&file, &last).is_some()
}

/// A writer's snapshot, checked against the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot<S> {
    /// The last record the state folds in: it is in the journal, intact,
    /// where the snapshot says.
    pub seq: u64,
    /// That record's timestamp, for the owner's own cross-check.
    pub ts_ms: u64,
    pub state: S,
}

/// A session read from its snapshot on.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterSnapshot<S, T> {
    /// The state the writer saved, once checked against the journal;
    /// `None` when there is none, or it did not check out (then `records`
    /// are all the records).
    pub snapshot: Option<Snapshot<S>>,
    /// The records after the snapshot (all of them without one).
    pub records: Vec<Record<T>>,
    pub torn_tail: Option<TornTail>,
}

pub(crate) fn read_after_snapshot<S: DeserializeOwned, T: DeserializeOwned>(
    info: &SessionInfo,
) -> Result<AfterSnapshot<S, T>, JournalError> {
    // A finished session is read whole: its marker's count is checked.
    if info.finished.is_none()
        && let Some((at, state)) = load_snapshot::<S>(&info.dir)
    {
        let mut file = open_journal(&info.journal)?;
        if let Some(ts_ms) = holds_record(&file, &at) {
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(at.end))
                .and_then(|_| file.read_to_end(&mut bytes))
                .map_err(|e| JournalError::reading(&info.journal, e))?;
            let scan = frame::scan(&bytes, at.end, at.seq + 1, TailRule::Check)
                .map_err(|err| JournalError::corrupt(&info.journal, err))?;
            return Ok(AfterSnapshot {
                snapshot: Some(Snapshot {
                    seq: at.seq,
                    ts_ms,
                    state,
                }),
                records: decode(&info.journal, &scan.records)?,
                torn_tail: torn(info, &scan),
            });
        }
    }
    let report = read_session(info)?;
    Ok(AfterSnapshot {
        snapshot: None,
        records: report.records,
        torn_tail: report.torn_tail,
    })
}

fn torn(info: &SessionInfo, scan: &frame::Scan) -> Option<TornTail> {
    (scan.tail > 0).then(|| TornTail {
        path: info.journal.clone(),
        offset: scan.end,
        bytes: scan.tail,
        cut: false,
    })
}

// ─── Streaming ──────────────────────────────────────────────────────────────

/// How much of a journal a stream reads at a time.
const CHUNK_BYTES: usize = 256 * 1024;

/// A journal read a chunk at a time up to `limit`: the records of each
/// chunk, checked as [`frame::scan`] checks them, and what is left after
/// the last complete one.
struct Chunks {
    path: PathBuf,
    file: File,
    /// The file offset of `carry[0]`: the end of the records returned.
    pos: u64,
    limit: u64,
    next_seq: u64,
    /// Bytes read past the last complete record.
    carry: Vec<u8>,
}

impl Chunks {
    fn new(path: &Path, limit: u64) -> Result<Chunks, JournalError> {
        Ok(Chunks {
            path: path.to_path_buf(),
            file: open_journal(path)?,
            pos: 0,
            limit,
            next_seq: 1,
            carry: Vec::new(),
        })
    }

    /// The next records; empty once `limit` is reached.
    fn next_raw(&mut self) -> Result<Vec<RawRecord>, JournalError> {
        loop {
            let at = self.pos + self.carry.len() as u64;
            let want = self.limit.saturating_sub(at).min(CHUNK_BYTES as u64) as usize;
            if want == 0 {
                return Ok(Vec::new());
            }
            let old = self.carry.len();
            self.carry.resize(old + want, 0);
            let got = self
                .file
                .read_at(&mut self.carry[old..], at)
                .map_err(|e| JournalError::reading(&self.path, e))?;
            self.carry.truncate(old + got);
            if got == 0 {
                // The file ends before `limit`.
                self.limit = at;
                return Ok(Vec::new());
            }
            let scan = frame::scan(&self.carry, self.pos, self.next_seq, TailRule::Pending)
                .map_err(|err| JournalError::corrupt(&self.path, err))?;
            self.carry.drain(..(scan.end - self.pos) as usize);
            self.pos = scan.end;
            self.next_seq += scan.records.len() as u64;
            if !scan.records.is_empty() {
                return Ok(scan.records);
            }
        }
    }
}

/// A session's records, read a chunk at a time so that memory does not
/// grow with the journal (`duplex log`). Opening it reads the journal
/// through once and checks all of it, exactly as
/// [`read_session`](super::StateDir::read_session) does (corruption, a torn
/// tail, a finished session's count, every event decoded), so an error
/// comes before the first record; iterating reads it again, up to where
/// that check ended, yielding records.
pub struct RecordStream<T> {
    chunks: Chunks,
    ready: std::vec::IntoIter<Record<T>>,
    torn_tail: Option<TornTail>,
}

impl<T: DeserializeOwned> RecordStream<T> {
    pub(crate) fn open(info: &SessionInfo) -> Result<RecordStream<T>, JournalError> {
        let path = &info.journal;
        let mut check = Chunks::new(path, u64::MAX)?;
        let mut count = 0;
        loop {
            let raw = check.next_raw()?;
            if raw.is_empty() {
                break;
            }
            count += raw.len() as u64;
            decode::<T>(path, &raw)?;
        }
        // What is left is after the last newline: a torn tail, or corruption.
        let scan = frame::scan(&check.carry, check.pos, check.next_seq, TailRule::Check)
            .map_err(|err| JournalError::corrupt(path, err))?;
        check_finished(path, info.finished.as_ref(), count, scan.end, scan.tail)?;
        Ok(RecordStream {
            chunks: Chunks::new(path, check.pos)?,
            ready: Vec::new().into_iter(),
            torn_tail: torn(info, &scan),
        })
    }

    /// An incomplete last record, as [`ReadReport::torn_tail`].
    pub fn torn_tail(&self) -> Option<&TornTail> {
        self.torn_tail.as_ref()
    }
}

impl<T: DeserializeOwned> Iterator for RecordStream<T> {
    type Item = Result<Record<T>, JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.ready.next() {
            return Some(Ok(record));
        }
        let batch = self
            .chunks
            .next_raw()
            .and_then(|raw| decode(&self.chunks.path, &raw));
        match batch {
            Ok(records) => {
                self.ready = records.into_iter();
                self.ready.next().map(Ok)
            }
            Err(err) => {
                // Once: a failed stream ends.
                self.chunks.limit = 0;
                Some(Err(err))
            }
        }
    }
}

// ─── The writer ─────────────────────────────────────────────────────────────

/// How a writer makes its appends durable: `File::sync_all` (fsync), replaced in
/// unit tests by one that fails.
pub(crate) type SyncFn = fn(&File) -> io::Result<()>;

fn fsync(file: &File) -> io::Result<()> {
    super::sys::sync(file)
}

#[cfg(test)]
thread_local! {
    /// Unit tests replace the fsync of the writers this thread creates.
    pub(crate) static TEST_SYNC: std::cell::Cell<Option<SyncFn>> = const { std::cell::Cell::new(None) };
}

fn default_sync() -> SyncFn {
    #[cfg(test)]
    if let Some(sync) = TEST_SYNC.get() {
        return sync;
    }
    fsync
}

/// Appends records to one session's journal, durably, under the state
/// dir's lock (which it keeps alive).
///
/// Every [`append`](SessionWriter::append) returns only once the record is
/// on disk (written, then fsynced). The first failed write or fsync
/// poisons the writer: that call returns the error and every later call
/// returns [`JournalError::Poisoned`] without touching the file. A failed
/// fsync is never retried: after one, the kernel may already have dropped
/// the unwritten pages and marked them clean, so a second fsync could
/// "succeed" without the data ever reaching the disk.
#[derive(Debug)]
pub struct SessionWriter {
    id: SessionId,
    dir: PathBuf,
    path: PathBuf,
    file: File,
    next_seq: u64,
    end: u64,
    /// The last record acknowledged (`None` while the journal is empty).
    last: Option<RecordPos>,
    failed: Option<&'static str>,
    sync: SyncFn,
    crash: Option<(u64, CrashPoint)>,
    _lock: Arc<LockGuard>,
}

impl SessionWriter {
    pub(crate) fn new(
        info: &SessionInfo,
        file: File,
        next_seq: u64,
        last: Option<RecordPos>,
        lock: Arc<LockGuard>,
    ) -> Result<Self, JournalError> {
        Ok(SessionWriter {
            id: info.id.clone(),
            dir: info.dir.clone(),
            path: info.journal.clone(),
            file,
            next_seq,
            end: last.map_or(0, |l| l.end),
            last,
            failed: None,
            sync: default_sync(),
            crash: sys::crash_point_from_env()?,
            _lock: lock,
        })
    }

    /// Open an existing session's journal for appending: read and check it,
    /// and cut a torn tail (made durable before anything is appended).
    pub(crate) fn open<T: DeserializeOwned>(
        info: &SessionInfo,
        lock: Arc<LockGuard>,
    ) -> Result<(Self, ReadReport<T>), JournalError> {
        let path = &info.journal;
        let io = |op: &'static str| {
            move |source| JournalError::Io {
                op,
                path: path.clone(),
                source,
            }
        };
        // Non-blocking open, so a FIFO in its place cannot hang us; only a
        // regular file is read and appended to.
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(io("open"))?;
        let kind = FileKind::of(&file.metadata().map_err(io("stat"))?);
        if kind != FileKind::Regular {
            return Err(JournalError::NotARegularFile {
                path: path.clone(),
                kind,
            });
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read"))?;
        let (records, scan) = read_all::<T>(path, &bytes, None)?;
        let last = records.last().map(|r| RecordPos {
            seq: r.seq,
            offset: r.offset,
            end: scan.end,
            crc: crc32fast::hash(&bytes[r.offset as usize..scan.end as usize]),
        });
        let writer = SessionWriter::new(info, file, records.len() as u64 + 1, last, lock)?;
        let mut torn_tail = None;
        if scan.tail > 0 {
            writer
                .file
                .set_len(scan.end)
                .map_err(io("cut the torn tail of"))?;
            (writer.sync)(&writer.file).map_err(|source| JournalError::Fsync {
                path: path.clone(),
                source,
            })?;
            torn_tail = Some(TornTail {
                path: path.clone(),
                offset: scan.end,
                bytes: scan.tail,
                cut: true,
            });
        }
        Ok((writer, ReadReport { records, torn_tail }))
    }

    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The journal's length in bytes: every record acknowledged so far.
    pub fn len_bytes(&self) -> u64 {
        self.end
    }

    /// Whether an earlier write or fsync failed (every append is refused).
    pub fn is_poisoned(&self) -> bool {
        self.failed.is_some()
    }

    /// Append `event`, stamped now; durable when this returns its seq.
    pub fn append<T: Serialize>(&mut self, event: &T) -> Result<u64, JournalError> {
        self.append_at(sys::now_ms(), event)
    }

    /// Append `event` with the caller's timestamp (ms since the epoch).
    pub fn append_at<T: Serialize>(&mut self, ts_ms: u64, event: &T) -> Result<u64, JournalError> {
        self.check_usable()?;
        let seq = self.next_seq;
        // Refused before anything is written: the writer stays usable.
        let frame = frame::encode(seq, ts_ms, event).map_err(|err| match err {
            EncodeError::Json(what) => JournalError::Encode(what),
            EncodeError::TooLarge { bytes } => JournalError::RecordTooLarge {
                path: self.path.clone(),
                seq,
                bytes,
            },
        })?;
        let crash = self
            .crash
            .filter(|(at, _)| *at == seq)
            .map(|(_, point)| point);
        if crash == Some(CrashPoint::BeforeWrite) {
            sys::crash_now();
        }
        if crash == Some(CrashPoint::MidWrite) {
            let _ = self.file.write_all(&frame[..frame.len() / 2]);
            sys::crash_now();
        }
        if let Err(source) = self.file.write_all(&frame) {
            // Part of the record may be in the file: nothing more may follow
            // it. The next writer finds it as a torn tail and cuts it.
            self.failed = Some("write");
            return Err(JournalError::Io {
                op: "append to",
                path: self.path.clone(),
                source,
            });
        }
        if crash == Some(CrashPoint::AfterWrite) {
            sys::crash_now();
        }
        if let Err(source) = (self.sync)(&self.file) {
            self.failed = Some("fsync");
            return Err(JournalError::Fsync {
                path: self.path.clone(),
                source,
            });
        }
        if crash == Some(CrashPoint::AfterSync) {
            sys::crash_now();
        }
        self.last = Some(RecordPos {
            seq,
            offset: self.end,
            end: self.end + frame.len() as u64,
            crc: crc32fast::hash(&frame),
        });
        self.next_seq += 1;
        self.end += frame.len() as u64;
        Ok(seq)
    }

    /// Save `state` — what its owner folded from every record appended so
    /// far — beside the journal as the session's snapshot, so a reader
    /// replays only the records after it
    /// ([`StateDir::read_session_after_snapshot`](super::StateDir::read_session_after_snapshot)).
    ///
    /// Written whole under a temporary name and renamed over the last one,
    /// but **not fsynced**: a reader believes a snapshot only after
    /// checking it against the journal (the record it names is there, at
    /// its offset, with its checksum), and reads the whole journal
    /// otherwise. So a snapshot a crash lost, tore or left behind a later
    /// record costs a reader time, never truth, and a session's fsyncs stay
    /// one per record.
    pub fn save_snapshot<S: Serialize>(&self, state: &S) -> Result<(), JournalError> {
        self.check_usable()?;
        let Some(at) = self.last else {
            return Ok(());
        };
        let json = serde_json::to_vec(&SnapshotFile {
            version: SNAPSHOT_VERSION,
            at,
            state,
        })
        .map_err(|err| JournalError::Encode(err.to_string()))?;
        let path = snapshot_path(&self.dir);
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { op, path, source }
        };
        std::fs::write(&tmp, &json).map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("rename into place", &path))
    }

    /// Mark the session finished: it becomes history, and the state dir's
    /// [`current_session`](super::StateDir::current_session) no longer
    /// returns it. Written atomically (temporary file, fsync, rename, fsync
    /// of the directory); the engine appends its final record first, and
    /// after a crash between the two it finds the session unfinished and
    /// calls this again.
    pub fn finish(self) -> Result<Finished, JournalError> {
        self.finish_with(None)
    }

    /// [`finish`](SessionWriter::finish), the marker carrying `summary`
    /// (what the owner says of the finished session) and where the last
    /// record is. A summary that would make the marker longer than a marker
    /// may be is left out: readers then replay the journal.
    pub fn finish_with(self, summary: Option<serde_json::Value>) -> Result<Finished, JournalError> {
        self.check_usable()?;
        let mut done = Finished {
            last_seq: self.next_seq - 1,
            ts_ms: sys::now_ms(),
            last: self.last,
            summary,
        };
        let encode = |done: &Finished| {
            serde_json::to_vec(done).map_err(|err| JournalError::Encode(err.to_string()))
        };
        let mut json = encode(&done)?;
        if json.len() as u64 > MAX_MARKER_BYTES {
            done.summary = None;
            json = encode(&done)?;
        }
        sys::write_atomic(&super::dir::finished_path(&self.dir), &json)?;
        // History reads the marker now; the snapshot is of no more use. (A
        // crash before this leaves it, unread.)
        let _ = std::fs::remove_file(snapshot_path(&self.dir));
        Ok(done)
    }

    fn check_usable(&self) -> Result<(), JournalError> {
        match self.failed {
            Some(what) => Err(JournalError::Poisoned {
                path: self.path.clone(),
                what,
            }),
            None => Ok(()),
        }
    }
}

// ─── The follower ───────────────────────────────────────────────────────────

/// Streams a session's records as they are appended (`duplex log --follow`):
/// each [`poll`](Follower::poll) returns the complete records added since
/// the last one. An incomplete last record is one still being written: it
/// is left for a later poll, never reported as torn.
///
/// ```no_run
/// # use duplex_core::journal::{StateDir, SessionId};
/// # fn demo(dir: &StateDir, id: &SessionId) -> Result<(), duplex_core::journal::JournalError> {
/// let mut follower = dir.follow::<serde_json::Value>(id)?;
/// loop {
///     let done = follower.session_finished(); // before the poll: nothing follows it
///     for record in follower.poll()? {
///         println!("{} {}", record.seq, record.event);
///     }
///     if done { break }
///     std::thread::sleep(std::time::Duration::from_millis(200));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Follower<T> {
    path: PathBuf,
    finished_path: PathBuf,
    file: File,
    offset: u64,
    next_seq: u64,
    _event: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Follower<T> {
    pub(crate) fn new(info: &SessionInfo) -> Result<Self, JournalError> {
        let file = files::open_regular(&info.journal, "a regular file")
            .map_err(|e| JournalError::reading(&info.journal, e))?;
        Ok(Follower {
            path: info.journal.clone(),
            finished_path: super::dir::finished_path(&info.dir),
            file,
            offset: 0,
            next_seq: 1,
            _event: PhantomData,
        })
    }

    /// The complete records appended since the last poll (all of them on
    /// the first), in order.
    pub fn poll(&mut self) -> Result<Vec<Record<T>>, JournalError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { op, path, source }
        };
        let len = self.file.metadata().map_err(io("stat", &self.path))?.len();
        if len < self.offset {
            return Err(JournalError::Corrupt {
                path: self.path.clone(),
                record: self.next_seq - 1,
                offset: len,
                what: format!(
                    "the journal shrank to {len} bytes, below records already read (up to byte {})",
                    self.offset
                ),
            });
        }
        if len == self.offset {
            return Ok(Vec::new());
        }
        self.file
            .seek(SeekFrom::Start(self.offset))
            .map_err(io("seek in", &self.path))?;
        let mut bytes = Vec::new();
        (&self.file)
            .take(len - self.offset)
            .read_to_end(&mut bytes)
            .map_err(io("read", &self.path))?;
        let scan = frame::scan(&bytes, self.offset, self.next_seq, TailRule::Pending)
            .map_err(|err| JournalError::corrupt(&self.path, err))?;
        let records = decode(&self.path, &scan.records)?;
        self.offset = scan.end;
        self.next_seq += records.len() as u64;
        Ok(records)
    }

    /// Whether the session has been finished. Check it *before* a poll: once
    /// it is true, that poll returns the last records there will be.
    pub fn session_finished(&self) -> bool {
        self.finished_path.exists()
    }

    /// Bytes of the journal consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}
