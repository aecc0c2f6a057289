//! Accepting and serving client connections.
//!
//! `server.workers` shards each accept from the one listening socket and
//! serve what they accept on their own thread, with a single-threaded tokio
//! runtime and an upstream connection pool of their own. A request then runs
//! start to finish on one thread — no work-stealing hops, no cross-thread
//! wake-ups between the client side and the upstream side, and none to hand a
//! new connection over (a central acceptor cost a second thread wake-up per
//! new connection, ~0.1 ms of time to first byte on an idle box). The kernel
//! wakes the shards waiting on the socket and the first to call accept gets
//! the connection; a busy shard is slower to call it, which spreads
//! connections by load.
//!
//! Stopping: `shutdown(SHUT_RD)` on the listening socket makes Linux stop
//! listening at once for every handle on it (new connections are refused,
//! the shards' pending accepts fail), rather than when the last shard drops
//! its handle.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Gateway;
use super::front::Front;
use super::header_timer::{HeaderTimer, Shelf};

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

/// Stops the socket listening for every handle on it.
fn stop_listening(listener: &std::net::TcpListener) {
    // SAFETY: shutdown(2) on a descriptor we own; it touches no memory of ours.
    let rc = unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) };
    if rc != 0 {
        tracing::debug!(
            "shutdown of the listening socket: {}",
            std::io::Error::last_os_error()
        );
    }
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
        tokio::spawn(self.clone().probe_cooling(watching.clone()));
        if let Some(cluster) = self.cluster() {
            self.start_cluster(cluster.clone(), watching.clone());
        }
        let _watching = watching.drop_guard();

        let listener = listener.into_std()?;
        let stop = CancellationToken::new();
        let cut = CancellationToken::new();
        let _cut = cut.clone().drop_guard();
        let mut finished = Vec::new();
        for i in 1..self.shared.clients.len() {
            let handle = listener.try_clone()?;
            finished.push(self.start_shard(i, handle, stop.clone(), cut.clone())?);
        }
        shutdown.await;
        self.shared.stopping.cancel();
        // The shards first (so none logs the failed accepts that follow as
        // errors), then the socket: anything that connects from here on, or
        // had connected but was not yet accepted, is refused.
        stop.cancel();
        stop_listening(&listener);
        drop(listener);
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
                let connections = tokio_util::task::TaskTracker::new();
                runtime.block_on(async {
                    let shelf = std::sync::Arc::new(Shelf::default());
                    tokio::spawn(shelf.clone().run());
                    let timer = HeaderTimer(shelf);
                    let listener = match TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!("serving thread {index} cannot accept: {e}");
                            return;
                        }
                    };
                    loop {
                        tokio::select! {
                            biased;
                            _ = cut.cancelled() => return,
                            _ = stop.cancelled() => break,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, peer)) => {
                                    let _ = stream.set_nodelay(true);
                                    let front = Front {
                                        gateway: gateway.clone(),
                                        router: router.clone(),
                                        timer: timer.clone(),
                                        stopping: stop.clone(),
                                        peer,
                                    };
                                    connections.spawn(front.serve(stream));
                                }
                                Err(_) if stop.is_cancelled() => break,
                                Err(e) => {
                                    // Out of file descriptors or a connection
                                    // reset before accept: keep serving the
                                    // connections we have.
                                    tracing::warn!("accept failed: {e}");
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                            },
                        }
                    }
                    drop(listener);
                    // Idle connections close as `stop` is cancelled; busy
                    // ones after their request.
                    connections.close();
                    tokio::select! {
                        _ = connections.wait() => {}
                        _ = cut.cancelled() => {}
                    }
                });
                // Dropping the runtime drops the connections still open.
                drop(runtime);
                let _ = finished.send(());
            })?;
        Ok(done)
    }
}
