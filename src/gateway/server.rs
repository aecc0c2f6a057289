//! Accepting and serving client connections.
//!
//! `server.workers` shards each accept from the one listening socket and
//! serve what they accept on their own thread, with a single-threaded tokio
//! runtime and an upstream connection pool of their own. A request then runs
//! start to finish on one thread — no work-stealing hops, no cross-thread
//! wakeups between the client side and the upstream side, not even to hand a
//! new connection over — which on a small box shared with other processes is
//! ~30% less CPU per request than one multi-threaded runtime (README,
//! Benchmarks). The kernel wakes every shard waiting on the socket and the
//! first to call accept gets the connection; a busy shard is slower to
//! call it, which spreads connections by load.

use std::cell::Cell;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{Gateway, Peer};

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

        // Each shard registers its own handle on the socket with its own
        // runtime; the socket closes when the last shard stops accepting.
        let listener = listener.into_std()?;
        let stop = CancellationToken::new();
        let cut = CancellationToken::new();
        let _cut = cut.clone().drop_guard();
        let mut finished = Vec::new();
        for i in 1..self.shared.clients.len() {
            let listener = listener.try_clone()?;
            finished.push(self.start_shard(i, listener, stop.clone(), cut.clone())?);
        }
        drop(listener);
        shutdown.await;
        stop.cancel();
        for done in finished {
            let _ = done.await;
        }
        Ok(())
    }

    /// Starts shard `index` on its own thread; the receiver resolves when
    /// the shard has stopped.
    fn start_shard(
        &self,
        index: usize,
        listener: std::net::TcpListener,
        stop: CancellationToken,
        cut: CancellationToken,
    ) -> std::io::Result<oneshot::Receiver<()>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (finished, done) = oneshot::channel();
        let gateway = self.clone();
        std::thread::Builder::new()
            .name(format!("switchboard-{index}"))
            .spawn(move || {
                SHARD.set(index);
                let router = gateway.router();
                let graceful = GracefulShutdown::new();
                runtime.block_on(async {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!("serving thread {index} cannot listen: {e}");
                            return;
                        }
                    };
                    loop {
                        let (stream, peer) = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok(conn) => conn,
                                Err(e) => {
                                    // Out of file descriptors or a connection
                                    // reset before accept: keep serving the
                                    // connections we have.
                                    tracing::warn!("accept failed: {e}");
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                    continue;
                                }
                            },
                            _ = stop.cancelled() => break,
                            _ = cut.cancelled() => return,
                        };
                        gateway.serve_connection(&router, &graceful, stream, peer);
                    }
                    drop(listener);
                    tokio::select! {
                        _ = graceful.shutdown() => {}
                        _ = cut.cancelled() => {}
                    }
                });
                // Dropping the runtime drops the connections still open.
                drop(runtime);
                let _ = finished.send(());
            })?;
        Ok(done)
    }

    fn serve_connection(
        &self,
        router: &axum::Router,
        graceful: &GracefulShutdown,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) {
        let _ = stream.set_nodelay(true);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(self.settings().header_read_timeout)
            // Headers and a small body in one write(2) rather than a writev.
            .writev(false);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut req| {
            req.extensions_mut().insert(Peer(peer));
            tower_service::Service::call(&mut router.clone(), req)
        });
        let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors here are the client's (a reset, a header timeout, a
            // malformed request that hyper already answered).
            if let Err(e) = conn.await {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }
}
