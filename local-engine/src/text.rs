//! Turns the byte pieces of sampled tokens into text that is safe to send:
//! valid UTF-8 only (a character split across tokens waits for its last byte),
//! and nothing that is, or might still become, a stop string.

/// What the filter decided after a piece.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Text that may be sent now (possibly empty).
    pub emit: String,
    /// A stop string was completed; generation must end and nothing after it is sent.
    pub stopped: bool,
    /// The stop string that was completed, when `stopped`.
    pub stop_sequence: Option<String>,
}

/// Streaming UTF-8 decoder and stop-string matcher for one answer.
#[derive(Debug, Default)]
pub struct OutputFilter {
    stops: Vec<String>,
    /// Bytes of an incomplete UTF-8 character at the end of the last piece.
    partial: Vec<u8>,
    /// Decoded text held back because it could be the start of a stop string.
    held: String,
}

impl OutputFilter {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            partial: Vec::new(),
            held: String::new(),
        }
    }

    /// Feeds the bytes of one token.
    pub fn push(&mut self, piece: &[u8]) -> Step {
        self.partial.extend_from_slice(piece);
        let decoded = take_valid_utf8(&mut self.partial);
        self.held.push_str(&decoded);
        self.resolve()
    }

    /// Ends the answer without a stop string: everything held back is sent; an
    /// incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let mut out = std::mem::take(&mut self.held);
        if !self.partial.is_empty() {
            out.push_str(&String::from_utf8_lossy(&self.partial));
            self.partial.clear();
        }
        out
    }

    fn resolve(&mut self) -> Step {
        // The earliest stop string wins; text before it is the answer's end.
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at);
        if let Some((at, s)) = first {
            let stop_sequence = Some(s.clone());
            let emit = self.held[..at].to_owned();
            self.held.clear();
            self.partial.clear();
            return Step {
                emit,
                stopped: true,
                stop_sequence,
            };
        }
        // Hold back the longest suffix that is a proper prefix of some stop string.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let emit: String = self.held[..keep_from].to_owned();
        self.held.drain(..keep_from);
        Step {
            emit,
            stopped: false,
            stop_sequence: None,
        }
    }
}

/// Removes and returns the longest valid UTF-8 prefix of `buf`, leaving an
/// incomplete trailing character in place. Bytes that can never be valid are
/// replaced with U+FFFD so the output stays valid text.
fn take_valid_utf8(buf: &mut Vec<u8>) -> String {
    let mut out = String::new();
    loop {
        match std::str::from_utf8(buf) {
            Ok(s) => {
                out.push_str(s);
                buf.clear();
                return out;
            }
            Err(e) => {
                let valid = e.valid_up_to();
                // from_utf8 just said this prefix is valid, so nothing is replaced.
                out.push_str(&String::from_utf8_lossy(&buf[..valid]));
                match e.error_len() {
                    None => {
                        buf.drain(..valid);
                        return out;
                    }
                    Some(bad) => {
                        out.push('\u{FFFD}');
                        buf.drain(..valid + bad);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let stops: Vec<String> = stops.iter().map(|s| s.to_string()).collect();
        let mut f = OutputFilter::new(&stops);
        let mut out = String::new();
        for p in pieces {
            let step = f.push(p);
            out.push_str(&step.emit);
            if step.stopped {
                return (out, true);
            }
        }
        out.push_str(&f.finish());
        (out, false)
    }

    #[test]
    fn multibyte_characters_split_across_tokens() {
        let euro = "€".as_bytes();
        let mut f = OutputFilter::new(&[]);
        assert_eq!(f.push(&euro[..1]).emit, "");
        assert_eq!(f.push(&euro[1..2]).emit, "");
        assert_eq!(f.push(&euro[2..]).emit, "€");
        let (out, _) = run(&[], &[b"a\xF0\x9F", b"\x98\x80b"]);
        assert_eq!(out, "a😀b");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let (out, _) = run(&[], &[b"a\xFFb", b"\xE2\x82"]);
        assert_eq!(out, "a\u{FFFD}b\u{FFFD}");
    }

    #[test]
    fn stop_string_is_not_emitted_nor_what_follows() {
        assert_eq!(
            run(&["END"], &[b"hello E", b"N", b"D more"]),
            ("hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &[b"a\n", b"\nb"]), ("a".into(), true));
    }

    #[test]
    fn held_back_prefix_is_released_when_it_is_not_a_stop() {
        let stops = vec!["STOP".to_string()];
        let mut f = OutputFilter::new(&stops);
        assert_eq!(f.push(b"x ST").emit, "x ");
        assert_eq!(f.push(b"O").emit, "");
        assert_eq!(f.push(b"P!").emit, "");
        let (out, stopped) = run(&["STOP"], &[b"x ST", b"OW"]);
        assert_eq!((out.as_str(), stopped), ("x STOW", false));
        let (out, stopped) = run(&["STOP"], &[b"x ST"]);
        assert_eq!((out.as_str(), stopped), ("x ST", false));
    }

    #[test]
    fn overlapping_candidates_and_earliest_stop() {
        assert_eq!(run(&["aab"], &[b"aa", b"ab"]), ("a".into(), true));
        assert_eq!(run(&["cd", "b"], &[b"abcd"]), ("a".into(), true));
    }

    #[test]
    fn stop_strings_with_multibyte_characters() {
        let (out, stopped) = run(&["é!"], &[b"caf\xC3", b"\xA9", b"!x"]);
        assert_eq!((out.as_str(), stopped), ("caf", true));
    }

    #[test]
    fn the_step_that_stops_names_the_earliest_stop_string() {
        let stops = vec!["cd".to_string(), "b".to_string()];
        let mut f = OutputFilter::new(&stops);
        let step = f.push(b"abcd");
        assert!(step.stopped);
        assert_eq!(step.stop_sequence.as_deref(), Some("b"));
        let stops = vec!["END".to_string()];
        let mut f = OutputFilter::new(&stops);
        assert_eq!(f.push(b"x E").stop_sequence, None);
        assert_eq!(f.push(b"ND").stop_sequence.as_deref(), Some("END"));
    }
}
