//! Inputs that once failed — a tester's slow prompts, the property test's and the
//! fuzzers' findings — kept as plain tests so each stays fixed. Slow inputs are judged
//! by counted work (`steps`), never by a clock.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use watershed_policies::privacy::{detect, PiiKind, RedactionMap};
use watershed_policies::steps;

/// The linear-time guard's bound (`tests/privacy_linear.rs`).
const MAX_STEPS_PER_BYTE: u64 = 64;

fn repeated(unit: &str, len: usize) -> String {
    unit.repeat(len / unit.len() + 1)[..len].to_string()
}

/// Detects `text` and returns the spans with the work per byte it took.
fn detect_counted(text: &str) -> (Vec<watershed_policies::PiiSpan>, u64) {
    steps::take();
    let spans = detect(text);
    (spans, steps::take() / text.len() as u64)
}

#[test]
fn card_groups_at_320_kb_are_linear() {
    // Took 48 s before detection was linear: every group restarted the card chain.
    let text = repeated("4111 1111 1111 1111 ", 320_000);
    let (spans, per_byte) = detect_counted(&text);
    assert!(per_byte <= MAX_STEPS_PER_BYTE, "{per_byte} steps per byte");
    // One chain of 64,000 groups: only its last four groups form a card.
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].kind, PiiKind::CreditCard);
}

#[test]
fn digit_pairs_at_320_kb_are_linear() {
    // Passed 60 s before: phones, cards and SSNs each walked the whole chain.
    let (spans, per_byte) = detect_counted(&repeated("12 ", 320_000));
    assert!(per_byte <= MAX_STEPS_PER_BYTE, "{per_byte} steps per byte");
    assert!(spans.is_empty());
}

#[test]
fn dotted_quads_at_320_kb_are_linear() {
    // Took 14 s before: the phone scanner walked every quad after each start, and
    // overlap resolution compared each of the 40,000 hits with every kept one.
    let (spans, per_byte) = detect_counted(&repeated("1.1.1.1 ", 320_000));
    assert!(per_byte <= MAX_STEPS_PER_BYTE, "{per_byte} steps per byte");
    assert_eq!(spans.len(), 40_000);
    assert!(spans
        .iter()
        .all(|s| s.kind == PiiKind::Ip && s.end - s.start == 7));
}

#[test]
fn many_spans_in_non_ascii_text_are_linear() {
    // Character offsets were counted from the start of the text for every span.
    let text = repeated("é anna@example.com ", 400_000);
    let (spans, per_byte) = detect_counted(&text);
    assert!(per_byte <= MAX_STEPS_PER_BYTE, "{per_byte} steps per byte");
    assert_eq!(spans[1].start, 21);
}

#[test]
fn a_literal_placeholder_in_the_text_is_restored_as_written() {
    // Found by tests/redaction_property.rs: the user's own "[EMAIL_1]" came back as
    // the address that was given that placeholder.
    let text = "[EMAIL_1]anna@example.com token=[EMAIL_1]Zq9!x [PHONE_1] +49 30 1234567";
    let mut map = RedactionMap::new();
    let red = map.redact(text, &detect(text));
    assert_eq!(map.restore(&red), text, "{red:?}");
    let second = "again [EMAIL_2] and [PHONE_2]";
    let red2 = map.redact(second, &detect(second));
    assert_eq!(map.restore(&red2), second, "{red2:?}");
}
