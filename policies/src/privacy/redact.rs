//! Redaction for targets outside the trust boundary: detected values become stable
//! placeholders (`[EMAIL_1]`) before a request leaves, and the answer is restored —
//! streaming included — so the user sees their own data and the provider never does.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap, HashSet};

use super::{PiiKind, PiiSpan};
use crate::steps;

/// Placeholder ↔ original value for one request. The same value always gets the same
/// placeholder, so the model can refer to it consistently.
///
/// A text may already hold something shaped like a placeholder (`[EMAIL_1]` typed by
/// the user). Such a literal is never handed out as a placeholder, and one that an
/// earlier text of the request already got is itself replaced by a fresh placeholder
/// whose original is the literal, so restoring gives back exactly what was written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactionMap {
    /// Sorted, so "is this the start of some placeholder" is one range lookup.
    by_placeholder: BTreeMap<String, String>,
    by_value: HashMap<(PiiKind, String), String>,
    counts: HashMap<PiiKind, usize>,
    /// Placeholder-shaped literals seen in the texts: never given out.
    reserved: HashSet<String>,
    longest: usize,
}

/// The placeholder-shaped literal starting at byte `i` of `text` (which holds `[`), as
/// its kind and length: `[`, a kind's label, `_`, a number without leading zeros, `]`.
fn literal_at(text: &str, i: usize) -> Option<(PiiKind, usize)> {
    let b = &text.as_bytes()[i + 1..];
    let label = b
        .iter()
        .take(17)
        .take_while(|c| c.is_ascii_uppercase() || **c == b'_')
        .count();
    // The longest label is short, so a longer run of capitals is no placeholder.
    if !(2..=16).contains(&label) || b[label - 1] != b'_' {
        return None;
    }
    let kind = PiiKind::ALL
        .into_iter()
        .find(|k| label_bytes_eq(*k, &b[..label - 1]))?;
    let digits = b[label..]
        .iter()
        .take(20)
        .take_while(|c| c.is_ascii_digit())
        .count();
    let ok = digits > 0 && b[label] != b'0' && b.get(label + digits) == Some(&b']');
    steps::add(label + digits + 1);
    ok.then_some((kind, 1 + label + digits + 1))
}

fn label_bytes_eq(kind: PiiKind, bytes: &[u8]) -> bool {
    kind.as_str().len() == bytes.len()
        && kind
            .as_str()
            .bytes()
            .zip(bytes)
            .all(|(a, &b)| a.to_ascii_uppercase() == b)
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
        // Literals first, so that none of them is handed out for this text's values.
        let literals: Vec<(usize, usize, PiiKind)> = text
            .match_indices('[')
            .filter_map(|(i, _)| literal_at(text, i).map(|(kind, len)| (i, i + len, kind)))
            .collect();
        let mut escapes = Vec::new();
        for &(start, end, kind) in &literals {
            if self.by_placeholder.contains_key(&text[start..end]) {
                escapes.push((start, end, kind));
            } else {
                self.reserved.insert(text[start..end].to_string());
            }
        }
        let cuts: Vec<(usize, usize, PiiKind)> = spans
            .iter()
            .map(|s| (byte(s.start), byte(s.end), s.kind))
            .collect();
        // Both lists are sorted by start, so they merge in one pass; an escape inside a
        // value goes with the value.
        let mut merged = Vec::with_capacity(cuts.len() + escapes.len());
        let mut e = escapes.into_iter().peekable();
        for c in cuts {
            while let Some(x) = e.next_if(|x| x.0 < c.0) {
                merged.push(x);
            }
            merged.push(c);
        }
        merged.extend(e);
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, kind) in merged {
            if start < at || end <= start {
                continue; // overlapping or empty: the earlier span already covers it
            }
            out.push_str(&text[at..start]);
            out.push_str(&self.placeholder(kind, &text[start..end]));
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
        let mut p;
        loop {
            *n += 1;
            p = format!("[{}_{}]", label(kind), n);
            if !self.reserved.contains(&p) {
                break;
            }
        }
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
        let longest = self.map.borrow().longest;
        while let Some(i) = rest.find('[') {
            out.push_str(&rest[..i]);
            steps::add(i + 1);
            let tail = &rest[i..];
            // A placeholder is at most `longest` bytes, so only that far is searched for
            // its `]`: searching the whole tail from every `[` made "[[[[…" quadratic.
            let close = tail.bytes().take(longest).position(|c| c == b']');
            steps::add(tail.len().min(longest));
            match close {
                Some(j) => {
                    let cand = &tail[..=j];
                    if let Some(orig) = self.map.borrow().original(cand) {
                        out.push_str(orig);
                        rest = &tail[j + 1..];
                    } else {
                        out.push('[');
                        rest = &tail[1..];
                    }
                }
                None if tail.len() < longest && self.could_start(tail) => {
                    self.pending = tail.to_string();
                    return out;
                }
                None => {
                    out.push('[');
                    rest = &tail[1..];
                }
            }
        }
        steps::add(rest.len());
        out.push_str(rest);
        out
    }

    /// Whether `tail` (starting with `[`) is a prefix of some placeholder: the first
    /// placeholder not below it in sorted order is the only one that can start with it.
    fn could_start(&self, tail: &str) -> bool {
        self.map
            .borrow()
            .by_placeholder
            .range::<str, _>((std::ops::Bound::Included(tail), std::ops::Bound::Unbounded))
            .next()
            .is_some_and(|(p, _)| p.starts_with(tail))
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

    #[test]
    fn literal_placeholders_in_the_text_come_back_as_written() {
        // The user typed what looks like a placeholder: it is never handed out.
        let text = "[EMAIL_1] is not a@b.co, nor is [CREDIT_CARD_2] or [EMAIL_01]";
        let mut map = RedactionMap::new();
        let red = map.redact(text, &detect(text));
        assert_eq!(
            red,
            "[EMAIL_1] is not [EMAIL_2], nor is [CREDIT_CARD_2] or [EMAIL_01]"
        );
        assert_eq!(map.restore(&red), text);
        // A later text of the request holding a placeholder already given out gets
        // that literal replaced too, so restoring it does not put the address there.
        let later = "I meant [EMAIL_2], write to c@d.co";
        let red2 = map.redact(later, &detect(later));
        assert_eq!(red2, "I meant [EMAIL_3], write to [EMAIL_4]");
        assert_eq!(map.restore(&red2), later);
        assert_eq!(map.restore(&red), text);
    }

    #[test]
    fn restoring_a_run_of_brackets_is_linear() {
        let (_, map) = redact("a@b.co", &detect("a@b.co"));
        let text = "[".repeat(50_000) + "[EMAIL_1]";
        crate::steps::take();
        let out = map.restore(&text);
        let steps = crate::steps::take();
        assert_eq!(out, "[".repeat(50_000) + "a@b.co");
        assert!(steps < 30 * text.len() as u64, "{steps} steps");
    }
}
