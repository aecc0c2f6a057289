use super::*;

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-up\",\"content\":[],\"usage\":{\"input_tokens\":12,\"cache_read_input_tokens\":3,\"output_tokens\":1}}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const BLOCK: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCkYIBxgCKkA=\"}}\n\n";
const STOP_BLOCK: &str =
    "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n";
const MESSAGE_DELTA: &str = "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n";
const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn whole() -> String {
    [START, PING, BLOCK, DELTA, STOP_BLOCK, MESSAGE_DELTA, STOP].concat()
}

fn run(stream: &mut MessagesStream, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        if let Some(b) = stream.feed(c) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = stream.finish() {
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn the_opening_events_wait_for_the_first_content_block() {
    let mut s = MessagesStream::sse();
    assert_eq!(s.feed(START.as_bytes()), None);
    assert_eq!(s.feed(PING.as_bytes()), None);
    let first = s.feed(BLOCK.as_bytes()).unwrap();
    assert_eq!(first, [START, PING, BLOCK].concat().as_bytes());
}

#[test]
fn events_pass_through_byte_for_byte_split_anywhere() {
    let all = whole();
    for cut in 0..all.len() {
        let mut s = MessagesStream::sse();
        let out = run(&mut s, &[&all.as_bytes()[..cut], &all.as_bytes()[cut..]]);
        assert_eq!(String::from_utf8(out).unwrap(), all, "cut at {cut}");
        assert!(s.done());
    }
    let mut s = MessagesStream::sse();
    run(&mut s, &[all.as_bytes()]);
    let usage = s.usage().unwrap();
    assert_eq!((usage.prompt_tokens, usage.completion_tokens), (15, 7));
}

#[test]
fn an_overload_before_content_is_a_rate_limit_and_sends_nothing_held() {
    let mut s = MessagesStream::sse();
    s.feed(START.as_bytes());
    let out = s
        .feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
        .unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("message_start"));
    assert_eq!(s.rate_limited(), Some(529));
    assert_eq!(s.error(), Some("overloaded_error: Overloaded"));
}

#[test]
fn a_first_event_that_is_not_json_is_invalid() {
    let mut s = MessagesStream::sse();
    s.feed(b"data: <html>\n\n");
    assert!(s.invalid());
    assert!(s.error().is_some());
}

#[test]
fn a_stream_that_ends_before_message_stop_is_not_done() {
    let mut s = MessagesStream::sse();
    run(&mut s, &[[START, BLOCK, DELTA].concat().as_bytes()]);
    assert!(!s.done());
    assert!(s.error().is_none());
}

/// One Anthropic event in Bedrock's framing, as InvokeModelWithResponseStream sends it.
fn bedrock_chunk(event: &str) -> Bytes {
    let payload = serde_json::json!({"bytes": aws_smithy_types::base64::encode(event)}).to_string();
    crate::gateway::provider::bedrock::stream::frame("chunk", payload.as_bytes())
}

fn data(frame: &str) -> &str {
    frame.split_once("data: ").unwrap().1.trim_end()
}

#[test]
fn bedrocks_frames_come_out_as_the_events_they_carry() {
    let events = [START, PING, BLOCK, DELTA, STOP_BLOCK, MESSAGE_DELTA];
    let mut framed: Vec<u8> = events
        .iter()
        .flat_map(|e| bedrock_chunk(data(e)).to_vec())
        .collect();
    let metrics = r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":12,"outputTokenCount":7,"invocationLatency":1,"firstByteLatency":1}}"#;
    framed.extend_from_slice(&bedrock_chunk(metrics));
    let mut s = MessagesStream::bedrock();
    // Byte by byte: frames complete anywhere.
    let chunks: Vec<&[u8]> = framed.chunks(7).collect();
    let out = String::from_utf8(run(&mut s, &chunks)).unwrap();
    let want: String = [START, PING, BLOCK, DELTA, STOP_BLOCK, MESSAGE_DELTA, STOP]
        .iter()
        .map(|e| {
            let d = data(e);
            let kind: serde_json::Value = serde_json::from_str(d).unwrap();
            format!("event: {}\ndata: {d}\n\n", kind["type"].as_str().unwrap())
        })
        .collect();
    assert_eq!(out, want);
    assert!(s.done());
}

#[test]
fn a_bedrock_throttle_is_a_rate_limit_in_anthropics_error_shape() {
    let mut s = MessagesStream::bedrock();
    let out = s
        .feed(&crate::gateway::provider::bedrock::stream::exception_frame(
            "throttlingException",
            "Too many requests",
        ))
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("event: error\ndata: {\"type\":\"error\""));
    assert!(text.contains("rate_limit_error"));
    assert_eq!(s.rate_limited(), Some(429));
}

mod props;
