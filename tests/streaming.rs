//! Streaming through the gateway: pass-through, usage, failover before the
//! first byte, and what a client sees when a stream breaks after it.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use switchboard::events::{Event, RequestOutcome};
use switchboard::mock_upstream::Mode;

fn stream_body(include_usage: Option<bool>) -> serde_json::Value {
    let mut body = json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hello there"}]});
    if let Some(u) = include_usage {
        body["stream_options"] = json!({"include_usage": u});
    }
    body
}

#[tokio::test]
async fn a_stream_passes_through_without_the_usage_the_client_did_not_ask_for() {
    let a = mock_with(|o| o.tokens = 6).await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 50000")])).await;
    let r = gw.post("/v1/chat/completions", stream_body(None)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    assert_eq!(header(&r, "x-switchboard-deployment"), "a");
    let frames = sse_data(r).await;
    assert_eq!(frames.last().unwrap(), "[DONE]");
    for f in &frames[..frames.len() - 1] {
        assert!(
            !f.contains("usage"),
            "the client did not ask for usage: {f}"
        );
        let v: serde_json::Value = serde_json::from_str(f).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
    }
    // The upstream was asked for usage, and the gateway counted it.
    let sent: serde_json::Value = serde_json::from_str(&a.stats().last_body.unwrap()).unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);
    let s = a.stats();
    assert_eq!(
        gw.deployment("a").await["tpm_used"].as_u64().unwrap(),
        s.prompt_tokens + s.completion_tokens
    );
}

#[tokio::test]
async fn a_client_that_asks_for_usage_gets_it() {
    let a = mock_with(|o| o.tokens = 4).await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    let frames = sse_data(
        gw.post("/v1/chat/completions", stream_body(Some(true)))
            .await,
    )
    .await;
    let usage: serde_json::Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], 4);
    assert_eq!(usage["choices"], json!([]));
}

#[tokio::test]
async fn chunks_are_relayed_as_they_come_not_buffered() {
    let a = mock_with(|o| {
        o.tokens = 5;
        o.chunk_delay_ms = 150;
    })
    .await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    let r = gw.post("/v1/chat/completions", stream_body(None)).await;
    let mut body = r.bytes_stream();
    // The first chunk arrives long before the upstream has finished (~1 s).
    let first = tokio::time::timeout(Duration::from_millis(600), body.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "first chunk must arrive before the stream ends"
    );
    let mut rest = 0;
    while let Some(chunk) = body.next().await {
        chunk.unwrap();
        rest += 1;
    }
    assert!(rest >= 3, "chunks keep coming one by one ({rest})");
}

#[tokio::test]
async fn a_stream_fails_over_before_its_first_byte() {
    for broken in [
        Mode::Garbage,
        Mode::ResetBeforeHeaders,
        Mode::HangAfterHeaders,
        Mode::Fail {
            status: 500,
            retry_after_s: None,
            message: None,
        },
    ] {
        let (a, b) = (mock().await, mock().await);
        a.set_mode(broken.clone());
        let gw = gateway(&one_model(
            "first_byte_timeout_s = 0.5",
            &[deployment("a", &a, ""), deployment("b", &b, "")],
        ))
        .await;
        let r = gw.post("/v1/chat/completions", stream_body(None)).await;
        assert_eq!(r.status(), 200, "{broken:?}");
        assert_eq!(header(&r, "x-switchboard-deployment"), "b", "{broken:?}");
        assert_eq!(header(&r, "x-switchboard-attempts"), "2", "{broken:?}");
        let frames = sse_data(r).await;
        assert_eq!(frames.last().unwrap(), "[DONE]", "{broken:?}");
    }
}

#[tokio::test]
async fn a_stream_cut_after_its_first_byte_ends_with_an_error_event() {
    for broken in [
        Mode::ResetMidStream { after_chunks: 3 },
        Mode::TruncatedStream { after_chunks: 3 },
    ] {
        let a = mock_with(|o| o.tokens = 10).await;
        a.set_mode(broken.clone());
        let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 100000")])).await;
        let mut events = gw.gateway.events().subscribe();
        let r = gw.post("/v1/chat/completions", stream_body(None)).await;
        assert_eq!(r.status(), 200);
        let frames = sse_data(r).await;
        assert_ne!(
            frames.last().unwrap(),
            "[DONE]",
            "{broken:?}: never a clean finish"
        );
        let err: serde_json::Value = serde_json::from_str(frames.last().unwrap()).unwrap();
        assert!(
            err["error"]["message"].as_str().is_some(),
            "{broken:?}: {err}"
        );
        // The event says so, and the tokens streamed so far are counted.
        let ev = loop {
            if let Event::Request(r) = &*events.recv().await.unwrap() {
                break r.clone();
            }
        };
        assert_eq!(ev.outcome, RequestOutcome::StreamInterrupted);
        assert!(ev.completion_tokens >= 2, "{ev:?}");
        let d = gw.deployment("a").await;
        assert!(d["tpm_used"].as_u64().unwrap() > 0);
        assert_eq!(
            d["failures"], 1,
            "{broken:?}: a broken stream counts against its deployment"
        );
    }
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_accounted_for() {
    let a = mock_with(|o| {
        o.tokens = 50;
        o.chunk_delay_ms = 50;
    })
    .await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 100000")])).await;
    let mut events = gw.gateway.events().subscribe();
    let r = gw.post("/v1/chat/completions", stream_body(None)).await;
    let mut body = r.bytes_stream();
    body.next().await.unwrap().unwrap();
    body.next().await.unwrap().unwrap();
    drop(body);
    let ev = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Event::Request(r) = &*events.recv().await.unwrap() {
                break r.clone();
            }
        }
    })
    .await
    .expect("the request's event is published when the client leaves");
    assert_eq!(ev.outcome, RequestOutcome::ClientClosed);
    assert!(ev.prompt_tokens > 0);
    assert!(gw.deployment("a").await["tpm_used"].as_u64().unwrap() > 0);
    // The gateway keeps serving.
    assert_eq!(gw.chat("m").await.status(), 200);
}

#[tokio::test]
async fn usage_an_upstream_puts_in_its_finish_chunk_is_counted_and_only_sent_when_asked() {
    let a = mock_with(|o| {
        o.tokens = 5;
        o.usage_in_finish_chunk = true;
    })
    .await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 50000")])).await;
    let r = gw.post("/v1/chat/completions", stream_body(None)).await;
    assert_eq!(r.status(), 200);
    let frames = sse_data(r).await;
    assert_eq!(frames.last().unwrap(), "[DONE]");
    for f in &frames {
        assert!(
            !f.contains("usage"),
            "the client did not ask for usage: {f}"
        );
    }
    // The finish chunk itself is still there, whole but for the usage.
    let finish: serde_json::Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(finish["object"], "chat.completion.chunk");
    // The usage was read: the window holds what the upstream reported.
    let s = a.stats();
    assert_eq!(
        gw.deployment("a").await["tpm_used"].as_u64().unwrap(),
        s.prompt_tokens + s.completion_tokens
    );
    // A client that asks gets it where the upstream put it.
    let frames = sse_data(
        gw.post("/v1/chat/completions", stream_body(Some(true)))
            .await,
    )
    .await;
    let finish: serde_json::Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
    assert_eq!(finish["usage"]["completion_tokens"], 5);
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
}
