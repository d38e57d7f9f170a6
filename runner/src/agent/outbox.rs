//! The durable outbox webhooks are delivered from. Enqueuing writes the
//! event to disk (fsynced) and returns; one thread per target delivers that
//! target's events strictly in enqueue order, retrying a failing head event
//! with backoff, so a receiver that is down delays only its own later
//! events, never the upgrade, and nothing queued is lost across a restart.
//!
//! Layout under the outbox directory (e.g. `<state>/agent/outbox`):
//!
//! ```text
//! deliveries.log                     one JSON line per delivery attempt's outcome
//! targets/<name>/pending/<seq>.json  events to deliver; <seq> is 20 digits, the enqueue order
//! targets/<name>/dead/<seq>.json     events given up (refused, or out of attempts)
//! targets/<name>/done                ids delivered or given up, one JSON line each
//!                                    (the last 10,000 are kept: the idempotency memory)
//! ```
//!
//! One process uses an outbox directory at a time (the agent holds the
//! state dir's lock).

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use super::webhooks::CloudEvent;
use super::webhooks::{self, Verdict};

/// How many delivered or given-up ids each target remembers.
const DONE_KEPT: usize = 10_000;
/// `deliveries.log` is moved to `deliveries.log.1` on open past this size.
const LOG_ROTATE_BYTES: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("webhook target {name:?}: {why}")]
    Target { name: String, why: String },
    #[error("cannot encode the event: {0}")]
    Encode(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where one copy of every event goes.
#[derive(Clone)]
pub struct WebhookTarget {
    /// `http://` or `https://`.
    pub url: String,
    /// The HMAC key; `None` sends unsigned requests.
    pub secret: Option<Vec<u8>>,
    /// Names the target in logs and on disk: 1–64 of `[A-Za-z0-9._-]`, not
    /// starting with a dot, unique among the targets.
    pub name: String,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("name", &self.name)
            .finish()
    }
}

/// How hard each event is tried.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Attempts before an event that keeps failing is given up (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failed attempt; it doubles after each
    /// further one (minus up to a quarter, at random, so receivers coming
    /// back are not hit by every sender at once)...
    pub first_backoff: Duration,
    /// ...up to this.
    pub max_backoff: Duration,
    /// The whole exchange (connect, send, answer) of one attempt.
    pub timeout: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            max_attempts: 8,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
            timeout: Duration::from_secs(10),
        }
    }
}

impl DeliveryPolicy {
    /// The wait after `attempts` failed attempts (≥ 1), jittered.
    fn backoff(&self, attempts: u32) -> Duration {
        let doubled = self
            .first_backoff
            .saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1)))
            .min(self.max_backoff);
        doubled.mul_f64(1.0 - 0.25 * fastrand::f64())
    }
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct DeliveryOutcome {
    pub target: String,
    pub event_id: String,
    pub event_type: String,
    /// 1 for the first attempt (counted from the agent's start: the count
    /// is not kept across restarts).
    pub attempt: u32,
    /// The HTTP status answered, or why there was no answer.
    pub result: Result<u16, String>,
    /// The event will not be tried again (it is in `dead/`).
    pub gave_up: bool,
    /// When the event will be tried again, if it will.
    pub next_try_in: Option<Duration>,
    /// The outbox could not record the outcome on disk (the delivery
    /// itself went as `result` says): after a restart the event may be
    /// delivered again, or an id re-enqueued may be accepted again; or
    /// `deliveries.log` could not be written.
    pub store_error: Option<String>,
}

/// One line of `deliveries.log`.
#[derive(Serialize)]
struct LogLine<'a> {
    time: String,
    target: &'a str,
    event_id: &'a str,
    event_type: &'a str,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    delivered: bool,
    gave_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_try_in_ms: Option<u128>,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_error: Option<&'a str>,
}

/// One line of a target's `done` file.
#[derive(Serialize, Deserialize)]
struct DoneLine {
    id: String,
    outcome: Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Done {
    Delivered,
    GaveUp,
}

/// The durable outbox. Cheap to clone; all clones share the queues.
#[derive(Clone)]
pub struct Outbox {
    inner: Arc<Inner>,
}

struct Inner {
    policy: DeliveryPolicy,
    targets: Vec<Target>,
    log_path: PathBuf,
    log: Mutex<File>,
    /// A delivery run is under way (there is at most one).
    delivering: AtomicBool,
}

struct Target {
    config: WebhookTarget,
    pending: PathBuf,
    dead: PathBuf,
    done_path: PathBuf,
    state: Mutex<State>,
    /// Signalled on enqueue and on shutdown.
    wake: Condvar,
}

struct State {
    next_seq: u64,
    queue: VecDeque<Queued>,
    pending_ids: HashSet<String>,
    /// Delivered or given-up ids, oldest first, at most `DONE_KEPT`.
    done: VecDeque<String>,
    done_ids: HashSet<String>,
    done_file: File,
    /// Lines in `done_file` (compacted when twice `DONE_KEPT`).
    done_lines: usize,
    stop: bool,
}

#[derive(Clone)]
struct Queued {
    seq: u64,
    id: String,
    ty: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn seq_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

fn parse_seq(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `bytes` as `dir/name`, durably: a temporary file, fsynced, renamed, the
/// directory fsynced.
fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".tmp-{name}"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, dir.join(name))?;
    fsync_dir(dir)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The sequence numbers of the `<seq>.json` files in `dir`, ascending;
/// leftover temporary files are removed.
fn list_seqs(dir: &Path) -> Result<Vec<u64>, OutboxError> {
    let mut seqs = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(".tmp-") {
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err(&path))?;
        } else if let Some(seq) = parse_seq(&name) {
            seqs.push(seq);
        }
    }
    seqs.sort_unstable();
    Ok(seqs)
}

/// The `done` file's ids with their outcomes, oldest first, the last
/// `DONE_KEPT` of them; and whether the file needs rewriting (too long, or
/// a torn or unreadable line).
fn read_done(path: &Path) -> Result<(Vec<(String, Done)>, bool), OutboxError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut entries = Vec::new();
    let mut rewrite = false;
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    loop {
        line.clear();
        // A torn last line can be cut mid-UTF-8: read bytes, judge as text.
        let mut bytes = Vec::new();
        let n = reader.read_until(b'\n', &mut bytes).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        let complete = bytes.last() == Some(&b'\n');
        match std::str::from_utf8(&bytes)
            .ok()
            .filter(|_| complete)
            .and_then(|s| serde_json::from_str::<DoneLine>(s.trim_end()).ok())
        {
            Some(d) => entries.push((d.id, d.outcome)),
            None => rewrite = true,
        }
    }
    if entries.len() > DONE_KEPT {
        entries.drain(..entries.len() - DONE_KEPT);
        rewrite = true;
    }
    Ok((entries, rewrite))
}

fn done_line(id: &str, outcome: Done) -> Vec<u8> {
    let mut line = serde_json::to_vec(&DoneLine {
        id: id.to_owned(),
        outcome,
    })
    .expect("a string and an enum serialize");
    line.push(b'\n');
    line
}

fn open_append(path: &Path) -> Result<File, OutboxError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

impl Target {
    fn open(root: &Path, config: WebhookTarget) -> Result<Target, OutboxError> {
        let dir = root.join("targets").join(&config.name);
        let pending = dir.join("pending");
        let dead = dir.join("dead");
        for d in [&pending, &dead] {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let done_path = dir.join("done");
        let (done_entries, rewrite) = read_done(&done_path)?;
        let outcomes: HashMap<&str, Done> = done_entries
            .iter()
            .map(|(id, o)| (id.as_str(), *o))
            .collect();

        let pending_seqs = list_seqs(&pending)?;
        // Past every file there is, so the order on disk is the enqueue order.
        let next_seq = pending_seqs
            .last()
            .max(list_seqs(&dead)?.last())
            .map_or(0, |s| s + 1);
        let mut queue = VecDeque::new();
        let mut pending_ids = HashSet::new();
        for seq in pending_seqs {
            let path = pending.join(seq_name(seq));
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let event: Option<(String, String)> = serde_json::from_slice::<CloudEvent>(&bytes)
                .ok()
                .map(|e| (e.id, e.ty));
            match event {
                // Delivered, but the agent stopped before the file was removed.
                Some((id, _)) if outcomes.get(id.as_str()) == Some(&Done::Delivered) => {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                // Given up (or unreadable, which no retry mends), but not yet moved.
                Some((id, _)) if outcomes.get(id.as_str()) == Some(&Done::GaveUp) => {
                    let to = dead.join(seq_name(seq));
                    fs::rename(&path, &to).map_err(io_err(&to))?;
                }
                None => {
                    let to = dead.join(seq_name(seq));
                    fs::rename(&path, &to).map_err(io_err(&to))?;
                }
                // A duplicate of an id already queued (cannot happen through
                // `enqueue`): delivered once.
                Some((id, _)) if pending_ids.contains(&id) => {
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                Some((id, ty)) => {
                    pending_ids.insert(id.clone());
                    queue.push_back(Queued { seq, id, ty });
                }
            }
        }
        fsync_dir(&pending).map_err(io_err(&pending))?;
        fsync_dir(&dead).map_err(io_err(&dead))?;

        if rewrite {
            let text: Vec<u8> = done_entries
                .iter()
                .flat_map(|(id, o)| done_line(id, *o))
                .collect();
            write_durably(&dir, "done", &text).map_err(io_err(&done_path))?;
        }
        let done_file = open_append(&done_path)?;
        let done: VecDeque<String> = done_entries.into_iter().map(|(id, _)| id).collect();
        let done_ids = done.iter().cloned().collect();
        let done_lines = done.len();
        Ok(Target {
            config,
            pending,
            dead,
            done_path,
            state: Mutex::new(State {
                next_seq,
                queue,
                pending_ids,
                done,
                done_ids,
                done_file,
                done_lines,
                stop: false,
            }),
            wake: Condvar::new(),
        })
    }

    /// Records that the head event is over (`outcome`) and takes it off the
    /// queue: the id goes to `done` first (fsynced), then the file is
    /// removed or moved to `dead/`, so a crash in between is mended on open.
    fn finish(&self, head: &Queued, outcome: Done) -> Result<(), String> {
        let mut st = lock(&self.state);
        st.queue.pop_front();
        st.pending_ids.remove(&head.id);
        if st.done_ids.insert(head.id.clone()) {
            st.done.push_back(head.id.clone());
            if st.done.len() > DONE_KEPT
                && let Some(old) = st.done.pop_front()
            {
                st.done_ids.remove(&old);
            }
        }
        let mut errors = Vec::new();
        let line = done_line(&head.id, outcome);
        let recorded = st
            .done_file
            .write_all(&line)
            .and_then(|()| st.done_file.sync_data());
        match recorded {
            Ok(()) => st.done_lines += 1,
            Err(e) => errors.push(format!("{}: {e}", self.done_path.display())),
        }
        if st.done_lines > 2 * DONE_KEPT
            && let Err(e) = self.compact(&mut st)
        {
            errors.push(format!("{}: {e}", self.done_path.display()));
        }
        drop(st);
        let from = self.pending.join(seq_name(head.seq));
        let moved = match outcome {
            Done::Delivered => fs::remove_file(&from),
            Done::GaveUp => fs::rename(&from, self.dead.join(seq_name(head.seq)))
                .and_then(|()| fsync_dir(&self.dead)),
        };
        match moved {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("{}: {e}", from.display())),
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Rewrites `done` with the ids remembered.
    fn compact(&self, st: &mut State) -> io::Result<()> {
        // Outcomes are not kept in memory; every id remembered counts as
        // delivered, which only matters for a pending file left behind by a
        // crash, and there is none: nothing remembered is still pending.
        let text: Vec<u8> = st
            .done
            .iter()
            .flat_map(|id| done_line(id, Done::Delivered))
            .collect();
        let dir = self.done_path.parent().expect("done is in a target dir");
        write_durably(dir, "done", &text)?;
        st.done_file = OpenOptions::new().append(true).open(&self.done_path)?;
        st.done_lines = st.done.len();
        Ok(())
    }
}

impl Outbox {
    /// Opens (creates) the outbox under `dir` (e.g. `<state>/agent/outbox`);
    /// pending events survive restarts. Targets are told apart by name: a
    /// target renamed starts with an empty queue, and the queue of a target
    /// no longer configured stays on disk, untouched.
    pub fn open(
        dir: &Path,
        targets: Vec<WebhookTarget>,
        policy: DeliveryPolicy,
    ) -> Result<Outbox, OutboxError> {
        let mut names = HashSet::new();
        for t in &targets {
            let why = if !valid_name(&t.name) {
                "a name is 1 to 64 of A-Z, a-z, 0-9, '.', '_' and '-', not starting with '.'"
            } else if !names.insert(t.name.as_str()) {
                "two targets have this name"
            } else if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                "the URL is not http:// or https://"
            } else {
                continue;
            };
            return Err(OutboxError::Target {
                name: t.name.clone(),
                why: why.into(),
            });
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let targets = targets
            .into_iter()
            .map(|t| Target::open(dir, t))
            .collect::<Result<Vec<_>, _>>()?;
        let log_path = dir.join("deliveries.log");
        if fs::metadata(&log_path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let old = dir.join("deliveries.log.1");
            fs::rename(&log_path, &old).map_err(io_err(&old))?;
        }
        let log = open_append(&log_path)?;
        Ok(Outbox {
            inner: Arc::new(Inner {
                policy: DeliveryPolicy {
                    max_attempts: policy.max_attempts.max(1),
                    ..policy
                },
                targets,
                log_path,
                log: Mutex::new(log),
                delivering: AtomicBool::new(false),
            }),
        })
    }

    /// Queues `event` for every target, durably when it returns (written to
    /// a temporary file, fsynced, renamed, the directory fsynced); never
    /// waits on the network. Idempotent by `event.id`: a target that has the
    /// id pending, or delivered or gave it up among its last 10,000, does not
    /// queue it again. `Ok(false)`: no target queued it. After an error some
    /// targets may have queued it; enqueuing it again queues it for the rest.
    pub fn enqueue(&self, event: &CloudEvent) -> Result<bool, OutboxError> {
        let body = serde_json::to_vec(event)?;
        let mut queued = false;
        for t in &self.inner.targets {
            let mut st = lock(&t.state);
            if st.pending_ids.contains(&event.id) || st.done_ids.contains(&event.id) {
                continue;
            }
            let seq = st.next_seq;
            let name = seq_name(seq);
            write_durably(&t.pending, &name, &body).map_err(io_err(&t.pending.join(&name)))?;
            st.next_seq += 1;
            st.pending_ids.insert(event.id.clone());
            st.queue.push_back(Queued {
                seq,
                id: event.id.clone(),
                ty: event.ty.clone(),
            });
            t.wake.notify_all();
            queued = true;
        }
        Ok(queued)
    }

    /// Events waiting, summed over all targets.
    pub fn pending(&self) -> usize {
        self.inner
            .targets
            .iter()
            .map(|t| lock(&t.state).queue.len())
            .sum()
    }

    /// Starts one delivery thread per target, delivering that target's
    /// events strictly in enqueue order: a failing head event is retried
    /// with backoff up to `max_attempts`, then moved to `dead/` and the next
    /// one goes; an event the receiver refuses (4xx other than 408 and 429)
    /// is given up at once. The threads sleep until an enqueue wakes them or
    /// a backoff elapses. Every attempt's outcome goes to `log` and, as one
    /// JSON line, to `deliveries.log`.
    ///
    /// One delivery run at a time: while one is under way, another call
    /// returns a handle with no threads.
    pub fn start_delivery(
        &self,
        log: impl Fn(&DeliveryOutcome) + Send + Sync + 'static,
    ) -> DeliveryHandle {
        if self.inner.delivering.swap(true, Ordering::SeqCst) {
            return DeliveryHandle {
                inner: None,
                threads: Vec::new(),
            };
        }
        let log: Arc<dyn Fn(&DeliveryOutcome) + Send + Sync> = Arc::new(log);
        let mut threads = Vec::new();
        for (i, t) in self.inner.targets.iter().enumerate() {
            lock(&t.state).stop = false;
            let inner = Arc::clone(&self.inner);
            let log = Arc::clone(&log);
            // Like `std::thread::spawn`, panics only when the system is out of
            // threads.
            let thread = std::thread::Builder::new()
                .name(format!("webhook-{}", t.config.name))
                .spawn(move || deliver(&inner, i, &*log))
                .expect("cannot start a webhook delivery thread");
            threads.push(thread);
        }
        DeliveryHandle {
            inner: Some(Arc::clone(&self.inner)),
            threads,
        }
    }
}

/// The delivery threads of one [`Outbox::start_delivery`]. Dropping it
/// shuts them down too.
pub struct DeliveryHandle {
    inner: Option<Arc<Inner>>,
    threads: Vec<JoinHandle<()>>,
}

impl DeliveryHandle {
    /// Stops the delivery threads and joins them. A backoff wait is cut
    /// short; an attempt in flight is finished first (it takes at most the
    /// policy's `timeout`). Queued events stay queued.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        for t in &inner.targets {
            lock(&t.state).stop = true;
            t.wake.notify_all();
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        inner.delivering.store(false, Ordering::SeqCst);
    }
}

impl Drop for DeliveryHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One target's delivery loop.
fn deliver(inner: &Inner, index: usize, log: &(dyn Fn(&DeliveryOutcome) + Send + Sync)) {
    let target = &inner.targets[index];
    let policy = &inner.policy;
    let agent = webhooks::client(policy.timeout);
    // The head event's attempts so far and when it may be tried again.
    let mut attempts = 0u32;
    let mut retry_at: Option<Instant> = None;
    loop {
        let head = {
            let mut st = lock(&target.state);
            loop {
                if st.stop {
                    return;
                }
                let wait = match (st.queue.front(), retry_at) {
                    (None, _) => None,
                    (Some(head), at) => {
                        match at.and_then(|at| at.checked_duration_since(Instant::now())) {
                            Some(left) if !left.is_zero() => Some(left),
                            _ => break head.clone(),
                        }
                    }
                };
                st = match wait {
                    None => target.wake.wait(st).unwrap_or_else(PoisonError::into_inner),
                    Some(left) => {
                        target
                            .wake
                            .wait_timeout(st, left)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0
                    }
                };
            }
        };
        let path = target.pending.join(seq_name(head.seq));
        let result = match fs::read(&path) {
            Ok(body) => webhooks::post(
                &agent,
                &target.config.url,
                target.config.secret.as_deref(),
                &body,
                now_secs(),
            ),
            Err(e) => Err(format!(
                "cannot read the queued event {}: {e}",
                path.display()
            )),
        };
        attempts += 1;
        let verdict = webhooks::verdict(&result);
        let gave_up = match verdict {
            Verdict::Delivered => false,
            Verdict::Refused => true,
            Verdict::Retry => attempts >= policy.max_attempts,
        };
        let mut next_try_in = None;
        let mut store_error = None;
        if verdict == Verdict::Delivered || gave_up {
            let done = if gave_up {
                Done::GaveUp
            } else {
                Done::Delivered
            };
            store_error = target.finish(&head, done).err();
            retry_at = None;
        } else {
            let wait = policy.backoff(attempts);
            retry_at = Some(Instant::now() + wait);
            next_try_in = Some(wait);
        }
        let mut outcome = DeliveryOutcome {
            target: target.config.name.clone(),
            event_id: head.id,
            event_type: head.ty,
            attempt: attempts,
            result,
            gave_up,
            next_try_in,
            store_error,
        };
        if retry_at.is_none() {
            attempts = 0;
        }
        if let Err(e) = inner.record(&outcome) {
            outcome.store_error = Some(match outcome.store_error.take() {
                Some(before) => format!("{before}; {e}"),
                None => e,
            });
        }
        log(&outcome);
    }
}

impl Inner {
    /// Appends `outcome` to `deliveries.log`.
    fn record(&self, outcome: &DeliveryOutcome) -> Result<(), String> {
        let (status, error) = match &outcome.result {
            Ok(s) => (Some(*s), None),
            Err(e) => (None, Some(e.as_str())),
        };
        let line = LogLine {
            time: webhooks::rfc3339_ms(now_ms()),
            target: &outcome.target,
            event_id: &outcome.event_id,
            event_type: &outcome.event_type,
            attempt: outcome.attempt,
            status,
            error,
            delivered: matches!(outcome.result, Ok(200..=299)),
            gave_up: outcome.gave_up,
            next_try_in_ms: outcome.next_try_in.map(|d| d.as_millis()),
            store_error: outcome.store_error.as_deref(),
        };
        let mut text = serde_json::to_vec(&line).expect("plain data serializes");
        text.push(b'\n');
        // One write per line (O_APPEND): lines from several targets do not mix.
        lock(&self.log)
            .write_all(&text)
            .map_err(|e| format!("{}: {e}", self.log_path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    /// A request the test receiver got, and what it answered.
    #[derive(Clone)]
    struct Received {
        headers: HashMap<String, String>,
        body: Vec<u8>,
        answered: u16,
    }

    impl Received {
        fn event(&self) -> CloudEvent {
            serde_json::from_slice(&self.body).expect("the body is a CloudEvent")
        }
    }

    #[derive(Default)]
    struct Shared {
        received: Mutex<Vec<Received>>,
        /// Statuses to answer, in turn; 200 once they run out.
        script: Mutex<VecDeque<u16>>,
        arrived: Condvar,
    }

    /// A tiny HTTP/1.1 receiver on loopback that records every request.
    struct Receiver {
        port: u16,
        shared: Arc<Shared>,
        stop: Arc<AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Receiver {
        fn start() -> Receiver {
            Self::start_on(0, Arc::default())
        }

        fn start_on(port: u16, shared: Arc<Shared>) -> Receiver {
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
            let port = listener.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
                std::thread::spawn(move || {
                    for conn in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        if let Ok(conn) = conn {
                            serve(conn, &shared);
                        }
                    }
                })
            };
            Receiver {
                port,
                shared,
                stop,
                thread: Some(thread),
            }
        }

        fn url(&self) -> String {
            format!("http://127.0.0.1:{}/hook", self.port)
        }

        /// Closes the port (connections are refused until `restart`).
        fn stop(&mut self) {
            self.stop.store(true, Ordering::SeqCst);
            let _ = TcpStream::connect(("127.0.0.1", self.port));
            if let Some(t) = self.thread.take() {
                t.join().unwrap();
            }
        }

        /// Listens again on the same port, keeping what was received.
        fn restart(&mut self) {
            *self = Self::start_on(self.port, Arc::clone(&self.shared));
        }

        fn answer(&self, statuses: &[u16]) {
            lock(&self.shared.script).extend(statuses);
        }

        /// Every request so far, once `n` of them were answered 2xx.
        fn wait_delivered(&self, n: usize) -> Vec<Received> {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut got = lock(&self.shared.received);
            loop {
                let ok = got.iter().filter(|r| r.answered < 300).count();
                if ok >= n {
                    return got.clone();
                }
                let left = deadline
                    .checked_duration_since(Instant::now())
                    .unwrap_or_else(|| {
                        let seen: Vec<String> = got
                            .iter()
                            .map(|r| format!("{} {}", r.event().id, r.answered))
                            .collect();
                        panic!("{ok} of {n} delivered in 30 s; received: {seen:?}")
                    });
                got = self.shared.arrived.wait_timeout(got, left).unwrap().0;
            }
        }

        fn received(&self) -> Vec<Received> {
            lock(&self.shared.received).clone()
        }
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn serve(mut conn: TcpStream, shared: &Shared) {
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut data = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let headers: HashMap<String, String> = head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while data.len() < head_end + len {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => data.extend_from_slice(&buf[..n]),
            }
        }
        let status = lock(&shared.script).pop_front().unwrap_or(200);
        let _ = conn.write_all(
            format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        lock(&shared.received).push(Received {
            headers,
            body: data[head_end..head_end + len].to_vec(),
            answered: status,
        });
        shared.arrived.notify_all();
    }

    const SECRET: &[u8] = b"s3cret";

    fn target(url: String) -> WebhookTarget {
        WebhookTarget {
            url,
            secret: Some(SECRET.to_vec()),
            name: "hooks".into(),
        }
    }

    fn fast(max_attempts: u32) -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts,
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            timeout: Duration::from_secs(5),
        }
    }

    fn event(i: usize) -> CloudEvent {
        CloudEvent::new(
            format!("ev-{i}"),
            "duplex://test/state".into(),
            webhooks::event_type::STATE_ENTERED.into(),
            Some("session-1".into()),
            1_700_000_000_000 + i as u64,
            serde_json::json!({ "n": i }),
        )
    }

    fn ids(got: &[Received]) -> Vec<String> {
        got.iter()
            .filter(|r| r.answered < 300)
            .map(|r| r.event().id)
            .collect()
    }

    fn expected(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("ev-{i}")).collect()
    }

    /// Outcomes, collected.
    fn collector() -> (
        Arc<Mutex<Vec<DeliveryOutcome>>>,
        impl Fn(&DeliveryOutcome) + Send + Sync + 'static,
    ) {
        let all = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&all);
        (all, move |o: &DeliveryOutcome| lock(&sink).push(o.clone()))
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log_lines(dir: &Path) -> Vec<serde_json::Value> {
        fs::read_to_string(dir.join("deliveries.log"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn delivers_in_order_signed_cloud_events() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        let delivery = outbox.start_delivery(|_| {});
        for i in 0..20 {
            assert!(outbox.enqueue(&event(i)).unwrap());
        }
        let got = rx.wait_delivered(20);
        assert_eq!(ids(&got), expected(0..20));
        assert_eq!(got.len(), 20);
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.headers["content-type"], "application/cloudevents+json");
            let ts = &r.headers["x-duplex-timestamp"];
            let ts_secs: u64 = ts.parse().unwrap();
            assert!(ts_secs.abs_diff(now_secs()) < 60);
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
            mac.update(format!("{ts}.").as_bytes());
            mac.update(&r.body);
            let want = format!("sha256={}", webhooks::hex(&mac.finalize().into_bytes()));
            assert_eq!(r.headers["x-duplex-signature"], want);
            let e = r.event();
            assert_eq!(e, event(i));
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["specversion"], "1.0");
            assert_eq!(v["type"], "dev.duplex.session.state_entered");
            assert_eq!(v["datacontenttype"], "application/json");
            assert_eq!(v["subject"], "session-1");
            assert!(
                v["time"]
                    .as_str()
                    .unwrap()
                    .starts_with("2023-11-14T22:13:20")
            );
            assert_eq!(v["data"]["n"], i);
        }
        wait_until("the queue to empty", || outbox.pending() == 0);
        delivery.shutdown();
        let log = log_lines(dir.path());
        assert_eq!(log.len(), 20);
        assert!(
            log.iter()
                .all(|l| l["delivered"] == true && l["status"] == 200)
        );
        assert_eq!(log[0]["event_id"], "ev-0");
        assert_eq!(log[0]["target"], "hooks");
        assert_eq!(log[0]["attempt"], 1);
        assert_eq!(
            fs::read_dir(dir.path().join("targets/hooks/pending"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn receiver_down_for_a_while_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut rx = Receiver::start();
        rx.stop();
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(1000)).unwrap();
        let (outcomes, log) = collector();
        let delivery = outbox.start_delivery(log);
        for i in 0..10 {
            assert!(outbox.enqueue(&event(i)).unwrap());
        }
        // Several refused connections, with backoff, while more events come.
        wait_until("failed attempts", || lock(&outcomes).len() >= 5);
        let enqueue_started = Instant::now();
        for i in 10..20 {
            assert!(outbox.enqueue(&event(i)).unwrap());
        }
        // Enqueuing never waits on the receiver.
        assert!(enqueue_started.elapsed() < Duration::from_secs(5));
        assert_eq!(outbox.pending(), 20);
        std::thread::sleep(Duration::from_millis(200));
        rx.restart();
        let got = rx.wait_delivered(20);
        assert_eq!(ids(&got), expected(0..20), "in order, none lost");
        wait_until("the queue to empty", || outbox.pending() == 0);
        delivery.shutdown();
        assert_eq!(rx.received().len(), 20, "none duplicated");
        let outcomes = lock(&outcomes);
        let failed: Vec<_> = outcomes.iter().filter(|o| o.result.is_err()).collect();
        assert!(failed.len() >= 5);
        assert!(
            failed
                .iter()
                .all(|o| o.event_id == "ev-0" && !o.gave_up && o.next_try_in.is_some())
        );
        assert!(outcomes.iter().all(|o| !o.gave_up));
        let log = log_lines(dir.path());
        assert_eq!(log.len(), outcomes.len());
        assert!(
            log.iter()
                .any(|l| l["error"].is_string() && l["next_try_in_ms"].is_number())
        );
    }

    #[test]
    fn restart_delivers_what_was_queued_and_remembers_what_was_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        {
            let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
            for i in 0..5 {
                assert!(outbox.enqueue(&event(i)).unwrap());
            }
            assert!(!outbox.enqueue(&event(2)).unwrap(), "already pending");
            assert_eq!(outbox.pending(), 5);
        }
        assert!(rx.received().is_empty());
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        assert_eq!(outbox.pending(), 5);
        assert!(
            !outbox.enqueue(&event(4)).unwrap(),
            "pending across the restart"
        );
        assert!(outbox.enqueue(&event(5)).unwrap());
        let delivery = outbox.start_delivery(|_| {});
        assert_eq!(ids(&rx.wait_delivered(6)), expected(0..6));
        wait_until("the queue to empty", || outbox.pending() == 0);
        delivery.shutdown();
        assert!(!outbox.enqueue(&event(3)).unwrap(), "already delivered");
        drop(outbox);

        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        assert_eq!(outbox.pending(), 0);
        assert!(
            !outbox.enqueue(&event(0)).unwrap(),
            "delivered before the restart"
        );
        assert!(outbox.enqueue(&event(6)).unwrap());
        let delivery = outbox.start_delivery(|_| {});
        assert_eq!(ids(&rx.wait_delivered(7)), expected(0..7));
        delivery.shutdown();
        assert_eq!(rx.received().len(), 7);
        // Numbered past the files that were there: the order on disk holds.
        assert!(
            dir.path()
                .join("targets/hooks/pending")
                .read_dir()
                .unwrap()
                .next()
                .is_none()
        );
    }

    #[test]
    fn crash_between_done_and_removal_is_mended_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        assert!(outbox.enqueue(&event(0)).unwrap());
        assert!(outbox.enqueue(&event(1)).unwrap());
        drop(outbox);
        // As if ev-0 had been delivered and ev-1 given up, and the agent
        // stopped before their files were dealt with.
        let t = dir.path().join("targets/hooks");
        let mut done = fs::read(t.join("done")).unwrap_or_default();
        done.extend(done_line("ev-0", Done::Delivered));
        done.extend(done_line("ev-1", Done::GaveUp));
        done.extend(b"{\"id\":\"torn"); // a torn last line
        fs::write(t.join("done"), done).unwrap();
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        assert_eq!(outbox.pending(), 0);
        assert_eq!(fs::read_dir(t.join("dead")).unwrap().count(), 1);
        assert!(!outbox.enqueue(&event(0)).unwrap());
        assert!(!outbox.enqueue(&event(1)).unwrap());
        assert!(outbox.enqueue(&event(2)).unwrap());
        drop(outbox);
        // The torn line is gone; what follows it stays readable.
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        assert!(!outbox.enqueue(&event(1)).unwrap());
        assert_eq!(outbox.pending(), 1);
        let text = fs::read_to_string(t.join("done")).unwrap();
        assert_eq!(text.lines().count(), 2);
        let delivery = outbox.start_delivery(|_| {});
        assert_eq!(ids(&rx.wait_delivered(1)), expected(2..3));
        delivery.shutdown();
    }

    #[test]
    fn done_ids_are_bounded_and_compacted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        drop(Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap());
        let done_path = dir.path().join("targets/hooks/done");
        let text: Vec<u8> = (0..DONE_KEPT + 5)
            .flat_map(|i| done_line(&format!("ev-{i}"), Done::Delivered))
            .collect();
        fs::write(&done_path, text).unwrap();
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        let lines = fs::read_to_string(&done_path).unwrap().lines().count();
        assert_eq!(lines, DONE_KEPT);
        // The oldest five are forgotten, the rest remembered.
        assert!(outbox.enqueue(&event(4)).unwrap());
        assert!(!outbox.enqueue(&event(5)).unwrap());
        assert!(!outbox.enqueue(&event(DONE_KEPT + 4)).unwrap());
        assert_eq!(outbox.pending(), 1);
    }

    #[test]
    fn refused_event_is_given_up_at_once_and_the_next_goes() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        rx.answer(&[400]);
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(5)).unwrap();
        let (outcomes, log) = collector();
        let delivery = outbox.start_delivery(log);
        for i in 0..3 {
            assert!(outbox.enqueue(&event(i)).unwrap());
        }
        assert_eq!(ids(&rx.wait_delivered(2)), expected(1..3));
        wait_until("the queue to empty", || outbox.pending() == 0);
        delivery.shutdown();
        let got = rx.received();
        assert_eq!(got.len(), 3, "the refused event was sent once");
        assert_eq!(got[0].event().id, "ev-0");
        let outcomes = lock(&outcomes);
        assert_eq!(outcomes[0].event_id, "ev-0");
        assert_eq!(outcomes[0].result, Ok(400));
        assert_eq!(outcomes[0].attempt, 1);
        assert!(outcomes[0].gave_up);
        assert_eq!(outcomes[0].next_try_in, None);
        let dead = dir.path().join("targets/hooks/dead");
        let dead: Vec<_> = fs::read_dir(dead).unwrap().collect();
        assert_eq!(dead.len(), 1);
        let body = fs::read(dead[0].as_ref().unwrap().path()).unwrap();
        assert_eq!(
            serde_json::from_slice::<CloudEvent>(&body).unwrap(),
            event(0)
        );
        assert!(
            !outbox.enqueue(&event(0)).unwrap(),
            "given up is remembered"
        );
        let log = log_lines(dir.path());
        assert_eq!(log[0]["status"], 400);
        assert_eq!(log[0]["gave_up"], true);
        assert_eq!(log[0]["delivered"], false);
    }

    #[test]
    fn out_of_attempts_goes_to_dead_and_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        // 503 three times for ev-0 (all its attempts), then 429 once for ev-1.
        rx.answer(&[503, 503, 503, 429]);
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], fast(3)).unwrap();
        let (outcomes, log) = collector();
        let delivery = outbox.start_delivery(log);
        assert!(outbox.enqueue(&event(0)).unwrap());
        assert!(outbox.enqueue(&event(1)).unwrap());
        assert_eq!(ids(&rx.wait_delivered(1)), expected(1..2));
        wait_until("the queue to empty", || outbox.pending() == 0);
        delivery.shutdown();
        let outcomes = lock(&outcomes);
        let summary: Vec<_> = outcomes
            .iter()
            .map(|o| (o.event_id.as_str(), o.attempt, o.result.clone(), o.gave_up))
            .collect();
        assert_eq!(
            summary,
            [
                ("ev-0", 1, Ok(503), false),
                ("ev-0", 2, Ok(503), false),
                ("ev-0", 3, Ok(503), true),
                ("ev-1", 1, Ok(429), false),
                ("ev-1", 2, Ok(200), false),
            ]
        );
        assert!(outcomes[0].next_try_in.is_some() && outcomes[2].next_try_in.is_none());
        let dead = dir.path().join("targets/hooks/dead");
        assert!(dead.join(seq_name(0)).exists());
        let log = log_lines(dir.path());
        assert_eq!(log.len(), 5);
        assert_eq!(log[2]["event_id"], "ev-0");
        assert_eq!(log[2]["attempt"], 3);
        assert_eq!(log[2]["gave_up"], true);
    }

    #[test]
    fn shutdown_interrupts_a_long_backoff() {
        let dir = tempfile::tempdir().unwrap();
        let rx = Receiver::start();
        rx.answer(&[503]);
        let policy = DeliveryPolicy {
            max_attempts: 8,
            first_backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(600),
            timeout: Duration::from_secs(5),
        };
        let outbox = Outbox::open(dir.path(), vec![target(rx.url())], policy).unwrap();
        let (outcomes, log) = collector();
        let delivery = outbox.start_delivery(log);
        assert!(outbox.enqueue(&event(0)).unwrap());
        wait_until("the first attempt", || !lock(&outcomes).is_empty());
        let wait = lock(&outcomes)[0].next_try_in.unwrap();
        assert!(wait >= Duration::from_secs(45), "{wait:?}");
        // Another enqueue wakes the thread but does not cut the backoff short.
        assert!(outbox.enqueue(&event(1)).unwrap());
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(rx.received().len(), 1);
        let started = Instant::now();
        delivery.shutdown();
        assert!(started.elapsed() < Duration::from_secs(30));
        assert_eq!(outbox.pending(), 2, "still queued for the next run");
        // A new run may start once the old one is shut down.
        let delivery = outbox.start_delivery(|_| {});
        assert_eq!(ids(&rx.wait_delivered(2)), expected(0..2));
        delivery.shutdown();
    }

    #[test]
    fn targets_are_independent_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut down = Receiver::start();
        down.stop();
        let up = Receiver::start();
        let targets = vec![
            WebhookTarget {
                url: down.url(),
                secret: None,
                name: "down".into(),
            },
            WebhookTarget {
                url: up.url(),
                secret: None,
                name: "up".into(),
            },
        ];
        let outbox = Outbox::open(dir.path(), targets, fast(1000)).unwrap();
        let delivery = outbox.start_delivery(|_| {});
        for i in 0..3 {
            assert!(outbox.enqueue(&event(i)).unwrap());
        }
        let got = up.wait_delivered(3);
        assert_eq!(ids(&got), expected(0..3));
        assert!(!got[0].headers.contains_key("x-duplex-signature"));
        // The down target still has them all.
        wait_until("the up target's queue to empty", || outbox.pending() == 3);
        delivery.shutdown();

        let bad = |name: &str, url: &str| {
            let t = WebhookTarget {
                url: url.into(),
                secret: None,
                name: name.into(),
            };
            Outbox::open(dir.path(), vec![t.clone(), t], fast(1)).err()
        };
        assert!(matches!(
            bad("../x", "http://h/"),
            Some(OutboxError::Target { .. })
        ));
        assert!(matches!(
            bad("a", "ftp://h/"),
            Some(OutboxError::Target { .. })
        ));
        assert!(matches!(
            bad("a", "http://h/"),
            Some(OutboxError::Target { .. })
        ));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let p = DeliveryPolicy::default();
        for (attempts, full) in [(1, 1), (2, 2), (3, 4), (9, 256), (10, 300), (60, 300)] {
            let b = p.backoff(attempts);
            let full = Duration::from_secs(full);
            assert!(b <= full && b >= full.mul_f64(0.75), "{attempts}: {b:?}");
        }
    }
}
