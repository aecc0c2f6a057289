//! The response body: a list of frames sent one hyper frame each, paced by
//! the chunk delay, ending cleanly, abnormally (the connection is aborted)
//! or never.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::limits::{Settle, Slot};

/// How the body ends once its frames are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The normal end (the terminating chunk for a chunked body).
    Clean,
    /// An error frame, which makes hyper drop the connection mid-body.
    Abort,
    /// Never: the client waits until it gives up.
    Hang,
}

/// Returned in the error frame of an aborted body; hyper only needs it to
/// be an error.
#[derive(Debug)]
pub(super) struct Aborted;

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("mock-upstream aborted the response body")
    }
}

impl std::error::Error for Aborted {}

pub(super) struct MockBody {
    frames: std::vec::IntoIter<Bytes>,
    /// Announced as the Content-Length; None sends the body chunked.
    length: Option<u64>,
    end: End,
    pacing: Option<Pacing>,
    /// An abort first yields once so hyper flushes what it has buffered:
    /// the frames before the cut must reach the client.
    abort_flushed: bool,
    /// The request's in-flight slot and output reservation: they end with
    /// the body, which hyper drops after the last frame or when the
    /// client leaves (see `limits`).
    slot: Option<Slot>,
    settle: Option<Settle>,
}

/// The delay between frames (none before the first).
struct Pacing {
    gap: Duration,
    sent_first: bool,
    /// Allocated once per body, re-armed for every gap.
    sleep: Option<Pin<Box<Sleep>>>,
    armed: bool,
}

impl MockBody {
    /// A complete body with a Content-Length.
    pub(super) fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        let length = Some(bytes.len() as u64);
        let frames = if bytes.is_empty() {
            Vec::new()
        } else {
            vec![bytes]
        };
        MockBody::new(frames, length, End::Clean)
    }

    pub(super) fn empty() -> Self {
        MockBody::new(Vec::new(), Some(0), End::Clean)
    }

    /// Chunked frames sent `gap` apart.
    pub(super) fn stream(frames: Vec<Bytes>, gap: Duration, end: End) -> Self {
        let mut body = MockBody::new(frames, None, end);
        if !gap.is_zero() {
            body.pacing = Some(Pacing {
                gap,
                sent_first: false,
                sleep: None,
                armed: false,
            });
        }
        body
    }

    /// A whole answer, spoiled as `mode` says (every provider's mock alike).
    pub(super) fn answer(mode: &super::Mode, json: Vec<u8>) -> Self {
        use super::Mode;
        match mode {
            Mode::Garbage => MockBody::full(Bytes::from_static(super::openai::GARBAGE_BODY)),
            Mode::HangAfterHeaders => MockBody::stream(Vec::new(), Duration::ZERO, End::Hang),
            Mode::ResetMidStream { .. } => MockBody::first_half(json, End::Abort),
            Mode::TruncatedStream { .. } => MockBody::first_half(json, End::Clean),
            Mode::StallMidStream { .. } => MockBody::first_half(json, End::Hang),
            _ => MockBody::full(json),
        }
    }

    /// A stream of `frames`, spoiled as `mode` says: `garbage` instead of
    /// them, cut, cut and ended with the provider's `error` frame (made
    /// from the mode's exception name, if it gives one), or with a
    /// `malformed` frame (made from the frame it precedes) slipped in.
    pub(super) fn spoiled(
        mode: &super::Mode,
        mut frames: Vec<Bytes>,
        gap: Duration,
        garbage: impl FnOnce() -> Vec<Bytes>,
        error: impl FnOnce(Option<&str>) -> Bytes,
        malformed: impl FnOnce(Option<&Bytes>) -> Bytes,
    ) -> Self {
        use super::Mode;
        let cut = |frames: &mut Vec<Bytes>, n: u32| {
            frames.truncate(usize::try_from(n).unwrap_or(usize::MAX))
        };
        match mode {
            Mode::Garbage => MockBody::stream(garbage(), gap, End::Clean),
            Mode::HangAfterHeaders => MockBody::stream(Vec::new(), Duration::ZERO, End::Hang),
            Mode::ResetMidStream { after_chunks } => {
                cut(&mut frames, *after_chunks);
                MockBody::stream(frames, gap, End::Abort)
            }
            Mode::TruncatedStream { after_chunks } => {
                cut(&mut frames, *after_chunks);
                MockBody::stream(frames, gap, End::Clean)
            }
            Mode::ErrorMidStream {
                after_chunks,
                exception,
            } => {
                cut(&mut frames, *after_chunks);
                frames.push(error(exception.as_deref()));
                MockBody::stream(frames, gap, End::Clean)
            }
            Mode::StallMidStream { after_chunks } => {
                cut(&mut frames, *after_chunks);
                MockBody::stream(frames, gap, End::Hang)
            }
            Mode::NoDone => {
                frames.pop();
                MockBody::stream(frames, gap, End::Clean)
            }
            Mode::MalformedChunk { after_chunks } => {
                let at = frames
                    .len()
                    .min(usize::try_from(*after_chunks).unwrap_or(usize::MAX));
                let bad = malformed(frames.get(at));
                frames.insert(at, bad);
                MockBody::stream(frames, gap, End::Clean)
            }
            _ => MockBody::stream(frames, gap, End::Clean),
        }
    }

    /// An SSE frame whose data is `next`'s cut in half (not JSON any more),
    /// as a proxy that split a chunk would pass it on; without `next`, a
    /// payload that never was JSON.
    pub(super) fn cut_short(next: Option<&Bytes>) -> Bytes {
        let Some(next) = next else {
            return Bytes::from_static(b"data: {\"not json\n\n");
        };
        let text = next.trim_ascii_end();
        let data = memchr::memmem::find(text, b"data:").map_or(0, |i| i + b"data:".len());
        let keep = data + (text.len() - data) / 2;
        let mut out = text[..keep].to_vec();
        out.extend_from_slice(b"\n\n");
        Bytes::from(out)
    }

    /// The first half of `full`, announced with its whole length, then `end`.
    pub(super) fn first_half(full: Vec<u8>, end: End) -> Self {
        let length = full.len() as u64;
        let mut half = Bytes::from(full);
        half.truncate(half.len() / 2);
        let announced = if end == End::Clean {
            half.len() as u64
        } else {
            length
        };
        MockBody::new(vec![half], Some(announced), end)
    }

    fn new(frames: Vec<Bytes>, length: Option<u64>, end: End) -> Self {
        MockBody {
            frames: frames.into_iter(),
            length,
            end,
            pacing: None,
            abort_flushed: false,
            slot: None,
            settle: None,
        }
    }

    /// Keeps the request in flight until the body ends.
    pub(super) fn hold_slot(&mut self, slot: Option<Slot>) {
        self.slot = slot;
    }

    /// Corrects the output reservation when the body ends.
    pub(super) fn hold_settle(&mut self, settle: Option<Settle>) {
        self.settle = settle;
    }
}

impl Pacing {
    /// Ready when the next frame may go.
    fn poll_gap(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.sent_first {
            self.sent_first = true;
            return Poll::Ready(());
        }
        let deadline = Instant::now() + self.gap;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            sleep.as_mut().reset(deadline);
            self.armed = true;
        }
        ready!(sleep.as_mut().poll(cx));
        self.armed = false;
        Poll::Ready(())
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = Aborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Aborted>>> {
        let this = self.get_mut();
        if this.frames.len() > 0 {
            if let Some(pacing) = &mut this.pacing {
                ready!(pacing.poll_gap(cx));
            }
            let frame = this.frames.next();
            if this.frames.len() == 0 && this.end == End::Clean {
                // The answer is made: a server frees its place before the
                // last bytes reach the client (a client that reads them
                // may send its next request at once).
                this.slot = None;
            }
            return Poll::Ready(frame.map(|b| Ok(Frame::data(b))));
        }
        match this.end {
            End::Clean => Poll::Ready(None),
            // No waker is kept: nothing will ever wake this body. Hyper still
            // notices when the client closes, and drops it.
            End::Hang => Poll::Pending,
            End::Abort if !this.abort_flushed => {
                this.abort_flushed = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            End::Abort => Poll::Ready(Some(Err(Aborted))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.len() == 0 && self.end == End::Clean
    }

    fn size_hint(&self) -> SizeHint {
        self.length.map(SizeHint::with_exact).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn full_bodies_have_a_length() {
        let body = MockBody::full(&b"hello"[..]);
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "hello");
        assert!(MockBody::empty().is_end_stream());
    }

    #[tokio::test]
    async fn frames_are_paced_and_sent_one_by_one() {
        let gap = Duration::from_millis(20);
        let frames = vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        ];
        let mut body = MockBody::stream(frames, gap, End::Clean);
        let mut seen = Vec::new();
        let mut last = Instant::now();
        while let Some(frame) = body.frame().await {
            seen.push((frame.unwrap().into_data().unwrap(), last.elapsed()));
            last = Instant::now();
        }
        assert_eq!(
            seen.iter().map(|(b, _)| b.clone()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        // Only lower bounds: a slow machine may take longer, never shorter.
        assert!(seen[1].1 >= gap && seen[2].1 >= gap, "{seen:?}");
    }

    #[tokio::test]
    async fn aborted_bodies_end_with_an_error() {
        let mut body = MockBody::stream(vec![Bytes::from_static(b"a")], Duration::ZERO, End::Abort);
        assert!(body.frame().await.unwrap().is_ok());
        assert!(!body.is_end_stream());
        assert!(body.frame().await.unwrap().is_err());
    }

    #[test]
    fn a_frame_cut_short_keeps_its_event_line_and_half_its_data() {
        let next = Bytes::from_static(b"event: x\ndata: {\"a\":\"bcd\"}\n\n");
        assert_eq!(
            MockBody::cut_short(Some(&next)),
            "event: x\ndata: {\"a\":\n\n"
        );
        assert_eq!(MockBody::cut_short(None), "data: {\"not json\n\n");
    }

    #[tokio::test]
    async fn a_half_body_announces_the_whole_length_when_it_aborts() {
        let body = MockBody::first_half(b"0123456789".to_vec(), End::Abort);
        assert_eq!(body.size_hint().exact(), Some(10));
        let body = MockBody::first_half(b"0123456789".to_vec(), End::Clean);
        assert_eq!(body.size_hint().exact(), Some(5));
        assert_eq!(body.collect().await.unwrap().to_bytes(), "01234");
    }
}
