//! What a call produces on the side — log lines, progress, WASI stdout and
//! stderr — and the entries of what it returns, kept within the call's caps.
//!
//! Every channel is capped by count *and* bytes, and every entry costs its
//! text plus [`ENTRY_OVERHEAD_BYTES`]: an empty log line is not free (it is
//! a `LogLine` in memory and a record in the journal), so forty million
//! `log("")` calls must not cost forty million entries. What is over a cap
//! is dropped and counted (two counters, whatever the plugin keeps doing)
//! and reported once, in a note at the end of the call's log.

use super::types::{LogLevel, LogLine, LogSource, ProgressReport};

/// Longest single log line or progress message kept (longer ones are cut).
pub const MAX_LINE_BYTES: usize = 4096;
/// What each entry (a log line, an observation, a list element of returned
/// data) counts against a byte cap besides its text.
pub const ENTRY_OVERHEAD_BYTES: u64 = 64;
/// Most log lines (plugin lines, stdout and stderr lines) a call keeps.
pub const MAX_LOG_LINES: usize = 1024;
/// Most progress reports a call may make (the last one is kept).
pub const MAX_PROGRESS_REPORTS: u64 = 1024;
/// Most observations a check result keeps.
pub const MAX_OBSERVATIONS: usize = 256;
/// Bytes of observations a check result keeps (names, values, overhead).
pub const MAX_OBSERVATION_BYTES: u64 = 64 << 10;

/// Log lines of one call, capped in lines and bytes.
pub(crate) struct LogSink {
    lines: Vec<LogLine>,
    bytes: u64,
    limit: u64,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// The host's own notes, kept apart from the plugin's budget (a few per
    /// call at most: one per refused capability, per capped channel).
    notes: Vec<LogLine>,
}

impl LogSink {
    pub fn new(limit: u64) -> LogSink {
        LogSink {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped_lines: 0,
            dropped_bytes: 0,
            notes: Vec::new(),
        }
    }

    pub fn push(&mut self, level: LogLevel, source: LogSource, message: &str) {
        let message = cut(message);
        let cost = message.len() as u64 + ENTRY_OVERHEAD_BYTES;
        if self.lines.len() >= MAX_LOG_LINES || self.bytes + cost > self.limit {
            self.dropped_lines += 1;
            self.dropped_bytes += message.len() as u64;
            return;
        }
        self.bytes += cost;
        self.lines.push(LogLine {
            level,
            source,
            message: message.to_owned(),
        });
    }

    /// A line from the host about the plugin (a refused capability, a
    /// capped channel): always kept.
    pub fn note(&mut self, level: LogLevel, message: &str) {
        self.notes.push(LogLine {
            level,
            source: LogSource::Host,
            message: cut(message).to_owned(),
        });
    }

    /// The last error line the plugin itself logged (e.g. its panic message).
    pub fn last_plugin_error(&self) -> Option<String> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.level == LogLevel::Error && l.source != LogSource::Host)
            .map(|l| l.message.clone())
    }

    /// The lines, then the host's notes, with one about what was dropped.
    pub fn finish(mut self) -> Vec<LogLine> {
        if self.dropped_lines > 0 {
            self.note(
                LogLevel::Warn,
                &format!(
                    "{} log line(s) ({} bytes) dropped: over the limit of {MAX_LOG_LINES} lines or {} bytes per call (each line counts {ENTRY_OVERHEAD_BYTES} bytes more than its text)",
                    self.dropped_lines, self.dropped_bytes, self.limit
                ),
            );
        }
        self.lines.append(&mut self.notes);
        self.lines
    }
}

/// The last progress a call reported.
#[derive(Default)]
pub(crate) struct ProgressSlot {
    pub last: Option<ProgressReport>,
    reports: u64,
}

impl ProgressSlot {
    pub fn report(&mut self, percent: u8, message: &str) {
        self.reports += 1;
        if self.reports > MAX_PROGRESS_REPORTS {
            return;
        }
        self.last = Some(ProgressReport {
            percent: percent.min(100),
            message: cut(message).to_owned(),
        });
    }

    /// Notes the reports dropped, if any.
    pub fn finish(&self, log: &mut LogSink) {
        if self.reports > MAX_PROGRESS_REPORTS {
            log.note(
                LogLevel::Warn,
                &format!(
                    "{} progress report(s) dropped: over the limit of {MAX_PROGRESS_REPORTS} per call (the last one kept is report {MAX_PROGRESS_REPORTS})",
                    self.reports - MAX_PROGRESS_REPORTS
                ),
            );
        }
    }
}

/// Keeps the observations within [`MAX_OBSERVATIONS`] and
/// [`MAX_OBSERVATION_BYTES`]; a note about the rest, if any was dropped.
pub(crate) fn cap_observations(observations: &mut Vec<(String, String)>) -> Option<String> {
    let mut bytes: u64 = 0;
    let mut keep = 0;
    for (k, v) in observations.iter() {
        let cost = (k.len() + v.len()) as u64 + ENTRY_OVERHEAD_BYTES;
        if keep == MAX_OBSERVATIONS || bytes + cost > MAX_OBSERVATION_BYTES {
            break;
        }
        bytes += cost;
        keep += 1;
    }
    if keep == observations.len() {
        return None;
    }
    let dropped = observations.len() - keep;
    let dropped_bytes: usize = observations[keep..]
        .iter()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    observations.truncate(keep);
    observations.shrink_to_fit();
    Some(format!(
        "{dropped} observation(s) ({dropped_bytes} bytes) dropped: over the limit of {MAX_OBSERVATIONS} observations or {MAX_OBSERVATION_BYTES} bytes per check (each counts {ENTRY_OVERHEAD_BYTES} bytes more than its text)"
    ))
}

/// `s` cut to at most [`MAX_LINE_BYTES`], on a character boundary.
fn cut(s: &str) -> &str {
    if s.len() <= MAX_LINE_BYTES {
        return s;
    }
    let mut end = MAX_LINE_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
