//! The policy reference in README.md, generated from the JSON Schema so the
//! documentation cannot drift from what `duplex validate` accepts.

use serde_json::Value;
use std::fmt::Write;

/// Markdown: one table per object type, starting from the policy itself.
pub fn markdown() -> String {
    let schema = super::schema();
    let defs = schema.get("$defs").and_then(Value::as_object);
    let mut out = String::new();
    let mut order = vec![("UpgradePolicy".to_string(), schema)];
    let mut seen = vec!["UpgradePolicy".to_string()];
    let mut i = 0;
    while i < order.len() {
        let (name, node) = order[i].clone();
        i += 1;
        let mut refs = Vec::new();
        section(&mut out, &name, node, &mut refs);
        for r in refs {
            if !seen.contains(&r)
                && let Some(def) = defs.and_then(|d| d.get(&r))
                && (def.get("properties").is_some() || def.get("oneOf").is_some())
            {
                seen.push(r.clone());
                order.push((r, def));
            }
        }
    }
    out
}

fn section(out: &mut String, name: &str, node: &Value, refs: &mut Vec<String>) {
    let _ = writeln!(out, "### {name}\n");
    if let Some(d) = node.get("description").and_then(Value::as_str) {
        let _ = writeln!(out, "{}\n", one_line(d));
    }
    if let Some(branches) = node.get("oneOf").and_then(Value::as_array) {
        for b in branches {
            let Some(props) = b.get("properties").and_then(Value::as_object) else {
                continue;
            };
            let tag = props
                .iter()
                .find_map(|(k, v)| Some(format!("`{k}: {}`", v.get("const")?.as_str()?)))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "{tag}: {}\n",
                b.get("description")
                    .and_then(Value::as_str)
                    .map(one_line)
                    .unwrap_or_default()
            );
            fields(out, b, refs);
        }
        return;
    }
    fields(out, node, refs);
}

fn fields(out: &mut String, node: &Value, refs: &mut Vec<String>) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    let required: Vec<&str> = node
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(out, "| field | type | required / default | description |");
    let _ = writeln!(out, "|---|---|---|---|");
    for (field, prop) in props {
        if prop.get("const").is_some() {
            continue; // the tag of a tagged union, shown in the heading line
        }
        let kind = type_of(prop, refs);
        let need = if required.contains(&field.as_str()) {
            "required".to_string()
        } else {
            match prop.get("default") {
                Some(Value::Null) | None => "optional".to_string(),
                Some(v) => format!("`{}`", compact(v)),
            }
        };
        let description = prop
            .get("description")
            .and_then(Value::as_str)
            .map(one_line)
            .unwrap_or_default();
        let _ = writeln!(out, "| `{field}` | {kind} | {need} | {description} |");
    }
    let _ = writeln!(out);
}

fn type_of(prop: &Value, refs: &mut Vec<String>) -> String {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r).to_string();
        let def = super::schema().pointer(&format!("/$defs/{name}"));
        if let Some(values) = def.and_then(enum_values) {
            return values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        refs.push(name.clone());
        return name;
    }
    if let Some(values) = prop.get("enum").and_then(Value::as_array) {
        return values
            .iter()
            .map(|v| format!("`{}`", compact(v)))
            .collect::<Vec<_>>()
            .join(" \\| ");
    }
    if let Some(any) = prop.get("anyOf").and_then(Value::as_array) {
        let kinds: Vec<String> = any
            .iter()
            .filter(|v| v.get("type").and_then(Value::as_str) != Some("null"))
            .map(|v| type_of(v, refs))
            .collect();
        return kinds.join(" or ");
    }
    match prop.get("type") {
        Some(Value::String(t)) if t == "array" => {
            let item = prop
                .get("items")
                .map(|i| type_of(i, refs))
                .unwrap_or_default();
            format!("list of {item}")
        }
        Some(Value::String(t)) if t == "object" => "mapping".to_string(),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_string(),
    }
}

/// The values of an enum, written as `enum` or as a `oneOf` of constants.
fn enum_values(node: &Value) -> Option<Vec<String>> {
    if let Some(values) = node.get("enum").and_then(Value::as_array) {
        return Some(values.iter().map(compact).collect());
    }
    let branches = node.get("oneOf")?.as_array()?;
    branches
        .iter()
        .map(|b| b.get("const").map(compact))
        .collect()
}

fn compact(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
