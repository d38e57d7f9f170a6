//! A parser for the Prometheus text exposition (OpenMetrics text 1.0, as
//! `prometheus-client` writes it, and the older Prometheus text format
//! 0.0.4), for tests that scrape `/metrics`: every line must parse, a sample
//! must belong to the family its `# TYPE` declared, a series appears once,
//! nothing follows `# EOF`, and a histogram's buckets must add up.
//! Used through `tests/support` and, by the agent's unit tests, through
//! `#[path = "../../../tests/support/prometheus.rs"]`.
#![allow(dead_code)]

use std::collections::BTreeMap;

/// One sample line: `name{labels} value [timestamp] [# exemplar]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A whole exposition.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name → `counter`, `gauge`, `histogram`, `info`, ...
    pub types: BTreeMap<String, String>,
    /// Family name → its `# HELP` text (unescaped).
    pub help: BTreeMap<String, String>,
    /// Family name → its `# UNIT`.
    pub units: BTreeMap<String, String>,
    /// The exposition ended with `# EOF` (required by OpenMetrics).
    pub eof: bool,
}

/// What a family's samples may append to its name, by type.
fn suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        // The 0.0.4 format names a counter's family with its `_total`.
        "counter" => &["_total", "_created", ""],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gaugehistogram" => &["_bucket", "_gsum", "_gcount"],
        "summary" => &["", "_sum", "_count", "_created"],
        "info" => &["_info"],
        _ => &[""],
    }
}

/// Parse an exposition; the error names the line and what is wrong.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen = std::collections::BTreeSet::new();
    for (n, line) in text.lines().enumerate() {
        let at = |what: String| format!("line {}: {what}: `{line}`", n + 1);
        if out.eof {
            return Err(at("after # EOF".into()));
        }
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            if comment == "EOF" {
                out.eof = true;
                continue;
            }
            let mut parts = comment.splitn(3, ' ');
            let (keyword, family, rest) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let table = match keyword {
                "HELP" => &mut out.help,
                "TYPE" => &mut out.types,
                "UNIT" => &mut out.units,
                // Any other comment is allowed by the 0.0.4 format.
                _ => continue,
            };
            if !valid_name(family) {
                return Err(at(format!("bad metric name `{family}`")));
            }
            let rest = if keyword == "HELP" {
                unescape(rest, false).map_err(at)?
            } else {
                rest.to_string()
            };
            if table.insert(family.to_string(), rest).is_some() {
                return Err(at(format!("a second # {keyword} for `{family}`")));
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        if let Some(family) = family_of(&out.types, &sample.name)
            && !out.types.get(family).is_some_and(|kind| {
                suffixes(kind)
                    .iter()
                    .any(|s| sample.name == format!("{family}{s}"))
            })
        {
            return Err(at(format!("not a sample of family `{family}`")));
        }
        if !seen.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("the same series twice".into()));
        }
        out.samples.push(sample);
    }
    check_histograms(&out)?;
    Ok(out)
}

/// The declared family a sample name belongs to (the longest prefix).
fn family_of<'a>(types: &'a BTreeMap<String, String>, sample: &str) -> Option<&'a str> {
    types
        .keys()
        .filter(|f| sample.starts_with(f.as_str()))
        .max_by_key(|f| f.len())
        .map(String::as_str)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let end = line
        .find(['{', ' '])
        .ok_or_else(|| "a sample without a value".to_string())?;
    let name = &line[..end];
    if !valid_name(name) {
        return Err(format!("bad metric name `{name}`"));
    }
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start_matches(' ');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let eq = rest.find('=').ok_or("a label without `=`")?;
            let key = rest[..eq].trim();
            if !valid_name(key) {
                return Err(format!("bad label name `{key}`"));
            }
            rest = rest[eq + 1..]
                .strip_prefix('"')
                .ok_or("a label value without quotes")?;
            let close = closing_quote(rest).ok_or("an unterminated label value")?;
            let value = unescape(&rest[..close], true)?;
            if labels.insert(key.to_string(), value).is_some() {
                return Err(format!("label `{key}` twice"));
            }
            rest = &rest[close + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    // An exemplar (` # {...} value`) follows the value in OpenMetrics.
    let rest = rest.split(" # ").next().unwrap_or(rest);
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample without a value")?;
    let value = parse_value(value)?;
    if let Some(ts) = fields.next() {
        ts.parse::<f64>()
            .map_err(|_| format!("bad timestamp `{ts}`"))?;
    }
    if let Some(extra) = fields.next() {
        return Err(format!("unexpected `{extra}` after the value"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("bad value `{text}`")),
    }
}

/// The index of the quote that ends a label value (not an escaped one).
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

/// `\\`, `\n` and (in label values) `\"`.
fn unescape(text: &str, quotes: bool) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            // The 0.0.4 format leaves other backslashes in HELP as they are.
            Some(other) if !quotes => {
                out.push('\\');
                out.push(other);
            }
            other => return Err(format!("bad escape `\\{}`", other.unwrap_or(' '))),
        }
    }
    Ok(out)
}

/// Every histogram series: buckets cumulative, ending in `+Inf` equal to
/// `_count`.
fn check_histograms(e: &Exposition) -> Result<(), String> {
    for (family, kind) in &e.types {
        if kind != "histogram" {
            continue;
        }
        for s in e
            .samples
            .iter()
            .filter(|s| s.name == format!("{family}_count"))
        {
            let labels: Vec<(&str, &str)> = s
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let h = histogram(&e.samples, family, &labels)
                .ok_or_else(|| format!("histogram `{family}` {labels:?} is incomplete"))?;
            if h.buckets.windows(2).any(|w| w[0].1 > w[1].1) {
                return Err(format!("histogram `{family}` {labels:?}: buckets decrease"));
            }
            if h.buckets.last() != Some(&(f64::INFINITY, h.count)) {
                return Err(format!(
                    "histogram `{family}` {labels:?}: the +Inf bucket is not the count"
                ));
            }
        }
    }
    Ok(())
}

fn matches(sample: &Sample, name: &str, labels: &[(&str, &str)]) -> bool {
    sample.name == name
        && labels
            .iter()
            .all(|(k, v)| sample.labels.get(*k).map(String::as_str) == Some(*v))
}

/// The value of the series `name` whose labels are exactly `labels`.
pub fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| matches(s, name, labels) && s.labels.len() == labels.len())
        .map(|s| s.value)
}

/// Every series of `name` whose labels include `labels`.
pub fn matching<'a>(samples: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    samples
        .iter()
        .filter(|s| matches(s, name, labels))
        .collect()
}

/// One histogram series.
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// (upper bound `le`, cumulative count), in order of the bound.
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

/// The histogram `family` (without `_bucket`) whose labels, `le` aside,
/// are exactly `labels`.
pub fn histogram(samples: &[Sample], family: &str, labels: &[(&str, &str)]) -> Option<Histogram> {
    let bucket = format!("{family}_bucket");
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| {
            matches(s, &bucket, labels)
                && s.labels.len() == labels.len() + 1
                && s.labels.contains_key("le")
        })
        .map(|s| Ok((parse_value(&s.labels["le"])?, s.value)))
        .collect::<Result<_, String>>()
        .ok()?;
    if buckets.is_empty() {
        return None;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Some(Histogram {
        buckets,
        sum: value(samples, &format!("{family}_sum"), labels)?,
        count: value(samples, &format!("{family}_count"), labels)?,
    })
}
