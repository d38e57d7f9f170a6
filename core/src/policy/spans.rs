//! Where each value of a YAML document is: a map from JSON pointer to
//! line/column, built from saphyr-parser's event stream.
//!
//! `jsonschema` and the semantic checks report a JSON pointer and no
//! position; this map turns it into the line and column an operator needs.
//! It is only consulted after `yaml_serde` has accepted the document, so it
//! never has to cope with malformed input on its own.

use saphyr_parser::{Event, Parser};
use std::collections::HashMap;

/// A 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    pub const START: Position = Position { line: 1, column: 1 };
}

#[derive(Debug, Default)]
pub struct SpanMap {
    values: HashMap<String, Position>,
    keys: HashMap<String, Position>,
    /// Keys given a second time in one mapping: (first, second).
    duplicates: HashMap<String, (Position, Position)>,
}

enum Frame {
    Map {
        pointer: String,
        key: Option<String>,
    },
    Seq {
        pointer: String,
        next: usize,
    },
}

/// Where a node that is starting sits in its parent.
enum Slot {
    Root,
    Key,
    Value(String),
}

pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

impl SpanMap {
    /// Positions of every node of the first document; empty if the text does
    /// not parse (callers fall back to the start of the file).
    pub fn build(text: &str) -> SpanMap {
        let mut map = SpanMap::default();
        let mut stack: Vec<Frame> = Vec::new();
        let mut documents = 0;
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let position = Position {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        break;
                    }
                }
                Event::Scalar(value, ..) => {
                    match map.slot(&mut stack) {
                        Slot::Key => {
                            if let Some(Frame::Map { pointer, key }) = stack.last_mut() {
                                let child = format!("{pointer}/{}", escape(&value));
                                match map.keys.get(&child) {
                                    Some(first) => {
                                        let first = *first;
                                        map.duplicates
                                            .entry(child.clone())
                                            .or_insert((first, position));
                                    }
                                    None => {
                                        map.keys.insert(child.clone(), position);
                                    }
                                }
                                *key = Some(child);
                            }
                            continue;
                        }
                        Slot::Value(p) => {
                            map.values.entry(p).or_insert(position);
                        }
                        Slot::Root => {
                            map.values.entry(String::new()).or_insert(position);
                        }
                    }
                    Self::completed(&mut stack);
                }
                Event::Alias(_) => {
                    match map.slot(&mut stack) {
                        Slot::Key => {
                            // An alias as a mapping key: no usable name.
                            if let Some(Frame::Map { pointer, key }) = stack.last_mut() {
                                *key = Some(format!("{pointer}/<alias>"));
                            }
                            continue;
                        }
                        Slot::Value(p) => {
                            map.values.entry(p).or_insert(position);
                        }
                        Slot::Root => {}
                    }
                    Self::completed(&mut stack);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let pointer = match map.slot(&mut stack) {
                        Slot::Value(p) => p,
                        Slot::Root => String::new(),
                        // A complex key: track its insides under a name no
                        // JSON pointer can refer to.
                        Slot::Key => "\u{0}complex-key".to_string(),
                    };
                    map.values.entry(pointer.clone()).or_insert(position);
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { pointer, key: None }
                    } else {
                        Frame::Seq { pointer, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    let finished = stack.pop();
                    if let Some(Frame::Map { pointer, .. } | Frame::Seq { pointer, .. }) = &finished
                        && pointer.starts_with('\u{0}')
                    {
                        if let Some(Frame::Map { pointer, key }) = stack.last_mut() {
                            *key = Some(format!("{pointer}/<complex key>"));
                        }
                        continue;
                    }
                    Self::completed(&mut stack);
                }
                _ => {}
            }
        }
        map
    }

    /// The slot the next node fills, advancing sequence indices.
    fn slot(&self, stack: &mut [Frame]) -> Slot {
        match stack.last_mut() {
            None => Slot::Root,
            Some(Frame::Map { key: None, .. }) => Slot::Key,
            Some(Frame::Map { key: Some(k), .. }) => Slot::Value(k.clone()),
            Some(Frame::Seq { pointer, next }) => {
                let p = format!("{pointer}/{next}");
                *next += 1;
                Slot::Value(p)
            }
        }
    }

    /// A value node finished: its parent mapping expects a key again.
    fn completed(stack: &mut [Frame]) {
        if let Some(Frame::Map { key, .. }) = stack.last_mut() {
            *key = None;
        }
    }

    /// Where the value at `pointer` starts, or the nearest ancestor's.
    pub fn value(&self, pointer: &str) -> Position {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Position::START,
            }
        }
    }

    /// Where a key given twice stands the first and the second time.
    pub fn duplicate(&self, pointer: &str) -> Option<(Position, Position)> {
        self.duplicates.get(pointer).copied()
    }

    /// Where the key of the entry at `pointer` is, falling back to its value.
    pub fn key(&self, pointer: &str) -> Position {
        self.keys
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.value(pointer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_keys_values_and_items() {
        let text = "a: 1\nb:\n  c: [x, {d: 2}]\n  e:\n    - f: 3\n      g: 4\n";
        let m = SpanMap::build(text);
        let at = |line, column| Position { line, column };
        assert_eq!(m.value("/a"), at(1, 4));
        assert_eq!(m.key("/a"), at(1, 1));
        assert_eq!(m.value("/b/c/0"), at(3, 7));
        assert_eq!(m.value("/b/c/1/d"), at(3, 14));
        assert_eq!(m.value("/b/e/0/g"), at(6, 10));
        assert_eq!(m.key("/b/e/0/g"), at(6, 7));
        // Unknown paths fall back to the nearest ancestor.
        assert_eq!(m.value("/b/e/0/zzz"), at(5, 7));
        assert_eq!(m.value("/nope"), at(1, 1));
    }

    #[test]
    fn keys_with_slashes_are_escaped() {
        let m = SpanMap::build("labels:\n  a/b: x\n");
        assert_eq!(m.value("/labels/a~1b"), Position { line: 2, column: 8 });
    }
}
