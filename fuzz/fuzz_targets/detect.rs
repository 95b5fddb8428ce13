//! Fuzz target: any bytes, read as lossy UTF-8, through `detect`. It must not panic;
//! its spans must be in bounds, non-empty, sorted and disjoint; and its counted work
//! must stay linear in the text's length, so a slow input fails here even before
//! libFuzzer's per-input timeout does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watershed_policies::privacy::detect;
use watershed_policies::steps;

/// The linear-time guard's bound (tests/privacy_linear.rs), plus room for tiny inputs.
const MAX_STEPS_PER_BYTE: u64 = 64;
const SLACK: u64 = 4_096;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    steps::take();
    let spans = detect(&text);
    let work = steps::take();
    assert!(
        work <= MAX_STEPS_PER_BYTE * text.len() as u64 + SLACK,
        "{work} steps for {} bytes",
        text.len()
    );
    let chars = text.chars().count();
    let mut prev_end = 0;
    for s in &spans {
        assert!(s.start < s.end, "empty span {s:?}");
        assert!(
            s.end <= chars,
            "span {s:?} past the end ({chars} characters)"
        );
        assert!(
            s.start >= prev_end,
            "spans overlap or are unsorted: {spans:?}"
        );
        prev_end = s.end;
    }
    // Character offsets map to byte offsets on character boundaries, so the span's
    // text can be sliced out.
    let bytes: Vec<usize> = text
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(text.len()))
        .collect();
    for s in &spans {
        let (a, b) = (bytes[s.start], bytes[s.end]);
        assert!(text.is_char_boundary(a) && text.is_char_boundary(b));
        assert!(!text[a..b].is_empty());
    }
});
