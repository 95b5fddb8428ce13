//! Context words: a bare run of digits is a phone number or an SSN only when a word like
//! "phone", "Telefon", "電話" or "SSN" stands right beside it, in any of the languages the
//! corpus covers. Without such a word the same digits are an order or invoice number.
//!
//! The words are found once per text, all in one pass, and a candidate asks for the
//! nearest one before or after it: the cost stays linear in the text's length.

use crate::steps;

/// How a context word must sit in the text.
#[derive(Clone, Copy)]
pub(crate) enum Bound {
    /// A stem: no ASCII letter before it, anything after ("telef" in "Telefonnummer").
    Stem,
    /// A whole word: no ASCII letter on either side ("tel", but not "hotel" or "teller").
    Whole,
    /// Anywhere, even inside a word ("phone" in "telephone" and "smartphone").
    Inside,
}

/// Words that make a nearby bare number a phone number. Non-ASCII words are matched as
/// written; ASCII words case-insensitively.
pub(crate) const PHONE_WORDS: &[(&str, Bound)] = &[
    ("phone", Bound::Inside),
    ("tel", Bound::Whole),
    ("telef", Bound::Stem),
    ("teléf", Bound::Stem),
    ("téléph", Bound::Stem),
    ("tél", Bound::Whole),
    ("mobil", Bound::Stem),
    ("mobiel", Bound::Stem),
    ("móvil", Bound::Stem),
    ("cell", Bound::Stem),
    ("call", Bound::Whole),
    ("fax", Bound::Whole),
    ("sms", Bound::Whole),
    ("whatsapp", Bound::Stem),
    ("handy", Bound::Stem),
    ("ruf", Bound::Stem),
    ("anruf", Bound::Stem),
    ("festnetz", Bound::Stem),
    ("portable", Bound::Stem),
    ("appel", Bound::Stem),
    ("llam", Bound::Stem),
    ("llám", Bound::Stem),
    ("chiam", Bound::Stem),
    ("bel", Bound::Whole),
    ("bellen", Bound::Whole),
    ("ligue", Bound::Stem),
    ("ligar", Bound::Stem),
    ("telemóvel", Bound::Stem),
    ("telemovel", Bound::Stem),
    ("celular", Bound::Stem),
    ("फ़ोन", Bound::Stem),
    ("फोन", Bound::Stem),
    ("मोबाइल", Bound::Stem),
    ("कॉल", Bound::Stem),
    ("電話", Bound::Stem),
    ("携帯", Bound::Stem),
];

/// Words that make a nearby nine-digit run a US social security number.
pub(crate) const SSN_WORDS: &[(&str, Bound)] = &[
    ("ssn", Bound::Whole),
    ("social security", Bound::Stem),
    ("social_security", Bound::Stem),
    ("social-security", Bound::Stem),
    ("socialsecurity", Bound::Stem),
    ("seguro social", Bound::Stem),
    ("seguridad social", Bound::Stem),
    ("sécurité sociale", Bound::Stem),
    ("sozialversicherung", Bound::Stem),
    ("previdenza sociale", Bound::Stem),
    ("社会保障", Bound::Stem),
    ("सामाजिक सुरक्षा", Bound::Stem),
];

/// The most bytes between a context word and its number ("Meine Handynummer ist ").
const GAP_BEFORE: usize = 32;
/// The most bytes between a number and a context word after it ("… पर कॉल करें"). Only
/// words in Devanagari or Japanese count after the number: those languages put the verb
/// or the noun last, where a Latin-script word after a number ("(no phone on file)")
/// is about something else.
const GAP_AFTER: usize = 24;

/// Where the context words of one list occur in one text, as sorted byte ranges.
pub(crate) struct Context {
    spans: Vec<(usize, usize)>,
}

impl Context {
    /// Finds every occurrence of `words` in `text`, in one pass over its lowered form.
    pub(crate) fn find(text: &str, lower: &str, words: &[(&str, Bound)]) -> Context {
        let b = lower.as_bytes();
        let letter = |i: Option<usize>| {
            i.and_then(|i| b.get(i))
                .is_some_and(u8::is_ascii_alphabetic)
        };
        let found = super::words::find_all(b, words);
        let mut spans = Vec::new();
        for (&(word, bound), starts) in words.iter().zip(&found) {
            for &s in starts {
                let e = s + word.len();
                let ascii = word.is_ascii();
                let before_ok =
                    !ascii || matches!(bound, Bound::Inside) || !letter(s.checked_sub(1));
                let after_ok = !ascii || !matches!(bound, Bound::Whole) || !letter(Some(e));
                if before_ok && after_ok {
                    spans.push((s, e));
                }
            }
        }
        debug_assert_eq!(text.len(), lower.len());
        spans.sort_unstable();
        Context { spans }
    }

    /// Whether a context word ends shortly before `start` or begins shortly after `end`,
    /// with no digit and no line break between: a word belongs to the nearest number only
    /// ("SSN 123-45-6789, order 987654321" does not make the order number an SSN). A word
    /// after the number counts only when no number follows the word closely: in
    /// "order 423731141 Chiamami al +39 …" the word introduces the next number. Only
    /// non-Latin words count after the number (see `GAP_AFTER`).
    pub(crate) fn near(&self, b: &[u8], start: usize, end: usize) -> bool {
        let clean = |from: usize, to: usize| {
            steps::add(to.saturating_sub(from) + 1);
            b[from..to]
                .iter()
                .all(|&c| !c.is_ascii_digit() && c != b'\n')
        };
        // The last word starting before `start`; words do not overlap numbers.
        let i = self.spans.partition_point(|&(s, _)| s < start);
        let before = i
            .checked_sub(1)
            .map(|k| self.spans[k])
            .is_some_and(|(_, e)| e <= start && start - e <= GAP_BEFORE && clean(e, start));
        let j = self.spans.partition_point(|&(s, _)| s < end);
        let after = self.spans.get(j).is_some_and(|&(s, e)| {
            !b[s].is_ascii()
                && s - end <= GAP_AFTER
                && clean(end, s)
                && clean(e, (e + GAP_BEFORE).min(b.len()))
        });
        steps::add(1);
        before || after
    }
}
