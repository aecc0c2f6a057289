//! A sliding 60-second tokens-per-minute window.
//!
//! Sixty one-second buckets in a ring plus a running total: adding, reading and
//! correcting cost O(1) (advancing clears at most 60 buckets, amortised over
//! the seconds that passed). One-second granularity matches what providers
//! report in their reset headers and keeps the window exact at the edges that
//! matter: a token counted at second `s` leaves the window at `s + 60`.

use std::time::Duration;

const SLOTS: usize = 60;
/// Window length in seconds.
pub const WINDOW_SECS: u64 = SLOTS as u64;

/// Tokens counted against one deployment's TPM limit.
#[derive(Debug, Clone)]
pub struct TpmWindow {
    buckets: [u64; SLOTS],
    /// The newest second the ring has been advanced to.
    head: u64,
    total: u64,
}

/// Where an estimate was counted, so that it can be corrected later to the
/// usage the upstream reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    second: u64,
    tokens: u64,
    /// Of `tokens`, the output reserved (the rest is input).
    output: u64,
}

impl Reservation {
    /// A reservation made elsewhere (the cluster's window, by its clock).
    pub fn at(second: u64, tokens: u64) -> Reservation {
        Reservation {
            second,
            tokens,
            output: 0,
        }
    }

    /// The same, `output` of whose tokens are output.
    pub fn with_output(self, output: u64) -> Reservation {
        Reservation {
            output: output.min(self.tokens),
            ..self
        }
    }

    pub fn output(&self) -> u64 {
        self.output
    }

    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The second it was counted in.
    pub fn second(&self) -> u64 {
        self.second
    }
}

impl Default for TpmWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl TpmWindow {
    pub fn new() -> Self {
        Self {
            buckets: [0; SLOTS],
            head: 0,
            total: 0,
        }
    }

    /// Moves the ring forward to `now`, dropping the seconds that left the window.
    /// Time never moves backwards here: callers on other threads may read the
    /// clock just before one another, so an older `now` is treated as `head`.
    fn advance(&mut self, now: Duration) -> u64 {
        let sec = now.as_secs();
        if sec <= self.head {
            return self.head;
        }
        let gap = sec - self.head;
        if gap >= WINDOW_SECS {
            self.buckets = [0; SLOTS];
            self.total = 0;
        } else {
            for s in self.head + 1..=sec {
                let slot = &mut self.buckets[(s % WINDOW_SECS) as usize];
                self.total -= *slot;
                *slot = 0;
            }
        }
        self.head = sec;
        sec
    }

    /// Tokens counted in the last 60 seconds.
    pub fn used(&mut self, now: Duration) -> u64 {
        self.advance(now);
        self.total
    }

    /// Counts `tokens` now.
    pub fn add(&mut self, now: Duration, tokens: u64) -> Reservation {
        let sec = self.advance(now);
        self.buckets[(sec % WINDOW_SECS) as usize] += tokens;
        self.total += tokens;
        Reservation::at(sec, tokens)
    }

    /// Replaces an earlier estimate by the real count. A reservation that has
    /// already left the window no longer counts, so there is nothing to fix.
    pub fn settle(&mut self, now: Duration, reservation: Reservation, actual: u64) {
        let head = self.advance(now);
        if reservation.second + WINDOW_SECS <= head {
            return;
        }
        let slot = &mut self.buckets[(reservation.second % WINDOW_SECS) as usize];
        // The bucket can hold less than the reservation only if the window was
        // reset in between; saturate rather than underflow.
        let removed = reservation.tokens.min(*slot);
        *slot = *slot - removed + actual;
        self.total = self.total - removed + actual;
    }

    /// Whether `need` more tokens fit under `limit`. An empty window always
    /// admits one request, or a request larger than the limit could never run.
    pub fn fits(&mut self, now: Duration, need: u64, limit: u64) -> bool {
        let used = self.used(now);
        used == 0 || used.saturating_add(need) <= limit
    }

    /// How long until `need` tokens fit under `limit` (zero when they fit now).
    pub fn time_until_fits(&mut self, now: Duration, need: u64, limit: u64) -> Duration {
        self.time_until_fits_within(now, need, limit, WINDOW_SECS)
    }

    /// Counted in the last `span` seconds (at most 60), this one included.
    pub fn used_within(&mut self, now: Duration, span: u64) -> u64 {
        let head = self.advance(now);
        if span >= WINDOW_SECS {
            return self.total;
        }
        (0..span)
            .map_while(|k| head.checked_sub(k))
            .map(|s| self.buckets[(s % WINDOW_SECS) as usize])
            .sum()
    }

    /// How long until `need` more fit under `limit` in every `span`-second
    /// stretch ending now (zero when they fit now). An empty stretch always
    /// admits one request, as [`TpmWindow::fits`] does.
    pub fn time_until_fits_within(
        &mut self,
        now: Duration,
        need: u64,
        limit: u64,
        span: u64,
    ) -> Duration {
        let span = span.clamp(1, WINDOW_SECS);
        let used = self.used_within(now, span);
        if used == 0 || used.saturating_add(need) <= limit {
            return Duration::ZERO;
        }
        let head = self.head;
        let mut remaining = used;
        for s in head.saturating_sub(span - 1)..=head {
            remaining -= self.buckets[(s % WINDOW_SECS) as usize];
            if remaining == 0 || remaining.saturating_add(need) <= limit {
                return Duration::from_secs(s + span).saturating_sub(now);
            }
        }
        Duration::from_secs(head + span).saturating_sub(now)
    }

    /// How long until everything counted now has left the window (the
    /// window is whole again).
    pub fn time_until_empty(&mut self, now: Duration) -> Duration {
        let head = self.advance(now);
        if self.total == 0 {
            return Duration::ZERO;
        }
        // The newest second with a count leaves last.
        let newest = (0..WINDOW_SECS)
            .map_while(|k| head.checked_sub(k))
            .find(|&s| self.buckets[(s % WINDOW_SECS) as usize] > 0)
            .unwrap_or(head);
        Duration::from_secs(newest + WINDOW_SECS).saturating_sub(now)
    }

    /// The recent rate per second: the complete seconds of the window,
    /// each weighing less the older it is (a 15 s time constant), so a
    /// change of load shows within seconds while one busy second does not
    /// make a trend; or the last five seconds' mean when that is higher,
    /// so that a rising load (the case a forecast is for) is not seen
    /// late.
    pub fn rate(&mut self, now: Duration) -> f64 {
        let head = self.advance(now);
        let (mut sum, mut weights) = (0.0, 0.0);
        let (mut recent, mut recent_secs) = (0.0, 0.0);
        let mut weight = 1.0;
        for k in 1..WINDOW_SECS {
            let Some(s) = head.checked_sub(k) else { break };
            let count = self.buckets[(s % WINDOW_SECS) as usize] as f64;
            sum += weight * count;
            weights += weight;
            weight *= DECAY;
            if k <= RECENT_SECS {
                recent += count;
                recent_secs += 1.0;
            }
        }
        if weights == 0.0 {
            return 0.0;
        }
        (sum / weights).max(recent / recent_secs)
    }

    /// Seconds from `now` until the window holds `limit` if `rate` a second
    /// keeps coming, counting what leaves it meanwhile; `None` when it never
    /// will at this rate (a window holds at most 60 seconds of a steady rate,
    /// so what is not reached within 60 s is never reached).
    pub fn time_until_full(&mut self, now: Duration, limit: u64, rate: f64) -> Option<f64> {
        let used = self.used(now);
        if used >= limit {
            return Some(0.0);
        }
        let head = self.head;
        // Into the current second already.
        let into = now.as_secs_f64() - head as f64;
        let mut held = used as f64;
        for t in 1..=WINDOW_SECS {
            // At head + t the tokens of second head + t - 60 leave.
            if let Some(leaving) = (head + t).checked_sub(WINDOW_SECS) {
                held -= self.buckets[(leaving % WINDOW_SECS) as usize] as f64;
            }
            let at = held + rate * (t as f64 - into).max(0.0);
            if at >= limit as f64 {
                // Reached within this second: where, at a steady rate.
                let before = at - rate;
                let part = if rate > 0.0 {
                    ((limit as f64 - before) / rate).clamp(0.0, 1.0)
                } else {
                    1.0
                };
                return Some((t as f64 - 1.0 + part - into).max(0.0));
            }
        }
        None
    }
}

/// The seconds of the recent mean in [`TpmWindow::rate`].
const RECENT_SECS: u64 = 5;

/// How much a second's count weighs against the next newer one's in
/// [`TpmWindow::rate`]: e^(-1/15).
const DECAY: f64 = 0.935_506_985_031_617_8;

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn tokens_leave_the_window_after_sixty_seconds() {
        let mut w = TpmWindow::new();
        w.add(s(10), 100);
        w.add(s(30), 50);
        assert_eq!(w.used(s(69)), 150);
        assert_eq!(w.used(s(70)), 50, "second 10 expires at 70");
        assert_eq!(w.used(s(89)), 50);
        assert_eq!(w.used(s(90)), 0);
    }

    #[test]
    fn a_long_gap_clears_everything() {
        let mut w = TpmWindow::new();
        w.add(s(1), 500);
        assert_eq!(w.used(s(1000)), 0);
        w.add(s(1000), 7);
        assert_eq!(w.used(s(1001)), 7);
    }

    #[test]
    fn settle_replaces_the_estimate_while_in_window() {
        let mut w = TpmWindow::new();
        let r = w.add(s(5), 1000);
        w.add(s(6), 10);
        w.settle(s(20), r, 300);
        assert_eq!(w.used(s(20)), 310);
        // Once expired, a late correction changes nothing.
        let r2 = w.add(s(100), 40);
        w.settle(s(161), r2, 4000);
        assert_eq!(w.used(s(161)), 0);
    }

    #[test]
    fn older_clock_readings_count_in_the_newest_second() {
        let mut w = TpmWindow::new();
        w.add(s(50), 1);
        w.add(s(49), 2);
        assert_eq!(w.used(s(50)), 3);
        assert_eq!(w.used(s(110)), 0);
    }

    #[test]
    fn fits_admits_one_request_into_an_empty_window() {
        let mut w = TpmWindow::new();
        assert!(w.fits(s(0), 5000, 1000));
        w.add(s(0), 900);
        assert!(w.fits(s(0), 100, 1000));
        assert!(!w.fits(s(0), 101, 1000));
    }

    #[test]
    fn time_until_fits_waits_for_the_oldest_tokens_needed() {
        let mut w = TpmWindow::new();
        w.add(s(10), 600);
        w.add(s(20), 300);
        // 900 used of 1000; 400 more needs the 600 from second 10 to leave (at 70).
        assert_eq!(
            w.time_until_fits(Duration::from_millis(25_500), 400, 1000),
            Duration::from_millis(44_500)
        );
        // 50 more fits now.
        assert_eq!(w.time_until_fits(s(25), 50, 1000), Duration::ZERO);
        // More than the limit: wait until the window is empty (second 20 leaves at 80).
        assert_eq!(w.time_until_fits(s(25), 5000, 1000), s(55));
    }
}
