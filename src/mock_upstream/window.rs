//! The mock's own tokens-per-minute limit: a sliding 60-second window.
//!
//! Every function takes `now` from the caller so the tests can move time
//! without sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the window looks.
pub(super) const SPAN: Duration = Duration::from_secs(60);

/// Admissions this close together share one entry, so the queue holds at
/// most SPAN / BUCKET entries however heavy the load.
const BUCKET: Duration = Duration::from_millis(100);

/// Tokens admitted within one bucket. An entry leaves the window SPAN after
/// its *latest* admission: a merged entry may leave up to BUCKET late, never
/// early, so a client that waits the advertised time is always admitted.
#[derive(Debug)]
struct Entry {
    first: Instant,
    last: Instant,
    tokens: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Counted; `remaining` tokens are left in the window.
    Admitted { remaining: u64 },
    /// Not counted: the request fits after `retry_after`.
    /// `too_large` when it can never fit (it asks for more than the limit);
    /// `retry_after` is then the time until the window is empty.
    Limited {
        remaining: u64,
        retry_after: Duration,
        too_large: bool,
    },
}

#[derive(Debug)]
pub(super) struct TokenWindow {
    limit: u64,
    used: u64,
    entries: VecDeque<Entry>,
}

impl TokenWindow {
    pub(super) fn new(limit: u64) -> Self {
        TokenWindow {
            limit,
            used: 0,
            entries: VecDeque::new(),
        }
    }

    pub(super) fn limit(&self) -> u64 {
        self.limit
    }

    /// Counts `tokens` at `now` when they fit under the limit.
    pub(super) fn try_admit(&mut self, tokens: u64, now: Instant) -> Admission {
        self.expire(now);
        let remaining = self.limit.saturating_sub(self.used);
        if tokens <= remaining {
            self.record(tokens, now);
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

    /// Tokens counted in the window at `now`.
    #[cfg(test)]
    fn used(&mut self, now: Instant) -> u64 {
        self.expire(now);
        self.used
    }

    fn expire(&mut self, now: Instant) {
        while let Some(front) = self.entries.front() {
            if now.saturating_duration_since(front.last) < SPAN {
                break;
            }
            self.used -= front.tokens;
            self.entries.pop_front();
        }
    }

    fn record(&mut self, tokens: u64, now: Instant) {
        if tokens == 0 {
            return;
        }
        self.used += tokens;
        if let Some(back) = self.entries.back_mut()
            && now.saturating_duration_since(back.first) < BUCKET
        {
            back.tokens += tokens;
            back.last = back.last.max(now);
            return;
        }
        self.entries.push_back(Entry {
            first: now,
            last: now,
            tokens,
        });
    }

    /// How long until at least `must_free` tokens have left the window.
    fn time_to_free(&self, must_free: u64, now: Instant) -> Duration {
        let mut freed = 0;
        for entry in &self.entries {
            freed += entry.tokens;
            if freed >= must_free {
                return (entry.last + SPAN).saturating_duration_since(now);
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
