//! HTTP/1.1 message bodies as they come off a connection: framed by a
//! length, by chunks (RFC 9112 §7.1), or by the connection's end. Both
//! sides use it: the upstream client for answers, the server for requests.
//!
//! Data is handed out as slices of the buffer the socket was read into
//! (no copy); the framing around it is consumed as it goes, and the end of
//! a body that came with its last data is seen with that data.

use bytes::{Buf, Bytes, BytesMut};

/// The framing is broken: what is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the chunked framing is broken: {0}")]
pub struct FramingError(pub(crate) &'static str);

/// How the end of a body is known, and how much of it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    /// Chunked: where in the framing the reader is.
    Chunked(Chunk),
    /// Everything until the peer closes the connection.
    UntilClose,
    /// The whole body has been read.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// At the start of a chunk's size line.
    Size,
    /// Inside a chunk's data: this many bytes left, then its CRLF.
    Data(u64),
    /// After the last chunk: trailer lines until an empty one.
    Trailers,
}

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4 << 10;

impl Framing {
    pub(crate) const CHUNKED: Framing = Framing::Chunked(Chunk::Size);

    /// The next piece of data the buffer holds, or `None` when it needs more
    /// (or the body is done). Framing is consumed as it goes.
    pub(crate) fn next_piece(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FramingError> {
        match *self {
            Framing::Done => Ok(None),
            Framing::UntilClose => Ok((!buf.is_empty()).then(|| buf.split().freeze())),
            Framing::Length(0) => {
                *self = Framing::Done;
                Ok(None)
            }
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let piece = buf.split_to(n).freeze();
                *self = Framing::Length(left - n as u64);
                if left == n as u64 {
                    *self = Framing::Done;
                }
                Ok(Some(piece))
            }
            Framing::Chunked(_) => {
                self.skip_framing(buf)?;
                let Framing::Chunked(Chunk::Data(left)) = *self else {
                    return Ok(None);
                };
                if left == 0 || buf.is_empty() {
                    return Ok(None);
                }
                let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let piece = buf.split_to(n).freeze();
                *self = Framing::Chunked(Chunk::Data(left - n as u64));
                // The end of the body, when it came with this piece, is
                // taken now: the reader sees it without another read.
                self.skip_framing(buf)?;
                Ok(Some(piece))
            }
        }
    }

    /// Consumes whatever chunk framing (a chunk's closing CRLF, sizes, the
    /// last chunk, trailers) the buffer holds, up to the next data.
    fn skip_framing(&mut self, buf: &mut BytesMut) -> Result<(), FramingError> {
        loop {
            match *self {
                Framing::Chunked(Chunk::Data(0)) => {
                    if buf.len() < 2 {
                        return Ok(());
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(FramingError("a chunk is longer than its size"));
                    }
                    buf.advance(2);
                    *self = Framing::Chunked(Chunk::Size);
                }
                Framing::Chunked(Chunk::Size) => {
                    let Some(size) = take_line(buf, chunk_size)? else {
                        return Ok(());
                    };
                    *self = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Framing::Chunked(Chunk::Trailers) => {
                    let Some(empty) = take_line(buf, |l| Ok(l.is_empty()))? else {
                        return Ok(());
                    };
                    if empty {
                        *self = Framing::Done;
                    }
                }
                _ => return Ok(()),
            }
        }
    }
}

/// Reads one CRLF-ended line (without its CRLF) from the buffer with
/// `read`, then drops it; `None` when the buffer has no whole line yet.
fn take_line<T>(
    buf: &mut BytesMut,
    read: impl FnOnce(&[u8]) -> Result<T, FramingError>,
) -> Result<Option<T>, FramingError> {
    let Some(i) = memchr::memchr(b'\n', buf) else {
        if buf.len() > MAX_LINE {
            return Err(FramingError("a chunk-size line is too long"));
        }
        return Ok(None);
    };
    let line = &buf[..i];
    let value = read(line.strip_suffix(b"\r").unwrap_or(line))?;
    buf.advance(i + 1);
    Ok(Some(value))
}

/// A chunk-size line's size: hex digits, then optional `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    let digits = line
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return Err(FramingError("a chunk size is not a hex number"));
    }
    let mut size = 0u64;
    for &d in digits {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return Err(FramingError("a chunk size is not a hex number")),
        };
        size = size << 4 | u64::from(v);
    }
    Ok(size)
}

/// Whether a comma-separated header value (`Connection`) holds `token`.
pub(crate) fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// A Content-Length value: one number, or a list of the same number (RFC
/// 9110 §8.6 lets a recipient read `5, 5` as 5); `None` for anything else.
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    let mut length = None;
    for part in value.split(|&b| b == b',') {
        let digits = part.trim_ascii();
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// `n` in decimal, written into the end of `buf` (a Content-Length).
pub(crate) fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

/// Appends `data` as one chunk: its size in hex, CRLF, the data, CRLF.
pub(crate) fn put_chunk(out: &mut BytesMut, data: &[u8]) {
    let mut hex = [0u8; 16];
    let mut i = hex.len();
    let mut n = data.len();
    loop {
        i -= 1;
        hex[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.reserve(data.len() + 20);
    out.extend_from_slice(&hex[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A head and a body in one `writev` (more only when the socket takes less).
/// On failure, the error and how many bytes had gone out.
pub(crate) async fn write_both(
    io: &mut tokio::net::TcpStream,
    head: &[u8],
    body: &[u8],
) -> Result<(), (std::io::Error, usize)> {
    use std::io::IoSlice;
    use tokio::io::AsyncWriteExt;
    let mut slices = [IoSlice::new(head), IoSlice::new(body)];
    let mut left: &mut [IoSlice<'_>] = &mut slices;
    let mut sent = 0;
    while !left.is_empty() {
        let n = match io.write_vectored(left).await {
            Ok(0) => return Err((std::io::ErrorKind::WriteZero.into(), sent)),
            Ok(n) => n,
            Err(e) => return Err((e, sent)),
        };
        sent += n;
        IoSlice::advance_slices(&mut left, n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` cut at `cuts`, taking every piece the body offers after
    /// each part: the data read, and whether the body saw its end.
    fn read_cut(wire: &[u8], cuts: &[usize], framing: Framing) -> Result<(Vec<u8>, bool), String> {
        let mut framing = framing;
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut at = 0;
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(wire.len());
        for end in ends {
            buf.extend_from_slice(&wire[at..end.max(at)]);
            at = end.max(at);
            while let Some(piece) = framing.next_piece(&mut buf).map_err(|e| e.to_string())? {
                assert!(!piece.is_empty(), "an empty piece is never handed out");
                data.extend_from_slice(&piece);
            }
        }
        Ok((data, framing == Framing::Done))
    }

    #[test]
    fn content_lengths_are_one_number_or_a_list_of_it() {
        assert_eq!(content_length(b"42"), Some(42));
        assert_eq!(content_length(b" 5, 5 "), Some(5));
        for bad in [
            &b""[..],
            b"5, 6",
            b"+5",
            b"-1",
            b"5x",
            b"99999999999999999999",
        ] {
            assert_eq!(
                content_length(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(has_token(b"keep-alive, Close", b"close"));
        assert!(!has_token(b"closed", b"close"));
    }

    #[test]
    fn lengths_and_chunk_heads_are_written_as_http_reads_them() {
        let mut digits = [0u8; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(u64::MAX, &mut digits), b"18446744073709551615");
        let mut out = BytesMut::new();
        put_chunk(&mut out, &[b'x'; 26]);
        let mut framing = Framing::CHUNKED;
        out.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            framing.next_piece(&mut out).unwrap().unwrap(),
            &[b'x'; 26][..]
        );
        assert_eq!(framing, Framing::Done);
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
        let mut framing = Framing::CHUNKED;
        let mut buf = BytesMut::from(&b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n"[..]);
        let piece = framing.next_piece(&mut buf).unwrap().unwrap();
        assert_eq!(&piece[..], b"data: [DONE]\n\n");
        assert_eq!(framing, Framing::Done);
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
