//! Reading a server-sent event stream as it arrives: bytes in, whole events
//! out. Only what `/admin/events` needs of the format: `data` (joined over
//! several lines), `id`, comments; an event ends at a blank line. Lines may
//! end in `\n`, `\r\n` or `\r`, and a chunk may end anywhere, even inside a
//! line ending.

/// One event of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `id` in effect for this event (the last one the stream set).
    pub id: Option<String>,
    pub data: String,
}

/// The most a line may hold before the stream is taken as broken: a routing
/// event is a few hundred bytes.
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SseReader {
    line: Vec<u8>,
    /// A `\r` ended the last chunk: a `\n` opening the next belongs to it.
    after_cr: bool,
    data: Option<String>,
    id: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooLong;

impl SseReader {
    /// The last `id` the stream set, with or without an event: a stream may
    /// send its position as an `id` alone.
    pub fn last_id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// Feeds one chunk; returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseEvent>, TooLong> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(i) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..i]);
            if rest[i] == b'\r' {
                match rest.get(i + 1) {
                    Some(b'\n') => rest = &rest[i + 2..],
                    Some(_) => rest = &rest[i + 1..],
                    None => {
                        self.after_cr = true;
                        rest = &[];
                    }
                }
            } else {
                rest = &rest[i + 1..];
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&line) {
                out.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE {
            return Err(TooLong);
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseEvent> {
        if line.is_empty() {
            let data = self.data.take()?;
            return Some(SseEvent {
                id: self.id.clone(),
                data,
            });
        }
        if line[0] == b':' {
            return None; // a comment: the keep-alive
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (&*line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut r = SseReader::default();
        chunks.iter().flat_map(|c| r.feed(c).unwrap()).collect()
    }

    fn ev(id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            id: id.map(String::from),
            data: data.into(),
        }
    }

    #[test]
    fn events_with_ids_comments_and_multiline_data() {
        let got = all(&[b": keep-alive\n\nid: 7.1\ndata: {\"a\":1}\n\ndata: x\ndata: y\n\n"]);
        assert_eq!(
            got,
            vec![ev(Some("7.1"), "{\"a\":1}"), ev(Some("7.1"), "x\ny")]
        );
    }

    #[test]
    fn any_split_and_any_line_ending_give_the_same_events() {
        let text = b"id: 1\r\ndata: one\r\n\r\nid: 2\rdata: two\r\rdata:three\n\n";
        let want = vec![
            ev(Some("1"), "one"),
            ev(Some("2"), "two"),
            ev(Some("2"), "three"),
        ];
        for cut in 0..text.len() {
            assert_eq!(all(&[&text[..cut], &text[cut..]]), want, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(all(&bytes), want);
    }

    #[test]
    fn an_id_alone_moves_the_position_without_an_event() {
        let mut r = SseReader::default();
        assert_eq!(r.feed(b"id: 9.4\n\n").unwrap(), vec![]);
        assert_eq!(r.last_id(), Some("9.4"));
    }

    #[test]
    fn a_line_without_end_is_capped() {
        let mut r = SseReader::default();
        let big = vec![b'a'; MAX_LINE + 1];
        assert_eq!(r.feed(&big), Err(TooLong));
    }
}
