//! Fault injection: upstreams and clients that misbehave in every way the
//! network allows, each against a real gateway on loopback. For each fault:
//! what the client gets, what the router thinks afterwards, and that the
//! gateway still serves the next request.
//!
//! Faults covered elsewhere: a 200 whose body is not JSON and a refused
//! connection (routing.rs), an upstream that stalls after its headers
//! (routing.rs), a stream cut after its first byte and a client leaving
//! mid-stream with its tokens counted (streaming.rs), bodies over the limit
//! (api.rs).

mod common;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use switchboard::events::{Event, RequestOutcome};
use switchboard::mock_upstream::Mode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A deployment table entry pointing at any base URL.
fn deployment_at(name: &str, api_base: &str, extra: &str) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\napi_base = \"{api_base}\"\napi_key = \"sk-test-{name}-123456\"\nmodel_id = \"{name}-model\"\n{extra}\n"
    )
}

/// Reads one HTTP/1.1 request (head and Content-Length body) off `s`.
async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// A loopback upstream that reads each request and then runs `script` on the
/// connection: whatever bytes, pauses and closes a test needs. Returns its
/// `api_base`.
async fn scripted<F, Fut>(script: F) -> String
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let script = script.clone();
            tokio::spawn(async move {
                if read_request(&mut s).await.is_some() {
                    script(s).await;
                }
            });
        }
    });
    format!("http://{addr}/v1")
}

const ANSWER: &str = r#"{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"drip drip drip drip drip drip"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":6,"total_tokens":13}}"#;

/// Sends a 200 with `ANSWER`, one byte every `gap`.
async fn drip(mut s: TcpStream, gap: Duration) {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        ANSWER.len()
    );
    if s.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    for b in ANSWER.as_bytes() {
        if s.write_all(&[*b]).await.is_err() || s.flush().await.is_err() {
            return;
        }
        tokio::time::sleep(gap).await;
    }
}

async fn assert_still_serving(gw: &TestGateway, model: &str) {
    let r = gw.chat(model).await;
    assert_eq!(r.status(), 200, "the gateway keeps serving after the fault");
}

#[tokio::test]
async fn a_reset_before_the_headers_fails_over_and_counts_against_the_deployment() {
    let (a, b, gw) = pair("", Mode::ResetBeforeHeaders, Mode::Normal).await;
    for _ in 0..2 {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    }
    let state = gw.deployment("a").await;
    assert!(state["failures"].as_u64().unwrap() >= 1, "{state}");
    assert!(a.stats().requests >= 1);
    a.set_mode(Mode::Normal);
    drop(b);
    assert_eq!(gw.chat("m").await.status(), 200);
}

#[tokio::test]
async fn streams_that_break_after_their_first_byte_end_with_an_error_event() {
    for (mode, code) in [
        (
            Mode::ResetMidStream { after_chunks: 2 },
            "stream_interrupted",
        ),
        (
            Mode::TruncatedStream { after_chunks: 2 },
            "stream_truncated",
        ),
    ] {
        let a = mock().await;
        a.set_mode(mode.clone());
        let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 100000")])).await;
        let r = gw
            .post(
                "/v1/chat/completions",
                serde_json::json!({"model": "m", "stream": true, "max_tokens": 20,
                    "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(r.status(), 200, "{mode:?}: committed before the break");
        let data = sse_data(r).await;
        let last = data.last().unwrap();
        assert!(!data.iter().any(|d| d == "[DONE]"), "{mode:?}: {data:?}");
        let err: serde_json::Value = serde_json::from_str(last).unwrap();
        assert_eq!(err["error"]["code"], code, "{mode:?}: {last}");
        let state = gw.deployment("a").await;
        assert_eq!(state["failures"], 1, "{mode:?}: {state}");
        assert!(
            state["tpm_used"].as_u64().unwrap() > 0,
            "{mode:?}: tokens counted"
        );
        a.set_mode(Mode::Normal);
        assert_still_serving(&gw, "m").await;
    }
}

#[tokio::test]
async fn a_slow_drip_that_finishes_in_time_arrives_whole() {
    let slow = scripted(|s| drip(s, Duration::from_millis(2))).await;
    let gw = gateway(&one_model(
        "request_timeout_s = 20\nfirst_byte_timeout_s = 5",
        &[deployment_at("slow", &slow, "")],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["usage"]["total_tokens"], 13);
    assert_eq!(gw.deployment("slow").await["failures"], 0);
}

#[tokio::test]
async fn a_drip_past_the_request_timeout_is_a_504_not_a_hang() {
    let slow = scripted(|s| drip(s, Duration::from_millis(100))).await;
    let gw = gateway(&one_model(
        "request_timeout_s = 0.5\nfirst_byte_timeout_s = 0.4",
        &[deployment_at("slow", &slow, "")],
    ))
    .await;
    let started = std::time::Instant::now();
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = json(r).await;
    assert_eq!(body["error"]["code"], "upstream_timeout");
    assert_eq!(gw.deployment("slow").await["failures"], 1);
}

#[tokio::test]
async fn an_enormous_answer_is_cut_off_and_fails_over() {
    // Announces a gigabyte and sends zeros until the gateway hangs up.
    let huge = scripted(|mut s| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1073741824\r\n\r\n";
        if s.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b' '; 1 << 20];
        for _ in 0..1024 {
            if s.write_all(&block).await.is_err() {
                return;
            }
        }
    })
    .await;
    let b = mock().await;
    let gw = gateway(&one_model(
        "",
        &[deployment_at("huge", &huge, ""), deployment("b", &b, "")],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    assert_eq!(gw.deployment("huge").await["failures"], 1);
    assert_still_serving(&gw, "m").await;
}

#[tokio::test]
async fn a_self_signed_tls_endpoint_is_refused_and_fails_over() {
    use tokio_rustls::rustls;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (handshakes_tx, mut handshakes) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let outcome = acceptor
                .accept(s)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            let _ = handshakes_tx.send(outcome);
        }
    });
    let b = mock().await;
    let gw = gateway(&one_model(
        "",
        &[
            deployment_at("tls", &format!("https://localhost:{port}/v1"), ""),
            deployment("b", &b, ""),
        ],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    // The handshake really happened, and the gateway refused the certificate.
    let handshake = handshakes.recv().await.unwrap();
    assert!(
        handshake.is_err(),
        "the gateway must not accept a self-signed cert"
    );
    assert_eq!(gw.deployment("tls").await["failures"], 1);
    assert_still_serving(&gw, "m").await;
}

#[tokio::test]
async fn an_unresolvable_host_fails_over_without_a_dns_query() {
    let b = mock().await;
    let gw = gateway(&one_model(
        "",
        &[
            deployment_at("nowhere", "http://upstream.invalid/v1", ""),
            deployment("b", &b, ""),
        ],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "b");
    assert_eq!(gw.deployment("nowhere").await["failures"], 1);

    // Alone, it is a 502 that names no key and no upstream text.
    let gw = gateway(&one_model(
        "",
        &[deployment_at("nowhere", "http://upstream.invalid/v1", "")],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 502);
    let body = json(r).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("sk-test"), "{message}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_cancels_the_upstream_request() {
    // Streams a chunk every 20 ms for up to 10 s and reports when a write
    // fails, which is how an upstream sees a cancelled request.
    let (cut_tx, mut cut) = tokio::sync::mpsc::unbounded_channel();
    let upstream = scripted(move |mut s| {
        let cut_tx = cut_tx.clone();
        async move {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let frame = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"tick\"},\"finish_reason\":null}]}\n\n";
            let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
            for sent in 0..500 {
                if s.write_all(chunk.as_bytes()).await.is_err() || s.flush().await.is_err() {
                    let _ = cut_tx.send(sent);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
    let gw = gateway(&one_model(
        "",
        &[deployment_at("a", &upstream, "tpm_limit = 100000")],
    ))
    .await;
    let mut events = gw.gateway.events().subscribe();
    let r = gw
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let mut body = r.bytes_stream();
    for _ in 0..3 {
        body.next().await.unwrap().unwrap();
    }
    drop(body);
    let sent = tokio::time::timeout(Duration::from_secs(5), cut.recv())
        .await
        .expect("the upstream connection is closed soon after the client leaves")
        .unwrap();
    assert!(
        sent < 400,
        "cancelled after {sent} chunks, not run to the end"
    );
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::Request(r) = &*events.recv().await.unwrap() {
                break r.clone();
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(ev.outcome, RequestOutcome::ClientClosed);
    assert!(
        ev.completion_tokens >= 3,
        "streamed chunks are counted: {ev:?}"
    );
    let used = gw.deployment("a").await["tpm_used"].as_u64().unwrap();
    assert_eq!(used, ev.prompt_tokens + ev.completion_tokens);
    assert_eq!(
        gw.deployment("a").await["failures"],
        0,
        "leaving is not the upstream's fault"
    );
}

#[tokio::test]
async fn a_client_that_sends_its_headers_slowly_is_cut_off() {
    let a = mock().await;
    let gw = gateway(&one_model(
        "header_read_timeout_s = 0.3",
        &[deployment("a", &a, "")],
    ))
    .await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    // Never finishes its headers: the gateway closes the connection.
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the connection is closed after the header timeout"
    );
    assert_eq!(a.stats().requests, 0);
    assert_still_serving(&gw, "m").await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_and_reaches_no_upstream() {
    let a = mock().await;
    let gw = gateway(&one_model("max_body_mb = 1", &[deployment("a", &a, "")])).await;
    let big = "x".repeat(3 << 20);
    let r = gw
        .post(
            "/v1/chat/completions",
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": big}]}),
        )
        .await;
    assert_eq!(r.status(), 413);
    assert_eq!(json(r).await["error"]["code"], "request_too_large");
    assert_eq!(a.stats().requests, 0);
    assert_still_serving(&gw, "m").await;
}
