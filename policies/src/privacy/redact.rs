//! Redaction for targets outside the trust boundary: detected values become stable
//! placeholders (`[EMAIL_1]`) before a request leaves, and the answer is restored —
//! streaming included — so the user sees their own data and the provider never does.

use std::borrow::Borrow;
use std::collections::HashMap;

use super::{PiiKind, PiiSpan};

/// Placeholder ↔ original value for one request. The same value always gets the same
/// placeholder, so the model can refer to it consistently.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionMap {
    by_placeholder: HashMap<String, String>,
    by_value: HashMap<(PiiKind, String), String>,
    counts: HashMap<PiiKind, usize>,
    longest: usize,
}

fn label(kind: PiiKind) -> String {
    kind.as_str().to_ascii_uppercase()
}

impl RedactionMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of distinct values replaced.
    pub fn len(&self) -> usize {
        self.by_placeholder.len()
    }

    /// Whether nothing was replaced.
    pub fn is_empty(&self) -> bool {
        self.by_placeholder.is_empty()
    }

    /// The original value behind a placeholder.
    pub fn original(&self, placeholder: &str) -> Option<&str> {
        self.by_placeholder.get(placeholder).map(String::as_str)
    }

    /// Replaces each span (character offsets, as `detect` returns them) in `text` and
    /// records the mapping. Several texts of one request share one map.
    pub fn redact(&mut self, text: &str, spans: &[PiiSpan]) -> String {
        let mut spans: Vec<PiiSpan> = spans.to_vec();
        spans.sort_by_key(|s| s.start);
        let offsets: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain(std::iter::once(text.len()))
            .collect();
        let byte = |c: usize| offsets.get(c).copied().unwrap_or(text.len());
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for s in spans {
            let (start, end) = (byte(s.start), byte(s.end));
            if start < at || end <= start {
                continue; // overlapping or empty: the earlier span already covers it
            }
            out.push_str(&text[at..start]);
            out.push_str(&self.placeholder(s.kind, &text[start..end]));
            at = end;
        }
        out.push_str(&text[at..]);
        out
    }

    fn placeholder(&mut self, kind: PiiKind, value: &str) -> String {
        if let Some(p) = self.by_value.get(&(kind, value.to_string())) {
            return p.clone();
        }
        let n = self.counts.entry(kind).or_insert(0);
        *n += 1;
        let p = format!("[{}_{}]", label(kind), n);
        self.longest = self.longest.max(p.len());
        self.by_value.insert((kind, value.to_string()), p.clone());
        self.by_placeholder.insert(p.clone(), value.to_string());
        p
    }

    /// Restores every known placeholder in a complete text.
    pub fn restore(&self, text: &str) -> String {
        let mut r = Restorer::new(self);
        let mut out = r.push(text);
        out.push_str(&r.finish());
        out
    }
}

/// Redacts `text` with a fresh map.
pub fn redact(text: &str, spans: &[PiiSpan]) -> (String, RedactionMap) {
    let mut map = RedactionMap::new();
    let out = map.redact(text, spans);
    (out, map)
}

/// Restores placeholders in a streamed answer. A placeholder split across chunks
/// (`"[EMA"` + `"IL_1]"`) is held back until it is complete, so no chunk ever shows a
/// half placeholder or a half value.
#[derive(Debug)]
pub struct Restorer<M: Borrow<RedactionMap> = std::sync::Arc<RedactionMap>> {
    map: M,
    pending: String,
}

impl<M: Borrow<RedactionMap>> Restorer<M> {
    /// A restorer for one answer; `map` may be borrowed or shared (`Arc`).
    pub fn new(map: M) -> Self {
        Restorer {
            map,
            pending: String::new(),
        }
    }

    /// Feeds a chunk; returns the text that can be shown now.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        let buf = std::mem::take(&mut self.pending);
        let mut out = String::with_capacity(buf.len());
        let mut rest = buf.as_str();
        while let Some(i) = rest.find('[') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            match tail.find(']') {
                Some(j) if j < self.map.borrow().longest => {
                    let cand = &tail[..=j];
                    if let Some(orig) = self.map.borrow().original(cand) {
                        out.push_str(orig);
                        rest = &tail[j + 1..];
                    } else {
                        out.push('[');
                        rest = &tail[1..];
                    }
                }
                None if tail.len() < self.map.borrow().longest && self.could_start(tail) => {
                    self.pending = tail.to_string();
                    return out;
                }
                _ => {
                    out.push('[');
                    rest = &tail[1..];
                }
            }
        }
        out.push_str(rest);
        out
    }

    /// Whether `tail` (starting with `[`) is a prefix of some placeholder.
    fn could_start(&self, tail: &str) -> bool {
        self.map
            .borrow()
            .by_placeholder
            .keys()
            .any(|p| p.starts_with(tail))
    }

    /// Ends the stream: whatever was held back is shown as is.
    pub fn finish(self) -> String {
        self.pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privacy::detect;

    #[test]
    fn same_value_same_placeholder_and_round_trip() {
        let text =
            "Mail anna@example.com or anna@example.com, call +49 30 1234567, or bob@corp.io.";
        let spans = detect(text);
        let (red, map) = redact(text, &spans);
        assert_eq!(
            red,
            "Mail [EMAIL_1] or [EMAIL_1], call [PHONE_1], or [EMAIL_2]."
        );
        assert_eq!(map.len(), 3);
        assert_eq!(map.restore(&red), text);
    }

    #[test]
    fn non_ascii_text_keeps_character_offsets() {
        let text = "Grüße — zoë schreibt an max@beispiel.de ✓";
        let (red, map) = redact(text, &detect(text));
        assert_eq!(red, "Grüße — zoë schreibt an [EMAIL_1] ✓");
        assert_eq!(map.restore(&red), text);
    }

    #[test]
    fn streaming_restore_handles_placeholders_split_anywhere() {
        let text = "Write to a@b.co and c@d.co about card 4111 1111 1111 1111 [sic] [x";
        let (red, map) = redact(text, &detect(text));
        // Every way of cutting the answer into two or three chunks restores the same.
        let chars: Vec<char> = red.chars().collect();
        for i in 0..=chars.len() {
            for j in i..=chars.len() {
                let parts: [String; 3] = [
                    chars[..i].iter().collect(),
                    chars[i..j].iter().collect(),
                    chars[j..].iter().collect(),
                ];
                let mut r = Restorer::new(&map);
                let mut out = String::new();
                for p in &parts {
                    let shown = r.push(p);
                    assert!(
                        !shown.contains("[EMAIL") || shown.contains("[EMAIL_9"),
                        "{shown}"
                    );
                    out.push_str(&shown);
                }
                out.push_str(&r.finish());
                assert_eq!(out, text, "cut at {i},{j}");
            }
        }
    }

    #[test]
    fn unknown_placeholders_pass_through() {
        let (_, map) = redact("a@b.co", &detect("a@b.co"));
        assert_eq!(
            map.restore("[EMAIL_9] and [EMAIL_1]"),
            "[EMAIL_9] and a@b.co"
        );
    }
}
