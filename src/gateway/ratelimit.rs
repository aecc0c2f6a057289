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
pub(super) const QUEUED_MS: HeaderName = HeaderName::from_static("x-switchboard-queued-ms");

impl Flight {
    /// What the client should know about the model's room, when there is
    /// something to say.
    #[inline]
    pub(super) fn marks(&self) -> Option<Marks> {
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
    fn room_marks(&self) -> Marks {
        let mut marks = Marks {
            queued: self.queued.map(|q| HeaderValue::from(q.as_millis() as u64)),
            ..Marks::default()
        };
        let origin = self.origin();
        if origin.limited() {
            // The clock as the attempt or the request ended, when it has.
            let now = self.clock.map_or_else(|| self.gw.now(), |t| self.gw.at(t));
            let room = origin.lock().pool.remaining(now);
            let values = |r: Room| [HeaderValue::from(r.remaining), reset(r.reset)];
            marks.requests = room.requests.map(values);
            marks.tokens = room.tokens.map(values);
        }
        marks
    }
}

/// Headers to add to an answer: the wait, and the model's room in each
/// kind of limit it has (remaining, reset). The upstream's own
/// `x-ratelimit-*` never reach the client: they speak for one deployment.
#[derive(Debug, Default)]
pub(super) struct Marks {
    queued: Option<HeaderValue>,
    requests: Option<[HeaderValue; 2]>,
    tokens: Option<[HeaderValue; 2]>,
}

impl Marks {
    pub(super) fn apply(self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Some(v) = self.queued {
            headers.insert(QUEUED_MS, v);
        }
        if let Some([remaining, reset]) = self.requests {
            headers.insert(REMAINING_REQUESTS, remaining);
            headers.insert(RESET_REQUESTS, reset);
        }
        if let Some([remaining, reset]) = self.tokens {
            headers.insert(REMAINING_TOKENS, remaining);
            headers.insert(RESET_TOKENS, reset);
        }
    }
}

/// A window's reset, in whole seconds rounded up (the windows count whole
/// seconds), from a table for the minute a window spans: no formatting on
/// an answer's path.
fn reset(d: Duration) -> HeaderValue {
    const SECONDS: [&str; 61] = [
        "0s", "1s", "2s", "3s", "4s", "5s", "6s", "7s", "8s", "9s", "10s", "11s", "12s", "13s",
        "14s", "15s", "16s", "17s", "18s", "19s", "20s", "21s", "22s", "23s", "24s", "25s", "26s",
        "27s", "28s", "29s", "30s", "31s", "32s", "33s", "34s", "35s", "36s", "37s", "38s", "39s",
        "40s", "41s", "42s", "43s", "44s", "45s", "46s", "47s", "48s", "49s", "50s", "51s", "52s",
        "53s", "54s", "55s", "56s", "57s", "58s", "59s", "1m0s",
    ];
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    match SECONDS.get(secs as usize) {
        Some(text) => HeaderValue::from_static(text),
        None => go_duration(Duration::from_secs(secs)),
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
        assert_eq!(reset(Duration::from_millis(1)), "1s");
        assert_eq!(reset(Duration::from_millis(59_001)), "1m0s");
        assert_eq!(reset(Duration::from_secs(61)), "1m1s");
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
