//! An upstream answer's body as it comes off an HTTP/1.1 connection of our
//! own: framed by `Content-Length`, by chunks, or by the connection's end.
//!
//! Data is handed out as slices of the buffer the socket was read into, so
//! an answer that came in one read reaches the client without a copy. When
//! the last byte of a reusable answer is read, the connection goes back to
//! its pool at once: the next request can take it before this body's reader
//! has even seen its end.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::wire::{Conn, Home};

/// Why an answer's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error("the connection broke: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed before the answer was complete")]
    Incomplete,
    #[error("the answer's chunked framing is broken: {0}")]
    Chunking(&'static str),
}

/// An upstream answer's body: from hyper (HTTPS, HTTP/2) or from a
/// connection of our own (plain HTTP/1.1).
pub struct Body(Inner);

enum Inner {
    Hyper(hyper::body::Incoming),
    Own(Box<Own>),
}

impl Body {
    pub(super) fn hyper(body: hyper::body::Incoming) -> Self {
        Body(Inner::Hyper(body))
    }

    pub(super) fn own(own: Own) -> Self {
        Body(Inner::Own(Box::new(own)))
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.0 {
            Inner::Hyper(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(BodyError::from))),
            Inner::Own(own) => own.poll_data(cx).map(|d| d.map(|d| d.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Hyper(body) => body.is_end_stream(),
            Inner::Own(own) => matches!(own.framing, Framing::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Inner::Hyper(body) => body.size_hint(),
            Inner::Own(own) => match own.framing {
                Framing::Length(n) => SizeHint::with_exact(n),
                Framing::Done => SizeHint::with_exact(0),
                _ => SizeHint::default(),
            },
        }
    }
}

/// How the end of an answer is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked: where in the framing the reader is.
    Chunked(Chunk),
    /// Everything until the server closes the connection.
    UntilClose,
    /// The whole body has been read.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// At the start of a chunk's size line.
    Size,
    /// Inside a chunk's data: this many bytes left, then its CRLF.
    Data(u64),
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// The body of an answer on a connection of our own.
pub(super) struct Own {
    conn: Option<Conn>,
    /// Read from the connection and not yet handed out.
    buf: BytesMut,
    framing: Framing,
    /// The connection may carry another request once this answer is read.
    reusable: bool,
    home: Home,
}

/// Most answers fit in one read of this size; bigger ones take more reads.
const READ_SIZE: usize = 16 << 10;
/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 << 10;

impl Own {
    pub(super) fn new(
        conn: Conn,
        buf: BytesMut,
        framing: Framing,
        reusable: bool,
        home: Home,
    ) -> Self {
        let mut own = Own {
            conn: Some(conn),
            buf,
            framing,
            reusable,
            home,
        };
        if own.framing == Framing::Length(0) {
            own.finish();
        }
        own
    }

    /// The answer is read: its connection goes home if it can carry more.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take()
            && self.reusable
            // Bytes after the answer: the server is not speaking HTTP/1.1
            // as we understand it, so the connection is not trusted again.
            && self.buf.is_empty()
        {
            self.home.put(conn);
        }
    }

    fn poll_data(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyError>>> {
        loop {
            match self.next_piece() {
                Ok(Some(piece)) => return Poll::Ready(Some(Ok(piece))),
                Ok(None) if self.framing == Framing::Done => return Poll::Ready(None),
                Ok(None) => {}
                Err(e) => {
                    self.fail();
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) if self.framing == Framing::UntilClose => {
                    self.framing = Framing::Done;
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.fail();
                    return Poll::Ready(Some(Err(BodyError::Incomplete)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.fail();
                    return Poll::Ready(Some(Err(BodyError::Io(e))));
                }
            }
        }
    }

    fn fail(&mut self) {
        self.framing = Framing::Done;
        self.conn = None;
        self.buf.clear();
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut conn.io), cx, &mut self.buf)
    }

    /// The next piece of data the buffer holds, or `None` when it needs more
    /// (or the body is done). Framing is consumed as it goes.
    fn next_piece(&mut self) -> Result<Option<Bytes>, BodyError> {
        match self.framing {
            Framing::Done => Ok(None),
            Framing::UntilClose => Ok((!self.buf.is_empty()).then(|| self.buf.split().freeze())),
            Framing::Length(0) => {
                self.finish();
                Ok(None)
            }
            Framing::Length(left) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let piece = self.buf.split_to(n).freeze();
                self.framing = Framing::Length(left - n as u64);
                if left == n as u64 {
                    self.finish();
                }
                Ok(Some(piece))
            }
            Framing::Chunked(_) => {
                self.skip_framing()?;
                let Framing::Chunked(Chunk::Data(left)) = self.framing else {
                    return Ok(None);
                };
                if left == 0 || self.buf.is_empty() {
                    return Ok(None);
                }
                let n = self
                    .buf
                    .len()
                    .min(usize::try_from(left).unwrap_or(usize::MAX));
                let piece = self.buf.split_to(n).freeze();
                self.framing = Framing::Chunked(Chunk::Data(left - n as u64));
                // The end of the body, when it came with this piece, is
                // taken now: the reader sees it without another read.
                self.skip_framing()?;
                Ok(Some(piece))
            }
        }
    }

    /// Consumes whatever chunk framing (a chunk's closing CRLF, sizes, the
    /// last chunk, trailers) the buffer holds, up to the next data.
    fn skip_framing(&mut self) -> Result<(), BodyError> {
        loop {
            match self.framing {
                Framing::Chunked(Chunk::Data(0)) => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(BodyError::Chunking("a chunk is longer than its size"));
                    }
                    self.buf.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(size) = self.take_line(chunk_size)? else {
                        return Ok(());
                    };
                    self.framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::Trailers) => {
                    let Some(empty) = self.take_line(|l| Ok(l.is_empty()))? else {
                        return Ok(());
                    };
                    if empty {
                        self.finish();
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Reads one CRLF-ended line (without its CRLF) from the buffer with
    /// `read`, then drops it; `None` when the buffer has no whole line yet.
    fn take_line<T>(
        &mut self,
        read: impl FnOnce(&[u8]) -> Result<T, BodyError>,
    ) -> Result<Option<T>, BodyError> {
        let Some(i) = memchr::memchr(b'\n', &self.buf) else {
            if self.buf.len() > MAX_LINE {
                return Err(BodyError::Chunking("a chunk-size line is too long"));
            }
            return Ok(None);
        };
        let line = &self.buf[..i];
        let value = read(line.strip_suffix(b"\r").unwrap_or(line))?;
        self.buf.advance(i + 1);
        Ok(Some(value))
    }
}

/// A chunk-size line's size: hex digits, then optional `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(BodyError::Chunking("a chunk size is not a hex number"));
    }
    let mut size = 0u64;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(BodyError::Chunking("a chunk size is not a hex number")),
        };
        size = size << 4 | u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A body with no connection under it, fed by hand: the framing alone.
    fn fed(framing: Framing) -> Own {
        let pool = std::sync::Arc::new(std::sync::Mutex::new(super::super::Pool {
            origins: Default::default(),
            swept: std::time::Instant::now(),
        }));
        Own {
            conn: None,
            buf: BytesMut::new(),
            framing,
            reusable: true,
            home: Home {
                pool,
                origin: "http://test".into(),
            },
        }
    }

    /// Feeds `wire` cut at `cuts`, taking every piece the body offers after
    /// each part: the data read, and whether the body saw its end.
    fn read_cut(wire: &[u8], cuts: &[usize], framing: Framing) -> Result<(Vec<u8>, bool), String> {
        let mut own = fed(framing);
        let mut data = Vec::new();
        let mut at = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(wire.len());
        for end in ends {
            own.buf.extend_from_slice(&wire[at..end.max(at)]);
            at = end.max(at);
            while let Some(piece) = own.next_piece().map_err(|e| e.to_string())? {
                assert!(!piece.is_empty(), "an empty piece is never handed out");
                data.extend_from_slice(&piece);
            }
        }
        Ok((data, own.framing == Framing::Done))
    }

    fn chunked(parts: &[&[u8]], trailers: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            // Upper and lower case hex, and an extension on every other one.
            let size = if i % 2 == 0 {
                format!("{:x}", p.len())
            } else {
                format!("{:X};name=value", p.len())
            };
            out.extend_from_slice(size.as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(p);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        out.extend_from_slice(trailers.as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        #[test]
        fn a_chunked_body_cut_anywhere_reads_the_same(
            parts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
            trailers in prop_oneof![Just(""), Just("x-trailer: 1\r\n")],
        ) {
            let parts: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            let wire = chunked(&parts, trailers);
            let (data, done) = read_cut(&wire, &cuts, Framing::Chunked(Chunk::Size)).unwrap();
            prop_assert_eq!(data, parts.concat());
            prop_assert!(done);
        }

        #[test]
        fn a_length_body_cut_anywhere_reads_the_same(
            body in proptest::collection::vec(any::<u8>(), 0..200),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let framing = Framing::Length(body.len() as u64);
            let (data, done) = read_cut(&body, &cuts, framing).unwrap();
            prop_assert_eq!(data, body);
            prop_assert!(done);
        }
    }

    #[test]
    fn the_end_that_came_with_the_last_chunk_is_seen_with_it() {
        let mut own = fed(Framing::Chunked(Chunk::Size));
        own.buf
            .extend_from_slice(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n");
        assert_eq!(&own.next_piece().unwrap().unwrap()[..], b"data: [DONE]\n\n");
        assert_eq!(own.framing, Framing::Done);
    }

    #[test]
    fn broken_chunk_framing_is_an_error() {
        let broken = |wire: &[u8]| {
            read_cut(wire, &[], Framing::Chunked(Chunk::Size))
                .expect_err("broken framing is an error")
        };
        assert!(broken(b"zz\r\nhello\r\n").contains("not a hex number"));
        assert!(broken(b"\r\n").contains("not a hex number"));
        assert!(broken(b"2\r\nhello\r\n").contains("longer than its size"));
        assert!(broken(b"fffffffffffffffff\r\n").contains("not a hex number"));
        assert!(broken(&[b'1'; 5000]).contains("too long"));
    }

    #[test]
    fn a_body_that_stops_short_is_not_done() {
        let (data, done) = read_cut(b"5\r\nhel", &[], Framing::Chunked(Chunk::Size)).unwrap();
        assert_eq!(data, b"hel");
        assert!(!done);
        let (data, done) = read_cut(b"hel", &[], Framing::Length(5)).unwrap();
        assert_eq!(data, b"hel");
        assert!(!done);
    }
}
