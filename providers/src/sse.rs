//! A small server-sent-events decoder: bytes in whatever pieces the network
//! delivers them, events out. Both OpenAI and Anthropic stream this way.
//!
//! Lines end with LF or CRLF; a blank line ends an event; `:` lines are comments
//! (keep-alives) and are skipped; several `data:` lines are joined with `\n`.

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field, when the server named the event.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental decoder. Feed it chunks; it keeps incomplete lines (even a UTF-8
/// character cut in half) until the rest arrives.
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Vec<String>,
}

impl SseDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode what `chunk` completes; returns the events it finished.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buf[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = String::from_utf8_lossy(line).into_owned();
            start = end + 1;
            if let Some(ev) = self.line(&line) {
                out.push(ev);
            }
        }
        self.buf.drain(..start);
        out
    }

    /// The stream ended: an event still being assembled is returned if it has
    /// data, since some servers omit the final blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let line = String::from_utf8_lossy(&rest).into_owned();
            let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
            if let Some(ev) = self.line(&line) {
                return Some(ev);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (name, value) = match line.split_once(':') {
            Some((n, v)) => (n, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match name {
            "event" => self.event = Some(value.to_owned()),
            "data" => self.data.push(value.to_owned()),
            // `id` and `retry` matter for browser reconnection, not for us.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if self.data.is_empty() {
            return None;
        }
        let data = std::mem::take(&mut self.data).join("\n");
        Some(SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Vec<SseEvent> {
        let mut d = SseDecoder::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            out.extend(d.feed(chunk));
        }
        out.extend(d.finish());
        out
    }

    #[test]
    fn decodes_named_events_and_data_only_events() {
        let input = b"event: message_start\ndata: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n";
        let evs = decode_in_pieces(input, 1024);
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "{\"b\":2}".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }

    #[test]
    fn every_split_point_and_crlf_give_the_same_events() {
        let lf = "event: ping\ndata: {\"type\":\"ping\"}\n\n: keep-alive\n\ndata: héllo\ndata: wörld\n\n";
        let crlf = lf.replace('\n', "\r\n");
        let expected = vec![
            SseEvent {
                event: Some("ping".into()),
                data: "{\"type\":\"ping\"}".into(),
            },
            SseEvent {
                event: None,
                data: "héllo\nwörld".into(),
            },
        ];
        for input in [lf.as_bytes(), crlf.as_bytes()] {
            for piece in 1..input.len() {
                assert_eq!(
                    decode_in_pieces(input, piece),
                    expected,
                    "piece size {piece}"
                );
            }
        }
    }

    #[test]
    fn comments_alone_produce_nothing_and_missing_final_blank_line_is_tolerated() {
        assert!(decode_in_pieces(b": ping\n\n: ping\n\n", 3).is_empty());
        assert_eq!(
            decode_in_pieces(b"data: tail", 4),
            vec![SseEvent {
                event: None,
                data: "tail".into()
            }]
        );
    }

    #[test]
    fn field_without_space_and_unknown_fields() {
        let evs = decode_in_pieces(b"id: 7\nretry: 10\nevent:x\ndata:y\n\n", 5);
        assert_eq!(
            evs,
            vec![SseEvent {
                event: Some("x".into()),
                data: "y".into()
            }]
        );
    }
}
