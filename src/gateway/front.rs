//! Client connections: the proxied requests served by a loop of our own,
//! everything else by hyper.
//!
//! A proxied request is a POST with a JSON body of known length, and its
//! answer a head with a whole body or a stream of chunks. hyper's server
//! handled it with a dispatcher that polls a connection's read, write and
//! service states in turn, builds the response head through a header map
//! encoder, and hands body frames over one poll at a time (~15k of a
//! request's instructions). Here one task reads the head with httparse,
//! reads the body behind it, runs the proxy, and writes the answer: a head
//! and a whole body in one write; a stream with everything ready in each
//! write, so its last events and its end go out together.
//!
//! The first request on a connection that is anything else (another path
//! or method, a chunked or oversized body, an upgrade, HTTP/1.0, a head
//! httparse does not take) hands the connection, with the bytes read so
//! far, to hyper and the router for the rest of its life: hyper answers
//! what is malformed (400, 431) and what is over the limit (413) as before.

mod head;
mod rewind;
mod write;

use std::future::Future;
use std::net::SocketAddr;

use bytes::BytesMut;
use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::body::Incoming;
use hyper::rt::Timer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use self::head::Parsed;
use super::header_timer::HeaderTimer;
use super::{Gateway, Peer, proxy};

/// A connection's read buffer to start with (hyper's is the same).
const READ_SIZE: usize = 8 << 10;
/// Heads longer than this go to hyper, which answers 431.
const MAX_HEAD: usize = 64 << 10;
/// Bytes a client may send ahead (pipelined) while its request is served.
const MAX_AHEAD: usize = 64 << 10;

/// What serving one client connection needs.
pub(super) struct Front {
    pub(super) gateway: Gateway,
    pub(super) router: axum::Router,
    pub(super) timer: HeaderTimer,
    /// Cancelled when the gateway stops: idle connections close, busy ones
    /// finish their request and then close.
    pub(super) stopping: CancellationToken,
    pub(super) peer: SocketAddr,
}

impl Front {
    pub(super) async fn serve(self, mut io: TcpStream) {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        let settings = self.gateway.settings();
        let (max_body, header_timeout) = (settings.max_body_bytes, settings.header_read_timeout);
        drop(settings);
        loop {
            let mut deadline = None;
            let head = loop {
                if !buf.is_empty() {
                    match head::parse(&mut buf, max_body) {
                        Parsed::Ours(head) => break head,
                        Parsed::NotOurs => return self.hand_over(io, buf).await,
                        Parsed::Partial if buf.len() > MAX_HEAD => {
                            return self.hand_over(io, buf).await;
                        }
                        Parsed::Partial => {}
                    }
                }
                // A head must be whole within the timeout, counted from
                // when the loop starts waiting for it: an idle keep-alive
                // connection (or one that never sends) is closed after it
                // too, as hyper does. Idle, it closes when the gateway stops.
                let timeout = deadline.get_or_insert_with(|| self.timer.sleep(header_timeout));
                let more = if buf.is_empty() {
                    tokio::select! {
                        biased;
                        read = read_more(&mut io, &mut buf) => read,
                        _ = timeout.as_mut() => false,
                        _ = self.stopping.cancelled() => false,
                    }
                } else {
                    tokio::select! {
                        biased;
                        read = read_more(&mut io, &mut buf) => read,
                        _ = timeout.as_mut() => false,
                    }
                };
                if !more {
                    return;
                }
            };
            drop(deadline);
            if buf.len() < head.length {
                if head.expects_continue
                    && io
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await
                        .is_err()
                {
                    return;
                }
                // Room for what has come, not for what the client says
                // will: a head alone must not hold the whole limit.
                buf.reserve((head.length - buf.len()).min(1 << 20));
                while buf.len() < head.length {
                    if !read_more(&mut io, &mut buf).await {
                        return;
                    }
                }
            }
            let body = buf.split_to(head.length).freeze();
            let head = *head;
            let request = axum::http::Request::from_parts(head.parts, axum::body::Body::from(body));
            let handled = proxy::handle(self.gateway.clone(), head.endpoint, request);
            let Some(response) = until(&io, &mut buf, handled).await else {
                // The client left: dropping the request cancels it.
                return;
            };
            let close = head.close || self.stopping.is_cancelled();
            let (parts, body) = response.into_parts();
            let written = write::answer(
                &mut io,
                (parts.status, &parts.headers),
                body,
                close,
                &mut buf,
            )
            .await;
            if written != write::Written::Whole || close {
                return;
            }
            // A large body grew the buffer: give it back between requests.
            if buf.is_empty() && buf.capacity() > 4 * READ_SIZE {
                buf = BytesMut::with_capacity(READ_SIZE);
            }
        }
    }

    /// hyper and the router serve the connection from here on, starting
    /// with the bytes already read.
    async fn hand_over(self, io: TcpStream, read: BytesMut) {
        let settings = self.gateway.settings();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(self.timer.clone())
            .header_read_timeout(settings.header_read_timeout)
            // Headers and a small body in one write(2) rather than a writev.
            .writev(false);
        drop(settings);
        let io = rewind::Rewind::new(read.freeze(), io);
        let service = service(self.gateway.clone(), self.router.clone(), self.peer);
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(io), service);
        tokio::pin!(conn);
        let ended = tokio::select! {
            ended = conn.as_mut() => ended,
            _ = self.stopping.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        // Errors here are the client's (a reset, a header timeout, a
        // malformed request that hyper already answered).
        if let Err(e) = ended {
            tracing::debug!(peer = %self.peer, "connection ended: {e}");
        }
    }
}

/// hyper's service: the proxied endpoints past the router (its matching,
/// boxed futures and body re-wrapping cost 3% of a request), the rest
/// through it.
fn service(
    gateway: Gateway,
    router: axum::Router,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send,
> + Send {
    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let proxied = match *req.method() {
            hyper::Method::POST => proxy::endpoint_for(req.uri().path()),
            _ => None,
        };
        match proxied {
            Some(endpoint) => {
                let request = req.map(axum::body::Body::new);
                Either::Left(proxy::handle(gateway.clone(), endpoint, request).map(Ok))
            }
            None => {
                req.extensions_mut().insert(Peer(peer));
                Either::Right(tower_service::Service::call(&mut router.clone(), req))
            }
        }
    })
}

/// Reads what the socket has into `buf`; false when the client has closed
/// its side or the connection broke.
async fn read_more(io: &mut TcpStream, buf: &mut BytesMut) -> bool {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(READ_SIZE);
    }
    matches!(io.read_buf(buf).await, Ok(n) if n > 0)
}

/// Runs `work` while watching the client: `None` when it left first (its
/// side closed or reset). What it sends ahead meanwhile is kept in `ahead`.
pub(super) async fn until<F: Future>(
    io: &TcpStream,
    ahead: &mut BytesMut,
    work: F,
) -> Option<F::Output> {
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            done = &mut work => return Some(done),
            ready = io.readable(), if ahead.len() < MAX_AHEAD => {
                ready.ok()?;
                if ahead.capacity() - ahead.len() < 1024 {
                    ahead.reserve(READ_SIZE);
                }
                match io.try_read_buf(ahead) {
                    Ok(0) => return None,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return None,
                }
            }
        }
    }
}
