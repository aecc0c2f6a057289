//! A Responses stream, passed through. Until the first
//! `response.output_item.added` the opening events (`response.created`,
//! `response.in_progress`) are held back, so a deployment that fails before
//! its first output is replaced without the client seeing anything; an
//! upstream `response.failed` or `error` event then is a failed attempt.
//! After it, events go out as they come; a break ends the stream with a
//! `response.failed` event of the gateway's, never a clean
//! `response.completed`.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;

use super::answer::ResponsesUsage;
use crate::gateway::provider::anthropic::stream::data_of;
use crate::gateway::provider::chunk::push_json;
use crate::gateway::sse::{Usage, event_name, frame_end, preview};

const MAX_EVENT: usize = 16 << 20;

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    response: Option<Response<'a>>,
    /// An `error` event's own.
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Response<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Option<ResponsesUsage>,
    #[serde(default, borrow)]
    error: Option<Failure<'a>>,
}

#[derive(Deserialize)]
struct Failure<'a> {
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    message: Option<Cow<'a, str>>,
}

#[derive(Debug, Default)]
pub struct ResponsesStream {
    pending: BytesMut,
    held: Vec<u8>,
    started: bool,
    /// The upstream's response id and model, for the gateway's own
    /// `response.failed`.
    id: Option<String>,
    model: Option<String>,
    usage: Option<Usage>,
    events: u64,
    frames: u64,
    done: bool,
    error: Option<String>,
    rate_limited: Option<u16>,
    invalid: bool,
    skipped: u64,
    last_skipped: Option<String>,
}

impl ResponsesStream {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }
    /// The response's id, once `response.created` named it.
    pub fn response_id(&self) -> Option<&str> {
        self.id.as_deref()
    }
    pub fn done(&self) -> bool {
        self.done
    }
    pub fn frames(&self) -> u64 {
        self.frames
    }
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
    pub fn rate_limited(&self) -> Option<u16> {
        self.rate_limited
    }
    pub fn invalid(&self) -> bool {
        self.invalid
    }
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
    pub fn last_skipped(&self) -> Option<&str> {
        self.last_skipped.as_deref()
    }

    /// The gateway's `response.failed`, ending a stream it breaks off.
    pub fn failed_event(&self, message: &str, code: &str) -> Bytes {
        let id = self.id.as_deref().unwrap_or("resp_switchboard");
        let model = self.model.as_deref().unwrap_or_default();
        failed_event(Some(self.events), id, model, message, code)
    }

    pub fn feed(&mut self, chunk: Bytes) -> Option<Bytes> {
        if self.error.is_some() {
            return None;
        }
        let data = if self.pending.is_empty() {
            chunk
        } else {
            self.pending.extend_from_slice(&chunk);
            self.pending.split().freeze()
        };
        let out = if self.started {
            // Every frame now goes on as it came: a slice of the chunk.
            let mut at = 0;
            while let Some(len) = frame_end(&data[at..]) {
                self.event(&data[at..at + len]);
                at += len;
                if self.error.is_some() {
                    return Some(data.slice(..at));
                }
            }
            self.pending.extend_from_slice(&data[at..]);
            data.slice(..at)
        } else {
            let mut out = Vec::new();
            let rest = self.frames_of(&data, &mut out);
            self.pending.extend_from_slice(rest);
            Bytes::from(out)
        };
        if self.pending.len() > MAX_EVENT {
            self.error = Some("the upstream sent an event larger than 16 MiB".into());
        }
        (!out.is_empty()).then_some(out)
    }

    pub fn finish(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        let last = std::mem::take(&mut self.pending);
        if self.error.is_none() && !last.trim_ascii().is_empty() {
            let mut frame = last.to_vec();
            frame.extend_from_slice(b"\n\n");
            self.frames_of(&frame, &mut out);
        }
        (!out.is_empty()).then(|| Bytes::from(out))
    }

    pub fn abandon(&mut self) -> Option<Bytes> {
        None
    }

    /// The whole frames of `data` read, what goes to the client now in
    /// `out` (the held frames too, once released); the incomplete rest.
    fn frames_of<'d>(&mut self, mut data: &'d [u8], out: &mut Vec<u8>) -> &'d [u8] {
        while let Some(end) = frame_end(data) {
            let (frame, rest) = data.split_at(end);
            data = rest;
            match self.event(frame) {
                Sent::Out => out.extend_from_slice(frame),
                Sent::Held => self.held.extend_from_slice(frame),
                Sent::Release => {
                    out.append(&mut self.held);
                    out.extend_from_slice(frame);
                }
                Sent::Dropped => {}
            }
            if self.error.is_some() {
                return &[];
            }
        }
        data
    }

    /// Reads one frame; says where it goes.
    fn event(&mut self, frame: &[u8]) -> Sent {
        // The token-by-token events carry nothing the gateway reads: named
        // by their `event:` line, with a JSON object right after, they pass
        // on a glance.
        if self.started
            && let Some(name) = glance(frame)
            && (name.ends_with(b".delta") || name.ends_with(b".done") || name.ends_with(b".added"))
        {
            self.events += 1;
            if name.ends_with(b".delta") {
                self.frames += 1;
            }
            return self.send();
        }
        let Some(data) = data_of(frame) else {
            return self.send();
        };
        if data.as_ref() == b"[DONE]" {
            return self.send();
        }
        let event: Event = match serde_json::from_slice(&data) {
            Ok(e) => e,
            Err(_) if self.events == 0 => {
                self.invalid = true;
                self.error = Some("the upstream's first event is not JSON".into());
                return Sent::Dropped;
            }
            Err(_) => {
                self.skipped += 1;
                self.last_skipped = Some(preview(&data));
                return self.send();
            }
        };
        self.events += 1;
        if let Some(r) = &event.response {
            if self.id.is_none() {
                self.id = r.id.as_deref().map(String::from);
                self.model = r.model.as_deref().map(String::from);
            }
            if let Some(u) = r.usage {
                self.usage = Some(u.usage());
            }
        }
        match event.kind.as_ref() {
            "response.output_item.added" if !self.started => {
                self.started = true;
                return Sent::Release;
            }
            kind if kind.ends_with(".delta") => self.frames += 1,
            "response.completed" | "response.incomplete" => self.done = true,
            "response.failed" => {
                let failure = event.response.as_ref().and_then(|r| r.error.as_ref());
                let code = failure
                    .and_then(|f| f.code.as_deref())
                    .unwrap_or("server_error");
                let message = failure
                    .and_then(|f| f.message.as_deref())
                    .unwrap_or("the response failed");
                self.rate_limited = (code == "rate_limit_exceeded").then_some(429);
                self.error = Some(format!("{code}: {message}"));
            }
            "error" => {
                let code = event.code.as_deref().unwrap_or("server_error");
                let message = event.message.as_deref().unwrap_or("an error event");
                self.rate_limited = (code == "rate_limit_exceeded").then_some(429);
                self.error = Some(format!("{code}: {message}"));
            }
            _ => {}
        }
        self.send()
    }

    fn send(&self) -> Sent {
        if self.started || self.error.is_some() {
            Sent::Out
        } else {
            Sent::Held
        }
    }
}

/// Where a frame goes.
enum Sent {
    /// To the client now.
    Out,
    /// Held back until the first output item.
    Held,
    /// The first output item: the held frames, then this one.
    Release,
    Dropped,
}

/// The name of an event whose `event:` line is followed at once by a
/// `data:` line holding a JSON object: what every token-by-token event
/// looks like, read without finding its data's end.
fn glance(frame: &[u8]) -> Option<&[u8]> {
    let name = event_name(frame)?;
    let rest = &frame[name.as_ptr() as usize - frame.as_ptr() as usize + name.len()..];
    let rest = rest
        .strip_prefix(b"\r")
        .unwrap_or(rest)
        .strip_prefix(b"\n")?;
    let data = rest.strip_prefix(b"data:")?;
    let data = data.strip_prefix(b" ").unwrap_or(data);
    (data.first() == Some(&b'{')).then_some(name)
}

/// `response.failed` for response `id` of `model`, with its
/// `sequence_number` when the stream numbered its events.
pub(super) fn failed_event(
    seq: Option<u64>,
    id: &str,
    model: &str,
    message: &str,
    code: &str,
) -> Bytes {
    let mut out = b"event: response.failed\ndata: {\"type\":\"response.failed\"".to_vec();
    if let Some(seq) = seq {
        out.extend_from_slice(b",\"sequence_number\":");
        out.extend_from_slice(seq.to_string().as_bytes());
    }
    out.extend_from_slice(b",\"response\":{\"id\":");
    push_json(&mut out, id);
    out.extend_from_slice(b",\"object\":\"response\",\"status\":\"failed\",\"model\":");
    push_json(&mut out, model);
    out.extend_from_slice(b",\"output\":[],\"error\":{\"code\":");
    push_json(&mut out, code);
    out.extend_from_slice(b",\"message\":");
    push_json(&mut out, message);
    out.extend_from_slice(b"}}}\n\n");
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: &str) -> String {
        format!("event: {kind}\ndata: {data}\n\n")
    }

    fn opening() -> String {
        ev(
            "response.created",
            r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","model":"gpt-up","status":"in_progress","output":[]}}"#,
        ) + &ev(
            "response.in_progress",
            r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","status":"in_progress"}}"#,
        )
    }

    #[test]
    fn the_opening_events_wait_for_the_first_output_item_and_the_rest_passes_byte_for_byte() {
        let added = ev(
            "response.output_item.added",
            r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"type":"message","id":"msg_1","role":"assistant","content":[]}}"#,
        );
        let delta = ev(
            "response.output_text.delta",
            r#"{"type":"response.output_text.delta","sequence_number":3,"delta":"Hi"}"#,
        );
        let done = ev(
            "response.completed",
            r#"{"type":"response.completed","sequence_number":4,"response":{"id":"resp_1","status":"completed","usage":{"input_tokens":9,"output_tokens":1,"total_tokens":10}}}"#,
        );
        let mut s = ResponsesStream::new();
        assert_eq!(s.feed(Bytes::from(opening())), None);
        let first = s.feed(Bytes::from(added.clone())).unwrap();
        assert_eq!(first, (opening() + &added).as_bytes());
        let all = [delta.clone(), done.clone()].concat();
        for cut in 0..all.len() {
            let mut t = ResponsesStream::new();
            t.feed(Bytes::from(opening() + &added));
            let mut out = t
                .feed(Bytes::copy_from_slice(&all.as_bytes()[..cut]))
                .map(|b| b.to_vec())
                .unwrap_or_default();
            out.extend(
                t.feed(Bytes::copy_from_slice(&all.as_bytes()[cut..]))
                    .map(|b| b.to_vec())
                    .unwrap_or_default(),
            );
            assert_eq!(String::from_utf8(out).unwrap(), all);
            assert!(t.done());
            assert_eq!(t.usage().unwrap().total(), 10);
        }
    }

    #[test]
    fn a_failure_before_output_is_a_failed_attempt_and_the_gateways_own_is_a_response_failed() {
        let mut s = ResponsesStream::new();
        s.feed(Bytes::from(opening()));
        s.feed(Bytes::from(ev("response.failed", r#"{"type":"response.failed","sequence_number":2,"response":{"id":"resp_1","status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"}}}"#)));
        assert_eq!(s.error(), Some("rate_limit_exceeded: slow down"));
        assert_eq!(s.rate_limited(), Some(429));
        let failed = s.failed_event("the upstream stream broke off", "stream_interrupted");
        let text = String::from_utf8(failed.to_vec()).unwrap();
        let data = text.split_once("data: ").unwrap().1.trim();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["type"], "response.failed");
        assert_eq!(v["response"]["id"], "resp_1");
        assert_eq!(v["response"]["status"], "failed");
        assert_eq!(v["response"]["error"]["code"], "stream_interrupted");
    }
}
