//! Secret detectors: cloud access keys, private-key blocks, JWTs, well-known API token
//! formats, and high-entropy values right after words like password, secret or token.

use super::{is_alnum_at, Hit, PiiKind};

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
    s.iter().take_while(|&&c| ok(c)).count()
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

/// Shannon entropy in bits per character.
pub(crate) fn entropy(s: &[u8]) -> f64 {
    let mut counts = [0u32; 256];
    for &c in s {
        counts[usize::from(c)] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// `password: Xy7#kq9!Lm`, `DB_TOKEN="..."`: the value after a secret word, when it
/// looks random (long enough, several character classes, high entropy).
fn keyword_values(text: &str, out: &mut Vec<Hit>) {
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    for word in SECRET_WORDS {
        let mut from = 0;
        while let Some(off) = lower[from..].find(word) {
            let k = from + off;
            from = k + word.len();
            // Skip the rest of the identifier (DB_PASSWORD_PROD), then `:`/`=` and quotes.
            let mut j = k + word.len();
            while j < b.len() && is_token_char(b[j]) {
                j += 1;
            }
            let sep_start = j;
            while j < b.len() && matches!(b[j], b' ' | b'\t' | b'"' | b'\'') {
                j += 1;
            }
            if !matches!(b.get(j), Some(b':' | b'=')) || j - sep_start > 3 {
                continue;
            }
            j += 1;
            if b.get(j) == Some(&b'=') {
                j += 1;
            }
            while j < b.len() && matches!(b[j], b' ' | b'\t' | b'"' | b'\'' | b'`') {
                j += 1;
            }
            let v = j;
            while j < b.len()
                && !b[j].is_ascii_whitespace()
                && !matches!(b[j], b'"' | b'\'' | b'`' | b',' | b';')
            {
                j += 1;
            }
            let value = &b[v..j];
            let classes = [
                value.iter().any(u8::is_ascii_lowercase),
                value.iter().any(u8::is_ascii_uppercase),
                value.iter().any(u8::is_ascii_digit),
                value
                    .iter()
                    .any(|&c| c.is_ascii_punctuation() && c != b'_' && c != b'-'),
            ]
            .iter()
            .filter(|&&x| x)
            .count();
            if value.len() >= 8 && classes >= 2 && entropy(value) >= 2.5 {
                out.push(Hit {
                    kind: PiiKind::Secret,
                    start: v,
                    end: j,
                });
            }
        }
    }
}
