//! The upstream HTTP client: connections to deployments, kept alive and reused.
//!
//! hyper-util's pooled client did more per request than a gateway needs: it
//! hashed its `(scheme, authority)` pool key with SipHash a byte at a time on
//! every checkout and return, and for HTTP/1.1 spawned a task per request that
//! waited for the connection to be free before putting it back. Here each
//! serving thread has a client of its own (so its lock is uncontended), keyed
//! by the deployment's origin string, and an HTTP/1.1 connection goes back into
//! the pool as soon as a request is handed to it: it is only taken again once
//! it reports ready, which hyper does when the previous answer has been read
//! to its end. An HTTP/2 connection (HTTPS upstreams that offer it by ALPN) is
//! shared by every request to its origin.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::upstream::Resolver;

mod body;
mod response;
mod wire;

pub use body::BodyError;
pub use response::Response;
pub use wire::WireError;

type Connector = hyper_rustls::HttpsConnector<HttpConnector<Resolver>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Connections idle longer than this are closed (servers drop theirs after
/// 60–120 s; reusing one they are about to close would fail the request).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Connections kept per origin and thread; more are closed once used.
const MAX_PER_ORIGIN: usize = 1024;
/// Pooled connections that may turn out closed when a request is handed to
/// them before a new one is opened instead.
const STALE_RETRIES: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection: refused, unreachable, DNS, TLS or HTTP/2 handshake.
    #[error("could not connect")]
    Connect(#[source] BoxError),
    /// The connection broke, or the answer was not HTTP.
    #[error(transparent)]
    Http(#[from] hyper::Error),
    /// The same, on a plain-HTTP/1.1 connection of our own.
    #[error(transparent)]
    Wire(#[from] WireError),
}

impl Error {
    /// Nothing reached the upstream: the request cost it no tokens.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

/// One request to send: its method, its headers as sets in order (a header
/// in a later set, or later in the same one, replaces an earlier one of the
/// same name, as inserting into a header map would), and its body. Written
/// straight onto the wire for plain-HTTP upstreams, with no header map.
pub struct Outgoing<'a> {
    pub method: Method,
    pub headers: [&'a [(HeaderName, HeaderValue)]; 4],
    pub body: Bytes,
}

impl Outgoing<'_> {
    /// Every header that is sent, in order: those not replaced later.
    pub(super) fn sent_headers(&self) -> impl Iterator<Item = &(HeaderName, HeaderValue)> {
        let all = || self.headers.iter().flat_map(|set| set.iter());
        all()
            .enumerate()
            .filter(move |(i, (name, _))| !all().skip(i + 1).any(|(later, _)| later == name))
            .map(|(_, h)| h)
    }

    /// The same as a request for hyper (its URI is set when sent).
    fn into_request(self) -> Request<Full<Bytes>> {
        let mut headers = axum::http::HeaderMap::new();
        for (name, value) in self.sent_headers() {
            headers.insert(name.clone(), value.clone());
        }
        let mut req = Request::new(Full::new(self.body));
        *req.method_mut() = self.method;
        *req.headers_mut() = headers;
        req
    }
}

/// Where and how to send one request: the pool key, the absolute URL
/// (HTTP/2 and connecting need it), and what HTTP/1.1 carries instead: the
/// origin-form path in the request line and the Host header (HTTP/2 has the
/// `:authority` pseudo-header and no Host).
pub struct Target<'a> {
    pub origin: &'a Arc<str>,
    pub url: &'a Uri,
    pub path: &'a Uri,
    pub host: Option<&'a HeaderValue>,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
    /// A plain-HTTP/1.1 connection of our own, idle (one carrying a
    /// request is held by the request, then by its answer's body).
    Own(wire::Conn),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
            Sender::Own(c) => !c.alive(),
        }
    }
}

struct Pooled {
    sender: Sender,
    /// When it last carried a request, or was last seen still carrying one.
    used: Instant,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Can take a request now.
    Ready,
    /// An HTTP/1.1 connection whose answer is still being read.
    Busy,
    /// Closed, or idle for longer than [`IDLE_TIMEOUT`]: to be dropped.
    Gone,
}

impl Pooled {
    fn state(&mut self, now: Instant) -> State {
        if self.sender.is_closed() {
            return State::Gone;
        }
        if let Sender::H1(s) = &self.sender
            && !s.is_ready()
        {
            // A stream can outlast the idle timeout; it is not idle.
            self.used = now;
            return State::Busy;
        }
        if now.duration_since(self.used) >= IDLE_TIMEOUT {
            State::Gone
        } else {
            State::Ready
        }
    }
}

pub struct Client {
    connector: Connector,
    /// Shared with the bodies of answers on connections of our own, which
    /// put their connection back when read to the end.
    pool: Arc<Mutex<Pool>>,
    connect_timeout: Duration,
}

struct Pool {
    origins: HashMap<Arc<str>, Vec<Pooled>, foldhash::fast::RandomState>,
    swept: Instant,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

impl Client {
    /// A client with an empty pool. HTTPS offers HTTP/2 and HTTP/1.1 by ALPN.
    pub fn new(tls: rustls::ClientConfig, connect_timeout: Duration) -> Self {
        let mut http = HttpConnector::new_with_resolver(Resolver);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        Self {
            connector,
            pool: Arc::new(Mutex::new(Pool {
                origins: HashMap::default(),
                swept: Instant::now(),
            })),
            connect_timeout,
        }
    }

    /// A poisoned lock only means another request panicked mid-checkout;
    /// the pool itself is still a list of connections.
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` and resolves when the response headers are in.
    pub async fn send(&self, target: Target<'_>, req: Outgoing<'_>) -> Result<Response, Error> {
        if target.origin.starts_with("http://") {
            return self.send_own(target, req).await;
        }
        let mut req = req.into_request();
        for _ in 0..STALE_RETRIES {
            let Some(sender) = self.checkout(target.origin) else {
                break;
            };
            match self.send_on(sender, &target, req).await {
                Ok(response) => return Ok(response),
                // The connection closed before it took the request (the
                // server's keep-alive ran out): nothing was sent, so the
                // request may go out on another connection.
                Err(Unsent::Retry(back)) => req = *back,
                Err(Unsent::Failed(e)) => return Err(e.into()),
            }
        }
        // Boxed: connecting (TCP, TLS, HTTP/2 handshake) is a large state
        // machine, and inline it made every request's future that much
        // bigger to move around (memcpy went from 6% to 18% of instructions).
        let sender = Box::pin(self.connect(target.url)).await?;
        match self.send_on(sender, &target, req).await {
            Ok(response) => Ok(response),
            Err(Unsent::Failed(e)) => Err(e.into()),
            Err(Unsent::Retry(_)) => Err(Error::Connect(
                "the new connection closed before it took the request".into(),
            )),
        }
    }

    /// Plain HTTP/1.1: on a connection of our own, driven by this task.
    async fn send_own(&self, target: Target<'_>, req: Outgoing<'_>) -> Result<Response, Error> {
        let head = wire::head(&req, target.path, target.host);
        let head_only = req.method == Method::HEAD;
        let body = req.body;
        let home = || wire::Home {
            pool: self.pool.clone(),
            origin: target.origin.clone(),
        };
        for _ in 0..STALE_RETRIES {
            let Some(Sender::Own(conn)) = self.checkout(target.origin) else {
                break;
            };
            match wire::exchange(conn, &head, &body, head_only, home()).await {
                Ok(response) => return Ok(response),
                // Closed before it took the request: another may take it.
                Err(wire::Failed::Unsent(_)) => {}
                Err(wire::Failed::Unanswered(e)) => return Err(e.into()),
            }
        }
        let conn = Box::pin(wire::connect(target.url, self.connect_timeout)).await?;
        match wire::exchange(conn, &head, &body, head_only, home()).await {
            Ok(response) => Ok(response),
            Err(wire::Failed::Unsent(e) | wire::Failed::Unanswered(e)) => Err(e.into()),
        }
    }

    /// Hands `req` to `sender` and the sender back to the pool.
    async fn send_on(
        &self,
        sender: Sender,
        target: &Target<'_>,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response, Unsent> {
        let sent = match sender {
            Sender::H1(mut s) => {
                *req.uri_mut() = target.path.clone();
                if let Some(host) = target.host {
                    req.headers_mut().insert(header::HOST, host.clone());
                }
                let sent = s.try_send_request(req);
                self.put(target.origin, Sender::H1(s));
                sent.await
            }
            Sender::H2(mut s) => {
                *req.uri_mut() = target.url.clone();
                req.headers_mut().remove(header::HOST);
                let sent = s.try_send_request(req);
                self.put(target.origin, Sender::H2(s));
                sent.await
            }
            // Plain-HTTP origins are sent by `send_own`; never pooled here.
            Sender::Own(_) => return Err(Unsent::Retry(Box::new(req))),
        };
        sent.map(Response::from_hyper)
            .map_err(|mut e| match e.take_message() {
                Some(req) => Unsent::Retry(Box::new(req)),
                None => Unsent::Failed(e.into_error()),
            })
    }

    /// A pooled connection that can take a request now, if there is one.
    fn checkout(&self, origin: &Arc<str>) -> Option<Sender> {
        let now = Instant::now();
        let mut pool = self.pool();
        if now.duration_since(pool.swept) > IDLE_TIMEOUT {
            pool.swept = now;
            pool.origins.retain(|_, conns| {
                conns.retain_mut(|c| c.state(now) != State::Gone);
                !conns.is_empty()
            });
        }
        let conns = pool.origins.get_mut(&**origin)?;
        // Newest first: the connection used last is the likeliest to be warm.
        let mut i = conns.len();
        while i > 0 {
            i -= 1;
            match conns[i].state(now) {
                State::Ready => return Some(conns.swap_remove(i).sender),
                State::Busy => {}
                State::Gone => {
                    conns.swap_remove(i);
                }
            }
        }
        None
    }

    fn put(&self, origin: &Arc<str>, sender: Sender) {
        let mut pool = self.pool();
        let conns = match pool.origins.get_mut(&**origin) {
            Some(conns) => conns,
            None => pool.origins.entry(origin.clone()).or_default(),
        };
        if conns.len() < MAX_PER_ORIGIN {
            conns.push(Pooled {
                sender,
                used: Instant::now(),
            });
        }
    }

    /// A new connection to `url`'s origin: HTTP/2 when TLS negotiated it,
    /// HTTP/1.1 otherwise. Its driving task runs on this thread's runtime.
    async fn connect(&self, url: &Uri) -> Result<Sender, Error> {
        use tower_service::Service;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(Error::Connect)?;
        let io = connector.call(url.clone()).await.map_err(Error::Connect)?;
        if io.connected().is_negotiated_h2() {
            let (sender, conn) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(|e| Error::Connect(e.into()))?;
            drive(conn);
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| Error::Connect(e.into()))?;
            drive(conn);
            Ok(Sender::H1(sender))
        }
    }

    /// Connections in the pool for `origin` (open or not yet pruned).
    #[cfg(test)]
    fn pooled(&self, origin: &str) -> usize {
        self.pool().origins.get(origin).map_or(0, Vec::len)
    }
}

/// Runs a connection's I/O on this thread's runtime until it closes.
fn drive(conn: impl std::future::Future<Output = hyper::Result<()>> + Send + 'static) {
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("upstream connection ended: {e}");
        }
    });
}

enum Unsent {
    /// The connection was closing and gave the request back untouched.
    Retry(Box<Request<Full<Bytes>>>),
    Failed(hyper::Error),
}

#[cfg(test)]
mod tests;
