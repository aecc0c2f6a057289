//! Plain-HTTP/1.1 upstream connections driven by the request's own task.
//!
//! hyper's client runs each connection in a task of its own: a request went
//! over a channel to that task, which wrote it, read the answer and handed
//! the head back over another channel, so every request woke two tasks and
//! paid for both hand-overs (~13k instructions of a ~53k request). A pass-
//! through request needs none of that: here the task that routes a request
//! writes its head and body in one `writev`, reads the answer's head off the
//! same socket, and hands the rest of the connection to the answer's body,
//! which puts it back in the pool once the answer is read. HTTPS upstreams
//! (TLS, HTTP/2 by ALPN) still go through hyper.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, Method, StatusCode, Version, header};
use bytes::BytesMut;
use tokio::net::TcpStream;

use super::body::{Body, Own};
use super::response::RawHeaders;
use super::{Error, Outgoing, Pool, Pooled, Sender};
use crate::gateway::framing::{Framing, content_length, decimal, has_token, write_both};

/// The largest answer head read (status line and headers).
const MAX_HEAD: usize = 64 << 10;
/// The most headers an answer may carry.
const MAX_HEADERS: usize = 100;
/// The first read's buffer: most answers, head and body, fit in it.
const FIRST_READ: usize = 16 << 10;

/// Why an answer could not be read from a connection of our own.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("the connection closed before an answer came")]
    Closed,
    #[error("the answer is not HTTP/1.1 ({0})")]
    NotHttp(httparse::Error),
    #[error("the answer's head is larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("the answer's framing is not valid: {0}")]
    Framing(&'static str),
}

/// An open connection to a plain-HTTP upstream, idle or carrying a request.
pub(in crate::gateway) struct Conn {
    pub(super) io: TcpStream,
}

impl Conn {
    /// Whether an idle connection can take a request: the server has not
    /// closed it or sent anything unasked. The socket's readiness says so
    /// without a syscall in the usual case (nothing happened since the last
    /// answer was read); only when something did is it read to find out.
    pub(super) fn alive(&self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readiness can be stale (the last read filled its buffer
            // exactly): a read that would block means nothing came.
            Poll::Ready(Ok(())) => matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }
}

/// Where a connection goes back once its answer has been read.
pub(super) struct Home {
    pub(super) pool: Arc<Mutex<Pool>>,
    pub(super) origin: Arc<str>,
}

impl Home {
    pub(super) fn put(&self, conn: Conn) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let conns = match pool.origins.get_mut(&*self.origin) {
            Some(conns) => conns,
            None => pool.origins.entry(self.origin.clone()).or_default(),
        };
        if conns.len() < super::MAX_PER_ORIGIN {
            conns.push(Pooled {
                sender: Sender::Own(conn),
                used: Instant::now(),
            });
        }
    }
}

/// A new connection to `url`'s host, tried address by address within
/// `timeout` altogether.
pub(super) async fn connect(url: &axum::http::Uri, timeout: Duration) -> Result<Conn, Error> {
    let connect_error = |e: io::Error| Error::Connect(Box::new(e));
    let host = url.host().unwrap_or_default();
    let port = url.port_u16().unwrap_or(80);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => {
            use tower_service::Service;
            let name = bare
                .parse()
                .map_err(|_| connect_error(io::Error::other(format!("`{host}` is not a host"))))?;
            super::super::upstream::Resolver
                .call(name)
                .await
                .map_err(connect_error)?
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect()
        }
    };
    // Each address gets an equal share of what is left of the timeout, so
    // one that never answers (IPv6 blackholed) leaves time for the next.
    let deadline = tokio::time::Instant::now() + timeout;
    let attempts = async {
        let mut last = io::Error::new(io::ErrorKind::NotFound, format!("`{host}` has no address"));
        let count = addrs.len();
        for (i, addr) in addrs.into_iter().enumerate() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let share = left / u32::try_from(count - i).unwrap_or(1).max(1);
            match tokio::time::timeout(share, TcpStream::connect(addr)).await {
                Ok(Ok(io)) => {
                    io.set_nodelay(true)?;
                    return Ok(Conn { io });
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{addr} did not accept within {:.1}s", share.as_secs_f64()),
                    );
                }
            }
        }
        Err(last)
    };
    match tokio::time::timeout(timeout, attempts).await {
        Ok(done) => done.map_err(connect_error),
        Err(_) => Err(connect_error(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no connection within {:.1}s", timeout.as_secs_f64()),
        ))),
    }
}

/// A request's head as it goes on the wire: the request line in origin
/// form, Host, the request's headers, and the body's length.
pub(super) fn head(
    req: &Outgoing<'_>,
    path: &axum::http::Uri,
    host: Option<&HeaderValue>,
) -> Vec<u8> {
    let target = path.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Vec::with_capacity(192 + target.len());
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = host {
        line(&mut out, b"host", host.as_bytes());
    }
    for (name, value) in req.sent_headers() {
        // Framing is ours to write; Host was written above.
        if matches!(
            *name,
            header::HOST | header::CONTENT_LENGTH | header::TRANSFER_ENCODING
        ) {
            continue;
        }
        line(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !req.body.is_empty() || req.method == Method::POST {
        let mut digits = [0u8; 20];
        line(
            &mut out,
            b"content-length",
            decimal(req.body.len() as u64, &mut digits),
        );
    }
    out.extend_from_slice(b"\r\n");
    out
}

fn line(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// How a request on a connection came to nothing.
pub(super) enum Failed {
    /// The connection was found closed before the request went out whole:
    /// the server cannot have acted on it, so it may go out again.
    Unsent(WireError),
    /// It went out, and no answer could be read.
    Unanswered(WireError),
}

/// Sends a request on `conn` and reads its answer's head; the body is read
/// as its reader asks, on the same connection.
pub(super) async fn exchange(
    mut conn: Conn,
    head: &[u8],
    body: &[u8],
    head_only: bool,
    home: Home,
) -> Result<super::Response, Failed> {
    match write_both(&mut conn.io, head, body).await {
        Ok(()) => {}
        // Nothing went out: the server cannot have acted on it.
        Err((e, 0)) => return Err(Failed::Unsent(e.into())),
        // Part went out: the server may have answered (a 413 before the
        // whole body) and closed; either way it is not sent again.
        Err((e, _)) => return Err(Failed::Unanswered(e.into())),
    }
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    loop {
        match tokio_util::io::read_buf(&mut conn.io, &mut buf).await {
            Ok(0) if buf.is_empty() => return Err(Failed::Unanswered(WireError::Closed)),
            Ok(0) => {
                return Err(Failed::Unanswered(WireError::Io(
                    io::ErrorKind::UnexpectedEof.into(),
                )));
            }
            Ok(_) => {}
            Err(e) => return Err(Failed::Unanswered(e.into())),
        }
        match parse(&mut buf, head_only) {
            Ok(Some((head, framing, reusable))) => {
                let own = Own::new(conn, buf, framing, reusable, home);
                return Ok(super::Response::raw(
                    head.status,
                    head.version,
                    head.headers,
                    Body::own(own),
                ));
            }
            Ok(None) if buf.len() > MAX_HEAD => {
                return Err(Failed::Unanswered(WireError::HeadTooLarge));
            }
            Ok(None) => {
                if buf.capacity() - buf.len() < 1024 {
                    buf.reserve(FIRST_READ);
                }
            }
            Err(e) => return Err(Failed::Unanswered(e)),
        }
    }
}

struct Head {
    status: StatusCode,
    version: Version,
    headers: RawHeaders,
}

/// The answer's head, when the buffer holds all of it (taken off the
/// buffer, which keeps the body's first bytes); informational answers
/// (1xx) before it are skipped.
fn parse(buf: &mut BytesMut, head_only: bool) -> Result<Option<(Head, Framing, bool)>, WireError> {
    loop {
        // Left uninitialised: zeroing 100 headers (3 KiB) cost more than
        // reading the handful an answer has.
        let mut slots =
            [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut answer = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut answer,
            buf,
            &mut slots,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(WireError::NotHttp(e)),
        };
        let code = answer.code.unwrap_or_default();
        let status = StatusCode::from_u16(code).map_err(|_| WireError::Framing("no status"))?;
        if status.is_informational() {
            if code == 101 {
                return Err(WireError::Framing("it switched protocols, unasked"));
            }
            let _ = buf.split_to(len);
            continue;
        }
        let version = if answer.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        // Names and values stay where they are in the head (see
        // `RawHeaders`); a head is at most MAX_HEAD bytes, so u32 offsets.
        let base = buf.as_ptr() as usize;
        let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        let spans = answer
            .headers
            .iter()
            .map(|h| {
                let (n, v) = (at(h.name.as_bytes()), at(h.value));
                [n, n + h.name.len() as u32, v, v + h.value.len() as u32]
            })
            .collect();
        let headers = RawHeaders::new(buf.split_to(len).freeze(), spans);
        let (framing, reusable) = framing(status, version, &headers, head_only)?;
        return Ok(Some((
            Head {
                status,
                version,
                headers,
            },
            framing,
            reusable,
        )));
    }
}

/// How the body ends, and whether the connection can carry another
/// request after it (RFC 9112 §6.3).
fn framing(
    status: StatusCode,
    version: Version,
    headers: &RawHeaders,
    head_only: bool,
) -> Result<(Framing, bool), WireError> {
    let mut reusable =
        version == Version::HTTP_11 && !headers.all("connection").any(|v| has_token(v, b"close"));
    if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok((Framing::Length(0), reusable));
    }
    if let Some(te) = headers.all("transfer-encoding").last() {
        // With a Content-Length beside it the message is suspect (request
        // smuggling): read as chunked, and the connection not reused.
        if headers.all("content-length").next().is_some() {
            reusable = false;
        }
        let last = te.rsplit(|&b| b == b',').next().unwrap_or_default();
        return Ok(if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
            (Framing::CHUNKED, reusable)
        } else {
            (Framing::UntilClose, false)
        });
    }
    let mut length = None;
    for value in headers.all("content-length") {
        let n =
            content_length(value).ok_or(WireError::Framing("Content-Length is not a number"))?;
        if length.is_some_and(|l| l != n) {
            return Err(WireError::Framing("two different Content-Lengths"));
        }
        length = Some(n);
    }
    Ok(match length {
        Some(n) => (Framing::Length(n), reusable),
        None => (Framing::UntilClose, false),
    })
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}
