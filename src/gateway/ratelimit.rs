//! What an answer tells its client about the model's room: OpenAI's
//! `x-ratelimit-*` headers for the model (so that SDKs back off before
//! they hit a wall), and how long the request waited for room.

use std::fmt::Write;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue};
use axum::response::Response;

use super::flight::Flight;
use crate::router::capacity::Room;

const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");
pub(super) const QUEUED_MS: HeaderName = HeaderName::from_static("x-switchboard-queued-ms");

impl Flight {
    /// What the client should know about the model's room, when there is
    /// something to say.
    #[inline]
    pub(super) fn marks(&self) -> Option<Box<Marks>> {
        if self.queued.is_some() || self.origin().limited() {
            Some(self.room_marks())
        } else {
            None
        }
    }

    /// Adds [`Flight::marks`] to an answer.
    #[inline]
    pub(super) fn mark(&self, response: &mut Response) {
        if let Some(marks) = self.marks() {
            marks.apply(response);
        }
    }

    #[cold]
    fn room_marks(&self) -> Box<Marks> {
        let mut marks = Box::<Marks>::default();
        if let Some(queued) = self.queued {
            marks
                .set
                .push((QUEUED_MS, HeaderValue::from(queued.as_millis() as u64)));
        }
        let origin = self.origin();
        if !origin.limited() {
            return marks;
        }
        let now = self.gw.now();
        let room = origin.lock().pool.remaining(now);
        // The upstream's own figures are one deployment's; the model's
        // replace them, or go when the model has no such limit.
        for (room, remaining, reset, limit) in [
            (
                room.requests,
                REMAINING_REQUESTS,
                RESET_REQUESTS,
                LIMIT_REQUESTS,
            ),
            (room.tokens, REMAINING_TOKENS, RESET_TOKENS, LIMIT_TOKENS),
        ] {
            marks.remove.push(limit);
            match room {
                Some(Room {
                    remaining: left,
                    reset: at,
                }) => {
                    marks.set.push((remaining, HeaderValue::from(left)));
                    marks.set.push((reset, go_duration(at)));
                }
                None => {
                    marks.remove.push(remaining);
                    marks.remove.push(reset);
                }
            }
        }
        marks
    }
}

/// Headers to set on an answer, and the upstream's to take off.
#[derive(Debug, Default)]
pub(super) struct Marks {
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

impl Marks {
    pub(super) fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in self.set {
            headers.insert(name, value);
        }
    }
}

/// A duration as OpenAI writes its resets (Go's format): `250ms`, `1s`,
/// `1.5s`, `6m0s`, to the millisecond.
pub fn go_duration(d: Duration) -> HeaderValue {
    let ms = d.as_millis() as u64;
    let mut out = String::with_capacity(12);
    if ms == 0 {
        out.push_str("0s");
    } else if ms < 1000 {
        let _ = write!(out, "{ms}ms");
    } else {
        let (h, m) = (ms / 3_600_000, ms / 60_000 % 60);
        if h > 0 {
            let _ = write!(out, "{h}h");
        }
        if h > 0 || m > 0 {
            let _ = write!(out, "{m}m");
        }
        let (s, frac) = (ms / 1000 % 60, ms % 1000);
        if frac == 0 {
            let _ = write!(out, "{s}s");
        } else {
            let frac = format!("{frac:03}");
            let _ = write!(out, "{s}.{}s", frac.trim_end_matches('0'));
        }
    }
    HeaderValue::from_str(&out).unwrap_or(HeaderValue::from_static("0s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resets_are_written_as_openai_writes_them() {
        let d = |ms| go_duration(Duration::from_millis(ms));
        assert_eq!(d(0), "0s");
        assert_eq!(d(250), "250ms");
        assert_eq!(d(1000), "1s");
        assert_eq!(d(1500), "1.5s");
        assert_eq!(d(360_000), "6m0s");
        assert_eq!(d(3_723_040), "1h2m3.04s");
        // And the gateway's own reader takes them back.
        for ms in [250, 1000, 1500, 360_000, 59_999] {
            let text = d(ms);
            assert_eq!(
                super::super::provider::limits::parse_reset(text.to_str().unwrap()),
                Some(Duration::from_millis(ms)),
                "{text:?}"
            );
        }
    }
}
