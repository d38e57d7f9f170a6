//! The on-disk record format, pure: encode one record, and scan a journal's
//! bytes into records, a torn tail, or the first corruption.
//!
//! One record is one line:
//!
//! ```text
//! <crc32 of body, 8 lowercase hex> SP <body length, decimal> SP <body> LF
//! ed5a83c8 59 {"seq":1,"ts_ms":1764034200000,"event":{"command":"start"}}
//! ```
//!
//! The body is compact JSON, which never holds a raw LF, so the LF ends the
//! record and nothing else. See the module docs of `journal` for why a torn
//! tail and corruption are told apart the way [`scan`] does.

use super::MAX_RECORD_BYTES;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JSON body of a record.
#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    seq: u64,
    ts_ms: u64,
    event: &'a T,
}

#[derive(Deserialize)]
struct EnvelopeIn {
    seq: u64,
    ts_ms: u64,
    event: Value,
}

/// A record as scanned: checksum and sequence verified, event not yet typed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RawRecord {
    pub seq: u64,
    pub ts_ms: u64,
    pub event: Value,
    /// Byte offset of the record's first byte in the journal file.
    pub offset: u64,
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EncodeError {
    Json(String),
    /// The body would be longer than [`MAX_RECORD_BYTES`].
    TooLarge {
        bytes: u64,
    },
}

/// The bytes of one record, LF included.
pub(crate) fn encode<T: Serialize>(
    seq: u64,
    ts_ms: u64,
    event: &T,
) -> Result<Vec<u8>, EncodeError> {
    let body = serde_json::to_vec(&EnvelopeOut { seq, ts_ms, event })
        .map_err(|err| EncodeError::Json(err.to_string()))?;
    if body.contains(&b'\n') {
        // Only a hand-made serializer (e.g. a RawValue holding pretty JSON)
        // can do this; the LF is the record terminator, so refuse.
        return Err(EncodeError::Json(
            "the event serialized to JSON containing a raw newline".into(),
        ));
    }
    if body.len() as u64 > MAX_RECORD_BYTES {
        return Err(EncodeError::TooLarge {
            bytes: body.len() as u64,
        });
    }
    let mut frame = format!("{:08x} {} ", crc32fast::hash(&body), body.len()).into_bytes();
    frame.extend_from_slice(&body);
    frame.push(b'\n');
    Ok(frame)
}

/// What [`scan`] found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub records: Vec<RawRecord>,
    /// Offset just past the last complete record (where a writer appends).
    pub end: u64,
    /// Bytes after `end`: a record being written, or a torn one.
    pub tail: u64,
}

/// The first corruption [`scan`] met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScanError {
    /// 1-based position of the bad record in the file.
    pub record: u64,
    pub offset: u64,
    pub what: String,
}

/// How to judge bytes after the last LF.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TailRule {
    /// They must be what an interrupted write can leave (a prefix of a
    /// record, possibly followed by zero bytes); anything else is corruption.
    Check,
    /// They are a record still being written: leave them for later.
    Pending,
}

/// Scan `data`, which starts at byte `base` of the file where record
/// `first_seq` is expected.
pub(crate) fn scan(
    data: &[u8],
    base: u64,
    first_seq: u64,
    rule: TailRule,
) -> Result<Scan, ScanError> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    let mut seq = first_seq;
    while pos < data.len() {
        let offset = base + pos as u64;
        let fail = |what: String| ScanError {
            record: seq,
            offset,
            what,
        };
        let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') else {
            if rule == TailRule::Check {
                check_torn(&data[pos..]).map_err(|why| {
                    fail(format!(
                        "the journal ends with {} bytes that no interrupted write can leave: {why}",
                        data.len() - pos
                    ))
                })?;
            }
            break;
        };
        let env = parse_line(&data[pos..pos + nl]).map_err(fail)?;
        if env.seq != seq {
            return Err(fail(if env.seq < seq {
                format!(
                    "sequence number {} repeats or goes back (expected {seq})",
                    env.seq
                )
            } else {
                format!(
                    "sequence gap: expected record {seq}, found {} ({} missing)",
                    env.seq,
                    env.seq - seq
                )
            }));
        }
        records.push(RawRecord {
            seq,
            ts_ms: env.ts_ms,
            event: env.event,
            offset,
        });
        seq += 1;
        pos += nl + 1;
    }
    // `pos` is just past the last complete record (or at the end).
    let end = base + pos as u64;
    Ok(Scan {
        records,
        end,
        tail: base + data.len() as u64 - end,
    })
}

/// A parsed header: checksum, declared body length, header length.
enum Header {
    Done {
        crc: u32,
        len: u64,
        at: usize,
    },
    /// The bytes end inside a header that is well-formed so far.
    Short,
}

fn header(b: &[u8]) -> Result<Header, String> {
    for i in 0..8 {
        match b.get(i) {
            None => return Ok(Header::Short),
            Some(c) if c.is_ascii_digit() || (b'a'..=b'f').contains(c) => {}
            Some(c) => {
                return Err(format!(
                    "byte {c:#04x} in the checksum field is not a lowercase hex digit"
                ));
            }
        }
    }
    match b.get(8) {
        None => return Ok(Header::Short),
        Some(b' ') => {}
        Some(c) => {
            return Err(format!(
                "expected a space after the checksum, found byte {c:#04x}"
            ));
        }
    }
    let mut len: u64 = 0;
    let mut i = 9;
    loop {
        match b.get(i) {
            None => return Ok(Header::Short),
            Some(b' ') if i > 9 => break,
            Some(b'0') if i == 9 => return Err("the length field has a leading zero".into()),
            Some(c) if c.is_ascii_digit() => {
                // Checked digit by digit: a prefix of a valid length is never
                // over the limit, so a torn header is not mistaken for this.
                len = len * 10 + u64::from(c - b'0');
                if len > MAX_RECORD_BYTES {
                    return Err(format!(
                        "the header declares a body of more than {MAX_RECORD_BYTES} bytes, the \
                         most a record holds"
                    ));
                }
            }
            Some(c) => return Err(format!("byte {c:#04x} in the length field is not a digit")),
        }
        i += 1;
    }
    let crc = std::str::from_utf8(&b[..8])
        .ok()
        .and_then(|s| u32::from_str_radix(s, 16).ok())
        .expect("eight lowercase hex digits");
    Ok(Header::Done {
        crc,
        len,
        at: i + 1,
    })
}

/// Check one complete line (LF excluded).
fn parse_line(line: &[u8]) -> Result<EnvelopeIn, String> {
    let Header::Done { crc, len, at } = header(line)? else {
        return Err("the line ends inside the record header".into());
    };
    let body = &line[at..];
    if body.len() as u64 != len {
        return Err(format!(
            "the header declares {len} bytes but the line holds {}",
            body.len()
        ));
    }
    let actual = crc32fast::hash(body);
    if actual != crc {
        return Err(format!(
            "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
        ));
    }
    serde_json::from_slice(body)
        .map_err(|err| format!("the checksum matches but the body is not a journal record: {err}"))
}

/// Whether `tail` (bytes after the last LF) is what an interrupted append
/// can leave: a prefix of a record, possibly followed by zero bytes (a file
/// whose size reached the disk before its data).
fn check_torn(tail: &[u8]) -> Result<(), String> {
    let end = tail.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let prefix = &tail[..end];
    if prefix.is_empty() {
        return Ok(());
    }
    match header(prefix)? {
        Header::Short => Ok(()),
        Header::Done { crc, len, at } => {
            let body = &prefix[at..];
            if body.len() as u64 > len {
                Err(format!(
                    "a record declaring {len} bytes is followed by {} more bytes but no newline",
                    body.len() as u64 - len
                ))
            } else if body.len() as u64 == len && crc32fast::hash(body) != crc {
                Err("a complete record without its newline fails its checksum".into())
            } else {
                Ok(())
            }
        }
    }
}
