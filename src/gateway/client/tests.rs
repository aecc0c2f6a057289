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

fn request() -> Outgoing<'static> {
    Outgoing {
        method: Method::POST,
        headers: [&[], &[], &[], &[]],
        body: Bytes::from_static(b"{}"),
    }
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
    Ok(response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes())
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
    // Two answers whose bodies are not read yet hold two connections,
    // which are not in the pool for anyone else to take.
    let first = client.send(target(), request()).await.unwrap();
    let second = client.send(target(), request()).await.unwrap();
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
    assert_eq!(client.pooled(&up.origin), 0);
    hold.notify_waiters();
    for response in [first, second] {
        assert_eq!(
            response.into_body().collect().await.unwrap().to_bytes(),
            "ok"
        );
    }
    // Read to their end, both are back.
    assert_eq!(client.pooled(&up.origin), 2);
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
    // Idle for longer than the timeout: dropped.
    let later = Instant::now() + 2 * IDLE_TIMEOUT;
    let mut pool = client.pool();
    let conns = pool.origins.get_mut(&up.origin).unwrap();
    assert!(conns.iter_mut().all(|c| c.state(later) == State::Gone));
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
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
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

/// A loopback server that answers the requests on each connection with the
/// next of `answers`, as raw bytes, and hands over each request it read;
/// after the last answer it closes the connection.
async fn scripted(
    answers: Vec<&'static [u8]>,
) -> (Upstream, tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    let (seen, requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let (answers, seen) = (answers.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for answer in answers {
                    let Some(request) = read_request(&mut stream, &mut buf).await else {
                        return;
                    };
                    let _ = seen.send(request);
                    if stream.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (Upstream::at(addr, accepted), requests)
}

/// One request (head and Content-Length body) off `stream`.
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            if buf.len() >= i + 4 + length {
                return Some(buf.drain(..i + 4 + length).collect());
            }
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

async fn send(client: &Client, up: &Upstream, req: Outgoing<'_>) -> Result<Response, Error> {
    let target = Target {
        origin: &up.origin,
        url: &up.url,
        path: &up.path,
        host: Some(&up.host),
    };
    client.send(target, req).await
}

async fn read(response: Response) -> Result<Bytes, BodyError> {
    Ok(response.into_body().collect().await?.to_bytes())
}

#[tokio::test]
async fn a_request_goes_out_as_one_http11_message() {
    let (up, mut requests) =
        scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]).await;
    let json = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    let plan = [
        (header::AUTHORIZATION, HeaderValue::from_static("Bearer k")),
        (
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("1"),
        ),
    ];
    // A later set replaces an earlier one's header; framing headers are the
    // client's own to write.
    let extra = [
        (
            HeaderName::from_static("x-a"),
            HeaderValue::from_static("2"),
        ),
        (header::CONTENT_LENGTH, HeaderValue::from_static("999")),
    ];
    let req = Outgoing {
        method: Method::POST,
        headers: [&json, &plan, &extra, &[]],
        body: Bytes::from_static(b"{\"a\":1}"),
    };
    let response = send(&client(), &up, req).await.unwrap();
    assert_eq!(read(response).await.unwrap(), "ok");
    let request = String::from_utf8(requests.recv().await.unwrap()).unwrap();
    let host = up.host.to_str().unwrap();
    assert_eq!(
        request,
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\nauthorization: Bearer k\r\nx-a: 2\r\ncontent-length: 7\r\n\r\n{{\"a\":1}}"
        )
    );
}

#[tokio::test]
async fn chunked_answers_keep_the_connection_and_informational_heads_are_skipped() {
    let (up, _requests) = scripted(vec![
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-a: 1\r\nContent-Type: text/plain\r\nX-A: 2\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nx-trailer: t\r\n\r\n",
        b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
    ])
    .await;
    let client = client();
    let response = send(&client, &up, request()).await.unwrap();
    assert_eq!(response.status(), 200);
    // Names in any case: one asked for, and all of them in a map.
    let x_a = HeaderName::from_static("x-a");
    assert_eq!(response.header(&x_a).unwrap(), "1");
    assert_eq!(
        response.header(&header::CONTENT_TYPE).unwrap(),
        "text/plain"
    );
    assert!(response.header(&header::CACHE_CONTROL).is_none());
    let repeated: Vec<_> = response.headers().get_all("x-a").iter().collect();
    assert_eq!(repeated, ["1", "2"]);
    assert_eq!(response.headers().len(), 4);
    assert_eq!(read(response).await.unwrap(), "abcde");
    let response = send(&client, &up, request()).await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(read(response).await.unwrap(), "");
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn answers_that_close_or_are_ambiguous_do_not_leave_their_connection_pooled() {
    let answers: [&'static [u8]; 3] = [
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
        // Chunked and a length: read as chunked, and never trusted again.
        b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
    ];
    for answer in answers {
        let (up, _requests) = scripted(vec![answer]).await;
        let client = client();
        let response = send(&client, &up, request()).await.unwrap();
        assert_eq!(read(response).await.unwrap(), "ok");
        assert_eq!(
            client.pooled(&up.origin),
            0,
            "{}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[tokio::test]
async fn an_answer_without_a_length_runs_until_the_connection_closes() {
    let (up, _requests) = scripted(vec![b"HTTP/1.1 200 OK\r\n\r\nall of it"]).await;
    let client = client();
    let response = send(&client, &up, request()).await.unwrap();
    assert_eq!(read(response).await.unwrap(), "all of it");
    assert_eq!(client.pooled(&up.origin), 0);
}

#[tokio::test]
async fn answers_that_are_not_http_or_stop_short_are_errors() {
    let (up, _r) = scripted(vec![b"SSH-2.0-OpenSSH\r\n\r\n"]).await;
    let err = send(&client(), &up, request()).await.unwrap_err();
    assert!(matches!(err, Error::Wire(WireError::NotHttp(_))), "{err:?}");

    let (up, _r) = scripted(vec![b""]).await;
    let err = send(&client(), &up, request()).await.unwrap_err();
    assert!(matches!(err, Error::Wire(WireError::Closed)), "{err:?}");
    assert!(
        !err.is_connect(),
        "the request went out: not a connect error"
    );

    let (up, _r) = scripted(vec![
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
    ])
    .await;
    let err = send(&client(), &up, request()).await.unwrap_err();
    assert!(err.to_string().contains("two different"), "{err}");

    let (up, _r) = scripted(vec![b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]).await;
    let response = send(&client(), &up, request()).await.unwrap();
    let err = read(response).await.unwrap_err();
    assert!(matches!(err, BodyError::Incomplete), "{err:?}");
}

/// A stream whose last event and end of body came in one read ends with
/// that event: its reader sees the end without waiting on the socket.
#[tokio::test]
async fn the_end_of_a_stream_read_with_its_last_event_is_in_hand() {
    let (up, _r) = scripted(vec![
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\n\r\n",
    ])
    .await;
    let client = client();
    let mut body = send(&client, &up, request()).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"data: [DONE]\n\n");
    assert!(http_body::Body::is_end_stream(&body));
    // And the connection is already back for the next request.
    assert_eq!(client.pooled(&up.origin), 1);
}
