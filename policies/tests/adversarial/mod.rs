//! Adversarial inputs for the privacy detectors and the difficulty classifier, shared by
//! the linear-time guard test (`tests/privacy_linear.rs`) and the `detectors` benchmark:
//! each family repeats or stretches a pattern that once made some scanner walk the text
//! again from every candidate, plus near-misses of every detector and ordinary text.

/// How a family's text is made.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// The unit repeated.
    Repeat(&'static str),
    /// One long token of base64-like characters after a prefix.
    Token(&'static str),
    /// Ordinary prose and code with personal data in it.
    Mixed,
}

/// One adversarial family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub name: &'static str,
    pub shape: Shape,
}

const fn rep(name: &'static str, unit: &'static str) -> Family {
    Family {
        name,
        shape: Shape::Repeat(unit),
    }
}

/// Every family, in the order the benchmark prints them.
pub const FAMILIES: &[Family] = &[
    rep("card groups", "4111 1111 1111 1111 "),
    rep("digit pairs", "12 "),
    rep("dotted quads", "1.1.1.1 "),
    rep("dotted chain", "1.1."),
    rep("@ run", "@"),
    rep("a@b", "a@b"),
    rep("emails", "anna@example.com "),
    rep("emails, non-ASCII", "é anna@example.com "),
    rep(":: run", "::"),
    rep("hex-colon run", "ab12:"),
    rep("IPv6 addresses", "fe80::1 "),
    Family {
        name: "base64 token",
        shape: Shape::Token(""),
    },
    Family {
        name: "sk- token",
        shape: Shape::Token("sk-proj-"),
    },
    rep("JWT segments", "eyJhbGciOiJIUzI1."),
    rep("password=", "password="),
    rep("secret words", "password_token_"),
    rep("AKIA", "AKIA"),
    rep("DE89", "DE89 "),
    rep("+1 555", "+1 555 "),
    rep("digits-dashes", "1-2-3-"),
    rep("SSN chain", "123-45-6789-"),
    rep("BEGIN run", "-----BEGIN "),
    rep("key without END", "-----BEGIN PRIVATE KEY-----\n"),
    rep("[ run", "["),
    rep("near: email", "anna@example.c "),
    rep("near: card", "4111111111111112 "),
    rep("near: IBAN", "DE89370400440532013001 "),
    rep("near: SSN", "666-12-3456 "),
    rep("near: phone", "(555) 555-123 "),
    rep("near: IPv4", "version 1.2.3.4 256.1.1.1 "),
    rep("near: IPv6", "2001:db8::g "),
    rep("near: secret", "token: aaaaaaaa sk-learn-is-a-library "),
    rep("near: AWS key", "AKIAIOSFODNN7EXAMPL "),
    Family {
        name: "mixed text",
        shape: Shape::Mixed,
    },
    // The context words, prose keywords and URL passwords of the quality work.
    rep("digit singles", "1 "),
    rep("phone words", "Telefon 0170 "),
    rep("phone words after", "98765 43210 पर कॉल "),
    rep("SSN words", "SSN 123456789 "),
    rep("prose password", "the password for the wifi is x "),
    rep("password fillers", "password password password "),
    rep("ja password", "パスワードは"),
    rep("URL authorities", "postgres://a:b@"),
    rep("URL without end", "://a:"),
    rep("placeholders", "password: ${DB_PASSWORD} "),
    rep("escaped breaks", "password: Xk9#mP2q\\n"),
    rep("auth schemes", "Authorization: Bearer "),
];

/// Paragraphs of the mixed family, cycled.
const MIXED: &[&str] = &[
    "The quarterly report shows revenue growth of 12% across the three regions, but the \
     margin fell because freight costs doubled after the port closures (see v2.4.1 notes). ",
    "Please contact anna.schmidt@example.com or call +49 30 1234567 about invoice \
     ORD-2024-118233, dated 2024-03-11, total €1,299.00 incl. VAT. ",
    "```python\ndef rolling_mean(xs, k):\n    return [sum(xs[i:i + k]) / k for i in range(len(xs) - k + 1)]\n```\n",
    "Server 10.0.12.7 rejected the key AKIAIOSFODNN7EXAMPLE; db password: Xy7#kq9!Lm2 \
     was rotated. Card on file 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00. ",
    "Zoë wrote from Zürich — „Grüße“ — asking whether 2001:db8::1 is reachable and \
     why SSN 123-45-6789 appears in the export. ",
];

/// A small fixed-seed generator, so every run builds the same texts.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The family's text, `len` bytes long (a few less where a character would be cut).
pub fn text(family: &Family, len: usize) -> String {
    let mut s = String::with_capacity(len + 64);
    match family.shape {
        Shape::Repeat(unit) => {
            while s.len() < len {
                s.push_str(unit);
            }
        }
        Shape::Token(prefix) => {
            const B64: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-";
            let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
            s.push_str(prefix);
            while s.len() < len {
                s.push(char::from(B64[(rng.next() % B64.len() as u64) as usize]));
            }
        }
        Shape::Mixed => {
            for p in MIXED.iter().cycle() {
                if s.len() >= len {
                    break;
                }
                s.push_str(p);
            }
        }
    }
    let mut end = len.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s
}
