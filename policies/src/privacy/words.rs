//! Finds every occurrence of a small list of words in one pass over a text. The secret
//! words and the context words are a few dozen each; searching for each word in turn
//! walked the whole text once per word, which is linear but dozens of times over.

use crate::steps;

/// The most words one list may hold: each has one bit in a first-byte table.
pub(crate) const MAX_WORDS: usize = 64;

/// For each word of `words` (the first element of each pair), the starts of its
/// occurrences in `hay`, in order and not overlapping each other, as successive
/// searches from the end of the previous occurrence would find them. Each byte of `hay`
/// is looked at once, plus the bytes compared with words whose first two bytes stand
/// there (two tables tell which).
pub(crate) fn find_all<T>(hay: &[u8], words: &[(&str, T)]) -> Vec<Vec<usize>> {
    debug_assert!(words.len() <= MAX_WORDS, "too many words for one pass");
    // Words by first byte, and by second byte (a word shorter than two bytes under
    // every byte, and in `short`, for the last byte of `hay`).
    let mut first = [0u64; 256];
    let mut second = [0u64; 256];
    let mut short = 0u64;
    for (w, (word, _)) in words.iter().enumerate().take(MAX_WORDS) {
        let word = word.as_bytes();
        if let Some(&c) = word.first() {
            first[usize::from(c)] |= 1 << w;
        }
        match word.get(1) {
            Some(&c) => second[usize::from(c)] |= 1 << w,
            None => {
                short |= 1 << w;
                second.iter_mut().for_each(|m| *m |= 1 << w);
            }
        }
    }
    let mut found: Vec<Vec<usize>> = vec![Vec::new(); words.len()];
    let mut free_from = vec![0usize; words.len()];
    let mut compared = 0;
    for i in 0..hay.len() {
        let mut mask = first[usize::from(hay[i])];
        if mask == 0 {
            continue;
        }
        mask &= hay.get(i + 1).map_or(short, |&c| second[usize::from(c)]);
        while mask != 0 {
            let w = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let word = words[w].0.as_bytes();
            let same = word
                .iter()
                .zip(&hay[i..])
                .take_while(|(a, b)| a == b)
                .count();
            compared += same + 1;
            if same == word.len() && i >= free_from[w] {
                found[w].push(i);
                free_from[w] = i + word.len();
            }
        }
    }
    steps::add(hay.len() + compared);
    found
}

#[cfg(test)]
mod tests {
    use super::find_all;

    #[test]
    fn finds_what_successive_searches_find() {
        let words = [("ab", ()), ("aba", ()), ("b", ()), ("パス", ())];
        let hay = "ababab パスパス".as_bytes();
        let found = find_all(hay, &words);
        assert_eq!(found[0], vec![0, 2, 4]);
        assert_eq!(found[1], vec![0]);
        assert_eq!(found[2], vec![1, 3, 5]);
        assert_eq!(found[3], vec![7, 13]);
    }
}
