//! Relaying a committed stream to the client, chunk by chunk, unbuffered.
//!
//! Once the first bytes have gone out, failing over is no longer possible: a
//! stream that breaks afterwards (upstream error, truncation, the request
//! deadline) ends with an SSE error event, never with a clean `[DONE]`, so the
//! client's SDK raises instead of returning half an answer as if complete.
//! The token count is settled when the stream ends, or when the client drops it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;

use super::flight::Flight;
use super::provider::Decoder;
use crate::events::RequestOutcome;

pub(super) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, hyper::Error>> + Send>>;

pub(super) struct Relay {
    flight: Flight,
    first: Option<Bytes>,
    upstream: ByteStream,
    decoder: Decoder,
    deadline: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
}

fn error_event(message: &str, code: &str) -> Bytes {
    let body = json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": code}});
    Bytes::from(format!("data: {body}\n\n"))
}

impl Relay {
    pub(super) fn new(
        flight: Flight,
        first: Bytes,
        upstream: ByteStream,
        decoder: Decoder,
        deadline: tokio::time::Instant,
    ) -> Self {
        Self {
            flight,
            first: Some(first),
            upstream,
            decoder,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            ended: false,
        }
    }

    /// Tokens to count: the upstream's report, else the prompt estimate plus
    /// one token per content chunk seen.
    fn tokens(&self) -> (u64, u64, bool) {
        match self.decoder.usage() {
            Some(u) => (u.prompt_tokens, u.completion_tokens, false),
            None => (self.flight.prompt_estimate, self.decoder.frames(), true),
        }
    }

    fn end(&mut self, outcome: RequestOutcome) {
        self.ended = true;
        let (prompt, completion, estimated) = self.tokens();
        let total = self
            .decoder
            .usage()
            .map_or(prompt + completion, |u| u.total());
        // Before settling: settling releases the record of who answered.
        if outcome == RequestOutcome::StreamInterrupted {
            // Throttled mid-stream (Bedrock's throttlingException): a rate
            // limit, which cools the deployment down at once.
            let verdict = if self.decoder.rate_limited() {
                crate::router::Verdict::RateLimited(None)
            } else {
                crate::router::Verdict::Failed
            };
            self.flight.fail_answering(verdict);
        }
        self.flight.settle(total);
        self.flight
            .finish(200, outcome, prompt, completion, estimated);
    }

    /// Ends the stream with an error event (and whatever was still buffered).
    fn break_off(
        &mut self,
        message: &str,
        code: &str,
    ) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let rest = self.decoder.finish();
        self.break_off_after(rest, message, code)
    }

    /// [`Relay::break_off`] once the decoder has given up its last bytes.
    fn break_off_after(
        &mut self,
        rest: Option<Bytes>,
        message: &str,
        code: &str,
    ) -> Poll<Option<Result<Bytes, std::io::Error>>> {
        let mut out = rest.map(|b| b.to_vec()).unwrap_or_default();
        if !out.is_empty() && !out.ends_with(b"\n\n") {
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(&error_event(message, code));
        self.end(RequestOutcome::StreamInterrupted);
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            return this.break_off(
                "the request timeout ran out while streaming",
                "request_timeout",
            );
        }
        loop {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(out) = this.decoder.feed(chunk) {
                        return Poll::Ready(Some(Ok(out)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    let message = format!("the upstream stream broke off: {e}");
                    return this.break_off(&message, "stream_interrupted");
                }
                Poll::Ready(None) => {
                    let rest = this.decoder.finish();
                    if this.decoder.done() {
                        this.end(RequestOutcome::Ok);
                        return Poll::Ready(rest.map(Ok));
                    }
                    if this.decoder.saw_error() {
                        // The upstream itself ended with an error event; pass it on as is.
                        this.end(RequestOutcome::StreamInterrupted);
                        return Poll::Ready(rest.map(Ok));
                    }
                    // The unterminated tail goes out first, then the error.
                    return this.break_off_after(
                        rest,
                        "the upstream ended the stream without [DONE]",
                        "stream_truncated",
                    );
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.ended {
            // The client went away mid-stream; dropping `upstream` cancels the
            // upstream request. Count what was streamed so far.
            self.end(RequestOutcome::ClientClosed);
        }
    }
}
