//! An answer onto a client connection: the head and a whole body in one
//! write; a stream as chunks, each write carrying everything the body had
//! ready, so that a stream's last events and its end go out together.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::Poll;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use crate::gateway::framing::{decimal, put_chunk, write_both};
use tokio::net::TcpStream;

/// Bodies up to this size are copied behind the head (one buffer, one
/// `write`); larger ones go out beside it in a `writev`.
const COPY_UP_TO: usize = 16 << 10;

/// How a written answer left the connection.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Written {
    /// Whole: the connection can take another request.
    Whole,
    /// The client is gone, or the body broke: the connection is closed.
    Cut,
}

/// Writes `status`, `headers` and `body`; `close` adds `connection: close`.
/// While the body is awaited the client is watched (see [`super::until`]):
/// what it sends ahead goes to `ahead`.
pub(super) async fn answer(
    io: &mut TcpStream,
    (status, headers): (StatusCode, &HeaderMap),
    mut body: Body,
    close: bool,
    ahead: &mut BytesMut,
) -> Written {
    // No body, and no framing headers, for these (RFC 9110 §6.4.1).
    if status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        let mut out = BytesMut::with_capacity(256 + 48 * headers.len());
        head(&mut out, status, headers, Framing::None, close);
        return if io.write_all(&out).await.is_ok() {
            Written::Whole
        } else {
            Written::Cut
        };
    }
    let length = body.size_hint().exact();
    let mut out = BytesMut::with_capacity(
        256 + 48 * headers.len() + length.map_or(0, |n| n.min(COPY_UP_TO as u64) as usize),
    );
    let out = &mut out;
    head(
        out,
        status,
        headers,
        length.map_or(Framing::Chunked, Framing::Length),
        close,
    );
    match length {
        Some(_) => {
            // A whole body: its data is (almost always) one frame, ready now.
            let mut data: Option<Bytes> = None;
            loop {
                let frame = match super::until(&*io, ahead, body.frame()).await {
                    Some(Some(Ok(frame))) => frame,
                    Some(None) => break,
                    Some(Some(Err(_))) | None => return Written::Cut,
                };
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                if let Some(prev) = data.take() {
                    out.extend_from_slice(&prev);
                }
                data = Some(chunk);
            }
            let sent = match data {
                Some(data) if data.len() > COPY_UP_TO => {
                    write_both(io, out, &data).await.map_err(|(e, _)| e)
                }
                Some(data) => {
                    out.extend_from_slice(&data);
                    io.write_all(out).await
                }
                None => io.write_all(out).await,
            };
            if sent.is_ok() {
                Written::Whole
            } else {
                Written::Cut
            }
        }
        None => stream(io, out, body, ahead).await,
    }
}

/// A body of unknown length, chunked. Waits only when the body has nothing
/// ready; then writes all it had.
async fn stream(
    io: &mut TcpStream,
    out: &mut BytesMut,
    mut body: Body,
    ahead: &mut BytesMut,
) -> Written {
    loop {
        let frame = match super::until(&*io, ahead, body.frame()).await {
            Some(frame) => frame,
            None => return Written::Cut,
        };
        let mut ended = false;
        let mut next = Poll::Ready(frame);
        // Everything ready now goes into this write.
        while let Poll::Ready(frame) = next {
            match frame {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && !data.is_empty()
                    {
                        put_chunk(out, &data);
                    }
                }
                Some(Err(_)) => {
                    // Broken: what came is sent, the end is not (the
                    // client sees a cut body, not a clean one).
                    let _ = io.write_all(out).await;
                    return Written::Cut;
                }
                None => {
                    out.extend_from_slice(b"0\r\n\r\n");
                    ended = true;
                    break;
                }
            }
            next = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut body).poll_frame(cx))).await;
        }
        if !out.is_empty() && io.write_all(out).await.is_err() {
            return Written::Cut;
        }
        out.clear();
        if ended {
            return Written::Whole;
        }
    }
}

/// How the head frames the body.
enum Framing {
    Length(u64),
    Chunked,
    /// A status that has no body.
    None,
}

/// The status line and headers, with our framing and a `date`.
fn head(
    out: &mut BytesMut,
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    close: bool,
) {
    out.reserve(256 + 48 * headers.len());
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    for (name, value) in headers {
        if matches!(
            *name,
            header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION | header::DATE
        ) {
            continue;
        }
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.put_slice(b"content-length: ");
            let mut digits = [0u8; 20];
            out.put_slice(decimal(n, &mut digits));
            out.put_slice(b"\r\n");
        }
        Framing::Chunked => out.put_slice(b"transfer-encoding: chunked\r\n"),
        Framing::None => {}
    }
    if close {
        out.put_slice(b"connection: close\r\n");
    }
    out.put_slice(b"date: ");
    date(out);
    out.put_slice(b"\r\n\r\n");
}

thread_local! {
    /// The `date` value, made once a second per serving thread.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
}

fn date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let made = httpdate::fmt_http_date(now);
            if made.len() == text.len() {
                text.copy_from_slice(made.as_bytes());
                *at = secs;
            }
        }
        out.put_slice(text);
    });
}
