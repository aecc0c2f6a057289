//! Streaming through the gateway: pass-through, usage, failover before the
//! first byte, what a client sees when a stream breaks after it (and what
//! the log says), streams that finish without `[DONE]`, malformed chunks,
//! and overloads mid-stream.

mod common;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use switchboard::events::{Event, Published, RequestEvent, RequestOutcome};
use switchboard::mock_upstream::{MockProvider, Mode};

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

/// Everything the gateway logs at warn and above, from every test of this
/// binary (tell them apart by deployment name). The serving threads log
/// to the global subscriber, so one is installed, once.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        #[derive(Clone)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(logs.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
    .clone()
}

/// The captured log lines that mention `deployment`.
fn log_lines(logs: &Mutex<Vec<u8>>, deployment: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let tag = format!("deployment={deployment} ");
    text.lines()
        .filter(|l| l.contains(&tag))
        .map(str::to_string)
        .collect()
}

async fn next_request(events: &mut tokio::sync::broadcast::Receiver<Published>) -> RequestEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Request(r) = &*events.recv().await.unwrap() {
                return r.clone();
            }
        }
    })
    .await
    .expect("a request event")
}

/// The text of a stream's content deltas.
fn content(frames: &[String]) -> String {
    frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn a_stream_that_ends_cleanly_after_its_finish_reason_is_a_finished_stream() {
    for usage in [None, Some(true)] {
        let a = mock_with(|o| o.tokens = 5).await;
        a.set_mode(Mode::NoDone);
        let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 50000")])).await;
        let mut events = gw.gateway.events().subscribe();
        let r = gw.post("/v1/chat/completions", stream_body(usage)).await;
        assert_eq!(r.status(), 200);
        let frames = sse_data(r).await;
        assert_eq!(frames.last().unwrap(), "[DONE]", "{usage:?}: {frames:?}");
        assert!(
            !frames.iter().any(|f| f.contains("\"error\"")),
            "{frames:?}"
        );
        assert_eq!(content(&frames).split(' ').count(), 5);
        if usage.is_some() {
            let last: serde_json::Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
            assert_eq!(last["usage"]["completion_tokens"], 5, "{frames:?}");
        }
        let ev = next_request(&mut events).await;
        assert_eq!(ev.outcome, RequestOutcome::Ok);
        assert!(!ev.tokens_estimated, "the upstream's usage was read");
        let d = gw.deployment("a").await;
        assert_eq!(d["failures"], 0, "{d}");
        let s = a.stats();
        assert_eq!(
            d["tpm_used"].as_u64().unwrap(),
            s.prompt_tokens + s.completion_tokens
        );
    }
}

#[tokio::test]
async fn a_malformed_first_chunk_fails_the_attempt_over() {
    let (_a, _b, gw) = pair("", Mode::MalformedChunk { after_chunks: 0 }, Mode::Normal).await;
    let mut events = gw.gateway.events().subscribe();
    let mut failed_over = false;
    for _ in 0..2 {
        let r = gw.post("/v1/chat/completions", stream_body(None)).await;
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "x-switchboard-deployment"), "b");
        let frames = sse_data(r).await;
        assert_eq!(frames.last().unwrap(), "[DONE]");
        let ev = next_request(&mut events).await;
        if ev.attempts.len() == 2 {
            failed_over = true;
            assert_eq!(ev.attempts[0].outcome.label(), "✗invalid");
        }
    }
    assert!(failed_over);
}

#[tokio::test]
async fn a_malformed_chunk_mid_stream_is_left_out_and_the_stream_goes_on() {
    let logs = captured_logs();
    let a = mock_with(|o| o.tokens = 6).await;
    let gw = gateway(&one_model("", &[deployment("malformed-mid", &a, "")])).await;
    let whole = content(&sse_data(gw.post("/v1/chat/completions", stream_body(None)).await).await);
    a.set_mode(Mode::MalformedChunk { after_chunks: 3 });
    let mut events = gw.gateway.events().subscribe();
    let r = gw.post("/v1/chat/completions", stream_body(None)).await;
    assert_eq!(r.status(), 200);
    let frames = sse_data(r).await;
    assert_eq!(frames.last().unwrap(), "[DONE]", "{frames:?}");
    // Every frame the client gets is JSON, and the answer is whole.
    assert_eq!(content(&frames), whole);
    assert_eq!(next_request(&mut events).await.outcome, RequestOutcome::Ok);
    assert_eq!(gw.deployment("malformed-mid").await["failures"], 0);
    // Counted, and logged with what it looked like.
    let metrics = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            "switchboard_stream_frames_skipped_total{model=\"m\",deployment=\"malformed-mid\"} 1"
        ),
        "{metrics}"
    );
    let lines = log_lines(&logs, "malformed-mid");
    assert!(
        lines.iter().any(|l| l.contains("WARN")
            && l.contains("not JSON")
            && l.contains("last={\\\"id\\\":")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_stream_that_breaks_after_its_first_byte_is_logged_with_what_the_client_got() {
    let logs = captured_logs();
    for (name, mode, reason) in [
        (
            "breaks-reset",
            Mode::ResetMidStream { after_chunks: 3 },
            "the upstream stream broke off",
        ),
        (
            "breaks-cut",
            Mode::TruncatedStream { after_chunks: 3 },
            "before its answer finished",
        ),
        (
            "breaks-error",
            Mode::ErrorMidStream {
                after_chunks: 3,
                exception: None,
            },
            "the upstream sent an error event",
        ),
    ] {
        let a = mock_with(|o| o.tokens = 10).await;
        a.set_mode(mode);
        let gw = gateway(&one_model("", &[deployment(name, &a, "")])).await;
        let r = gw.post("/v1/chat/completions", stream_body(None)).await;
        let text = r.text().await.unwrap();
        // What reached the client before the error event.
        let sent = text.find("data: {\"error\"").unwrap();
        let lines = log_lines(&logs, name);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let line = &lines[0];
        assert!(
            line.contains(" WARN ") && line.contains("stream broke off"),
            "{line}"
        );
        assert!(line.contains("model=m "), "{line}");
        assert!(
            line.contains(&format!("bytes_sent={sent} ")),
            "{sent}: {line}"
        );
        assert!(line.contains(reason), "{line}");
    }
}

fn anthropic(name: &str, m: &switchboard::mock_upstream::MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-ant-test-0123456789\"\nmodel_id = \"claude-sonnet-4-5\"\n",
        m.base_url()
    )
}

async fn anthropic_mock() -> switchboard::mock_upstream::MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some("sk-ant-test-0123456789".into());
        o.tokens = 4;
    })
    .await
}

#[tokio::test]
async fn a_translated_stream_finishes_without_its_closing_event_and_skips_a_malformed_one() {
    let c = anthropic_mock().await;
    let gw = gateway(&one_model("", &[anthropic("claude", &c)])).await;
    let whole = content(
        &sse_data(
            gw.post("/v1/chat/completions", stream_body(Some(true)))
                .await,
        )
        .await,
    );
    for mode in [Mode::NoDone, Mode::MalformedChunk { after_chunks: 4 }] {
        c.set_mode(mode.clone());
        let frames = sse_data(
            gw.post("/v1/chat/completions", stream_body(Some(true)))
                .await,
        )
        .await;
        assert_eq!(frames.last().unwrap(), "[DONE]", "{mode:?}: {frames:?}");
        assert!(
            !frames.iter().any(|f| f.contains("\"error\"")),
            "{mode:?}: {frames:?}"
        );
        assert_eq!(content(&frames), whole, "{mode:?}");
        let usage: serde_json::Value = serde_json::from_str(&frames[frames.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 4, "{mode:?}");
    }
    assert_eq!(gw.deployment("claude").await["failures"], 0);
}

#[tokio::test]
async fn an_overloaded_error_in_a_stream_cools_the_deployment_down() {
    // Before the first byte: failed over as a rate limit.
    let (c, o) = (anthropic_mock().await, mock().await);
    c.set_mode(Mode::ErrorMidStream {
        after_chunks: 0,
        exception: None,
    });
    let gw = gateway(&one_model(
        "",
        &[anthropic("claude", &c), deployment("openai", &o, "")],
    ))
    .await;
    for _ in 0..4 {
        let r = gw.post("/v1/chat/completions", stream_body(None)).await;
        assert_eq!(header(&r, "x-switchboard-deployment"), "openai");
        assert_eq!(sse_data(r).await.last().unwrap(), "[DONE]");
    }
    let d = gw.deployment("claude").await;
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");
    assert_eq!(d["failures"], 0, "{d}");
    assert_eq!(c.stats().requests, 1, "not asked again while cooling down");
    // After it: the client hears the error, and the deployment cools down all the same.
    c.set_mode(Mode::ErrorMidStream {
        after_chunks: 4,
        exception: None,
    });
    let gw = gateway(&one_model("", &[anthropic("claude", &c)])).await;
    let frames = sse_data(gw.post("/v1/chat/completions", stream_body(None)).await).await;
    assert!(
        frames.last().unwrap().contains("overloaded_error"),
        "{frames:?}"
    );
    let d = gw.deployment("claude").await;
    assert_eq!(d["cooldown_cause"], "rate_limited", "{d}");
    assert_eq!(d["failures"], 0, "{d}");
}

/// A deployment that cuts every stream after it started: each start is an
/// answer, but breaks in a row with no stream completed between them are
/// failures in a row, and it cools down instead of taking its share (and
/// a retrying client) forever.
#[tokio::test]
async fn a_deployment_that_cuts_every_stream_cools_down() {
    let (_a, b, gw) = pair("", Mode::ResetMidStream { after_chunks: 3 }, Mode::Normal).await;
    for _ in 0..8 {
        let r = gw
            .post(
                "/v1/chat/completions",
                json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        let _ = r.text().await;
    }
    let a = gw.deployment("a").await;
    assert_eq!(a["state"], "cooling_down", "{a}");
    assert_eq!(a["cooldown_cause"], "failing", "{a}");
    // Once it cooled down, the sound one took the rest.
    assert!(b.stats().ok >= 5);
}

/// One stream broken now and then is a blip, not a pattern: completed
/// streams between the breaks forgive them.
#[tokio::test]
async fn a_stream_broken_now_and_then_does_not_cool_its_deployment() {
    let (a, _b, gw) = pair("", Mode::Normal, Mode::Normal).await;
    for round in 0..4 {
        a.set_mode(Mode::ResetMidStream { after_chunks: 3 });
        for _ in 0..2 {
            let r = gw
                .post(
                    "/v1/chat/completions",
                    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            let _ = r.text().await;
        }
        a.set_mode(Mode::Normal);
        for _ in 0..2 {
            let r = gw
                .post(
                    "/v1/chat/completions",
                    json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
                )
                .await;
            let _ = r.text().await;
        }
        assert_eq!(
            gw.deployment("a").await["state"],
            "healthy",
            "round {round}"
        );
    }
}
