//! Scalar values written as strings in a policy: durations, byte sizes,
//! digests and timestamps. Each parses strictly, and its JSON Schema pattern
//! accepts exactly what the parser accepts, so an editor and `duplex
//! validate` agree.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Patterns shared by the schema and by error messages (see `describe_pattern`).
pub const NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h|d))+$";
pub const BYTE_SIZE_PATTERN: &str = r"^[0-9]+(B|KiB|MiB|GiB)$";
pub const SHA256_PATTERN: &str = r"^[0-9a-f]{64}$";
/// A percentage of a rollout's hosts: `25%` (its range is a semantic check).
pub const PERCENT_PATTERN: &str = r"^[0-9]+%$";
/// A local time of day, `HH:MM` (a rollout's recurring windows).
pub const CLOCK_TIME_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";
pub const TIMESTAMP_PATTERN: &str =
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// What a value matching one of the patterns above looks like, for messages.
pub fn describe_pattern(pattern: &str) -> Option<&'static str> {
    match pattern {
        NAME_PATTERN => Some(
            "a name of lower-case letters, digits and `-`, at most 63 long, starting and ending with a letter or digit",
        ),
        DURATION_PATTERN => Some("a duration such as `30s`, `10m`, `2h` or `1h30m`"),
        BYTE_SIZE_PATTERN => Some("a size such as `512KiB`, `64MiB` or `1GiB`"),
        SHA256_PATTERN => Some("a SHA-256 digest: 64 lower-case hex digits"),
        PERCENT_PATTERN => Some("a count of hosts (a whole number) or a percentage such as `25%`"),
        CLOCK_TIME_PATTERN => Some("a local time `HH:MM` such as `22:00` (00:00 to 23:59)"),
        TIMESTAMP_PATTERN => Some("an RFC 3339 time such as `2026-11-28T22:00:00Z`"),
        _ => None,
    }
}

/// Implements Display/Serialize (as the written form), Deserialize (through
/// FromStr) and JsonSchema (a string with the pattern) for a value type.
macro_rules! string_value {
    ($ty:ident, $name:literal, $pattern:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = Cow::<str>::deserialize(d)?;
                text.parse().map_err(de::Error::custom)
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": describe_pattern($pattern).unwrap_or_default(),
                })
            }
        }
    };
}

// ─── Durations ──────────────────────────────────────────────────────────────

/// A duration written like `30s`, `10m`, `2h`, `1h30m` or `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(Duration);

impl HumanDuration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }
    pub fn as_duration(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(d: Duration) -> Self {
        Self(d)
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a duration; expected {}",
                describe_pattern(DURATION_PATTERN).unwrap()
            )
        };
        if text.is_empty() {
            return Err(bad());
        }
        let mut total_ms: u64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let (unit_ms, len) = if rest.starts_with("ms") {
                (1, 2)
            } else {
                match rest.chars().next() {
                    Some('s') => (1_000, 1),
                    Some('m') => (60_000, 1),
                    Some('h') => (3_600_000, 1),
                    Some('d') => (86_400_000, 1),
                    _ => return Err(bad()),
                }
            };
            rest = &rest[len..];
            total_ms = number
                .checked_mul(unit_ms)
                .and_then(|ms| total_ms.checked_add(ms))
                .ok_or_else(|| format!("duration `{text}` is too long"))?;
        }
        Ok(Self(Duration::from_millis(total_ms)))
    }
}

impl fmt::Display for HumanDuration {
    /// The shortest exact form: `90s` prints as `1m30s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

string_value!(HumanDuration, "Duration", DURATION_PATTERN);

// ─── Byte sizes ─────────────────────────────────────────────────────────────

/// A size written like `512KiB`, `64MiB`, `1GiB` or `4096B`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }
    pub fn bytes(self) -> u64 {
        self.0
    }
}

const BYTE_UNITS: [(&str, u64); 4] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a size; expected {}",
                describe_pattern(BYTE_SIZE_PATTERN).unwrap()
            )
        };
        let digits = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(digits);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let (_, size) = BYTE_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        number
            .checked_mul(*size)
            .map(Self)
            .ok_or_else(|| format!("size `{text}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, size) = BYTE_UNITS
            .iter()
            .find(|(_, size)| self.0.is_multiple_of(*size) && self.0 >= *size)
            .unwrap_or(&("B", 1));
        write!(f, "{}{unit}", self.0 / size)
    }
}

string_value!(ByteSize, "ByteSize", BYTE_SIZE_PATTERN);

// ─── Digests ────────────────────────────────────────────────────────────────

/// A SHA-256 digest as 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(String);

impl Sha256 {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digest of some bytes.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self::from_digest(&sha2::Sha256::digest(bytes))
    }

    /// The digest of everything `reader` yields, and how many bytes that
    /// was, read in fixed-size pieces: memory does not grow with the input.
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<(Self, u64)> {
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            hasher.update(&buffer[..n]);
            total += n as u64;
        }
        Ok((Self::from_digest(&hasher.finalize()), total))
    }

    fn from_digest(digest: &[u8]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl FromStr for Sha256 {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(text.to_string()))
        } else {
            Err(format!(
                "`{text}` is not a SHA-256 digest; expected 64 lower-case hex digits (found {} characters)",
                text.chars().count()
            ))
        }
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_value!(Sha256, "Sha256", SHA256_PATTERN);

// ─── Timestamps ─────────────────────────────────────────────────────────────

/// An RFC 3339 time with an explicit offset, such as `2026-11-28T22:00:00Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(jiff::Timestamp);

impl Timestamp {
    pub fn as_jiff(self) -> jiff::Timestamp {
        self.0
    }
    /// A time read from a clock by the caller (the core reads none).
    pub fn from_system_time(time: std::time::SystemTime) -> Option<Self> {
        jiff::Timestamp::try_from(time).ok().map(Self)
    }
    pub fn unix_millis(self) -> i64 {
        self.0.as_millisecond()
    }
}

impl FromStr for Timestamp {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        text.parse::<jiff::Timestamp>()
            .map(Self)
            .map_err(|e| format!("`{text}` is not an RFC 3339 time ({e})"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

string_value!(Timestamp, "Timestamp", TIMESTAMP_PATTERN);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_in_their_shortest_form() {
        for (text, ms, shown) in [
            ("30s", 30_000, "30s"),
            ("10m", 600_000, "10m"),
            ("2h", 7_200_000, "2h"),
            ("1h30m", 5_400_000, "1h30m"),
            ("90s", 90_000, "1m30s"),
            ("250ms", 250, "250ms"),
            ("0s", 0, "0s"),
        ] {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.as_duration().as_millis(), ms, "{text}");
            assert_eq!(d.to_string(), shown);
        }
        for bad in [
            "",
            "10",
            "s",
            "10 s",
            "1.5h",
            "-3s",
            "10x",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn the_schema_pattern_accepts_what_the_parser_accepts() {
        let re = |p: &str| {
            jsonschema::validator_for(&serde_json::json!({"type": "string", "pattern": p})).unwrap()
        };
        let durations = re(DURATION_PATTERN);
        for text in ["30s", "1h30m", "250ms", "10", "1.5h", "", "3 s"] {
            assert_eq!(
                durations.is_valid(&serde_json::json!(text)),
                text.parse::<HumanDuration>().is_ok(),
                "{text}"
            );
        }
        let sizes = re(BYTE_SIZE_PATTERN);
        for text in ["64MiB", "1GiB", "4096B", "64", "64mb", "1.5GiB"] {
            assert_eq!(
                sizes.is_valid(&serde_json::json!(text)),
                text.parse::<ByteSize>().is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_and_digests() {
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().bytes(), 64 << 20);
        assert_eq!(ByteSize::mib(1024).to_string(), "1GiB");
        assert_eq!(
            "1536KiB".parse::<ByteSize>().unwrap().to_string(),
            "1536KiB"
        );
        assert!("64".parse::<ByteSize>().is_err());
        assert_eq!(
            Sha256::of(b"").as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!("E3B0".parse::<Sha256>().is_err());
        let big = vec![7u8; 200_000];
        assert_eq!(
            Sha256::of_reader(&big[..]).unwrap(),
            (Sha256::of(&big), 200_000)
        );
        let t: Timestamp = "2026-11-28T22:00:00+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-28T21:00:00Z");
    }
}
