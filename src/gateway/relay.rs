//! Relaying a committed stream to the client, chunk by chunk, unbuffered.
//!
//! Once the first bytes have gone out, failing over is no longer possible: a
//! stream that breaks afterwards (upstream error, truncation, silence past
//! the idle timeout, the request deadline) ends with an SSE error event,
//! never with a clean `[DONE]`, so the client's SDK raises instead of
//! returning half an answer as if complete; each break is logged. A stream
//! that ends cleanly after its answer finished is a finish, `[DONE]` or not
//! (the decoders add it). The token count is settled when the stream ends,
//! or when the client drops it.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::time::{Instant, Sleep};

use super::flight::Flight;
use super::provider::Decoder;
use super::upstream::Upstream;
use crate::events::RequestOutcome;
use crate::router::Verdict;

pub(super) type ByteStream =
    Pin<Box<dyn Stream<Item = Result<Bytes, super::client::BodyError>> + Send>>;

/// Pending once, after waking its own task, so that the tasks woken before
/// it run first. On a serving thread's current-thread runtime one of them
/// is the upstream connection's: it hands a body's end over only on its
/// next turn, even when the end came in the same read as the last event.
struct OneTurn(bool);

impl Future for OneTurn {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// For a stream whose answer is already complete (its last event read): the
/// upstream's end, when it is one turn away, is taken now, so that the
/// client gets the events and the end of the body in one write, and is
/// woken once, not twice (a short answer streamed in one piece; under load
/// one `send` a stream less). Anything else is put back as it came.
pub(super) async fn end_in_hand(mut body: ByteStream) -> ByteStream {
    let mut next =
        futures_util::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_next(cx))).await;
    if next.is_pending() {
        OneTurn(false).await;
        next = futures_util::future::poll_fn(|cx| Poll::Ready(body.as_mut().poll_next(cx))).await;
    }
    match next {
        Poll::Pending => body,
        // Nothing more: the relay ends at its first look (no allocation:
        // the empty stream has no size).
        Poll::Ready(None) => Box::pin(futures_util::stream::empty()),
        Poll::Ready(Some(item)) => {
            Box::pin(futures_util::stream::once(std::future::ready(item)).chain(body))
        }
    }
}

/// The rest of an upstream's stream once its first bytes are ready, and
/// how the relay is to watch it: the attempt's own limits and who sends it.
pub(super) struct Tail {
    pub(super) body: ByteStream,
    pub(super) upstream: Arc<Upstream>,
    /// The longest silence allowed between two chunks.
    pub(super) idle: Option<Duration>,
    /// The attempt's deadline: the request's, or the deployment's own
    /// `request_timeout_s` when that comes first.
    pub(super) deadline: Instant,
}

pub(super) struct Relay {
    flight: Flight,
    first: Option<Bytes>,
    upstream: ByteStream,
    from: Arc<Upstream>,
    decoder: Decoder,
    deadline: Pin<Box<Sleep>>,
    idle: Option<Idle>,
    /// Bytes handed to the client so far, for the log of a break.
    sent: u64,
    /// Skipped frames already logged.
    skipped: u64,
    ended: bool,
    /// The answer's last bytes were held for one turn, to go out with the
    /// upstream's end (see [`OneTurn`]).
    held_for_end: bool,
}

/// The idle timer. The sleep is not re-armed per chunk (that would touch
/// the timer wheel on every token): each chunk only notes the time, and
/// when the sleep fires early it is moved to the last chunk + the limit.
struct Idle {
    limit: Duration,
    last: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl Idle {
    /// Whether the stream has been silent for the whole limit; registers
    /// the waker otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        while self.sleep.as_mut().poll(cx).is_ready() {
            let due = self.last + self.limit;
            if due <= Instant::now() {
                return true;
            }
            self.sleep.as_mut().reset(due);
        }
        false
    }
}

impl Relay {
    pub(super) fn new(
        flight: Flight,
        first: Bytes,
        rest: Tail,
        decoder: Decoder,
        deadline: Instant,
    ) -> Self {
        let now = Instant::now();
        let idle = rest.idle.map(|limit| Idle {
            limit,
            last: now,
            sleep: Box::pin(tokio::time::sleep_until(now + limit)),
        });
        let skipped = decoder.skipped();
        Self {
            flight,
            sent: first.len() as u64,
            first: Some(first),
            upstream: rest.body,
            from: rest.upstream,
            decoder,
            deadline: Box::pin(tokio::time::sleep_until(deadline.min(rest.deadline))),
            idle,
            skipped,
            ended: false,
            held_for_end: false,
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
        let spent = self.decoder.usage().map_or(
            crate::router::Spent {
                input: prompt,
                output: completion,
            },
            |u| u.spent(),
        );
        // Before settling: settling releases the record of who answered.
        if outcome == RequestOutcome::StreamInterrupted {
            // Throttled or overloaded mid-stream (Bedrock's
            // throttlingException, Anthropic's overloaded_error): a rate
            // limit, which cools the deployment down at once.
            let verdict = match self.decoder.rate_limited() {
                Some(_) => Verdict::RateLimited(None),
                None => Verdict::Failed,
            };
            self.flight.fail_answering(verdict);
            if verdict == Verdict::Failed {
                self.broken_again();
            }
        } else if outcome == RequestOutcome::Ok {
            self.from.stream_completed();
        }
        let skipped = self.decoder.skipped();
        if skipped > 0 {
            self.flight.gw.shared.metrics.skipped_frames(
                &self.flight.route.name,
                &self.from.name,
                skipped,
            );
        }
        self.flight.settle(spent);
        self.flight
            .finish(200, outcome, prompt, completion, estimated);
    }

    /// Another stream of this deployment broke after it had started. Each
    /// start counts as an answer, which forgives the failures before it, so
    /// a deployment that cuts every stream half-way would never cool down
    /// (and a client retrying, as Codex does, would be sent back to it each
    /// time). Streams broken in a row with none completed between them
    /// count as failures in a row: at the threshold, it cools down.
    fn broken_again(&mut self) {
        let broken = self.from.stream_broke();
        let threshold = self.flight.route.failure_threshold();
        if broken >= threshold {
            // The start's answer reset the count: the failures the breaks
            // stand for are recorded again, so the core sees them in a row.
            for _ in 1..threshold {
                self.flight.fail_answering(Verdict::Failed);
            }
        }
    }

    /// A break after the first byte: the client's SDK raises, and without
    /// this line the operator would never hear of it.
    fn log_break(&self, reason: &str) {
        tracing::warn!(
            model = %self.flight.route.name,
            deployment = %self.from.name,
            bytes_sent = self.sent,
            reason = %self.from.scrub(reason.to_string()),
            "stream broke off after its first byte"
        );
    }

    /// Frames left out since the last look: logged (the last one's start,
    /// escaped and scrubbed), counted in the metrics when the stream ends.
    #[cold]
    fn log_skipped(&mut self) {
        let skipped = self.decoder.skipped();
        let what = self.decoder.last_skipped().unwrap_or_default().to_string();
        tracing::warn!(
            model = %self.flight.route.name,
            deployment = %self.from.name,
            frames = skipped - self.skipped,
            last = %self.from.scrub(what),
            "left out stream frames that are not JSON"
        );
        self.skipped = skipped;
    }

    /// Ends the stream with an error event, after the whole frames the
    /// decoder still had.
    fn break_off(&mut self, message: &str, code: &str) -> Poll<Option<Result<Bytes, io::Error>>> {
        let rest = self.decoder.abandon();
        self.break_off_after(rest, message, code)
    }

    /// [`Relay::break_off`] once the decoder has given up its last bytes.
    fn break_off_after(
        &mut self,
        rest: Option<Bytes>,
        message: &str,
        code: &str,
    ) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.log_break(message);
        let mut out = rest.map(|b| b.to_vec()).unwrap_or_default();
        if !out.is_empty() && !out.ends_with(b"\n\n") {
            out.extend_from_slice(b"\n\n");
        }
        out.extend_from_slice(&self.decoder.error_event(message, code));
        self.end(RequestOutcome::StreamInterrupted);
        Poll::Ready(Some(Ok(Bytes::from(out))))
    }

    /// The upstream sent its own error event (now on its way to the
    /// client): the stream ends here, whatever the upstream does next.
    fn upstream_error(&mut self, out: Option<Bytes>) -> Poll<Option<Result<Bytes, io::Error>>> {
        let reason = match self.decoder.error_message() {
            Some(m) => format!("the upstream sent an error event: {m}"),
            None => "the upstream sent an error event".to_string(),
        };
        self.log_break(&reason);
        self.end(RequestOutcome::StreamInterrupted);
        Poll::Ready(out.map(Ok))
    }

    /// The answer is complete (`[DONE]` went out) but the upstream keeps
    /// its response open. The relay reads on until it ends, so the
    /// connection can go back to the pool; a timer that runs out meanwhile
    /// ends a finished stream, not a broken one.
    fn finished_upstream_lingers(&mut self) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.end(RequestOutcome::Ok);
        Poll::Ready(None)
    }

    fn send(&mut self, out: Bytes) -> Poll<Option<Result<Bytes, io::Error>>> {
        self.sent += out.len() as u64;
        Poll::Ready(Some(Ok(out)))
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if this.deadline.as_mut().poll(cx).is_ready() {
            if this.decoder.done() {
                return this.finished_upstream_lingers();
            }
            return this.break_off(
                "the request timeout ran out while streaming",
                "request_timeout",
            );
        }
        loop {
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Pending => {
                    if let Some(idle) = &mut this.idle
                        && idle.expired(cx)
                    {
                        if this.decoder.done() {
                            return this.finished_upstream_lingers();
                        }
                        let message = format!(
                            "the upstream sent nothing for {:.1}s (stream_idle_timeout_s)",
                            idle.limit.as_secs_f64()
                        );
                        return this.break_off(&message, "stream_idle_timeout");
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    if let Some(idle) = &mut this.idle {
                        idle.last = Instant::now();
                    }
                    let out = this.decoder.feed(chunk);
                    if this.decoder.skipped() != this.skipped {
                        this.log_skipped();
                    }
                    if this.decoder.saw_error() {
                        return this.upstream_error(out);
                    }
                    if let Some(out) = out {
                        if this.decoder.done() && !this.held_for_end {
                            // The answer is complete: one turn for the
                            // upstream's end to arrive, so that both go out
                            // in one write. (Held in `first`, which goes out
                            // at the next look, whatever has come by then.)
                            this.held_for_end = true;
                            this.sent += out.len() as u64;
                            this.first = Some(out);
                            cx.waker().wake_by_ref();
                            return Poll::Pending;
                        }
                        return this.send(out);
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
                        return this.upstream_error(rest);
                    }
                    // The whole frames of the tail go out first, then the error.
                    return this.break_off_after(
                        rest,
                        "the upstream ended the stream before its answer finished",
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyDataStream, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// An upstream that sends its whole stream, last event and end of body,
    /// in one write, as a short answer often comes.
    async fn one_piece_stream() -> ByteStream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            let event = "data: [DONE]\n\n";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{event}\r\n0\r\n\r\n",
                event.len()
            );
            s.write_all(answer.as_bytes()).await.unwrap();
            let _ = s.read(&mut buf).await;
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let request = axum::http::Request::post("/v1/chat/completions")
            .header("host", "upstream")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = send.send_request(request).await.unwrap();
        use http_body_util::BodyExt;
        let body = response
            .into_body()
            .map_err(crate::gateway::client::BodyError::from);
        let mut body: ByteStream = Box::pin(BodyDataStream::new(body));
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(&first[..], b"data: [DONE]\n\n");
        body
    }

    fn polled_now(
        body: &mut ByteStream,
    ) -> Poll<Option<Result<Bytes, super::super::client::BodyError>>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        body.as_mut().poll_next(&mut cx)
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_end_read_with_the_last_event_is_in_hand_after_one_turn() {
        // Without the turn the end is not there yet: the response would go
        // out in two writes (the events, then the end of the body).
        let mut body = one_piece_stream().await;
        assert!(polled_now(&mut body).is_pending());

        let body = one_piece_stream().await;
        let mut body = end_in_hand(body).await;
        assert!(matches!(polled_now(&mut body), Poll::Ready(None)));
    }
}
