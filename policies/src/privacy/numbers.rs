//! Detectors for structured identifiers: e-mail, IBAN, payment card, SSN, phone, IP.
//! Each scanner finds candidates by shape, then keeps only those that pass the
//! identifier's own validity rule (checksum, ranges, address syntax).

use std::net::Ipv6Addr;

use super::context::{Context, PHONE_WORDS, SSN_WORDS};
use super::{is_alnum_at, Hit, PiiKind};
use crate::steps;

fn before(i: usize) -> Option<usize> {
    i.checked_sub(1)
}

/// Digit groups starting at `i`, joined by single separators from `seps`; all joins must
/// use the same separator. Returns the end offset and the separator, with each group's
/// length in `groups` (a buffer the caller reuses, so there is no allocation per
/// start), or `None` as soon as the chain holds more than `max_digits` digits: no
/// identifier a caller looks for is longer, and stopping there keeps the scan from each
/// start position short, so a text of many joined groups ("4111 1111 …") is linear.
fn digit_chain(
    b: &[u8],
    i: usize,
    seps: &[u8],
    max_digits: usize,
    groups: &mut Vec<usize>,
) -> Option<(usize, Option<u8>)> {
    groups.clear();
    let mut sep_used: Option<u8> = None;
    let mut digits = 0;
    let mut j = i;
    let chain = loop {
        let start = j;
        while j < b.len() && b[j].is_ascii_digit() && digits <= max_digits {
            j += 1;
            digits += 1;
        }
        if digits > max_digits {
            break None;
        }
        groups.push(j - start);
        let next_is_digit = b.get(j + 1).is_some_and(u8::is_ascii_digit);
        match b.get(j) {
            Some(&s) if seps.contains(&s) && next_is_digit && sep_used.is_none_or(|u| u == s) => {
                sep_used = Some(s);
                j += 1;
            }
            _ => break Some((j, sep_used)),
        }
    };
    steps::add(j - i + 1);
    chain
}

/// Starts of digit runs that are not inside a longer word or number.
fn number_starts(b: &[u8]) -> impl Iterator<Item = usize> + '_ {
    (0..b.len()).filter(move |&i| number_start(b, i))
}

/// Whether a digit run that is not inside a longer word or number starts at `i`.
fn number_start(b: &[u8], i: usize) -> bool {
    b[i].is_ascii_digit()
        && !is_alnum_at(b, before(i))
        // "1.2.3.4.5" and "12-34" chains are judged from their first group only.
        && !(i >= 2 && matches!(b[i - 1], b'.' | b'-') && b[i - 2].is_ascii_digit())
}

fn digits_of(b: &[u8], start: usize, end: usize) -> Vec<u8> {
    steps::add(end - start);
    b[start..end]
        .iter()
        .filter(|c| c.is_ascii_digit())
        .map(|c| c - b'0')
        .collect()
}

/// Luhn checksum over digit values.
pub(crate) fn luhn_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    matches!(sum % 10, 0)
}

/// Whether the number starts with an issuer prefix of a major card network.
fn card_prefix(d: &[u8]) -> bool {
    let n = |k: usize| d.iter().take(k).fold(0u32, |a, &x| a * 10 + u32::from(x));
    let len = d.len();
    match d.first() {
        Some(4) => matches!(len, 13 | 16 | 19),                // Visa
        Some(5) => (51..=55).contains(&n(2)) && len == 16,     // Mastercard
        Some(2) => (2221..=2720).contains(&n(4)) && len == 16, // Mastercard
        Some(3) => {
            matches!(n(2), 34 | 37) && len == 15                       // Amex
            || (3528..=3589).contains(&n(4)) && (16..=19).contains(&len)      // JCB
            || matches!(n(2), 36 | 38 | 30) && (14..=19).contains(&len)
        } // Diners
        Some(6) => {
            (n(4) == 6011 || n(2) == 65 || (644..=649).contains(&n(3))) && (16..=19).contains(&len)
        }
        _ => false,
    }
}

/// The longest card number (Visa, JCB, Diners and Discover go up to nineteen digits).
const MAX_CARD_DIGITS: usize = 19;

/// Payment card numbers: 13 to 19 digits with a card network's prefix and a valid Luhn
/// checksum, written together or in groups joined by single spaces or dashes, one kind
/// of join per number.
///
/// A card may start at any digit group that starts a number, and it runs through the
/// following groups as long as they keep the join after its first group. Walking that
/// chain again from every group made long runs of short groups ("1 1 1 …") cost up to
/// nineteen groups at each of them; instead each maximal chain of joined groups is
/// walked once, keeping only its last groups that hold at most `MAX_CARD_DIGITS` digits
/// together, and every start among them is judged when its run of equal joins ends.
pub(crate) fn cards(b: &[u8], out: &mut Vec<Hit>) {
    // The last groups of the current run of equal joins, as (start, end), from `lo` on;
    // together they hold `digits` digits, at most `MAX_CARD_DIGITS` (a longer number is
    // no card).
    let mut window: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        // A chain of digit groups starts at `i`; `join` is the separator of its current
        // run of equal joins.
        window.clear();
        let (mut lo, mut digits) = (0, 0);
        let mut join: Option<u8> = None;
        let mut j = i;
        loop {
            let g = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if lo >= 64 {
                window.drain(..lo);
                lo = 0;
            }
            window.push((g, j));
            digits += j - g;
            while digits > MAX_CARD_DIGITS {
                let (s, e) = window[lo];
                lo += 1;
                digits -= e - s;
            }
            let next = b.get(j).copied().filter(|&s| {
                (s == b' ' || s == b'-') && b.get(j + 1).is_some_and(u8::is_ascii_digit)
            });
            match next {
                Some(s) if join.is_none_or(|u| u == s) => {
                    join = Some(s);
                    j += 1;
                }
                Some(s) => {
                    // The run of `join`s ends with this group, which begins the next run:
                    // every earlier start of the run ends here.
                    match window.last().copied().filter(|_| lo < window.len()) {
                        Some((gs, ge)) => {
                            card_starts(b, &window[lo..window.len() - 1], j, digits, out);
                            window.clear();
                            window.push((gs, ge));
                            digits = ge - gs;
                        }
                        // The group alone is longer than any card.
                        None => {
                            window.clear();
                            digits = 0;
                        }
                    }
                    lo = 0;
                    join = Some(s);
                    j += 1;
                }
                None => {
                    card_starts(b, &window[lo..], j, digits, out);
                    break;
                }
            }
        }
        steps::add(j - i + 1);
        i = j;
    }
}

/// Judges a card number from each group of `groups` that starts a number, through the
/// last group, which ends at `end`; `digits` is how many digits `groups` hold together.
fn card_starts(b: &[u8], groups: &[(usize, usize)], end: usize, digits: usize, out: &mut Vec<Hit>) {
    if is_alnum_at(b, Some(end)) {
        return;
    }
    let mut total = digits;
    for &(i, e) in groups {
        let len = total;
        total -= e - i;
        if len < 13 {
            break;
        }
        // A leading `+` is a country code: "+4915221559094" is a phone, never a card.
        if len > MAX_CARD_DIGITS || !number_start(b, i) || (i > 0 && b[i - 1] == b'+') {
            continue;
        }
        let d = digits_of(b, i, end);
        if card_prefix(&d) && luhn_valid(&d) {
            out.push(Hit {
                kind: PiiKind::CreditCard,
                start: i,
                end,
            });
        }
    }
}

/// An SSN is three, two and four digits.
const SSN_DIGITS: usize = 9;

/// Social security numbers: three, two and four digits joined by dashes or spaces, or the
/// nine digits written together when a word like "SSN" stands beside them (alone, a
/// nine-digit run is far more often an order number). Either way in the valid ranges.
pub(crate) fn ssns(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let mut groups = Vec::new();
    let mut context: Option<Context> = None;
    for i in number_starts(b) {
        // Only a first group of three digits and a separator, or nine digits alone, can
        // start one; checking that first keeps long runs of other numbers cheap.
        let shaped_start = b
            .get(i..i + 4)
            .is_some_and(|s| s[..3].iter().all(u8::is_ascii_digit) && matches!(s[3], b'-' | b' '));
        let run = b[i..]
            .iter()
            .take(SSN_DIGITS + 1)
            .take_while(|c| c.is_ascii_digit())
            .count();
        steps::add(run + 1);
        let starts = shaped_start || run == SSN_DIGITS;
        if !starts {
            continue;
        }
        let Some((end, sep)) = digit_chain(b, i, b"- ", SSN_DIGITS, &mut groups) else {
            continue;
        };
        if is_alnum_at(b, Some(end)) {
            continue;
        }
        let shaped = groups == [3, 2, 4] && sep.is_some();
        let compact = groups == [9] && {
            let ctx = context
                .get_or_insert_with(|| Context::find(text, &text.to_ascii_lowercase(), SSN_WORDS));
            ctx.near(b, i, end)
        };
        if !shaped && !compact {
            continue;
        }
        let d = digits_of(b, i, end);
        let num = |r: std::ops::Range<usize>| d[r].iter().fold(0u32, |a, &x| a * 10 + u32::from(x));
        let (area, group, serial) = (num(0..3), num(3..5), num(5..9));
        if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 {
            out.push(Hit {
                kind: PiiKind::Ssn,
                start: i,
                end,
            });
        }
    }
}

/// The most digits any accepted phone format has (E.164's fifteen).
const MAX_PHONE_DIGITS: usize = 15;

/// How the groups of a phone candidate are joined, for the national-format rules.
#[derive(Default, Clone, Copy)]
struct Joins {
    /// Separator runs between groups.
    count: usize,
    /// Some join holds a dot ("06.12.34.56.78").
    dot: bool,
    /// Some join holds no dot.
    not_dot: bool,
    /// Some join holds a slash ("0179/56734631").
    slash: bool,
    /// A join after the first holds a slash.
    slash_later: bool,
}

impl Joins {
    /// Dates and times mix joins ("01.02.2026 10"); phone numbers keep one kind, except
    /// that a slash only ever follows the trunk prefix. Dotted numbers are phone numbers
    /// only in pairs of digits ("06.12.34.56.78"): a dotted quad is an address or a
    /// version.
    fn consistent(&self, groups: &[usize]) -> bool {
        let mixed_dots = self.dot && self.not_dot;
        !mixed_dots
            && !self.slash_later
            && (!self.dot || (groups.len() >= 4 && groups[1..].iter().all(|&g| g == 2)))
    }
}

/// Phone numbers: international (a leading `+` and 8 to 15 digits, with "(0)" allowed),
/// North American (`(415) 555-0132`, `415-555-0132`), national numbers with a trunk `0`
/// in groups (`0179 04198780`, `01 70 51 81 69`, `03-1234-5678`, `(11) 91234-5678`), and
/// any run of 9 to 12 digits — bare or grouped — that a phone word stands beside
/// (`Telefon: 0170518169`, `móvil 612 34 56 78`, `98765 43210 पर कॉल करें`).
///
/// A maximal chain of digit groups is walked once; every position in it where a number
/// may start is then judged on the rest of the chain, which is only read when it holds
/// at most `MAX_PHONE_DIGITS` digits (one more for a "(0)"): every format is shorter.
/// Walking the chain again from each start made long runs of short groups ("1 1 1 …")
/// cost the chain's length, bounded but large, at every one of its groups.
pub(crate) fn phones(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let mut parts: Vec<Part> = Vec::new();
    let mut suffix: Vec<usize> = Vec::new();
    let mut groups: Vec<usize> = Vec::new();
    let mut context: Option<Context> = None;
    let mut i = 0;
    while i < b.len() {
        if !phone_start(b, i) {
            i += 1;
            continue;
        }
        // The maximal chain from `i`: digit groups joined by runs of at most two
        // separators.
        // Only the chain's last parts, from `lo` on, that hold at most
        // `MAX_PHONE_DIGITS + 1` digits together can start a number: earlier ones are
        // dropped as the walk goes, so a long chain is not kept whole. `dropped` parts
        // were removed from the front of `parts`.
        parts.clear();
        let (mut lo, mut dropped, mut digits) = (0, 0, 0);
        let mut j = i + usize::from(b[i] == b'+');
        while j < b.len() {
            let run_start = j;
            while j < b.len()
                && matches!(b[j], b' ' | b'-' | b'.' | b'/' | b'(' | b')')
                && j - run_start < 2
            {
                j += 1;
            }
            let g = j;
            while j < b.len() && b[j].is_ascii_digit() {
                j += 1;
            }
            if j == g {
                break;
            }
            if lo >= 64 {
                parts.drain(..lo);
                dropped += lo;
                lo = 0;
            }
            parts.push(Part {
                run: run_start,
                start: g,
                end: j,
            });
            digits += j - g;
            while digits > MAX_PHONE_DIGITS + 1 {
                digits -= parts[lo].end - parts[lo].start;
                lo += 1;
            }
        }
        steps::add(j - i + 1);
        let Some(last) = parts.last() else {
            i += 1;
            continue;
        };
        let chain_end = last.end;
        // Digits from each kept group to the end of the chain.
        suffix.clear();
        suffix.resize(parts.len() + 1, 0);
        for k in (lo..parts.len()).rev() {
            suffix[k] = suffix[k + 1] + (parts[k].end - parts[k].start);
        }
        steps::add(parts.len() - lo);
        let mut free = i;
        for k in lo..parts.len() {
            // Where a number may start at this group: the chain's own start, else an
            // opening parenthesis just before the group, then the group's first digit.
            let first = if dropped + k == 0 {
                Some(i)
            } else {
                parts[k].start.checked_sub(1).filter(|&p| b[p] == b'(')
            };
            let digit = Some(parts[k].start).filter(|&d| first != Some(d));
            for cand in [first, digit].into_iter().flatten() {
                if suffix[k] > MAX_PHONE_DIGITS + 1 || cand < free || !phone_start(b, cand) {
                    continue;
                }
                let mut ctx = |start: usize, end: usize| {
                    context
                        .get_or_insert_with(|| {
                            Context::find(text, &text.to_ascii_lowercase(), PHONE_WORDS)
                        })
                        .near(b, start, end)
                };
                if let Some(end) = judge(b, cand, &parts[k..], &mut groups, &mut ctx) {
                    out.push(Hit {
                        kind: PiiKind::Phone,
                        start: cand,
                        end,
                    });
                    free = end;
                    break;
                }
            }
        }
        i = chain_end.max(i + 1);
    }
}

/// One digit group of a phone candidate: where the separators before it begin, and its
/// digits.
struct Part {
    run: usize,
    start: usize,
    end: usize,
}

/// Whether a phone number may start at `i`: a `+` and a digit, an area code in
/// parentheses, or a digit, not inside a longer word, number or reference.
fn phone_start(b: &[u8], i: usize) -> bool {
    let c = b[i];
    let paren = |n: usize| {
        b.get(i + n + 1) == Some(&b')')
            && b.len() > i + n
            && b[i + 1..i + 1 + n].iter().all(u8::is_ascii_digit)
    };
    let starts = (c == b'+' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        || (c == b'(' && (2..=5).any(paren))
        || c.is_ascii_digit();
    let prev_ok = !before(i).map(|p| b[p]).is_some_and(|p| {
        p.is_ascii_alphanumeric() || matches!(p, b'#' | b'$' | b'.' | b'-' | b'/' | b'+' | b'_')
    });
    starts && prev_ok
}

/// Judges the number starting at `start` made of `parts` (the rest of a chain, at most
/// `MAX_PHONE_DIGITS + 1` digits): its end when the whole is a phone number, or, when a
/// space joined the last group, the whole less that group ("+81-3-3972-7371 12:57:30"
/// ends before the time).
fn judge(
    b: &[u8],
    start: usize,
    parts: &[Part],
    groups: &mut Vec<usize>,
    near: &mut impl FnMut(usize, usize) -> bool,
) -> Option<usize> {
    groups.clear();
    let mut joins = Joins::default();
    let mut shorter: Option<(Joins, usize)> = None;
    let mut end = start;
    for (k, p) in parts.iter().enumerate() {
        if k > 0 {
            let run = &b[p.run..p.start];
            shorter = (run == b" ").then_some((joins, end));
            if !run.is_empty() {
                let later = joins.count > 0;
                joins.count += 1;
                joins.dot |= run.contains(&b'.');
                joins.not_dot |= !run.contains(&b'.');
                joins.slash |= run.contains(&b'/');
                joins.slash_later |= run.contains(&b'/') && later;
            }
        }
        groups.push(p.end - p.start);
        end = p.end;
    }
    steps::add(end - start + 1);
    if is_phone(b, start, end, groups, &joins, near) {
        return Some(end);
    }
    let (fewer, shorter_end) = shorter?;
    groups.pop();
    is_phone(b, start, shorter_end, groups, &fewer, near).then_some(shorter_end)
}

/// Whether the digit groups of `b[i..end]`, joined as `joins` says, form a phone number
/// (the rules are on `phones`); `near` says whether a phone word stands beside a span.
fn is_phone(
    b: &[u8],
    i: usize,
    end: usize,
    groups: &[usize],
    joins: &Joins,
    near: &mut impl FnMut(usize, usize) -> bool,
) -> bool {
    let c = b[i];
    let total: usize = groups.iter().sum();
    let next_bad = is_alnum_at(b, Some(end))
        || (matches!(b.get(end), Some(b'.' | b'-' | b'/' | b':'))
            && b.get(end + 1).is_some_and(u8::is_ascii_digit));
    if next_bad {
        return false;
    }
    if c == b'+' {
        let trunk_zero = usize::from(b[i..end].windows(3).any(|w| w == b"(0)"));
        return (8..=15 + trunk_zero).contains(&total) && groups.len() <= 7;
    }
    // The digits are read only for the North American shape, which needs them.
    let us =
        (groups == [3, 3, 4] || groups == [1, 3, 3, 4]) && joins.count > 0 && !joins.slash && {
            let d = digits_of(b, i, end);
            let o = usize::from(groups.len() == 4);
            (o == 0 || d[0] == 1) && d[o] >= 2 && d[o + 3] >= 2
        };
    let area_code = c == b'('
        && groups.len() >= 2
        && (2..=5).contains(&groups[0])
        && (10..=11).contains(&total);
    let trunk = c == b'0'
        && groups.len() >= 2
        && (2..=6).contains(&groups[0])
        && groups.iter().all(|&g| g >= 2)
        && (10..=12).contains(&total);
    let mut worded = || {
        c != b'('
            && !joins.dot
            && (9..=12).contains(&total)
            && groups.iter().all(|&g| g >= 2)
            && near(i, end)
    };
    joins.consistent(groups) && (us || area_code || trunk || worded())
}

/// File types that follow an `@` in asset names ("logo@2x.png") and are no top-level
/// domain an address could end in.
const ASSET_SUFFIXES: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "svg", "ico", "bmp", "tif", "tiff", "avif", "heic", "pdf",
    "css", "scss", "js", "mjs", "ts", "tsx", "jsx", "map", "woff", "woff2", "ttf", "otf", "mp3",
    "mp4", "wav", "webm", "json", "yaml", "yml", "txt", "lock",
];

/// Whether a domain label is a density suffix of an image ("2x", "3x", "1.5x" ends in one).
fn is_scale_label(label: &[u8]) -> bool {
    label.len() >= 2
        && label.ends_with(b"x")
        && label[..label.len() - 1].iter().all(u8::is_ascii_digit)
}

/// Whether the local part starting at `s` is the user of a URL's authority
/// (`postgres://app@db…`, `https://user:pass@host`): a user name, not an address. It
/// looks back over at most one user name and password, so the work per `@` is bounded.
fn in_url_authority(b: &[u8], s: usize) -> bool {
    const MAX_USERINFO: usize = 256;
    let mut k = s;
    if k >= 1 && b[k - 1] == b':' {
        k -= 1;
        let floor = k.saturating_sub(MAX_USERINFO);
        while k > floor && is_local_char(b[k - 1]) {
            k -= 1;
        }
    }
    steps::add(s - k + 2);
    k >= 2 && b[k - 1] == b'/' && b[k - 2] == b'/'
}

fn is_local_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

pub(crate) fn emails(b: &[u8], out: &mut Vec<Hit>) {
    for at in (0..b.len()).filter(|&i| b[i] == b'@') {
        let mut s = at;
        while s > 0 && is_local_char(b[s - 1]) {
            s -= 1;
        }
        while s < at && b[s] == b'.' {
            s += 1;
        }
        let mut e = at + 1;
        while e < b.len() && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'.' | b'-')) {
            e += 1;
        }
        while e > at + 1 && matches!(b[e - 1], b'.' | b'-') {
            e -= 1;
        }
        // Each byte between two `@` is walked by at most the one before and the one after.
        steps::add(e - s + 1);
        // `git@github.com:org/repo.git` is an SSH remote: a user at a host, then a path.
        let remote =
            b.get(e) == Some(&b':') && b.get(e + 1).is_some_and(|c| !c.is_ascii_whitespace());
        if s == at || b[at - 1] == b'.' || remote || in_url_authority(b, s) {
            continue;
        }
        let domain = &b[at + 1..e];
        let Some(dot) = domain.iter().rposition(|&c| c == b'.') else {
            continue;
        };
        let tld = &domain[dot + 1..];
        let labels_ok = domain.split(|&c| c == b'.').all(|l| !l.is_empty());
        let asset = ASSET_SUFFIXES
            .iter()
            .any(|x| x.as_bytes().eq_ignore_ascii_case(tld))
            || is_scale_label(&domain[..domain.iter().position(|&c| c == b'.').unwrap_or(0)]);
        if labels_ok && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && !asset {
            out.push(Hit {
                kind: PiiKind::Email,
                start: s,
                end: e,
            });
        }
    }
}

/// IBAN length per country.
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VG", 24),
    (b"XK", 20),
];

/// ISO 13616 check: move the first four characters to the end, letters to numbers,
/// and the number mod 97 must be 1.
pub(crate) fn iban_valid(chars: &[u8]) -> bool {
    let mut rem: u32 = 0;
    for &c in chars[4..].iter().chain(chars[..4].iter()) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => u32::from(c - b'A') + 10,
            _ => return false,
        };
        rem = if v >= 10 {
            (rem * 100 + v) % 97
        } else {
            (rem * 10 + v) % 97
        };
    }
    rem == 1
}

pub(crate) fn ibans(b: &[u8], out: &mut Vec<Hit>) {
    for i in 0..b.len().saturating_sub(4) {
        if !(b[i].is_ascii_uppercase() && b[i + 1].is_ascii_uppercase())
            || is_alnum_at(b, before(i))
        {
            continue;
        }
        if !(b[i + 2].is_ascii_digit() && b[i + 3].is_ascii_digit()) {
            continue;
        }
        let Some(&(_, len)) = IBAN_LENGTHS.iter().find(|(cc, _)| cc[..] == b[i..i + 2]) else {
            continue;
        };
        let mut chars = Vec::with_capacity(len);
        let mut j = i;
        while j < b.len() && chars.len() < len {
            let c = b[j];
            if c.is_ascii_uppercase() || c.is_ascii_digit() {
                chars.push(c);
                j += 1;
            } else if c == b' '
                && chars.len() % 4 == 0
                && b.get(j + 1).is_some_and(u8::is_ascii_alphanumeric)
            {
                j += 1;
            } else {
                break;
            }
        }
        steps::add(j - i + 1);
        if chars.len() == len && !is_alnum_at(b, Some(j)) && iban_valid(&chars) {
            out.push(Hit {
                kind: PiiKind::Iban,
                start: i,
                end: j,
            });
        }
    }
}

/// A dotted quad has at most three digits per octet.
const MAX_IPV4_DIGITS: usize = 12;

/// The longest text form of an IPv6 address: six full groups and a dotted quad.
const MAX_IPV6_LEN: usize = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".len();

/// Words that make a following dotted quad a version number or an object identifier
/// rather than an address.
const VERSION_WORDS: &[&str] = &["version", "ver", "release", "build", "firmware", "v", "oid"];

/// The longest word looked at before a dotted quad ("AssemblyInformationalVersion").
const MAX_VERSION_WORD: usize = 28;

/// Whether the word right before `i` is a version word, or ends in "version"
/// (`AssemblyVersion`, `FileVersion`). Between the word and the number there may be one
/// one-byte whitespace, up to three bytes of assignment or call syntax (`Version=4.0.0.0`,
/// `AssemblyVersion("1.0.0.0")`, `AssemblyVersion(\"1.0.0.0\")` in JSON, `OID: 2.5.4.3`)
/// and one more whitespace. It looks at a
/// bounded number of bytes, where trimming and splitting all of `text[..i]` walked back
/// over the whole preceding run of whitespace or letters once per candidate.
fn after_version_word(text: &str, i: usize) -> bool {
    let b = text.as_bytes();
    let space = |c: u8| matches!(c, b'\t'..=b'\r' | b' ');
    let mut j = i;
    if j > 0 && space(b[j - 1]) {
        j -= 1;
    }
    let mut syntax = 0;
    while j > 0 && syntax < 3 && matches!(b[j - 1], b'=' | b':' | b'(' | b'"' | b'\'' | b'\\') {
        j -= 1;
        syntax += 1;
    }
    if syntax > 0 && j > 0 && space(b[j - 1]) {
        j -= 1;
    }
    // Two whitespace characters, or one of several bytes, put the word too far away.
    if text[..j]
        .chars()
        .next_back()
        .is_some_and(char::is_whitespace)
    {
        return false;
    }
    let letters = b[..j]
        .iter()
        .rev()
        .take(MAX_VERSION_WORD + 1)
        .take_while(|c| c.is_ascii_alphabetic())
        .count();
    steps::add(i - j + letters + 1);
    let word = &b[j - letters..j];
    let tail = b"version";
    VERSION_WORDS
        .iter()
        .any(|w| w.as_bytes().eq_ignore_ascii_case(word))
        || (word.len() > tail.len() && word[word.len() - tail.len()..].eq_ignore_ascii_case(tail))
}

pub(crate) fn ips(text: &str, out: &mut Vec<Hit>) {
    let b = text.as_bytes();
    let mut groups = Vec::new();
    for i in number_starts(b) {
        let Some((end, sep)) = digit_chain(b, i, b".", MAX_IPV4_DIGITS, &mut groups) else {
            continue;
        };
        if groups.len() != 4 || sep != Some(b'.') || is_alnum_at(b, Some(end)) {
            continue;
        }
        let octets_ok = text[i..end].split('.').all(|o| {
            o.len() <= 3
                && !(o.len() > 1 && o.starts_with('0'))
                && o.parse::<u16>().is_ok_and(|v| v <= 255)
        });
        if octets_ok && !after_version_word(text, i) {
            out.push(Hit {
                kind: PiiKind::Ip,
                start: i,
                end,
            });
        }
    }
    // IPv6: maximal runs of hex digits, colons and dots, checked by the std parser.
    let is6 = |c: u8| c.is_ascii_hexdigit() || c == b':' || c == b'.';
    let mut i = 0;
    while i < b.len() {
        if !is6(b[i])
            || (i > 0 && (is6(b[i - 1]) || b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            i += 1;
            continue;
        }
        let mut e = i;
        while e < b.len() && is6(b[e]) {
            e += 1;
        }
        let run_end = e;
        while e > i && b[e - 1] == b'.' {
            e -= 1;
        }
        steps::add(run_end - i + 1);
        let cand = &text[i..e];
        let colons = cand.bytes().filter(|&c| c == b':').count();
        let hex = cand.bytes().filter(u8::is_ascii_hexdigit).count();
        // No address is longer than `MAX_IPV6_LEN`, so a longer run is not parsed.
        if cand.len() <= MAX_IPV6_LEN
            && colons >= 2
            // Short forms need four hex digits to be told from `a::b` paths and times,
            // except the loopback address, which is written `::1` everywhere.
            && (hex >= 4 || cand == "::1")
            && cand.bytes().any(|c| c.is_ascii_digit())
            && !is_alnum_at(b, Some(run_end))
            && b.get(run_end) != Some(&b'_')
            && cand.parse::<Ipv6Addr>().is_ok()
        {
            out.push(Hit {
                kind: PiiKind::Ip,
                start: i,
                end: e,
            });
        }
        i = run_end.max(i + 1);
    }
}
