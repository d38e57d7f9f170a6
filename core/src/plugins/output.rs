//! What a call produces on the side — log lines, progress, WASI stdout and
//! stderr — kept within the call's limits.

use super::types::{LogLevel, LogLine, LogSource, ProgressReport};

/// Longest single log line or progress message kept (longer ones are cut).
pub const MAX_LINE_BYTES: usize = 4096;

/// Log lines of one call, capped in total bytes.
pub(crate) struct LogSink {
    pub lines: Vec<LogLine>,
    pub bytes: u64,
    pub limit: u64,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl LogSink {
    pub fn new(limit: u64) -> LogSink {
        LogSink {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    pub fn push(&mut self, level: LogLevel, source: LogSource, message: &str) {
        let message = cut(message);
        let n = message.len() as u64;
        if self.bytes + n > self.limit {
            self.dropped_lines += 1;
            self.dropped_bytes += n;
            return;
        }
        self.bytes += n;
        self.lines.push(LogLine {
            level,
            source,
            message: message.to_owned(),
        });
    }

    /// A line from the host about the plugin (a refused capability, …).
    pub fn note(&mut self, level: LogLevel, message: &str) {
        self.push(level, LogSource::Host, message);
    }

    /// The last error line the plugin itself logged (e.g. its panic message).
    pub fn last_plugin_error(&self) -> Option<String> {
        self.lines
            .iter()
            .rev()
            .find(|l| l.level == LogLevel::Error && l.source != LogSource::Host)
            .map(|l| l.message.clone())
    }

    /// The lines, with a note about what was dropped.
    pub fn finish(mut self) -> Vec<LogLine> {
        if self.dropped_lines > 0 {
            self.lines.push(LogLine {
                level: LogLevel::Warn,
                source: LogSource::Host,
                message: format!(
                    "{} log line(s) ({} bytes) dropped: over the limit of {} bytes per call",
                    self.dropped_lines, self.dropped_bytes, self.limit
                ),
            });
        }
        self.lines
    }
}

/// The last progress a call reported.
#[derive(Default)]
pub(crate) struct ProgressSlot {
    pub last: Option<ProgressReport>,
}

impl ProgressSlot {
    pub fn report(&mut self, percent: u8, message: &str) {
        self.last = Some(ProgressReport {
            percent: percent.min(100),
            message: cut(message).to_owned(),
        });
    }
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
