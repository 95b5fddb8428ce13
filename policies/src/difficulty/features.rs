//! Byte-level featurisation of a prompt for the difficulty classifier.
//!
//! This mirrors `scripts/train_difficulty.py` exactly: ASCII-only lowercasing,
//! words as runs of ASCII alphanumerics or non-ASCII bytes, byte n-grams over the
//! whitespace-collapsed text, FNV-1a 64 over a group tag followed by the n-gram
//! bytes, and the bucket taken from the hash's top bits. Any change here must be
//! made in the script too, and the parity test will say if the two disagree.

use crate::steps;

/// FNV-1a 64 offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Group tags, hashed before the n-gram bytes so groups share one table.
const TAG_WORD: &[u8] = b"w\x00";
const TAG_BIGRAM: &[u8] = b"b\x00";
const TAG_CHAR: &[u8] = b"c\x00";
const TAG_TAIL: &[u8] = b"t\x00";

/// Byte n-gram lengths; the code below relies on them being consecutive.
pub(crate) const CHAR_NS: [usize; 3] = [3, 4, 5];
/// The tail group looks at the last this-many bytes of the collapsed text.
pub(crate) const TAIL_BYTES: usize = 600;
/// How many dense features there are.
pub(crate) const DENSE_LEN: usize = 10;
/// Names of the dense features, in order (the weights file must list the same).
pub(crate) const DENSE_NAMES: [&str; DENSE_LEN] = [
    "log_bytes",
    "log_words",
    "log_lines",
    "frac_digit",
    "frac_upper",
    "frac_code_punct",
    "frac_math",
    "frac_non_ascii",
    "log_questions",
    "mean_word_len",
];

/// Which sparse feature groups a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Groups {
    pub word: bool,
    pub bigram: bool,
    pub char: bool,
    pub tail: bool,
}

/// FNV-1a 64 continuing from `state`.
#[inline]
pub(crate) fn fnv1a64(state: u64, bytes: &[u8]) -> u64 {
    let mut h = state;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

#[inline]
fn tag_state(tag: &[u8]) -> u64 {
    fnv1a64(FNV_OFFSET, tag)
}

#[inline]
fn is_word_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_uppercase() || b.is_ascii_digit() || b >= 0x80
}

#[inline]
fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

#[inline]
fn is_code_punct(b: u8) -> bool {
    matches!(
        b,
        b'{' | b'}'
            | b'('
            | b')'
            | b'['
            | b']'
            | b';'
            | b'='
            | b'<'
            | b'>'
            | b'_'
            | b'`'
            | b'#'
            | b'\\'
            | b'|'
    )
}

#[inline]
fn is_math(b: u8) -> bool {
    matches!(b, b'+' | b'-' | b'*' | b'/' | b'^' | b'%' | b'=')
}

/// Lowercases ASCII letters and collapses whitespace runs to one space, trimmed.
pub(crate) fn collapse(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut pending_space = false;
    for &b in text.as_bytes() {
        if is_ws(b) {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(b' ');
            pending_space = false;
        }
        out.push(b.to_ascii_lowercase());
    }
    steps::add(text.len());
    out
}

/// Calls `f` with each word (a maximal run of word bytes) of `bytes`, lowercased
/// into `scratch`. Words never contain whitespace, so collapsed and raw text
/// yield the same words.
#[inline]
fn for_each_word<'a>(bytes: &'a [u8], mut f: impl FnMut(&'a [u8])) {
    let mut start: Option<usize> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if is_word_byte(b) {
            if start.is_none() {
                start = Some(i);
            }
        } else if let Some(s) = start.take() {
            f(&bytes[s..i]);
        }
    }
    if let Some(s) = start {
        f(&bytes[s..]);
    }
}

/// Receives every hashed feature occurrence: `(group, bucket)`.
pub(crate) trait Sink {
    fn add(&mut self, group: usize, bucket: usize);
}

/// Group indices passed to [`Sink::add`].
pub(crate) const G_WORD: usize = 0;
pub(crate) const G_BIGRAM: usize = 1;
pub(crate) const G_CHAR: usize = 2;
pub(crate) const G_TAIL: usize = 3;

/// Walks every sparse feature occurrence of `text` (already collapsed) and
/// returns the occurrence count of each group, so callers can normalise.
pub(crate) fn walk_sparse(
    collapsed: &[u8],
    bits: u32,
    groups: Groups,
    sink: &mut impl Sink,
) -> [usize; 4] {
    let shift = 64 - bits;
    let mut counts = [0usize; 4];
    if groups.word || groups.bigram {
        let word_state = tag_state(TAG_WORD);
        let bigram_state = tag_state(TAG_BIGRAM);
        let mut prev: Option<&[u8]> = None;
        for_each_word(collapsed, |w| {
            if groups.word {
                sink.add(G_WORD, (fnv1a64(word_state, w) >> shift) as usize);
                counts[G_WORD] += 1;
            }
            if groups.bigram {
                if let Some(p) = prev {
                    let h = fnv1a64(fnv1a64(fnv1a64(bigram_state, p), b" "), w);
                    sink.add(G_BIGRAM, (h >> shift) as usize);
                    counts[G_BIGRAM] += 1;
                }
            }
            prev = Some(w);
        });
    }
    if groups.char {
        let state = tag_state(TAG_CHAR);
        let (min_n, max_n) = (CHAR_NS[0], CHAR_NS[CHAR_NS.len() - 1]);
        let len = collapsed.len();
        // The n-grams starting at one position share their prefix, so the
        // 4- and 5-gram hashes continue from the 3-gram's.
        for start in 0..len.saturating_sub(min_n - 1) {
            let mut h = fnv1a64(state, &collapsed[start..start + min_n]);
            sink.add(G_CHAR, (h >> shift) as usize);
            counts[G_CHAR] += 1;
            for n in min_n + 1..=max_n {
                if start + n > len {
                    break;
                }
                h = fnv1a64(h, &collapsed[start + n - 1..start + n]);
                sink.add(G_CHAR, (h >> shift) as usize);
                counts[G_CHAR] += 1;
            }
        }
    }
    if groups.tail {
        let state = tag_state(TAG_TAIL);
        let tail = &collapsed[collapsed.len().saturating_sub(TAIL_BYTES)..];
        for_each_word(tail, |w| {
            sink.add(G_TAIL, (fnv1a64(state, w) >> shift) as usize);
            counts[G_TAIL] += 1;
        });
    }
    // One pass over the bytes per group, and one step per feature occurrence.
    steps::add(4 * collapsed.len() + counts.iter().sum::<usize>());
    counts
}

/// The dense text statistics, computed on the raw text.
pub(crate) fn dense(text: &str) -> [f64; DENSE_LEN] {
    let raw = text.as_bytes();
    let n = raw.len();
    let (mut digits, mut upper, mut code, mut math, mut non_ascii, mut questions, mut newlines) =
        (0usize, 0usize, 0usize, 0usize, 0usize, 0usize, 0usize);
    for &b in raw {
        if b.is_ascii_digit() {
            digits += 1;
        } else if b.is_ascii_uppercase() {
            upper += 1;
        } else if b >= 0x80 {
            non_ascii += 1;
        }
        if is_code_punct(b) {
            code += 1;
        }
        if is_math(b) {
            math += 1;
        }
        if b == b'?' {
            questions += 1;
        }
        if b == b'\n' {
            newlines += 1;
        }
    }
    let (mut words, mut word_bytes) = (0usize, 0usize);
    for_each_word(raw, |w| {
        words += 1;
        word_bytes += w.len();
    });
    steps::add(2 * n);
    let lines = if n == 0 { 0 } else { newlines + 1 };
    let denom = n.max(1) as f64;
    [
        (n as f64).ln_1p(),
        (words as f64).ln_1p(),
        (lines as f64).ln_1p(),
        digits as f64 / denom,
        upper as f64 / denom,
        code as f64 / denom,
        math as f64 / denom,
        non_ascii as f64 / denom,
        (questions as f64).ln_1p(),
        word_bytes as f64 / words.max(1) as f64,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_published_vectors() {
        assert_eq!(fnv1a64(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn collapse_lowercases_ascii_and_squeezes_whitespace() {
        assert_eq!(
            collapse("  Hello\t\n WORLD  Ünï "),
            "hello world Ünï".as_bytes()
        );
        assert_eq!(collapse(""), b"");
        assert_eq!(collapse(" \n\t "), b"");
    }

    #[test]
    fn words_are_runs_of_alphanumerics_and_non_ascii_bytes() {
        let mut words = Vec::new();
        for_each_word(b"don't stop-2day caf\xc3\xa9!", |w| words.push(w.to_vec()));
        let expected: Vec<&[u8]> = vec![b"don", b"t", b"stop", b"2day", "café".as_bytes()];
        assert_eq!(words, expected);
    }

    struct Count(usize);
    impl Sink for Count {
        fn add(&mut self, _group: usize, _bucket: usize) {
            self.0 += 1;
        }
    }

    #[test]
    fn char_ngram_counts_cover_every_position() {
        let groups = Groups {
            word: false,
            bigram: false,
            char: true,
            tail: false,
        };
        let mut sink = Count(0);
        // 7 bytes: 5 trigrams + 4 four-grams + 3 five-grams.
        let counts = walk_sparse(b"abcdefg", 18, groups, &mut sink);
        assert_eq!(counts[G_CHAR], 12);
        assert_eq!(sink.0, 12);
        let counts = walk_sparse(b"ab", 18, groups, &mut sink);
        assert_eq!(counts[G_CHAR], 0);
    }

    #[test]
    fn dense_statistics_of_a_small_text() {
        let d = dense("Is 2+2=4?\nYes");
        assert_eq!(d[0], 13f64.ln_1p());
        assert_eq!(d[1], 5f64.ln_1p()); // is 2 2 4 yes
        assert_eq!(d[2], 2f64.ln_1p());
        assert_eq!(d[3], 3.0 / 13.0);
        assert_eq!(d[4], 2.0 / 13.0);
        assert_eq!(d[5], 1.0 / 13.0); // '='
        assert_eq!(d[6], 2.0 / 13.0); // '+', '='
        assert_eq!(d[8], 1f64.ln_1p());
    }
}
