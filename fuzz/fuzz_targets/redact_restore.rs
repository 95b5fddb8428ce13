//! Fuzz target for the redaction pair. The input's first eight bytes seed the chunk
//! splits; the rest, as lossy UTF-8 split at NUL into up to four texts of one request,
//! is detected and redacted with one shared map. Then:
//! - restoring each redacted text, whole or streamed in arbitrary chunks, gives the
//!   original back;
//! - a model answer made of the map's placeholders between pieces of arbitrary text is
//!   restored exactly as an independent reference does it: every placeholder in the
//!   answer becomes its value, nothing else changes, so no placeholder the model wrote
//!   reaches the client, streamed or not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use watershed_policies::privacy::{detect, RedactionMap, Restorer};

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn chunks<'a>(text: &'a str, rng: &mut Rng) -> Vec<&'a str> {
    let mut cuts: Vec<usize> = (0..rng.below(8))
        .map(|_| rng.below(text.len() + 1))
        .filter(|&c| text.is_char_boundary(c))
        .collect();
    cuts.extend([0, text.len()]);
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

fn streamed(map: &RedactionMap, parts: &[&str]) -> String {
    let mut r = Restorer::new(map);
    let mut out = String::new();
    for p in parts {
        out.push_str(&r.push(p));
    }
    out.push_str(&r.finish());
    out
}

/// Restoration by its definition: at each position, a known placeholder starting
/// there becomes its value; any other character is copied.
fn reference(map: &RedactionMap, known: &[String], answer: &str) -> String {
    let mut out = String::new();
    let mut rest = answer;
    while let Some(c) = rest.chars().next() {
        match known.iter().find(|p| rest.starts_with(p.as_str())) {
            Some(p) => {
                out.push_str(map.original(p).unwrap_or_default());
                rest = &rest[p.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (seed, body) = data.split_at(data.len().min(8));
    let mut seed_bytes = [0u8; 8];
    seed_bytes[..seed.len()].copy_from_slice(seed);
    let mut rng = Rng(u64::from_le_bytes(seed_bytes) | 1);
    let input = String::from_utf8_lossy(body);
    let texts: Vec<&str> = input.splitn(4, '\0').collect();

    let mut map = RedactionMap::new();
    let redacted: Vec<String> = texts.iter().map(|t| map.redact(t, &detect(t))).collect();
    for (t, red) in texts.iter().zip(&redacted) {
        assert_eq!(map.restore(red), *t, "restore of {red:?}");
        let parts = chunks(red, &mut rng);
        assert_eq!(streamed(&map, &parts), *t, "streamed restore of {parts:?}");
    }

    // The placeholders the map knows, read back from the redacted texts.
    let mut known: Vec<String> = Vec::new();
    for red in &redacted {
        for (i, _) in red.match_indices('[') {
            if let Some(j) = red[i..].find(']') {
                let cand = &red[i..=i + j];
                if map.original(cand).is_some() && !known.iter().any(|k| k == cand) {
                    known.push(cand.to_string());
                }
            }
        }
    }
    if known.is_empty() {
        return;
    }
    // An answer: placeholders between pieces of the input's own text.
    let pieces: Vec<&str> = input.split(' ').collect();
    let mut answer = String::new();
    for _ in 0..1 + rng.below(12) {
        if rng.below(2) == 0 {
            answer.push_str(&known[rng.below(known.len())]);
        } else {
            answer.push_str(pieces[rng.below(pieces.len())]);
        }
    }
    let want = reference(&map, &known, &answer);
    assert_eq!(map.restore(&answer), want, "answer {answer:?}");
    let parts = chunks(&answer, &mut rng);
    assert_eq!(streamed(&map, &parts), want, "streamed answer {parts:?}");
});
