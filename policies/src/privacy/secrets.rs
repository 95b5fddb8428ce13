//! Secret detectors: cloud access keys, private-key blocks, JWTs, well-known API token
//! formats, and high-entropy values right after words like password, secret or token.

use super::{is_alnum_at, Hit, PiiKind};
use crate::steps;

/// Token prefixes with the character class and minimum length of what follows.
const TOKEN_PREFIXES: &[(&str, usize)] = &[
    ("sk-ant-", 20),
    ("sk-proj-", 20),
    ("sk-", 20),
    ("ghp_", 30),
    ("gho_", 30),
    ("ghu_", 30),
    ("ghs_", 30),
    ("ghr_", 30),
    ("github_pat_", 22),
    ("glpat-", 20),
    ("xoxb-", 10),
    ("xoxp-", 10),
    ("xoxa-", 10),
    ("xoxr-", 10),
    ("xoxs-", 10),
    ("AIza", 30),
    ("sk_live_", 16),
    ("rk_live_", 16),
    ("sk_test_", 16),
    ("hf_", 30),
];

const AWS_KEY_PREFIXES: &[&str] = &[
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
];

const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "auth",
    "credential",
    "passphrase",
];

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')
}

pub(crate) fn find(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    private_keys(text, out);
    for i in 0..b.len() {
        let word_start = i == 0 || !is_token_char(b[i - 1]);
        if !word_start || !b[i].is_ascii_alphabetic() {
            continue;
        }
        let rest = &text[i..];
        if let Some(len) = token(rest) {
            out.push(Hit {
                kind: PiiKind::Secret,
                start: i,
                end: i + len,
            });
        } else if let Some(len) = aws_key(rest) {
            out.push(Hit {
                kind: PiiKind::Secret,
                start: i,
                end: i + len,
            });
        } else if let Some(len) = jwt(rest) {
            out.push(Hit {
                kind: PiiKind::Secret,
                start: i,
                end: i + len,
            });
        }
    }
    keyword_values(text, out);
}

fn run_len(s: &[u8], ok: impl Fn(u8) -> bool) -> usize {
    let n = s.iter().take_while(|&&c| ok(c)).count();
    steps::add(n + 1);
    n
}

fn token(rest: &str) -> Option<usize> {
    let (prefix, min) = TOKEN_PREFIXES.iter().find(|(p, _)| rest.starts_with(p))?;
    let body = run_len(&rest.as_bytes()[prefix.len()..], is_token_char);
    let tail = &rest.as_bytes()[prefix.len()..prefix.len() + body];
    // A real token mixes letters and digits; "sk-learn-is-a-library" does not.
    let mixed = tail.iter().any(u8::is_ascii_digit) && tail.iter().any(u8::is_ascii_alphabetic);
    (body >= *min && mixed).then_some(prefix.len() + body)
}

fn aws_key(rest: &str) -> Option<usize> {
    let b = rest.as_bytes();
    if b.len() < 20 || !AWS_KEY_PREFIXES.iter().any(|p| rest.starts_with(p)) {
        return None;
    }
    let ok = b[4..20]
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    (ok && !is_alnum_at(b, Some(20))).then_some(20)
}

fn jwt(rest: &str) -> Option<usize> {
    if !rest.starts_with("eyJ") {
        return None;
    }
    let b = rest.as_bytes();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-');
    let h = run_len(b, b64);
    if h < 10 || b.get(h) != Some(&b'.') {
        return None;
    }
    let p = run_len(&b[h + 1..], b64);
    if p < 10 || b.get(h + 1 + p) != Some(&b'.') {
        return None;
    }
    let s = run_len(&b[h + 2 + p..], b64);
    Some(h + 2 + p + s)
}

fn private_keys(text: &str, out: &mut Vec<Hit>) {
    let mut from = 0;
    while let Some(off) = text[from..].find("-----BEGIN ") {
        let start = from + off;
        steps::add(off + 11);
        let header_end = text[start + 11..].find("-----").map(|e| start + 11 + e + 5);
        let Some(header_end) = header_end else { break };
        if !text[start..header_end].contains("PRIVATE KEY") {
            from = header_end;
            continue;
        }
        // Up to the END line, or to the end of the text when it was cut off.
        let end = text[header_end..]
            .find("-----END ")
            .and_then(|e| {
                let s = header_end + e;
                text[s + 9..].find("-----").map(|x| s + 9 + x + 5)
            })
            .unwrap_or(text.len());
        out.push(Hit {
            kind: PiiKind::Secret,
            start,
            end,
        });
        from = end;
    }
}

/// Shannon entropy in bits per character of a text with these byte counts.
fn entropy(counts: &[u32; 256], len: usize) -> f64 {
    let n = len as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// Byte counts of a window of the text that only ever moves forward, so the
/// overlapping values of `password=password=…` share one count instead of each being
/// counted from its start to the common end.
struct Window {
    counts: [u32; 256],
    /// Bytes of each character class: lowercase, uppercase, digit, punctuation.
    classes: [u32; 4],
    start: usize,
    end: usize,
}

impl Window {
    fn new() -> Self {
        Window {
            counts: [0; 256],
            classes: [0; 4],
            start: 0,
            end: 0,
        }
    }

    fn class(c: u8) -> Option<usize> {
        if c.is_ascii_lowercase() {
            Some(0)
        } else if c.is_ascii_uppercase() {
            Some(1)
        } else if c.is_ascii_digit() {
            Some(2)
        } else if c.is_ascii_punctuation() && c != b'_' && c != b'-' {
            Some(3)
        } else {
            None
        }
    }

    fn count(&mut self, bytes: &[u8], add: bool) {
        steps::add(bytes.len());
        for &c in bytes {
            let slot = &mut self.counts[usize::from(c)];
            let class = Self::class(c).map(|k| &mut self.classes[k]);
            if add {
                *slot += 1;
                if let Some(k) = class {
                    *k += 1;
                }
            } else {
                *slot -= 1;
                if let Some(k) = class {
                    *k -= 1;
                }
            }
        }
    }

    /// Moves the window to `b[start..end]`; `start` must not be before the window's.
    fn set(&mut self, b: &[u8], start: usize, end: usize) {
        if (self.start..=self.end).contains(&start) && end == self.end {
            self.count(&b[self.start..start], false);
        } else {
            self.count(&b[self.start..self.end], false);
            self.count(&b[start..end], true);
        }
        self.start = start;
        self.end = end;
    }

    fn classes(&self) -> usize {
        self.classes.iter().filter(|&&n| n > 0).count()
    }

    fn entropy(&self) -> f64 {
        entropy(&self.counts, self.end - self.start)
    }
}

fn is_value_end(c: u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'"' | b'\'' | b'`' | b',' | b';')
}

/// `password: Xy7#kq9!Lm`, `DB_TOKEN="..."`: the value after a secret word, when it
/// looks random (long enough, several character classes, high entropy).
///
/// Occurrences of a word in one identifier (`password_password`) end it at the same
/// place and so have the same value: only the first is judged. Values that start inside
/// the previous value end where it ends, and their byte counts slide with a `Window`.
/// Together these keep every byte walked a bounded number of times per word.
fn keyword_values(text: &str, out: &mut Vec<Hit>) {
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    for word in SECRET_WORDS {
        let mut from = 0;
        let mut ident = (0, 0);
        let mut window = Window::new();
        loop {
            // The search walks the rest of the text whether or not it finds the word.
            let Some(off) = lower[from..].find(word) else {
                steps::add(lower.len() - from);
                break;
            };
            let k = from + off;
            steps::add(off + word.len());
            from = k + word.len();
            // Skip the rest of the identifier (DB_PASSWORD_PROD), then `:`/`=` and quotes.
            let mut j = k + word.len();
            if (ident.0..=ident.1).contains(&j) {
                continue;
            }
            let ident_start = j;
            while j < b.len() && is_token_char(b[j]) {
                j += 1;
            }
            steps::add(j - ident_start + 1);
            ident = (ident_start, j);
            let sep_start = j;
            while j < b.len() && j - sep_start <= 3 && matches!(b[j], b' ' | b'\t' | b'"' | b'\'') {
                j += 1;
            }
            if !matches!(b.get(j), Some(b':' | b'=')) || j - sep_start > 3 {
                continue;
            }
            j += 1;
            if b.get(j) == Some(&b'=') {
                j += 1;
            }
            let quotes = j;
            while j < b.len() && matches!(b[j], b' ' | b'\t' | b'"' | b'\'' | b'`') {
                j += 1;
            }
            steps::add(j - quotes + 1);
            let v = j;
            if (window.start..=window.end).contains(&v) && window.end > window.start {
                j = window.end;
            } else {
                while j < b.len() && !is_value_end(b[j]) {
                    j += 1;
                }
            }
            window.set(b, v, j);
            if j - v >= 8 && window.classes() >= 2 && window.entropy() >= 2.5 {
                out.push(Hit {
                    kind: PiiKind::Secret,
                    start: v,
                    end: j,
                });
            }
        }
    }
}
