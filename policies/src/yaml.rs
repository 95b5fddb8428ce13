//! The only place that parses YAML: text in, a `serde_json::Value` plus an index of
//! where every key and value sits (line and column) out.
//!
//! We use yaml-rust2's event parser: it is maintained (serde_yaml is archived upstream)
//! and its `MarkedEventReceiver` hands us a position for every scalar and collection,
//! which is what lets config errors name `file:line:col`. Going through
//! `serde_json::Value` keeps the rest of the crate independent of the YAML library:
//! swapping the parser means rewriting this file only.

use std::collections::HashMap;

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A 1-based line and column in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Line, starting at 1.
    pub line: usize,
    /// Column in characters, starting at 1.
    pub col: usize,
}

impl Pos {
    fn from_marker(m: Marker) -> Pos {
        Pos {
            line: m.line(),
            col: m.col() + 1,
        }
    }
}

/// Where a node sits: its key (for map entries; the item itself for sequence items) and
/// its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Position of the key, or of the item for sequence items and the root.
    pub key: Pos,
    /// Position of the value.
    pub value: Pos,
}

/// A YAML problem with its position: a syntax error, a duplicate key, an unsupported
/// construct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// Where the problem is.
    pub pos: Pos,
    /// The key path of the node involved, empty when unknown.
    pub path: String,
    /// What is wrong, lowercase.
    pub message: String,
}

/// A parsed document: the value tree and the position of every key path in it.
#[derive(Debug, Clone)]
pub struct Document {
    /// The document as JSON-like data; plain scalars are typed per YAML's core schema.
    pub value: Value,
    spans: HashMap<String, Span>,
}

impl Document {
    /// The span of an exact key path such as `routes[1].to[0]` (`""` is the root).
    pub fn span(&self, path: &str) -> Option<Span> {
        self.spans.get(path).copied()
    }

    /// The span of `path`, or of its nearest ancestor that has one (so an error at a
    /// missing key points at the mapping that lacks it).
    pub fn nearest_span(&self, path: &str) -> Span {
        let mut p = path;
        loop {
            if let Some(s) = self.spans.get(p) {
                return *s;
            }
            match parent_path(p) {
                Some(parent) => p = parent,
                None => return Span::default(),
            }
        }
    }
}

/// The parent of a key path: `a.b[2]` → `a.b`, `a.b` → `a`, `a` → `""`, `""` → none.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Appends a map key to a path.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends a sequence index to a path.
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// Parses one YAML document. Syntax errors stop parsing and are returned alone; duplicate
/// keys and non-scalar keys are all collected.
pub fn parse(text: &str) -> Result<Document, Vec<YamlError>> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, false) {
        return Err(vec![YamlError {
            pos: Pos::from_marker(*e.marker()),
            path: String::new(),
            message: format!("invalid yaml: {}", e.info()),
        }]);
    }
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    Ok(Document {
        value: builder.root.unwrap_or(Value::Null),
        spans: builder.spans,
    })
}

enum Frame {
    Seq {
        path: String,
        anchor: usize,
        items: Vec<Value>,
    },
    Map {
        path: String,
        anchor: usize,
        map: Map<String, Value>,
        /// The key waiting for its value, with its position.
        key: Option<(String, Pos)>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    root: Option<Value>,
    spans: HashMap<String, Span>,
    anchors: HashMap<usize, Value>,
    errors: Vec<YamlError>,
}

impl Builder {
    /// Where the next value goes: its path and the position of its key. `None` when the
    /// next node is a map key.
    fn next_slot(&self, at: Pos) -> Option<(String, Pos)> {
        match self.stack.last() {
            None => Some((String::new(), at)),
            Some(Frame::Seq { path, items, .. }) => Some((join_index(path, items.len()), at)),
            Some(Frame::Map { path, key, .. }) => {
                key.as_ref().map(|(k, kpos)| (join_key(path, k), *kpos))
            }
        }
    }

    fn push_value(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some((k, _)) = key.take() {
                    map.insert(k, value);
                }
            }
        }
    }

    fn start_container(&mut self, at: Pos, anchor: usize, is_map: bool) {
        let path = match self.next_slot(at) {
            Some((path, key_pos)) => {
                self.spans.insert(
                    path.clone(),
                    Span {
                        key: key_pos,
                        value: at,
                    },
                );
                path
            }
            None => {
                let parent = match self.stack.last() {
                    Some(Frame::Map { path, .. }) => path.clone(),
                    _ => String::new(),
                };
                self.errors.push(YamlError {
                    pos: at,
                    path: parent.clone(),
                    message: "complex mapping keys are not supported".into(),
                });
                // Keep building so later errors are still found; the value is dropped.
                join_key(&parent, "?")
            }
        };
        self.stack.push(if is_map {
            Frame::Map {
                path,
                anchor,
                map: Map::new(),
                key: None,
            }
        } else {
            Frame::Seq {
                path,
                anchor,
                items: Vec::new(),
            }
        });
    }

    fn end_container(&mut self) {
        let (value, anchor) = match self.stack.pop() {
            Some(Frame::Seq { items, anchor, .. }) => (Value::Array(items), anchor),
            Some(Frame::Map { map, anchor, .. }) => (Value::Object(map), anchor),
            None => return,
        };
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        let parent_wants_key = matches!(self.stack.last(), Some(Frame::Map { key: None, .. }));
        if !parent_wants_key {
            self.push_value(value);
        }
    }

    fn scalar(
        &mut self,
        text: String,
        style: TScalarStyle,
        anchor: usize,
        at: Pos,
        tagged_str: bool,
    ) {
        // A scalar in key position becomes the pending key.
        if let Some(Frame::Map { path, map, key, .. }) = self.stack.last_mut() {
            if key.is_none() {
                if map.contains_key(&text) {
                    self.errors.push(YamlError {
                        pos: at,
                        path: join_key(path, &text),
                        message: format!("duplicate key \"{text}\""),
                    });
                }
                *key = Some((text, at));
                return;
            }
        }
        let value = if style == TScalarStyle::Plain && !tagged_str {
            resolve_plain(&text)
        } else {
            Value::String(text)
        };
        if let Some((path, key_pos)) = self.next_slot(at) {
            self.spans.insert(
                path,
                Span {
                    key: key_pos,
                    value: at,
                },
            );
        }
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        self.push_value(value);
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let at = Pos::from_marker(mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                let tagged_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                self.scalar(text, style, anchor, at, tagged_str);
            }
            Event::SequenceStart(anchor, _) => self.start_container(at, anchor, false),
            Event::MappingStart(anchor, _) => self.start_container(at, anchor, true),
            Event::SequenceEnd | Event::MappingEnd => self.end_container(),
            Event::Alias(id) => {
                let value = self.anchors.get(&id).cloned().unwrap_or(Value::Null);
                match value {
                    Value::String(s) => self.scalar(s, TScalarStyle::SingleQuoted, 0, at, true),
                    other => {
                        if let Some((path, key_pos)) = self.next_slot(at) {
                            self.spans.insert(
                                path,
                                Span {
                                    key: key_pos,
                                    value: at,
                                },
                            );
                            self.push_value(other);
                        } else {
                            self.errors.push(YamlError {
                                pos: at,
                                path: String::new(),
                                message: "an alias cannot be used as a mapping key".into(),
                            });
                        }
                    }
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Types a plain scalar per the YAML 1.2 core schema (null, booleans, integers, floats).
fn resolve_plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if let Some(hex) = unsigned.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Number(i.into());
        }
    }
    if let Some(oct) = unsigned.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Value::Number(i.into());
        }
    }
    if let Ok(i) = unsigned.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = unsigned.parse::<u64>() {
        return Value::Number(u.into());
    }
    // Rust accepts "inf" and "NaN" as floats; YAML does not, and JSON cannot hold them,
    // so only finite numbers that contain a digit become floats.
    if text.bytes().any(|b| b.is_ascii_digit()) {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn builds_values_with_core_schema_types() {
        let doc = parse(
            "a: 1\nb: 2.5\nc: true\nd: ~\ne: '1'\nf: hello\ng: [x, 'y', 3]\nh: {k: v}\ni: 1.2.3\n",
        )
        .unwrap();
        assert_eq!(
            doc.value,
            json!({"a":1,"b":2.5,"c":true,"d":null,"e":"1","f":"hello","g":["x","y",3],"h":{"k":"v"},"i":"1.2.3"})
        );
    }

    #[test]
    fn records_key_and_value_positions() {
        let text = "version: 1\nmodels:\n  gpt-5.4-mini:\n    provider: openai\nroutes:\n  - name: a\n    to: [local, gpt]\n";
        let doc = parse(text).unwrap();
        assert_eq!(doc.span("version").unwrap().key, Pos { line: 1, col: 1 });
        assert_eq!(doc.span("version").unwrap().value, Pos { line: 1, col: 10 });
        let s = doc.span("models.gpt-5.4-mini.provider").unwrap();
        assert_eq!(
            (s.key, s.value),
            (Pos { line: 4, col: 5 }, Pos { line: 4, col: 15 })
        );
        assert_eq!(
            doc.span("routes[0].name").unwrap().value,
            Pos { line: 6, col: 11 }
        );
        assert_eq!(
            doc.span("routes[0].to[1]").unwrap().value,
            Pos { line: 7, col: 17 }
        );
        assert_eq!(
            doc.nearest_span("routes[0].to[1].nope").value,
            Pos { line: 7, col: 17 }
        );
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let errs = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].message.starts_with("invalid yaml"), "{errs:?}");
        assert!(errs[0].pos.line >= 1);
    }

    #[test]
    fn reports_every_duplicate_key() {
        let errs = parse("a: 1\na: 2\nb:\n  c: 1\n  c: 2\n").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(
            (errs[0].pos, errs[0].path.as_str()),
            (Pos { line: 2, col: 1 }, "a")
        );
        assert_eq!(
            (errs[1].pos, errs[1].path.as_str()),
            (Pos { line: 5, col: 3 }, "b.c")
        );
    }

    #[test]
    fn resolves_anchors_and_aliases() {
        let doc = parse("base: &b {x: 1}\ncopy: *b\nname: &n hi\nother: *n\n").unwrap();
        assert_eq!(
            doc.value,
            json!({"base":{"x":1},"copy":{"x":1},"name":"hi","other":"hi"})
        );
    }

    #[test]
    fn parent_paths() {
        assert_eq!(parent_path("a.b[2]"), Some("a.b"));
        assert_eq!(parent_path("a.b"), Some("a"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
    }
}
