//! Bounds on the parameter schemas a plugin declares, checked when it
//! describes itself, before any schema is compiled or used.
//!
//! A JSON Schema can be small and still cost exponential time: 40 levels of
//! `allOf: [{$ref: next}, {$ref: next}]` is 2 KB of text and 2^40 schema
//! nodes once references are followed, and jsonschema's compile or validate
//! then never ends. So each schema is measured the way a validator walks
//! it: its size as text, its nesting depth, and its *expansion*, the number
//! of schema nodes reached with every local `$ref` followed (memoised per
//! target, so measuring is linear; a reference back into a schema being
//! measured, i.e. recursion, counts once: it is bounded by the depth of the
//! instance validated, not by the schema).

use serde_json::Value;
use std::collections::HashMap;

/// Longest parameter schema accepted, as JSON text.
pub const MAX_SCHEMA_BYTES: usize = 64 << 10;
/// Deepest nesting of objects and arrays in a schema.
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// Most schema nodes a schema may expand to with its references followed.
pub const MAX_SCHEMA_EXPANSION: u64 = 10_000;

/// Why a schema is refused (a sentence naming the limit).
pub(crate) fn check(text_len: usize, schema: &Value) -> Result<(), String> {
    if text_len > MAX_SCHEMA_BYTES {
        return Err(format!(
            "params-schema is {text_len} bytes, more than the limit of {MAX_SCHEMA_BYTES}"
        ));
    }
    let depth = depth(schema);
    if depth > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "params-schema nests {depth} levels deep, more than the limit of {MAX_SCHEMA_DEPTH}"
        ));
    }
    let expansion = Expansion {
        root: schema,
        done: HashMap::new(),
        open: Vec::new(),
    }
    .measure(schema);
    if expansion > MAX_SCHEMA_EXPANSION {
        return Err(format!(
            "params-schema expands to {}{expansion} nodes with its `$ref`s followed, more than the limit of {MAX_SCHEMA_EXPANSION} (references that repeat other references multiply the work of every validation)",
            if expansion == u64::MAX {
                "at least "
            } else {
                ""
            }
        ));
    }
    Ok(())
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

struct Expansion<'a> {
    root: &'a Value,
    /// Nodes measured already, by address.
    done: HashMap<*const Value, u64>,
    /// Nodes being measured (a reference to one of them is recursion).
    open: Vec<*const Value>,
}

impl<'a> Expansion<'a> {
    fn measure(&mut self, node: &'a Value) -> u64 {
        let key = node as *const Value;
        if let Some(n) = self.done.get(&key) {
            return *n;
        }
        if self.open.contains(&key) {
            return 1;
        }
        self.open.push(key);
        let mut n: u64 = 1;
        match node {
            Value::Object(m) => {
                for (k, v) in m {
                    n = n.saturating_add(self.measure(v));
                    if k == "$ref"
                        && let Some(target) = v.as_str().and_then(|r| self.resolve(r))
                    {
                        n = n.saturating_add(self.measure(target));
                    }
                }
            }
            Value::Array(a) => {
                for v in a {
                    n = n.saturating_add(self.measure(v));
                }
            }
            _ => {}
        }
        self.open.pop();
        self.done.insert(key, n);
        n
    }

    /// A local reference (`#`, `#/$defs/x`); anything else (anchors, other
    /// documents) counts as one node: jsonschema resolves no remote
    /// documents here and refuses the schema if it needs one.
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        let decoded = percent_decode(pointer)?;
        self.root.pointer(&decoded)
    }
}

/// `%25` → `%` etc. in a URI fragment (JSON pointers in `$ref` are URI-encoded).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2 KB of text, 2^`levels` nodes once references are followed.
    fn doubling(levels: usize) -> Value {
        let mut defs = serde_json::Map::new();
        for i in 0..levels {
            let next = format!("#/$defs/d{}", i + 1);
            defs.insert(
                format!("d{i}"),
                json!({ "allOf": [{ "$ref": next }, { "$ref": next }] }),
            );
        }
        defs.insert(format!("d{levels}"), json!({ "type": "object" }));
        json!({ "$ref": "#/$defs/d0", "$defs": defs })
    }

    #[test]
    fn a_doubling_reference_chain_is_refused_by_its_expansion() {
        let s = doubling(40);
        let text = s.to_string();
        assert!(text.len() < 4096, "{}", text.len());
        let e = check(text.len(), &s).unwrap_err();
        assert!(e.contains("expands to") && e.contains("10000"), "{e}");
        // A few levels are fine.
        let s = doubling(5);
        check(s.to_string().len(), &s).unwrap();
    }

    #[test]
    fn recursion_counts_once_and_real_schemas_pass() {
        let tree = json!({
            "$defs": { "node": { "type": "object", "properties": {
                "children": { "type": "array", "items": { "$ref": "#/$defs/node" } } } } },
            "$ref": "#/$defs/node"
        });
        check(tree.to_string().len(), &tree).unwrap();
        let deep = (0..40).fold(json!({}), |inner, _| json!({ "not": inner }));
        let e = check(deep.to_string().len(), &deep).unwrap_err();
        assert!(e.contains("nests 41 levels deep"), "{e}");
        let e = check(MAX_SCHEMA_BYTES + 1, &json!({})).unwrap_err();
        assert!(e.contains("more than the limit of 65536"), "{e}");
    }
}
