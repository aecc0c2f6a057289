//! The client side of a connection as HTTP/1.1 clients use it, byte by
//! byte: the proxied requests the gateway's own loop serves, and the hand
//! over to hyper for everything else, on one connection.

mod common;

use std::time::Duration;

use common::*;
use switchboard::mock_upstream::MockHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

/// A chat request as bytes on the wire, with `body` and extra header lines.
fn request_for(body: &str, extra_headers: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n{extra_headers}content-length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn chat_request(extra_headers: &str) -> String {
    request_for(CHAT, extra_headers)
}

fn chat_for(model: &str) -> String {
    request_for(
        &format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#),
        "",
    )
}

/// A mock upstream, a gateway with one model on it (`server` settings
/// added), and a raw connection to the gateway.
async fn connected(server: &str) -> (MockHandle, TestGateway, TcpStream) {
    let a = mock().await;
    let gw = gateway(&one_model(server, &[deployment("a", &a, "")])).await;
    let s = TcpStream::connect(gw.addr).await.unwrap();
    (a, gw, s)
}

/// One answer off `s`: its head (lowercased) and its body, by
/// Content-Length or chunks; `rest` keeps what came after it.
async fn read_answer(s: &mut TcpStream, rest: &mut Vec<u8>) -> (String, Vec<u8>) {
    let read = async {
        loop {
            if let Some(i) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&rest[..i]).to_ascii_lowercase();
                if head.starts_with("http/1.1 100") {
                    rest.drain(..i + 4);
                    continue;
                }
                let after = i + 4;
                if let Some(len) = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                {
                    let len: usize = len.trim().parse().unwrap();
                    if rest.len() >= after + len {
                        let body = rest[after..after + len].to_vec();
                        rest.drain(..after + len);
                        return (head, body);
                    }
                } else if head.contains("transfer-encoding: chunked") {
                    if let Some(end) = rest[after..].windows(5).position(|w| w == b"0\r\n\r\n") {
                        let body = rest[after..after + end + 5].to_vec();
                        rest.drain(..after + end + 5);
                        return (head, body);
                    }
                } else {
                    rest.drain(..after);
                    return (head, Vec::new());
                }
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed before a whole answer: {:?}",
                String::from_utf8_lossy(rest)
            );
            rest.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("an answer within 10 s")
}

async fn closes(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    let closed = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), closed)
        .await
        .is_ok()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (a, b) = (mock().await, mock().await);
    let config = format!(
        "[[models]]\nname = \"ma\"\n{}\n[[models]]\nname = \"mb\"\n{}",
        deployment("a", &a, ""),
        deployment("b", &b, "")
    );
    let gw = gateway(&config).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // Three at once, in one write; each model has its own deployment, so
    // the answers' order shows in who served them.
    let three = [chat_for("ma"), chat_for("mb"), chat_for("ma")].concat();
    s.write_all(three.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    for served_by in ["a", "b", "a"] {
        let (head, body) = read_answer(&mut s, &mut rest).await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("\r\ndate: "), "{head}");
        assert!(
            head.contains(&format!("\r\nx-switchboard-deployment: {served_by}\r\n")),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["object"], "chat.completion");
    }
    assert_eq!((a.stats().requests, b.stats().requests), (2, 1));
}

#[tokio::test]
async fn other_requests_on_the_same_connection_are_served_before_and_after() {
    let (a, _gw, mut s) = connected("").await;
    let mut rest = Vec::new();
    // Proxied first (our loop), then the health check (handed to hyper
    // with its bytes), then proxied again (through hyper from then on).
    s.write_all(chat_request("").as_bytes()).await.unwrap();
    let (head, _) = read_answer(&mut s, &mut rest).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    s.write_all(b"GET /health HTTP/1.1\r\nhost: gw\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut s, &mut rest).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    s.write_all(chat_request("").as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut s, &mut rest).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!body.is_empty());
    assert_eq!(a.stats().requests, 2);
}

#[tokio::test]
async fn bytes_read_ahead_reach_hyper_at_the_hand_over() {
    let (a, _gw, mut s) = connected("").await;
    // All three in one write: when the health check is handed to hyper,
    // it and the request behind it are already in the loop's buffer.
    let all = [
        chat_request(""),
        "GET /health HTTP/1.1\r\nhost: gw\r\n\r\n".to_string(),
        chat_request(""),
    ]
    .concat();
    s.write_all(all.as_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let (head, body) = read_answer(&mut s, &mut rest).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(!body.is_empty());
    let (head, body) = read_answer(&mut s, &mut rest).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"ok");
    let (head, body) = read_answer(&mut s, &mut rest).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(a.stats().requests, 2);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let a = mock().await;
    let gw = gateway(&one_model(
        "header_read_timeout_s = 0.3",
        &[deployment("a", &a, "")],
    ))
    .await;
    // One that never sends a byte.
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    // One that is served once, then stays idle.
    let mut served = TcpStream::connect(gw.addr).await.unwrap();
    served.write_all(chat_request("").as_bytes()).await.unwrap();
    let (head, _) = read_answer(&mut served, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(closes(&mut silent).await, "a silent connection is closed");
    assert!(
        closes(&mut served).await,
        "an idle keep-alive connection is closed"
    );
}

#[tokio::test]
async fn a_client_that_expects_100_continue_gets_it_then_its_answer() {
    let (_a, _gw, mut s) = connected("").await;
    let request = chat_request("expect: 100-continue\r\n");
    let (head, body) = request.split_at(request.find("\r\n\r\n").unwrap() + 4);
    s.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut interim))
        .await
        .expect("100 Continue before the body is sent")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(body.as_bytes()).await.unwrap();
    let (head, _) = read_answer(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
}

#[tokio::test]
async fn connection_close_is_honoured_after_the_answer() {
    let (_a, _gw, mut s) = connected("").await;
    s.write_all(chat_request("connection: close\r\n").as_bytes())
        .await
        .unwrap();
    let (head, _) = read_answer(&mut s, &mut Vec::new()).await;
    assert!(head.contains("\r\nconnection: close"), "{head}");
    assert!(closes(&mut s).await, "the gateway closes the connection");
}

#[tokio::test]
async fn a_malformed_request_is_answered_400_by_hyper() {
    let (a, _gw, mut s) = connected("").await;
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nhost gw\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = read_answer(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert_eq!(a.stats().requests, 0);
}

#[tokio::test]
async fn chunked_requests_are_served_through_hyper() {
    let (a, _gw, mut s) = connected("").await;
    let half = CHAT.len() / 2;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        half,
        &CHAT[..half],
        CHAT.len() - half,
        &CHAT[half..]
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!body.is_empty());
    assert_eq!(a.stats().requests, 1);
}

#[tokio::test]
async fn a_stream_is_chunked_and_ends_cleanly() {
    let (_a, _gw, mut s) = connected("").await;
    let body = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = request_for(body, "");
    s.write_all(request.as_bytes()).await.unwrap();
    let (head, body) = read_answer(&mut s, &mut Vec::new()).await;
    assert!(head.contains("transfer-encoding: chunked"), "{head}");
    assert!(head.contains("content-type: text/event-stream"), "{head}");
    // Every chunk's size is its data's, and the last one is empty.
    let mut at = &body[..];
    let mut text = Vec::new();
    loop {
        let line = at
            .iter()
            .position(|&b| b == b'\n')
            .expect("a chunk size line");
        let size =
            usize::from_str_radix(std::str::from_utf8(&at[..line - 1]).unwrap(), 16).unwrap();
        at = &at[line + 1..];
        if size == 0 {
            assert_eq!(at, b"\r\n", "nothing after the last chunk");
            break;
        }
        text.extend_from_slice(&at[..size]);
        assert_eq!(
            &at[size..size + 2],
            b"\r\n",
            "a chunk ends where its size says"
        );
        at = &at[size + 2..];
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
}
