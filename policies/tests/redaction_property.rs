//! Fixed-seed property test of redaction: on random texts mixing personal data with
//! placeholder-like strings (`[EMAIL_1]`, half placeholders, stray brackets), redacting
//! and then restoring gives the original, streaming the redacted text through a
//! `Restorer` in random chunks gives the same, and a model answer's placeholders are
//! all restored while its other text passes through untouched.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use watershed_policies::privacy::{detect, PiiKind, PiiSpan, RedactionMap, Restorer};

/// xorshift64: small, std-only, and the same sequence on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const PII: &[&str] = &[
    "anna@example.com",
    "bob.k@corp-mail.de",
    "4111 1111 1111 1111",
    "+49 30 1234567",
    "(555) 555-1234",
    "DE89 3704 0044 0532 0130 00",
    "123-45-6789",
    "10.0.12.7",
    "2001:db8::1",
    "AKIAIOSFODNN7EXAMPLE",
    "password: Xy7#kq9!Lm",
    "token=[EMAIL_1]Zq9!x",
    "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
];

const PLACEHOLDER_LIKE: &[&str] = &[
    "[EMAIL_1]",
    "[EMAIL_2]",
    "[PHONE_1]",
    "[CREDIT_CARD_1]",
    "[SECRET_1]",
    "[IP_3]",
    "[SSN_1]",
    "[IBAN_1]",
    "[EMAIL_01]",
    "[EMAIL_",
    "_1]",
    "[",
    "]",
    "[[",
    "[EMAIL_1",
];

const PLAIN: &[&str] = &[
    "hello ",
    " ",
    " and ",
    "é",
    "—",
    "\n",
    "x",
    "1",
    ".",
    ",",
    "Zürich ",
    "order #12 ",
];

fn random_text(rng: &mut Rng) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(24) {
        let part = match rng.below(3) {
            0 => rng.pick(PII),
            1 => rng.pick(PLACEHOLDER_LIKE),
            _ => rng.pick(PLAIN),
        };
        s.push_str(part);
    }
    s
}

/// `text` cut into random pieces at character boundaries.
fn random_chunks<'a>(text: &'a str, rng: &mut Rng) -> Vec<&'a str> {
    let mut cuts: Vec<usize> = (0..rng.below(6))
        .map(|_| rng.below(text.len() + 1))
        .filter(|&c| text.is_char_boundary(c))
        .collect();
    cuts.push(0);
    cuts.push(text.len());
    cuts.sort_unstable();
    cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect()
}

fn streamed(map: &RedactionMap, chunks: &[&str]) -> String {
    let mut r = Restorer::new(map);
    let mut out = String::new();
    for c in chunks {
        out.push_str(&r.push(c));
    }
    out.push_str(&r.finish());
    out
}

#[test]
fn redact_then_restore_is_the_identity_streamed_or_not() {
    let mut rng = Rng(0x0005_EED0_FA11);
    for round in 0..5_000 {
        let mut map = RedactionMap::new();
        // Several texts of one request share one map, as the gateway's messages do.
        let texts: Vec<String> = (0..1 + rng.below(3))
            .map(|_| random_text(&mut rng))
            .collect();
        let mut redacted = Vec::new();
        for t in &texts {
            let spans = detect(t);
            redacted.push(map.redact(t, &spans));
        }
        for (t, red) in texts.iter().zip(&redacted) {
            assert_eq!(&map.restore(red), t, "round {round}: {red:?}");
            let chunks = random_chunks(red, &mut rng);
            assert_eq!(&streamed(&map, &chunks), t, "round {round}: {chunks:?}");
        }
    }
}

#[test]
fn any_spans_round_trip_not_only_detected_ones() {
    let mut rng = Rng(0x0BAD_5EED);
    for round in 0..5_000 {
        let text = random_text(&mut rng);
        let chars = text.chars().count();
        let spans: Vec<PiiSpan> = (0..rng.below(5))
            .map(|_| {
                let a = rng.below(chars + 2);
                let b = rng.below(chars + 2);
                PiiSpan {
                    kind: PiiKind::ALL[rng.below(PiiKind::ALL.len())],
                    start: a.min(b),
                    end: a.max(b),
                }
            })
            .collect();
        let mut map = RedactionMap::new();
        let red = map.redact(&text, &spans);
        assert_eq!(map.restore(&red), text, "round {round}: {spans:?} {red:?}");
    }
}

#[test]
fn every_placeholder_in_an_answer_is_restored_and_other_text_passes_through() {
    let mut rng = Rng(0xA115_3E55);
    for round in 0..5_000 {
        let text = random_text(&mut rng);
        let mut map = RedactionMap::new();
        let red = map.redact(&text, &detect(&text));
        // The placeholders this map knows, read back from the redacted text.
        let known: Vec<String> = red
            .match_indices('[')
            .filter_map(|(i, _)| {
                let end = red[i..].find(']')? + i + 1;
                map.original(&red[i..end]).map(|_| red[i..end].to_string())
            })
            .collect();
        if known.is_empty() {
            continue;
        }
        // An answer: known placeholders between pieces of text that hold no `[`, so
        // the only placeholders in the answer are the ones put there.
        let mut answer = String::new();
        let mut expected = String::new();
        for _ in 0..rng.below(8) {
            if rng.below(2) == 0 {
                let p = &known[rng.below(known.len())];
                answer.push_str(p);
                expected.push_str(map.original(p).unwrap());
            } else {
                let t = random_text(&mut rng).replace('[', "(");
                answer.push_str(&t);
                expected.push_str(&t);
            }
        }
        assert_eq!(map.restore(&answer), expected, "round {round}: {answer:?}");
        let chunks = random_chunks(&answer, &mut rng);
        assert_eq!(
            streamed(&map, &chunks),
            expected,
            "round {round}: {chunks:?}"
        );
    }
}
