//! Privacy detectors: find personal data and secrets in prompt text and report them as
//! typed spans in character offsets (the `classify` contract), never with their values.
//!
//! Each detector is a small hand-written scanner with a validity check (Luhn, mod-97,
//! SSN ranges, address parsing) so that look-alikes — version strings, dates, order
//! numbers, ISBNs, prices — are not reported. A bare run of digits counts as a phone
//! number or an SSN only beside a context word in one of the supported languages
//! (`context.rs`), and a secret word's value only when it is no placeholder or
//! reference. `tests/privacy_corpus.rs` holds the detectors to sign-off thresholds on a
//! multilingual corpus. No regex engine: the scanners are linear
//! and allocation-light, which keeps classification far under a millisecond.

mod context;
mod numbers;
mod redact;
mod secrets;
mod words;

pub use redact::{redact, RedactionMap, Restorer};

use std::collections::BTreeMap;
use std::fmt;

use crate::level::PrivacyLevel;
use crate::steps;

/// What kind of sensitive value a span holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    /// A cloud key, API token, private key block, JWT, a URL's password, or a
    /// password-like value after a secret word.
    Secret,
    /// An e-mail address.
    Email,
    /// An IBAN with a valid mod-97 checksum.
    Iban,
    /// A Luhn-valid payment card number.
    CreditCard,
    /// A US social security number in the valid ranges.
    Ssn,
    /// A phone number (E.164 or a common national format).
    Phone,
    /// An IPv4 or IPv6 address.
    Ip,
}

impl PiiKind {
    /// Every kind, in priority order (earlier wins when spans overlap).
    pub const ALL: [PiiKind; 7] = [
        PiiKind::Secret,
        PiiKind::Email,
        PiiKind::Iban,
        PiiKind::CreditCard,
        PiiKind::Ssn,
        PiiKind::Phone,
        PiiKind::Ip,
    ];

    /// The detector name used in config and output.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Secret => "secret",
            PiiKind::Email => "email",
            PiiKind::Iban => "iban",
            PiiKind::CreditCard => "credit_card",
            PiiKind::Ssn => "ssn",
            PiiKind::Phone => "phone",
            PiiKind::Ip => "ip",
        }
    }

    /// Parses a detector name.
    pub fn parse(s: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The privacy level a request holding this kind of value has at least:
    /// credentials are restricted; values that identify a person or an account
    /// are confidential; network addresses are internal.
    pub fn default_level(self) -> PrivacyLevel {
        match self {
            PiiKind::Secret => PrivacyLevel::Restricted,
            PiiKind::Email
            | PiiKind::Iban
            | PiiKind::CreditCard
            | PiiKind::Ssn
            | PiiKind::Phone => PrivacyLevel::Confidential,
            PiiKind::Ip => PrivacyLevel::Internal,
        }
    }
}

/// The level a text's detections imply, at least `floor`: the highest of the
/// floor and every detected kind's level.
pub fn level_of(spans: &[PiiSpan], floor: PrivacyLevel) -> PrivacyLevel {
    spans
        .iter()
        .map(|s| s.kind.default_level())
        .fold(floor, PrivacyLevel::max)
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A detected value: its kind and where it is, in character (not byte) offsets,
/// `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PiiSpan {
    /// What was found.
    pub kind: PiiKind,
    /// First character.
    pub start: usize,
    /// One past the last character.
    pub end: usize,
}

/// A candidate in byte offsets, before overlap resolution.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hit {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

/// Runs every detector over `text` and returns non-overlapping spans sorted by start.
pub fn detect(text: &str) -> Vec<PiiSpan> {
    detect_kinds(text, &PiiKind::ALL)
}

/// Runs the named detectors only.
pub fn detect_kinds(text: &str, kinds: &[PiiKind]) -> Vec<PiiSpan> {
    let b = text.as_bytes();
    let mut hits = Vec::new();
    for kind in kinds {
        match kind {
            PiiKind::Secret => secrets::find(text, &mut hits),
            PiiKind::Email => numbers::emails(b, &mut hits),
            PiiKind::Iban => numbers::ibans(b, &mut hits),
            PiiKind::CreditCard => numbers::cards(b, &mut hits),
            PiiKind::Ssn => numbers::ssns(text, &mut hits),
            PiiKind::Phone => numbers::phones(text, &mut hits),
            PiiKind::Ip => numbers::ips(text, &mut hits),
        }
    }
    let kept = keep_non_overlapping(hits);
    to_char_offsets(text, &kept)
}

/// Keeps each hit, in priority order (higher-priority kinds first, longer first), that
/// overlaps none kept before it; returns the kept ones sorted by start.
///
/// The kept hits are disjoint, so ordered by start they are ordered by end too: the
/// only one that can overlap `[s, e)` is the last one starting before `e`. A map from
/// start to end answers that in O(log n), where comparing every hit with every kept
/// one was quadratic in the number of hits.
///
/// Most texts' hits overlap none other, and then every one is kept: that is checked
/// first, in one sort by start, before the sort by priority and the map.
fn keep_non_overlapping(mut hits: Vec<Hit>) -> Vec<Hit> {
    steps::add(hits.len());
    hits.sort_unstable_by_key(|h| (h.start, h.end));
    if hits.windows(2).all(|w| w[0].end <= w[1].start) {
        return hits;
    }
    // Higher-priority kinds first, longer first; keep what does not overlap.
    hits.sort_by_key(|h| (h.kind, std::cmp::Reverse(h.end - h.start), h.start));
    let mut ends: BTreeMap<usize, usize> = BTreeMap::new();
    let mut kept: Vec<Hit> = Vec::new();
    for h in hits {
        let overlaps = ends
            .range(..h.end)
            .next_back()
            .is_some_and(|(_, &end)| end > h.start);
        if !overlaps {
            let end = ends.entry(h.start).or_insert(h.end);
            *end = (*end).max(h.end);
            kept.push(h);
        }
    }
    kept.sort_by_key(|h| h.start);
    kept
}

/// Byte offsets to character offsets in one forward pass: `hits` are sorted and
/// disjoint, so every offset asked for is at or after the one before it.
fn to_char_offsets(text: &str, hits: &[Hit]) -> Vec<PiiSpan> {
    if text.is_ascii() {
        return hits
            .iter()
            .map(|h| PiiSpan {
                kind: h.kind,
                start: h.start,
                end: h.end,
            })
            .collect();
    }
    let b = text.as_bytes();
    let (mut byte, mut chars) = (0usize, 0usize);
    let mut char_at = |target: usize| {
        // Every byte that is not a UTF-8 continuation byte starts a character.
        chars += b[byte..target]
            .iter()
            .filter(|&&c| (c & 0xC0) != 0x80)
            .count();
        steps::add(target - byte);
        byte = target;
        chars
    };
    hits.iter()
        .map(|h| PiiSpan {
            kind: h.kind,
            start: char_at(h.start),
            end: char_at(h.end),
        })
        .collect()
}

/// Whether the byte at `i` (if any) is an ASCII letter or digit: spans must not start or
/// end inside a longer word or number.
pub(crate) fn is_alnum_at(b: &[u8], i: Option<usize>) -> bool {
    i.and_then(|i| b.get(i))
        .is_some_and(u8::is_ascii_alphanumeric)
}
