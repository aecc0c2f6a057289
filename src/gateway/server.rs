//! Accepting and serving client connections.
//!
//! One acceptor hands each new connection to one of `server.workers` shards:
//! a thread with its own single-threaded tokio runtime and its own upstream
//! connection pool. A request then runs start to finish on one thread — no
//! work-stealing hops, no cross-thread wakeups between the client side and
//! the upstream side — which on a small box shared with other processes is
//! ~30% less CPU per request than one multi-threaded runtime (README,
//! Benchmarks). A connection goes to the shard with the fewest open
//! connections, so long-lived streams spread evenly.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use futures_util::FutureExt;
use futures_util::future::Either;
use hyper::body::Incoming;

use super::{Gateway, Peer, proxy};

thread_local! {
    /// Which of the gateway's upstream clients this thread uses: 0 outside
    /// the shards (the runtime that runs the dashboard, admin tests, the
    /// demo), `i` on shard `i`.
    static SHARD: Cell<usize> = const { Cell::new(0) };
}

/// The index of this thread's upstream client.
pub(super) fn shard_index() -> usize {
    SHARD.get()
}

type Handoff = (std::net::TcpStream, SocketAddr);

struct Shard {
    conns: mpsc::UnboundedSender<Handoff>,
    open: Arc<AtomicUsize>,
    done: oneshot::Receiver<()>,
}

/// Counts a connection as open on its shard while it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Aborts a spawned task when its owner is dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The listening socket, accepted from as a plain socket: a connection goes
/// to a shard's reactor, so registering it with this runtime's first (as
/// `tokio::net::TcpListener::accept` does) only added an epoll add and
/// delete per connection.
struct Acceptor(tokio::io::unix::AsyncFd<std::net::TcpListener>);

impl Acceptor {
    fn new(listener: TcpListener) -> std::io::Result<Self> {
        let listener = listener.into_std()?;
        listener.set_nonblocking(true)?;
        // SAFETY: the `AsyncFd` owns the listener, and with it the one file
        // descriptor it registers; nothing else closes or replaces it.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(
                listener,
                tokio::io::Interest::READABLE,
            )
        };
        Ok(Self(registered?))
    }

    async fn accept(&self) -> std::io::Result<Handoff> {
        loop {
            let mut ready = self.0.readable().await?;
            match ready.try_io(|listener| listener.get_ref().accept()) {
                Ok(accepted) => {
                    let (stream, peer) = accepted?;
                    stream.set_nonblocking(true)?;
                    let _ = stream.set_nodelay(true);
                    return Ok((stream, peer));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

/// Accepts until `shutdown` resolves and hands each connection to the shard
/// with the fewest open; then closes the listener (new connections are
/// refused from here on) and the hand-off channels, and returns what tells
/// when each shard has finished.
async fn accept_loop(
    acceptor: Acceptor,
    shards: Vec<Shard>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Vec<oneshot::Receiver<()>> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = acceptor.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: keep serving the connections we have.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(shard) = shards.iter().min_by_key(|s| s.open.load(Ordering::Relaxed)) else {
            break;
        };
        shard.open.fetch_add(1, Ordering::Relaxed);
        if shard.conns.send((stream, peer)).is_err() {
            // Only a shard whose runtime died stops receiving; the client
            // sees its connection closed and retries.
            shard.open.fetch_sub(1, Ordering::Relaxed);
            tracing::error!("a serving thread has stopped; connection from {peer} dropped");
        }
    }
    drop(acceptor);
    // Closing the hand-off channels tells each shard to stop once it has
    // taken the connections already handed to it.
    shards.into_iter().map(|s| s.done).collect()
}

impl Gateway {
    /// Serves until `shutdown` resolves, then stops accepting and waits for
    /// the connections still open to finish their requests (idle keep-alive
    /// connections are closed at once). The caller bounds that wait: dropping
    /// this future stops the shards and cuts what is still in flight.
    ///
    /// Our own accept loop rather than `axum::serve`: it sets a header read
    /// timeout (a client that trickles its headers is cut off), TCP_NODELAY,
    /// and hands each request its peer address for the admin guard.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        if let Ok(addr) = listener.local_addr() {
            let _ = self.shared.bound.set(addr);
        }
        let watching = CancellationToken::new();
        tokio::spawn(self.clone().watch_config(watching.clone()));
        let _watching = watching.drop_guard();

        let cut = CancellationToken::new();
        let _cut = cut.clone().drop_guard();
        let shards = (1..self.shared.clients.len())
            .map(|i| self.start_shard(i, cut.clone()))
            .collect::<std::io::Result<Vec<_>>>()?;

        // The accept loop is a task of its own rather than part of this
        // future: on the multi-threaded main runtime the caller's future runs
        // on the thread that called `block_on`, while readiness arrives on the
        // runtime's worker, so every new connection cost a futex wake-up of
        // the calling thread before it was even accepted (strace; ~0.1 ms
        // more time to first byte). Aborted when this future is dropped.
        let acceptor = Acceptor::new(listener)?;
        let accepting = tokio::spawn(accept_loop(acceptor, shards, shutdown));
        let _abort = AbortOnDrop(accepting.abort_handle());
        let finished = accepting.await.map_err(std::io::Error::other)?;
        for done in finished {
            let _ = done.await;
        }
        Ok(())
    }

    /// Starts shard `index` on its own thread.
    fn start_shard(&self, index: usize, cut: CancellationToken) -> std::io::Result<Shard> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (conns, mut incoming) = mpsc::unbounded_channel::<Handoff>();
        let open = Arc::new(AtomicUsize::new(0));
        let (finished, done) = oneshot::channel();
        let gateway = self.clone();
        let counted = open.clone();
        std::thread::Builder::new()
            .name(format!("switchboard-{index}"))
            .spawn(move || {
                SHARD.set(index);
                let router = gateway.router();
                let graceful = GracefulShutdown::new();
                runtime.block_on(async {
                    loop {
                        tokio::select! {
                            conn = incoming.recv() => match conn {
                                Some((stream, peer)) => {
                                    let open = Open(counted.clone());
                                    gateway.serve_connection(&router, &graceful, stream, peer, open);
                                }
                                None => break,
                            },
                            _ = cut.cancelled() => return,
                        }
                    }
                    tokio::select! {
                        _ = graceful.shutdown() => {}
                        _ = cut.cancelled() => {}
                    }
                });
                // Dropping the runtime drops the connections still open.
                drop(runtime);
                let _ = finished.send(());
            })?;
        Ok(Shard { conns, open, done })
    }

    fn serve_connection(
        &self,
        router: &axum::Router,
        graceful: &GracefulShutdown,
        stream: std::net::TcpStream,
        peer: SocketAddr,
        open: Open,
    ) {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(%peer, "cannot serve connection: {e}");
                return;
            }
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.settings().header_read_timeout)
            // Headers and a small body in one write(2) rather than a writev.
            .writev(false);
        let router = router.clone();
        let gateway = self.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // The proxied endpoints skip the router (see `proxy::endpoint_for`);
            // everything else, including other methods on those paths, goes
            // through it.
            let proxied = match *req.method() {
                hyper::Method::POST => proxy::endpoint_for(req.uri().path()),
                _ => None,
            };
            match proxied {
                Some(endpoint) => {
                    let request = req.map(axum::body::Body::new);
                    // Inline, not boxed: ~2.4 KB more in every connection's
                    // state (2.4 MB per 1,000 idle keep-alive connections),
                    // against 1.6% more instructions per request boxed.
                    Either::Left(proxy::handle(gateway.clone(), endpoint, request).map(Ok))
                }
                None => {
                    req.extensions_mut().insert(Peer(peer));
                    Either::Right(tower_service::Service::call(&mut router.clone(), req))
                }
            }
        });
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _open = open;
            // Errors here are the client's (a reset, a header timeout, a
            // malformed request that hyper already answered).
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
