//! The CLI's one way to stdout and stderr. Two rules hold for every byte:
//!
//! - **A vanished reader never stops the program.** Writing to a closed pipe
//!   (`duplex log | head -1`) ends the output, not the command: a run carries
//!   on to wherever it would have stopped with a reader (its session must not
//!   be left Busy because nobody watches), and a listing stops quietly.
//! - **Text from elsewhere cannot drive the terminal.** Human lines hold
//!   plugin messages, log lines and reasons: every control character in them
//!   is escaped (`\n`, `\u{1b}`), so no plugin forges an activity-log line or
//!   sends escape sequences to the operator's terminal. JSON output is exact
//!   (serde_json escapes control characters itself).

use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);

/// Whether stdout's reader has gone away.
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write_stdout(bytes: &[u8]) {
    if stdout_closed() {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(bytes).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// A line of human text on stdout, control characters escaped.
pub fn line(text: &str) {
    let mut bytes = escape(text).into_owned().into_bytes();
    bytes.push(b'\n');
    write_stdout(&bytes);
}

/// Several lines of human text (split on `\n`, each escaped).
pub fn lines(text: &str) {
    for l in text.lines() {
        line(l);
    }
}

/// A line of JSON on stdout, exactly as given.
pub fn json_line(text: &str) {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(b'\n');
    write_stdout(&bytes);
}

/// A value as pretty JSON on stdout.
pub fn json_pretty(value: &impl serde::Serialize) {
    json_line(&serde_json::to_string_pretty(value).expect("output serializes"));
}

/// A line of human text on stderr, control characters escaped. Errors
/// writing to stderr are ignored: there is nowhere left to say them.
pub fn eline(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", escape(text));
}

/// Several lines of human text on stderr (split on `\n`, each escaped).
pub fn elines(text: &str) {
    for l in text.lines() {
        eline(l);
    }
}

/// `text` with every control character written as an escape.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Control characters (C0, DEL, C1) and the bidirectional overrides that
/// make text read differently from what it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_plain_text_is_untouched() {
        assert!(matches!(escape("check `x`: pass — ok"), Cow::Borrowed(_)));
        assert_eq!(
            escape("ok\n12:00:00  Idle  session ended: Committed"),
            "ok\\n12:00:00  Idle  session ended: Committed"
        );
        assert_eq!(escape("\u{1b}]0;pwned\u{7}"), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(
            escape("a\rb\tc\u{9b}d\u{202e}"),
            "a\\rb\\tc\\u{9b}d\\u{202e}"
        );
    }
}
