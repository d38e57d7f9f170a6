//! An absolute budget for YAML alias expansion, checked on saphyr-parser's
//! event stream before `yaml_serde` expands anything.
//!
//! `yaml_serde` refuses a document whose aliases repeat more than 100 times
//! its own number of events, so padding a bomb with ordinary content buys
//! it room: a 100 KB file could still expand to gigabytes. Here every node
//! gets its expanded size (nodes, and bytes of scalars) as its events go
//! by; an alias costs what its anchored node expands to, and the costs of
//! all aliases together must stay under a fixed budget whatever the size of
//! the file. One pass, no expansion, memory proportional to nesting depth
//! and the number of anchors.

use saphyr_parser::{Event, Parser};
use std::collections::HashMap;

/// Nodes all aliases of a policy may expand to, together. A policy that
/// reuses a check or a `with:` block through anchors needs tens or hundreds.
pub const MAX_ALIAS_NODES: u64 = 10_000;
/// Bytes of scalars all aliases of a policy may expand to, together: as
/// much again as the largest policy file.
pub const MAX_ALIAS_BYTES: u64 = super::MAX_POLICY_BYTES;

/// An alias that takes the expansion past the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasBomb {
    pub line: usize,
    pub column: usize,
    /// The field the alias stands for, as `spec.target.with.a3[2]`.
    pub path: String,
    pub message: String,
}

/// What a node expands to.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    nodes: u64,
    bytes: u64,
}

impl Size {
    fn add(&mut self, other: Size) {
        self.nodes = self.nodes.saturating_add(other.nodes);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// A mapping or sequence being read.
struct Frame {
    anchor: usize,
    size: Size,
    path: String,
    kind: Kind,
}

enum Kind {
    /// `key` is the key whose value comes next; `None` when a key comes next.
    Map {
        key: Option<String>,
    },
    Seq {
        next: usize,
    },
}

/// Check the document's aliases against the budget. Text that does not
/// parse passes: `yaml_serde` reports syntax errors with its own messages.
pub fn check(text: &str) -> Result<(), AliasBomb> {
    let mut anchors: HashMap<usize, Size> = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut expanded = Size::default();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            return Ok(());
        };
        match event {
            Event::Scalar(value, _, anchor, _) => {
                let size = Size {
                    nodes: 1,
                    bytes: value.len() as u64,
                };
                if anchor > 0 {
                    anchors.insert(anchor, size);
                }
                let is_key = matches!(
                    stack.last(),
                    Some(Frame {
                        kind: Kind::Map { key: None },
                        ..
                    })
                );
                node_done(&mut stack, size, is_key.then(|| value.into_owned()));
            }
            Event::Alias(anchor) => {
                // An alias to a node still open (a recursive alias) is
                // yaml_serde's to refuse.
                let size = anchors
                    .get(&anchor)
                    .copied()
                    .unwrap_or(Size { nodes: 1, bytes: 0 });
                expanded.add(size);
                if expanded.nodes > MAX_ALIAS_NODES || expanded.bytes > MAX_ALIAS_BYTES {
                    let line = span.start.line();
                    let column = span.start.col() + 1;
                    let name = alias_name(text, line, column);
                    return Err(AliasBomb {
                        line,
                        column,
                        path: child_path(&stack),
                        message: if expanded.nodes > MAX_ALIAS_NODES {
                            format!(
                                "alias `{name}` expands to {} nodes, taking the aliases of this \
                                 file past {MAX_ALIAS_NODES} expanded nodes, the most a policy may \
                                 use (an alias bomb?); write the values out",
                                size.nodes
                            )
                        } else {
                            format!(
                                "alias `{name}` expands to {} bytes, taking the aliases of this \
                                 file past {MAX_ALIAS_BYTES} expanded bytes (1 MiB), the most a \
                                 policy may use (an alias bomb?); write the values out",
                                size.bytes
                            )
                        },
                    });
                }
                let is_key = matches!(
                    stack.last(),
                    Some(Frame {
                        kind: Kind::Map { key: None },
                        ..
                    })
                );
                node_done(
                    &mut stack,
                    size,
                    is_key.then(|| {
                        format!(
                            "<{}>",
                            alias_name(text, span.start.line(), span.start.col() + 1)
                        )
                    }),
                );
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let path = child_path(&stack);
                let kind = if matches!(event, Event::MappingStart(..)) {
                    Kind::Map { key: None }
                } else {
                    Kind::Seq { next: 0 }
                };
                stack.push(Frame {
                    anchor,
                    size: Size { nodes: 1, bytes: 0 },
                    path,
                    kind,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let Some(frame) = stack.pop() else {
                    return Ok(());
                };
                if frame.anchor > 0 {
                    anchors.insert(frame.anchor, frame.size);
                }
                let is_key = matches!(
                    stack.last(),
                    Some(Frame {
                        kind: Kind::Map { key: None },
                        ..
                    })
                );
                node_done(
                    &mut stack,
                    frame.size,
                    is_key.then(|| "<complex key>".to_string()),
                );
            }
            Event::DocumentEnd => stack.clear(),
            _ => {}
        }
    }
    Ok(())
}

/// A node of `size` finished inside the innermost open collection; `key`
/// is set when it was a mapping's key.
fn node_done(stack: &mut [Frame], size: Size, key: Option<String>) {
    let Some(parent) = stack.last_mut() else {
        return;
    };
    parent.size.add(size);
    match &mut parent.kind {
        Kind::Map { key: slot } => {
            *slot = match (slot.take(), key) {
                // A key was waiting for its value: this was the value.
                (Some(_), _) => None,
                (None, key) => Some(key.unwrap_or_default()),
            };
        }
        Kind::Seq { next } => *next += 1,
    }
}

/// The field path of the node about to start in the innermost collection.
fn child_path(stack: &[Frame]) -> String {
    let Some(parent) = stack.last() else {
        return String::new();
    };
    match &parent.kind {
        Kind::Map { key: Some(key) } if parent.path.is_empty() => key.clone(),
        Kind::Map { key: Some(key) } => format!("{}.{key}", parent.path),
        Kind::Map { key: None } => parent.path.clone(),
        Kind::Seq { next } => format!("{}[{next}]", parent.path),
    }
}

/// `*name` as written at a 1-based line and column.
fn alias_name(text: &str, line: usize, column: usize) -> String {
    text.lines()
        .nth(line.saturating_sub(1))
        .map(|l| {
            l.chars()
                .skip(column.saturating_sub(1))
                .take_while(|c| !c.is_whitespace() && !",[]{}".contains(*c))
                .collect()
        })
        .unwrap_or_else(|| "*".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_anchors_within_the_budget_pass() {
        let text = "a: &c {x: 1, y: [2, 3]}\nb: *c\nc: [*c, *c]\n";
        assert_eq!(check(text), Ok(()));
    }

    #[test]
    fn a_bomb_is_placed_at_the_alias_that_breaks_the_budget() {
        let mut text = String::from("top:\n  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..6 {
            text.push_str(&format!(
                "  l{i}: &l{i} [{}]\n",
                vec![format!("*l{}", i - 1); 10].join(", ")
            ));
        }
        let bomb = check(&text).unwrap_err();
        // l0 is 11 nodes, l1 111, l2 1111: the aliases of l1 and l2 spend
        // 110 + 1110, and the eighth alias in l3 takes the total past 10 000.
        assert_eq!((bomb.line, bomb.path.as_str()), (5, "top.l3[7]"));
        assert_eq!(bomb.column, 12 + 7 * 5);
        assert!(
            bomb.message
                .starts_with("alias `*l2` expands to 1111 nodes, taking"),
            "{}",
            bomb.message
        );
    }

    #[test]
    fn long_strings_count_by_their_bytes() {
        let text = format!(
            "s: &s \"{}\"\nl: [{}]\n",
            "x".repeat(100_000),
            ["*s"; 11].join(", ")
        );
        let bomb = check(&text).unwrap_err();
        assert_eq!((bomb.line, bomb.path.as_str()), (2, "l[10]"));
        assert!(
            bomb.message
                .starts_with("alias `*s` expands to 100000 bytes, taking"),
            "{}",
            bomb.message
        );
        assert!(check(&text.replace("*s]", "x]")).is_ok());
    }

    #[test]
    fn padding_buys_a_bomb_no_room() {
        let mut text = String::from("pad:\n");
        for i in 0..20_000 {
            text.push_str(&format!("  - item {i}\n"));
        }
        text.push_str("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n");
        text.push_str("c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n");
        assert!(check(&text).is_err());
    }

    #[test]
    fn text_that_does_not_parse_is_left_to_yaml_serde() {
        assert_eq!(check("a: [1, 2\nb: *nowhere"), Ok(()));
    }
}
