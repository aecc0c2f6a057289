//! A sliding window: what the mock counted in the last `span` (60 s for
//! the per-minute limits, 1 or 10 s for a request slice), for one limit.
//!
//! Every function takes `now` from the caller so the tests can move time
//! without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back a per-minute window looks.
pub(super) const SPAN: Duration = Duration::from_secs(60);

/// Admissions closer together than `span / BUCKETS` share one entry, so the
/// queue holds at most about BUCKETS entries however heavy the load (100 ms
/// for a minute, 1.7 ms for a one-second slice: a coarse bucket would make
/// a short slice stricter than it says).
const BUCKETS: u32 = 600;

/// Tokens admitted within one bucket. An entry leaves the window `span`
/// after its *latest* admission: a merged entry may leave up to a bucket
/// late, never early, so a client that waits the advertised time is always
/// admitted.
#[derive(Debug)]
struct Entry {
    first: Instant,
    last: Instant,
    tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Fits; `remaining` tokens are left in the window once it is counted.
    Admitted { remaining: u64 },
    /// Does not fit: it would after `retry_after`.
    /// `too_large` when it can never fit (it asks for more than the limit);
    /// `retry_after` is then the time until the window is empty.
    Limited {
        remaining: u64,
        retry_after: Duration,
        too_large: bool,
    },
}

/// Where an admission was counted, so that an estimate can be replaced by
/// what was really used (the output reserved from `max_tokens`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Reservation {
    /// The entry's number: entries are numbered in order, so it is found
    /// by its distance from the front (even after merging, whatever order
    /// concurrent callers read the clock in).
    entry: u64,
    tokens: u64,
}

#[derive(Debug)]
pub(super) struct TokenWindow {
    limit: u64,
    span: Duration,
    bucket: Duration,
    used: u64,
    entries: VecDeque<Entry>,
    /// The number of `entries.front()`.
    front_id: u64,
}

impl TokenWindow {
    /// A per-minute window.
    #[cfg(test)]
    pub(super) fn new(limit: u64) -> Self {
        TokenWindow::with_span(limit, SPAN)
    }

    /// A window of `span`; a zero span holds nothing (every admission
    /// leaves at once), so only a request larger than the limit is refused.
    pub(super) fn with_span(limit: u64, span: Duration) -> Self {
        TokenWindow {
            limit,
            span,
            bucket: span / BUCKETS,
            used: 0,
            entries: VecDeque::new(),
            front_id: 0,
        }
    }

    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// Whether `tokens` fit at `now`, without counting them.
    pub(super) fn check(&mut self, tokens: u64, now: Instant) -> Admission {
        self.expire(now);
        let remaining = self.limit.saturating_sub(self.used);
        if tokens <= remaining {
            return Admission::Admitted {
                remaining: remaining - tokens,
            };
        }
        let too_large = tokens > self.limit;
        // What must leave the window before the request fits; when it never
        // fits, wait until everything has left.
        let must_free = if too_large {
            self.used
        } else {
            tokens - remaining
        };
        Admission::Limited {
            remaining,
            retry_after: self.time_to_free(must_free, now),
            too_large,
        }
    }

    /// Counts `tokens` at `now` when they fit under the limit.
    #[cfg(test)]
    pub(super) fn try_admit(&mut self, tokens: u64, now: Instant) -> Admission {
        let admission = self.check(tokens, now);
        if let Admission::Admitted { .. } = admission {
            self.record(tokens, now);
        }
        admission
    }

    /// How long until everything counted now has left: when the window is
    /// whole again (what `x-ratelimit-reset-*` and Anthropic's `-reset`
    /// mean on an answer that was not refused).
    pub(super) fn until_whole(&mut self, now: Instant) -> Duration {
        self.expire(now);
        self.entries.back().map_or(Duration::ZERO, |e| {
            (e.last + self.span).saturating_duration_since(now)
        })
    }

    /// Tokens counted in the window at `now`.
    #[cfg(test)]
    fn used(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.used
    }

    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if now.saturating_duration_since(front.last) < self.span {
                break;
            }
            self.used -= front.tokens;
            self.entries.pop_front();
            self.front_id += 1;
        }
    }

    /// Counts `tokens` at `now`, whether or not they fit (call
    /// [`TokenWindow::check`] first).
    pub(super) fn record(&mut self, tokens: u64, now: Instant) -> Reservation {
        self.expire(now);
        self.used += tokens;
        if let Some(back) = self.entries.back_mut()
            && now.saturating_duration_since(back.first) < self.bucket
        {
            back.tokens += tokens;
            back.last = back.last.max(now);
            return Reservation {
                entry: self.front_id + self.entries.len() as u64 - 1,
                tokens,
            };
        }
        self.entries.push_back(Entry {
            first: now,
            last: now,
            tokens,
        });
        Reservation {
            entry: self.front_id + self.entries.len() as u64 - 1,
            tokens,
        }
    }

    /// Replaces what `reservation` counted by `actual`. Once its entry has
    /// left the window there is nothing left to correct.
    pub(super) fn settle(&mut self, reservation: Reservation, actual: u64, now: Instant) {
        self.expire(now);
        let Some(index) = reservation.entry.checked_sub(self.front_id) else {
            return;
        };
        let Some(entry) = usize::try_from(index)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
        else {
            return;
        };
        let removed = reservation.tokens.min(entry.tokens);
        entry.tokens = entry.tokens - removed + actual;
        self.used = self.used - removed + actual;
    }

    /// How long until at least `must_free` tokens have left the window.
    fn time_to_free(&self, must_free: u64, now: Instant) -> Duration {
        let mut freed = 0;
        for entry in &self.entries {
            freed += entry.tokens;
            if freed >= must_free {
                return (entry.last + self.span).saturating_duration_since(now);
            }
        }
        Duration::ZERO
    }
}

/// `Retry-After` in whole seconds: rounded up, and at least 1 so that a
/// client never retries in a busy loop.
pub(super) fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// Milliseconds, rounded up so a client waiting that long is admitted.
pub(super) fn ceil_millis(wait: Duration) -> u64 {
    let ms = wait.as_millis();
    let ms = ms + u128::from(!wait.as_nanos().is_multiple_of(1_000_000));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// OpenAI's duration format for `x-ratelimit-reset-*` (Go's
/// `time.Duration` notation): "250ms", "6s", "6.5s", "1m2s", "1h0m0s".
pub(super) fn openai_duration(wait: Duration) -> String {
    let ms = ceil_millis(wait);
    if ms == 0 {
        return "0s".to_string();
    }
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (whole_s, frac_ms) = (ms / 1000, ms % 1000);
    let (h, m, s) = (whole_s / 3600, whole_s / 60 % 60, whole_s % 60);
    let secs = if frac_ms == 0 {
        s.to_string()
    } else {
        let frac = format!("{frac_ms:03}");
        format!("{s}.{}", frac.trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => format!("{secs}s"),
        (0, m) => format!("{m}m{secs}s"),
        (h, m) => format!("{h}h{m}m{secs}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn admits_until_the_limit_then_limits() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(100);
        assert_eq!(w.try_admit(60, t0), Admission::Admitted { remaining: 40 });
        assert_eq!(
            w.try_admit(40, t0 + secs(1.0)),
            Admission::Admitted { remaining: 0 }
        );
        match w.try_admit(1, t0 + secs(2.0)) {
            Admission::Limited {
                remaining,
                retry_after,
                too_large,
            } => {
                assert_eq!(remaining, 0);
                assert!(!too_large);
                // The first 60 tokens leave at t0 + 60 s.
                assert_eq!(retry_after, secs(58.0));
            }
            other => panic!("expected a limit, got {other:?}"),
        }
        // A refused request is not counted.
        assert_eq!(w.used(t0 + secs(2.0)), 100);
    }

    #[test]
    fn tokens_leave_after_sixty_seconds() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(100);
        w.try_admit(70, t0);
        w.try_admit(30, t0 + secs(10.0));
        assert_eq!(w.used(t0 + secs(59.9)), 100);
        assert_eq!(w.used(t0 + secs(60.0)), 30);
        assert_eq!(
            w.try_admit(70, t0 + secs(60.0)),
            Admission::Admitted { remaining: 0 }
        );
        assert_eq!(w.used(t0 + secs(70.0)), 70);
        assert_eq!(w.used(t0 + secs(120.0)), 0);
    }

    #[test]
    fn retry_after_is_when_enough_tokens_have_left() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(100);
        w.try_admit(30, t0);
        w.try_admit(30, t0 + secs(5.0));
        w.try_admit(30, t0 + secs(20.0));
        // 10 remain; 50 need 40 freed: the first two entries, the second at t0+5.
        let now = t0 + secs(30.0);
        match w.try_admit(50, now) {
            Admission::Limited {
                remaining: 10,
                retry_after,
                too_large: false,
            } => {
                assert_eq!(retry_after, secs(35.0));
                // Waiting exactly that long is enough: 30 used + 50 of 100.
                assert_eq!(
                    w.try_admit(50, now + retry_after),
                    Admission::Admitted { remaining: 20 }
                );
            }
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn admissions_in_one_bucket_merge_and_leave_with_the_latest() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(1000);
        for i in 0..50 {
            w.try_admit(10, t0 + Duration::from_millis(i));
        }
        assert_eq!(w.entries.len(), 1);
        assert_eq!(
            w.used(t0 + secs(60.0)),
            500,
            "the merged entry must not leave early"
        );
        assert_eq!(w.used(t0 + secs(60.0) + Duration::from_millis(49)), 0);
    }

    #[test]
    fn the_queue_stays_bounded_under_load() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(u64::MAX);
        for i in 0..200_000u64 {
            w.try_admit(1, t0 + Duration::from_micros(i * 1500));
        }
        assert!(w.entries.len() <= 602, "{} entries", w.entries.len());
    }

    #[test]
    fn a_request_over_the_limit_is_too_large() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(100);
        match w.try_admit(101, t0) {
            Admission::Limited {
                too_large: true,
                remaining: 100,
                retry_after,
            } => {
                assert_eq!(retry_after, Duration::ZERO);
            }
            other => panic!("expected too large, got {other:?}"),
        }
        w.try_admit(20, t0 + secs(1.0));
        match w.try_admit(500, t0 + secs(2.0)) {
            Admission::Limited {
                too_large: true,
                retry_after,
                ..
            } => assert_eq!(retry_after, secs(59.0)),
            other => panic!("expected too large, got {other:?}"),
        }
    }

    #[test]
    fn zero_tokens_always_fit() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(5);
        w.try_admit(5, t0);
        assert_eq!(w.try_admit(0, t0), Admission::Admitted { remaining: 0 });
        assert_eq!(w.entries.len(), 1);
    }

    #[test]
    fn a_settlement_replaces_the_estimate_until_it_leaves() {
        let t0 = Instant::now();
        let mut w = TokenWindow::new(100);
        let r = w.record(60, t0);
        w.record(10, t0 + Duration::from_millis(10));
        w.settle(r, 5, t0 + secs(1.0));
        assert_eq!(w.used(t0 + secs(1.0)), 15, "merged entries keep the rest");
        let later = w.record(20, t0 + secs(2.0));
        w.settle(later, 30, t0 + secs(3.0));
        assert_eq!(w.used(t0 + secs(3.0)), 45, "more than reserved counts too");
        // Once its entry has left, a late settlement changes nothing.
        assert_eq!(w.used(t0 + secs(61.0)), 30);
        w.settle(r, 50, t0 + secs(61.0));
        assert_eq!(w.used(t0 + secs(61.0)), 30);
    }

    #[test]
    fn short_windows_slide_with_fine_buckets() {
        let t0 = Instant::now();
        let mut w = TokenWindow::with_span(2, Duration::from_secs(1));
        w.try_admit(1, t0);
        w.try_admit(1, t0 + Duration::from_millis(5));
        assert_eq!(w.entries.len(), 2, "a 1 s window's buckets are under 2 ms");
        assert_eq!(w.until_whole(t0 + secs(0.5)), Duration::from_millis(505));
        assert!(matches!(
            w.try_admit(1, t0 + secs(0.999)),
            Admission::Limited { .. }
        ));
        assert_eq!(
            w.try_admit(1, t0 + secs(1.0)),
            Admission::Admitted { remaining: 0 }
        );
        let mut nothing = TokenWindow::with_span(1, Duration::ZERO);
        for _ in 0..3 {
            assert_eq!(
                nothing.try_admit(1, t0),
                Admission::Admitted { remaining: 0 }
            );
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(secs(0.2)), 1);
        assert_eq!(retry_after_secs(secs(1.0)), 1);
        assert_eq!(retry_after_secs(secs(1.001)), 2);
        assert_eq!(ceil_millis(Duration::from_micros(1500)), 2);
        assert_eq!(ceil_millis(secs(2.5)), 2500);
    }

    #[test]
    fn durations_use_openai_notation() {
        assert_eq!(openai_duration(Duration::ZERO), "0s");
        assert_eq!(openai_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(openai_duration(Duration::from_micros(249_001)), "250ms");
        assert_eq!(openai_duration(secs(6.0)), "6s");
        assert_eq!(openai_duration(secs(6.5)), "6.5s");
        assert_eq!(openai_duration(Duration::from_millis(6_120)), "6.12s");
        assert_eq!(openai_duration(secs(62.0)), "1m2s");
        assert_eq!(openai_duration(secs(60.0)), "1m0s");
        assert_eq!(openai_duration(secs(3600.0)), "1h0m0s");
    }
}
