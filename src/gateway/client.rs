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

use axum::http::{HeaderValue, Request, Uri, header};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::upstream::Resolver;

/// What an upstream answered: status, headers, and the body still to read.
pub type Response = axum::http::Response<hyper::body::Incoming>;

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
}

impl Error {
    /// Nothing reached the upstream: the request cost it no tokens.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
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
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
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
    pool: Mutex<Pool>,
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
            pool: Mutex::new(Pool {
                origins: HashMap::default(),
                swept: Instant::now(),
            }),
        }
    }

    /// A poisoned lock only means another request panicked mid-checkout;
    /// the pool itself is still a list of connections.
    fn pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `req` (its URI is set here) and resolves when the response
    /// headers are in.
    pub async fn send(
        &self,
        target: Target<'_>,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response, Error> {
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
        };
        sent.map_err(|mut e| match e.take_message() {
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
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// A loopback HTTP/1.1 server that counts the connections it accepts and
    /// answers each request `ok`; with `close_after_answer` it closes every
    /// connection after its first answer (without saying so in a header, as
    /// a server whose keep-alive timer ran out does); with `hold`, it sends
    /// half of each body and the rest once `hold` is notified.
    struct Upstream {
        origin: Arc<str>,
        url: Uri,
        path: Uri,
        host: HeaderValue,
        accepted: Arc<AtomicUsize>,
    }

    async fn upstream(close_after_answer: bool) -> Upstream {
        held_upstream(close_after_answer, None).await
    }

    async fn held_upstream(
        close_after_answer: bool,
        hold: Option<Arc<tokio::sync::Notify>>,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(answer(stream, close_after_answer, hold.clone()));
            }
        });
        Upstream::at(addr, accepted)
    }

    impl Upstream {
        fn at(addr: std::net::SocketAddr, accepted: Arc<AtomicUsize>) -> Self {
            Upstream {
                origin: format!("http://{addr}").into(),
                url: format!("http://{addr}/v1/chat/completions")
                    .parse()
                    .unwrap(),
                path: Uri::from_static("/v1/chat/completions"),
                host: HeaderValue::from_str(&addr.to_string()).unwrap(),
                accepted,
            }
        }
    }

    async fn answer(
        mut stream: TcpStream,
        close_after_answer: bool,
        hold: Option<Arc<tokio::sync::Notify>>,
    ) {
        let mut buf = Vec::new();
        loop {
            // One request: headers, then the Content-Length body.
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            assert!(
                head.starts_with("post /v1/chat/completions http/1.1"),
                "{head}"
            );
            assert!(head.contains("\r\nhost: 127.0.0.1:"), "{head}");
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < head_end + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..head_end + length);
            let reply =
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\no";
            if stream.write_all(reply).await.is_err() {
                return;
            }
            if let Some(hold) = &hold {
                hold.notified().await;
            }
            if stream.write_all(b"k").await.is_err() || close_after_answer {
                return;
            }
        }
    }

    fn client() -> Client {
        super::super::upstream::clients(Duration::from_secs(2), 1)
            .unwrap()
            .remove(0)
    }

    fn request() -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from_static(b"{}")));
        *req.method_mut() = axum::http::Method::POST;
        req
    }

    async fn call(client: &Client, up: &Upstream) -> Result<Bytes, Error> {
        let target = Target {
            origin: &up.origin,
            url: &up.url,
            path: &up.path,
            host: Some(&up.host),
        };
        let response = client.send(target, request()).await?;
        assert_eq!(response.status(), 200);
        Ok(response.into_body().collect().await?.to_bytes())
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let up = upstream(false).await;
        let client = client();
        for _ in 0..5 {
            assert_eq!(call(&client, &up).await.unwrap(), "ok");
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(client.pooled(&up.origin), 1);
    }

    #[tokio::test]
    async fn a_connection_still_answering_is_not_shared_and_comes_back_when_read() {
        let hold = Arc::new(tokio::sync::Notify::new());
        let up = held_upstream(false, Some(hold.clone())).await;
        let client = client();
        let target = || Target {
            origin: &up.origin,
            url: &up.url,
            path: &up.path,
            host: Some(&up.host),
        };
        // Two answers whose bodies are not read yet hold two connections.
        let first = client.send(target(), request()).await.unwrap();
        let second = client.send(target(), request()).await.unwrap();
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        // Still answering long past the idle timeout is not idle.
        let later = Instant::now() + 2 * IDLE_TIMEOUT;
        let states = |at| {
            let mut pool = client.pool();
            let conns = pool.origins.get_mut(&up.origin).unwrap();
            conns.iter_mut().map(|c| c.state(at)).collect::<Vec<_>>()
        };
        assert_eq!(states(later), [State::Busy, State::Busy]);
        hold.notify_waiters();
        for response in [first, second] {
            assert_eq!(
                response.into_body().collect().await.unwrap().to_bytes(),
                "ok"
            );
        }
        for _ in 0..4 {
            let reading = call(&client, &up);
            tokio::pin!(reading);
            // Each answer is held half-sent until released.
            let body = loop {
                tokio::select! {
                    body = &mut reading => break body.unwrap(),
                    _ = tokio::task::yield_now() => hold.notify_waiters(),
                }
            };
            assert_eq!(body, "ok");
        }
        assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
        // Done answering, then idle for longer than the timeout: dropped.
        assert!(
            states(later + 2 * IDLE_TIMEOUT)
                .iter()
                .all(|s| *s == State::Gone)
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_not_reused() {
        let up = upstream(true).await;
        let client = client();
        for round in 1..=3 {
            assert_eq!(call(&client, &up).await.unwrap(), "ok");
            // Wait (bounded) until the client has seen the server hang up,
            // so the next request finds a closed connection in the pool.
            let closed = async {
                while !client.pool().origins[&up.origin]
                    .iter()
                    .all(|c| c.sender.is_closed())
                {
                    tokio::task::yield_now().await;
                }
            };
            tokio::time::timeout(Duration::from_secs(5), closed)
                .await
                .expect("the client never saw the connection close");
            assert_eq!(up.accepted.load(Ordering::SeqCst), round);
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let up = Upstream::at(addr, Arc::default());
        let err = call(&client(), &up).await.unwrap_err();
        assert!(err.is_connect(), "{err:?}");
    }

    /// An HTTPS upstream that offers HTTP/2 by ALPN: requests go over one
    /// shared connection, with `:authority` rather than a Host header.
    #[tokio::test]
    async fn https_upstreams_that_offer_http2_share_one_connection() {
        use tokio_rustls::rustls as tls;
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = tls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = || Arc::new(tls::crypto::ring::default_provider());
        let mut server = tls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let counted = accepted.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let Ok(stream) = acceptor.accept(tcp).await else {
                    continue;
                };
                let seen_tx = seen_tx.clone();
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let _ = seen_tx.send((
                            req.version(),
                            req.uri().to_string(),
                            req.headers().contains_key(header::HOST),
                        ));
                        async {
                            Ok::<_, std::convert::Infallible>(axum::http::Response::new(Full::new(
                                Bytes::from_static(b"ok"),
                            )))
                        }
                    });
                tokio::spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
                );
            }
        });

        let mut roots = tls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let client_tls = tls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = Client::new(client_tls, Duration::from_secs(2));
        let url: Uri = format!("https://localhost:{port}/v1/chat/completions")
            .parse()
            .unwrap();
        let origin: Arc<str> = format!("https://localhost:{port}").into();
        let host = HeaderValue::from_str(&format!("localhost:{port}")).unwrap();
        for _ in 0..3 {
            let target = Target {
                origin: &origin,
                url: &url,
                path: &Uri::from_static("/v1/chat/completions"),
                host: Some(&host),
            };
            let response = client.send(target, request()).await.unwrap();
            assert_eq!(response.version(), axum::http::Version::HTTP_2);
            assert_eq!(
                response.into_body().collect().await.unwrap().to_bytes(),
                "ok"
            );
            let (version, uri, has_host) = seen.recv().await.unwrap();
            assert_eq!(version, axum::http::Version::HTTP_2);
            assert_eq!(uri, url.to_string());
            assert!(!has_host, "HTTP/2 carries the authority, not a Host header");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(client.pooled(&origin), 1);
    }
}
