//! Secret detectors: cloud access keys, private-key blocks, JWTs, well-known API token
//! formats, passwords in URLs, and high-entropy values right after words like password,
//! secret, token, Passwort, mot de passe or パスワード (after a colon, or in prose).

use super::{is_alnum_at, words, Hit, PiiKind};
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
    ("xoxe-", 10),
    ("npm_", 30),
    ("whsec_", 24),
    ("AIza", 30),
    ("sk_live_", 16),
    ("rk_live_", 16),
    ("sk_test_", 16),
    ("hf_", 30),
];

const AWS_KEY_PREFIXES: &[&str] = &[
    "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
];

/// How much of an identifier may follow a secret word.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Follow {
    /// The rest of an identifier: `DB_PASSWORD_PROD`, `api_key_id`, `client_secrets`.
    Ident,
    /// Nothing: `auth` is a key of its own, but `Author` and `authority` are not.
    Whole,
}

/// Words whose value is a secret, in the languages the corpus covers. ASCII words are
/// matched case-insensitively, and only where no letter or digit stands before them.
const SECRET_WORDS: &[(&str, Follow)] = &[
    ("password", Follow::Ident),
    ("passwd", Follow::Ident),
    ("pwd", Follow::Whole),
    ("pass", Follow::Whole),
    ("passphrase", Follow::Ident),
    ("passcode", Follow::Ident),
    ("secret", Follow::Ident),
    ("token", Follow::Ident),
    ("api_key", Follow::Ident),
    ("apikey", Follow::Ident),
    ("api-key", Follow::Ident),
    ("access_key", Follow::Ident),
    ("private_key", Follow::Ident),
    ("auth", Follow::Whole),
    ("auth_token", Follow::Ident),
    ("auth-token", Follow::Ident),
    ("authtoken", Follow::Ident),
    ("authorization", Follow::Ident),
    ("credential", Follow::Ident),
    ("passwort", Follow::Ident),
    ("kennwort", Follow::Ident),
    ("mot de passe", Follow::Ident),
    ("mot_de_passe", Follow::Ident),
    ("contraseña", Follow::Ident),
    ("contrasena", Follow::Ident),
    // The text is lowered for ASCII only, so an upper-case key keeps its "Ñ".
    ("contraseÑa", Follow::Ident),
    ("wachtwoord", Follow::Ident),
    ("senha", Follow::Ident),
    ("palavra-passe", Follow::Ident),
    ("पासवर्ड", Follow::Ident),
    ("パスワード", Follow::Ident),
    ("暗証番号", Follow::Ident),
    // "Key" in the other languages; English "key" names too many things that are not
    // secrets ("primary key", "sort_key") to be one of these words.
    ("schlüssel", Follow::Ident),
    ("clé", Follow::Ident),
    ("clave", Follow::Whole),
    ("chiave", Follow::Whole),
    ("sleutel", Follow::Ident),
    ("chave", Follow::Whole),
];

/// Words of prose that join a secret word to its value: "the wifi password is …",
/// "das Kennwort lautet …", "le mot de passe est …", "la contraseña es …".
const CONNECTORS: &[&str] = &[
    "is", "was", "ist", "lautet", "war", "est", "était", "es", "era", "è", "é", "são",
];

/// Japanese separators written right after the word: a full-width colon and the topic
/// and subject particles ("パスワードは…", "パスワード：…").
const JA_SEPARATORS: &[&str] = &["：", "は", "が"];

/// Schemes before a credential in an `Authorization` value.
const AUTH_SCHEMES: &[&str] = &["bearer", "basic", "token", "bot", "digest", "negotiate"];

/// Values that stand for a secret without being one.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "change_me",
    "redacted",
    "password",
    "passwort",
    "secret",
    "example",
    "dummy",
    "placeholder",
    "none",
    "null",
    "undefined",
    "your-password",
    "your_password",
    "yourpassword",
    "your-api-key",
    "your_api_key",
];

/// How far past a secret word its value may start ("the password for the wifi is …").
const MAX_LOOKAHEAD: usize = 64;
/// The most words of prose between a secret word and its connector.
const MAX_FILLERS: usize = 3;
/// The longest value judged as a possible placeholder; longer values are not one.
const MAX_PLACEHOLDER: usize = 128;

fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')
}

/// The bytes a token, an AWS key or a JWT can start with.
const TOKEN_FIRST: [bool; 256] = {
    let mut t = [false; 256];
    let mut k = 0;
    while k < TOKEN_PREFIXES.len() {
        t[TOKEN_PREFIXES[k].0.as_bytes()[0] as usize] = true;
        k += 1;
    }
    let mut k = 0;
    while k < AWS_KEY_PREFIXES.len() {
        t[AWS_KEY_PREFIXES[k].as_bytes()[0] as usize] = true;
        k += 1;
    }
    t[b'e' as usize] = true; // "eyJ"
    t
};

pub(crate) fn find(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    private_keys(text, out);
    for i in 0..b.len() {
        if !TOKEN_FIRST[usize::from(b[i])] {
            continue;
        }
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
    url_passwords(text, out);
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

/// Shannon entropy in bits per character of a text with these byte counts; `present`
/// has bit `c % 64` of word `c / 64` set for every byte `c` whose count is not zero, so
/// only those are visited, in the same ascending order as a walk over all 256.
fn entropy(counts: &[u32; 256], present: &[u64; 4], len: usize) -> f64 {
    let n = len as f64;
    let mut sum = 0.0;
    for (w, &bits) in present.iter().enumerate() {
        let mut bits = bits;
        while bits != 0 {
            let c = counts[w * 64 + bits.trailing_zeros() as usize];
            bits &= bits - 1;
            let p = f64::from(c) / n;
            sum += -p * p.log2();
        }
    }
    sum
}

/// Byte counts of a window of the text that only ever moves forward, so the
/// overlapping values of `password=password=…` share one count instead of each being
/// counted from its start to the common end.
struct Window {
    counts: [u32; 256],
    /// The bytes whose count is not zero, one bit each.
    present: [u64; 4],
    /// Bytes of each character class: lowercase, uppercase, digit, punctuation.
    classes: [u32; 4],
    start: usize,
    end: usize,
}

impl Window {
    fn new() -> Self {
        Window {
            counts: [0; 256],
            present: [0; 4],
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
            let bit = 1u64 << (c % 64);
            if *slot == 0 {
                self.present[usize::from(c / 64)] &= !bit;
            } else {
                self.present[usize::from(c / 64)] |= bit;
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

    fn has_digit(&self) -> bool {
        self.classes[2] > 0
    }

    fn entropy(&self) -> f64 {
        entropy(&self.counts, &self.present, self.end - self.start)
    }
}

/// Whether the value being read ends at `b[j]`: at whitespace, a quote or a list
/// separator, at a non-ASCII byte (a secret value is ASCII: "パスワードはXk9#mP2qです"),
/// or at a written-out line break (`\n` in JSON-escaped text).
fn is_value_end(b: &[u8], j: usize) -> bool {
    let c = b[j];
    c.is_ascii_whitespace()
        || matches!(c, b'"' | b'\'' | b'`' | b',' | b';')
        || !c.is_ascii()
        || (c == b'\\' && matches!(b.get(j + 1), Some(b'n' | b'r' | b't')))
}

/// Whether a value is a reference to a secret, a placeholder or a mask rather than the
/// secret itself: `${DB_PASSWORD}`, `<REDACTED>`, `{{ secret }}`, `%(pw)s`, `********`,
/// `xxx`, `os.environ['…']`, `getenv("…")`, `settings.GITHUB_TOKEN`, `process.env.X`,
/// `OPENAI_API_KEY`, `changeme`; also a URL or a path (`token_url: https://…`,
/// `PWD=/home/…`), which name where something is, not what it is.
pub(crate) fn is_placeholder(value: &[u8]) -> bool {
    if value.len() > MAX_PLACEHOLDER {
        return false;
    }
    steps::add(value.len() + 1);
    let Some(&first) = value.first() else {
        return true;
    };
    let ident_start = |c: u8| c.is_ascii_alphabetic() || c == b'_';
    let ident = |seg: &[u8]| {
        seg.first().is_some_and(|&c| ident_start(c))
            && seg.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
    };
    let dotted_path = value.contains(&b'.') && value.split(|&c| c == b'.').all(ident);
    let env_name = ident_start(first)
        && value.contains(&b'_')
        && value
            .iter()
            .all(|&c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
    let one_char = value.iter().all(|&c| c == first);
    let path = first == b'/' || value.starts_with(b"./") || value.starts_with(b"~/");
    matches!(first, b'$' | b'<' | b'{' | b'%' | b'*' | b'[' | b'(')
        || value.contains(&b'(')
        || value.contains(&b'[')
        || value.windows(3).any(|w| w == b"://")
        || dotted_path
        || env_name
        || one_char
        || path
        || (value.len() <= 4 && value.iter().all(|c| c.eq_ignore_ascii_case(&b'x')))
        || PLACEHOLDERS
            .iter()
            .any(|p| p.as_bytes().eq_ignore_ascii_case(value))
}

/// Where the value after a secret word ending at `from` starts, and whether an explicit
/// separator or connector introduced it (`password: …`, `Passwort ist …`) or it merely
/// follows the word (`use the password Xk9#mP2q`), which asks more of the value. Prose
/// forms are read only after a word of prose (`prose`), not after the end of an
/// identifier like `settings.GITHUB_TOKEN`. Looks at most `MAX_LOOKAHEAD` bytes ahead.
fn value_start(b: &[u8], from: usize, prose: bool) -> Option<(usize, bool)> {
    let limit = (from + MAX_LOOKAHEAD).min(b.len());
    let skip = |mut j: usize, set: &[u8]| {
        while j < limit && set.contains(&b[j]) {
            j += 1;
        }
        j
    };
    let mut j = from;
    // `key: v`, `"key": "v"`, `KEY=v`, `key := v`, `key => v`, `mot de passe : v`.
    let k = skip(j, b" \t\"'");
    if k - j <= 3 && matches!(b.get(k), Some(b':' | b'=')) {
        let mut k = k + 1;
        if matches!(b.get(k), Some(b'=' | b'>')) {
            k += 1;
        }
        let v = skip(k, b" \t\"'`");
        steps::add(v - from + 1);
        return Some((v, true));
    }
    if let Some(sep) = JA_SEPARATORS
        .iter()
        .find(|s| b[j..].starts_with(s.as_bytes()))
    {
        let v = skip(j + sep.len(), b" \t\"'`");
        steps::add(v - from + 1);
        return Some((v, true));
    }
    if !prose {
        return None;
    }
    // Prose: up to `MAX_FILLERS` words, then a connector; or the value right away.
    let mut fillers = 0;
    let found = loop {
        let t = skip(j, b" \t");
        if t == j || t >= limit {
            break None;
        }
        j = t;
        while j < limit && !b[j].is_ascii_whitespace() {
            j += 1;
        }
        let word = &b[t..j];
        let bare = word.strip_suffix(b":").unwrap_or(word);
        if CONNECTORS
            .iter()
            .any(|c| c.as_bytes().eq_ignore_ascii_case(bare))
            || bare.is_empty()
        {
            let v = skip(j, b" \t\"'`");
            break (v < b.len()).then_some((v, true));
        }
        let filler = word.len() <= 16
            && word
                .iter()
                .all(|&c| c.is_ascii_alphabetic() || matches!(c, b'-' | b'\'') || !c.is_ascii());
        if filler && fillers < MAX_FILLERS {
            fillers += 1;
            continue;
        }
        // A word that ends in a colon is the next key ("Passwort:"), not a value.
        break (fillers == 0 && !filler && !word.ends_with(b":")).then_some((t, false));
    };
    steps::add(j - from + 1);
    found
}

/// Skips an `Authorization` scheme ("Bearer ", "Basic ") at `v`, so the credential after
/// it is the value.
fn skip_scheme(b: &[u8], v: usize) -> usize {
    for scheme in AUTH_SCHEMES {
        let e = v + scheme.len();
        if b.len() > e && b[v..e].eq_ignore_ascii_case(scheme.as_bytes()) && b[e] == b' ' {
            let mut k = e;
            while k < b.len() && b[k] == b' ' {
                k += 1;
            }
            steps::add(k - v + 1);
            return k;
        }
    }
    v
}

/// `postgres://app:PASS@db.example.com/app`: the password of a URL's user information is
/// a secret (and the rest of it is no e-mail address). Each authority is walked once, up
/// to the first byte that ends it.
fn url_passwords(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let mut from = 0;
    while let Some(off) = text[from..].find("://") {
        let start = from + off + 3;
        steps::add(off + 3);
        let mut end = start;
        let mut at = None;
        let mut colon = None;
        while end < b.len()
            && !matches!(
                b[end],
                b'/' | b'?' | b'#' | b'"' | b'\'' | b'`' | b'<' | b'>' | b'\\'
            )
            && !b[end].is_ascii_whitespace()
        {
            match b[end] {
                b'@' => at = Some(end),
                b':' if at.is_none() && colon.is_none() => colon = Some(end),
                _ => {}
            }
            end += 1;
        }
        steps::add(end - start + 1);
        from = end.max(start);
        let (Some(at), Some(colon)) = (at, colon) else {
            continue;
        };
        if colon >= at {
            continue;
        }
        let pass = &b[colon + 1..at];
        let scheme_ok = b[..start - 3]
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        if scheme_ok && !pass.is_empty() && !is_placeholder(pass) {
            out.push(Hit {
                kind: PiiKind::Secret,
                start: colon + 1,
                end: at,
            });
        }
    }
}

/// `password: Xy7#kq9!Lm`, `DB_TOKEN="..."`, `the wifi password is …`, `Passwort lautet
/// …`, `パスワードは…`: the value after a secret word, when it looks random (long enough,
/// several character classes, high entropy) and is no placeholder or reference.
///
/// Occurrences of a word in one identifier (`password_password`) end it at the same
/// place and so have the same value: only the first is judged. Values that start inside
/// the previous value end where it ends, and their byte counts slide with a `Window`.
/// Together these keep every byte walked a bounded number of times per word.
fn keyword_values(text: &str, out: &mut Vec<Hit>) {
    let lower = text.to_ascii_lowercase();
    let b = text.as_bytes();
    // One pass finds every word (the search counts its own walk).
    let found = words::find_all(lower.as_bytes(), SECRET_WORDS);
    for (&(word, follow), starts) in SECRET_WORDS.iter().zip(&found) {
        let mut ident = (0, 0);
        let mut window = Window::new();
        for &k in starts {
            // A word inside a longer one ("mypassword", "Author") is not the key.
            if word.is_ascii() && is_alnum_at(b, k.checked_sub(1)) {
                continue;
            }
            let mut j = k + word.len();
            if follow == Follow::Whole && b.get(j).is_some_and(|&c| is_token_char(c)) {
                continue;
            }
            // Skip the rest of the identifier (DB_PASSWORD_PROD).
            if (ident.0..=ident.1).contains(&j) {
                continue;
            }
            let ident_start = j;
            while j < b.len() && is_token_char(b[j]) {
                j += 1;
            }
            steps::add(j - ident_start + 1);
            ident = (ident_start, j);
            // A word of prose stands alone: after a space, a hyphen ("WLAN-Passwort") or a
            // non-ASCII letter, with nothing of an identifier after it.
            let prose = j == ident_start
                && k.checked_sub(1)
                    .map(|p| b[p])
                    .is_none_or(|c| c.is_ascii_whitespace() || c == b'-' || !c.is_ascii());
            let Some((v, explicit)) = value_start(b, j, prose) else {
                continue;
            };
            let v = skip_scheme(b, v);
            let mut j = v;
            if (window.start..=window.end).contains(&v) && window.end > window.start {
                j = window.end;
            } else {
                while j < b.len() && !is_value_end(b, j) {
                    j += 1;
                }
            }
            window.set(b, v, j);
            // Sentence punctuation after the value is not part of it.
            let mut e = j;
            while e > v && matches!(b[e - 1], b'.' | b')' | b']') && j - e < 2 {
                e -= 1;
            }
            // A value with no separator or connector before it ("use the password …") must
            // look more like a password: three classes, one of them digits.
            let classes = window.classes();
            let strong = explicit || (classes >= 3 && window.has_digit());
            // The entropy last: it is the costly test.
            let random = j - v >= 8 && classes >= 2 && strong && window.entropy() >= 2.5;
            // A value that ends in a colon is the next key ("auth: basic password: …").
            let key = b[v..e].ends_with(b":");
            if random && !key && !is_placeholder(&b[v..e]) {
                out.push(Hit {
                    kind: PiiKind::Secret,
                    start: v,
                    end: e,
                });
            }
        }
    }
}
