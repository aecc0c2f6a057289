//! The accept loop and the HTTP/1.1 connections.
//!
//! Hyper serves each connection directly (no router, no middleware): the
//! connection-level faults need to reach the socket, which a framework
//! would hide.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::handler;
use super::state::Shared;

/// How long to back off after a failed accept (out of file descriptors...),
/// instead of spinning on an error that persists.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(serve_connection(stream, shared.clone(), stop.clone()));
            }
            Err(e) => {
                tracing::warn!("mock-upstream: accept failed: {e}");
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// One client connection, as the handler sees it.
pub(super) struct Conn {
    pub(super) shared: Arc<Shared>,
    reset: AtomicBool,
}

impl Conn {
    /// Makes the connection close with an RST instead of a FIN once hyper
    /// drops it (the handler then fails the request so that it does).
    pub(super) fn reset_on_close(&self) {
        self.reset.store(true, Relaxed);
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>, stop: CancellationToken) {
    // Stream chunks must leave at once, not wait for Nagle.
    let _ = stream.set_nodelay(true);
    let conn = Arc::new(Conn {
        shared,
        reset: AtomicBool::new(false),
    });
    let io = TokioIo::new(ConnIo {
        stream,
        conn: conn.clone(),
    });
    let service = service_fn(move |req| {
        let conn = conn.clone();
        async move { handler::handle(&conn, req).await }
    });
    let serving = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    // Errors here are the client's or deliberate (aborted bodies): nothing
    // to report. Shutting down drops the connection mid-flight.
    tokio::select! {
        _ = serving => {}
        () = stop.cancelled() => {}
    }
}

/// The TCP stream, able to close with an RST when its connection asks for it.
struct ConnIo {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl Drop for ConnIo {
    fn drop(&mut self) {
        if self.conn.reset.load(Relaxed) {
            // SO_LINGER 0: the close sends an RST. Zero linger never blocks.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
