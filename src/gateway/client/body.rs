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

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};

use super::wire::{Conn, Home};
use crate::gateway::framing::{Framing, FramingError};

/// Why an answer's body could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    #[error("the connection broke: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed before the answer was complete")]
    Incomplete,
    #[error(transparent)]
    Framing(#[from] FramingError),
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

    /// The next piece of data the buffer holds, or `None` when it needs
    /// more (or the body is done); at the end the connection goes home.
    fn next_piece(&mut self) -> Result<Option<Bytes>, BodyError> {
        let piece = self.framing.next_piece(&mut self.buf)?;
        if self.framing == Framing::Done && self.conn.is_some() {
            self.finish();
        }
        Ok(piece)
    }
}
