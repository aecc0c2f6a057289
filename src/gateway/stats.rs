//! Rolling statistics of the last minute from the routing events: what
//! `/admin/state` (and so every dashboard, in-process or attached) shows
//! beyond the router's own state (which gives the TPM used, health and
//! cooldowns). The gateway keeps them whether anyone watches or not, so a
//! dashboard that attaches sees the last minute from its first frame.
//!
//! Counts sit in one-second buckets over the last minute, keyed by each
//! request's completion time; every query takes `now_ms` (Unix time in
//! milliseconds), so tests drive time exactly. Latencies go into a
//! log-scaled histogram per bucket (5 % wide bins, 0.5 ms to 18 minutes), so percentiles cost the
//! same at 2 requests a second as at 2000.

use serde::{Deserialize, Serialize};

use super::named::Named;
use crate::events::{AttemptOutcome, RequestEvent, RequestOutcome};

/// Seconds of the rolling window (tokens per minute, errors, percentiles).
pub const WINDOW_S: u64 = 60;
/// Seconds over which requests per second are averaged.
const RATE_S: u64 = 10;
/// Seconds of requests-per-second history kept for the sparkline.
pub const HISTORY_S: usize = 600;

const BINS: usize = 300;
const BIN_FACTOR: f64 = 1.05;
const BIN_BASE_MS: f64 = 0.5;

/// The bin of a latency: `log(ms / base) / log(factor)`, with the
/// logarithm read off the float's bits (exponent, plus a quadratic for the
/// mantissa, within 0.005 of log2): a libm `ln` was a third of a record's
/// cost, and a bin is 0.07 wide in log2.
fn bin_of(ms: f64) -> usize {
    if ms.is_nan() || ms <= BIN_BASE_MS {
        return 0;
    }
    let x = ms / BIN_BASE_MS;
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as f64 - 1023.0;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let log2 = exponent + (-0.344_848_43 * m + 2.024_665_78) * m - 1.674_877_59;
    (log2 / LOG2_FACTOR).clamp(0.0, (BINS - 1) as f64) as usize
}

/// log2 of [`BIN_FACTOR`].
const LOG2_FACTOR: f64 = 0.070_389_327_891_397_9;

/// The geometric middle of a bin, in milliseconds.
fn bin_value(bin: usize) -> f64 {
    BIN_BASE_MS * BIN_FACTOR.powf(bin as f64 + 0.5)
}

/// Sixty one-second slots; a slot is reset when a new second claims it.
#[derive(Debug, Clone)]
struct Ring<T> {
    secs: Vec<u64>,
    slots: Vec<T>,
}

impl<T: Default + Clone> Ring<T> {
    fn new() -> Self {
        Ring {
            secs: vec![u64::MAX; WINDOW_S as usize],
            slots: vec![T::default(); WINDOW_S as usize],
        }
    }

    /// The slot of second `sec`, or None when it is too old to keep.
    fn slot(&mut self, sec: u64) -> Option<&mut T> {
        let i = (sec % WINDOW_S) as usize;
        if self.secs[i] != sec {
            if self.secs[i] != u64::MAX && self.secs[i] > sec {
                return None; // a newer second holds it already
            }
            self.secs[i] = sec;
            self.slots[i] = T::default();
        }
        Some(&mut self.slots[i])
    }

    /// The slots of the seconds `from..=to`.
    fn range(&self, from: u64, to: u64) -> impl Iterator<Item = &T> {
        self.secs
            .iter()
            .zip(&self.slots)
            .filter(move |(s, _)| **s != u64::MAX && **s >= from && **s <= to)
            .map(|(_, t)| t)
    }
}

#[derive(Debug, Clone, Default)]
struct Counts {
    requests: u64,
    errors: u64,
    tokens: u64,
}

#[derive(Debug, Clone, Default)]
struct AttemptCounts {
    attempts: u64,
    failures: u64,
    answered: u64,
    /// Latencies of answered attempts; empty until the first one.
    latency: Vec<u32>,
}

#[derive(Debug, Clone)]
struct ModelStats {
    ring: Ring<Counts>,
    deployments: Named<Ring<AttemptCounts>>,
}

/// Requests, tokens and errors of a model (or of everything).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Requests per second over the last 10 s.
    #[serde(rename = "requests_per_s")]
    pub per_second: f64,
    /// Tokens (prompt + completion) in the last 60 s.
    #[serde(rename = "tokens")]
    pub tokens_per_minute: u64,
    /// Requests in the last 60 s.
    pub requests: u64,
    /// Requests that did not end well (not counting the client leaving) in the last 60 s.
    pub errors: u64,
}

impl Rates {
    pub fn error_rate(&self) -> Option<f64> {
        (self.requests > 0).then(|| self.errors as f64 / self.requests as f64)
    }
}

/// One deployment over the last 60 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRates {
    /// Attempts sent to it.
    pub attempts: u64,
    /// Attempts that failed (and were failed over, or ended the request).
    pub failures: u64,
    /// Latency of the attempts it answered, in milliseconds.
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    /// Its part of the model's answered requests, 0 to 1.
    pub share: Option<f64>,
    /// Requests it answered (what the share is counted from).
    #[serde(default)]
    pub answered: u64,
}

#[derive(Debug, Clone)]
pub struct Stats {
    started_ms: u64,
    models: Named<ModelStats>,
    /// Requests completed per second, for the sparkline.
    history: Vec<(u64, u64)>,
}

impl Stats {
    pub fn new(now_ms: u64) -> Self {
        Stats {
            started_ms: now_ms,
            models: Named::default(),
            history: vec![(u64::MAX, 0); HISTORY_S],
        }
    }

    pub fn record(&mut self, r: &RequestEvent) {
        let done_ms = r.at_ms + r.latency_ms.max(0.0) as u64;
        let sec = done_ms / 1000;
        let error = !matches!(r.outcome, RequestOutcome::Ok | RequestOutcome::ClientClosed);
        let tokens = r.prompt_tokens + r.completion_tokens;
        let add = |c: &mut Counts| {
            c.requests += 1;
            c.errors += u64::from(error);
            c.tokens += tokens;
        };
        let h = (sec % HISTORY_S as u64) as usize;
        if self.history[h].0 != sec {
            if self.history[h].0 != u64::MAX && self.history[h].0 > sec {
                // older than the history: nothing to add to
            } else {
                self.history[h] = (sec, 0);
            }
        }
        if self.history[h].0 == sec {
            self.history[h].1 += 1;
        }
        let model = self.models.entry(&r.model, || ModelStats {
            ring: Ring::new(),
            deployments: Named::default(),
        });
        if let Some(c) = model.ring.slot(sec) {
            add(c);
        }
        let mut fallbacks = false;
        for a in &r.attempts {
            // A fallback model's deployment: its figures are that model's.
            if a.model.is_some() {
                fallbacks = true;
                continue;
            }
            count_attempt(model, a, sec);
        }
        if fallbacks {
            for a in &r.attempts {
                if let Some(other) = &a.model {
                    let model = self.models.entry(other, || ModelStats {
                        ring: Ring::new(),
                        deployments: Named::default(),
                    });
                    count_attempt(model, a, sec);
                }
            }
        }
    }
}

fn count_attempt(model: &mut ModelStats, a: &crate::events::Attempt, sec: u64) {
    let ring = model.deployments.entry(&a.deployment, Ring::new);
    let Some(c) = ring.slot(sec) else { return };
    c.attempts += 1;
    match a.outcome {
        AttemptOutcome::Ok { .. } => {
            c.answered += 1;
            if c.latency.is_empty() {
                c.latency = vec![0; BINS];
            }
            c.latency[bin_of(a.latency_ms)] += 1;
        }
        // The client leaving is nobody's failure; a client error
        // passed back is an answer, but not a success to share out.
        AttemptOutcome::Cancelled | AttemptOutcome::NotOffered { .. } => {}
        AttemptOutcome::Status { status }
            if (400..500).contains(&status) && !failover_status(status) => {}
        _ => c.failures += 1,
    }
}

impl Stats {
    /// The seconds `from..=now` that make the last `span` seconds, and their
    /// length in seconds (shorter at the start).
    fn span(&self, now_ms: u64, seconds: u64) -> (u64, u64, f64) {
        let now_sec = now_ms / 1000;
        let from = now_sec.saturating_sub(seconds - 1);
        let covered = (now_ms - from * 1000).min(now_ms.saturating_sub(self.started_ms));
        (from, now_sec, (covered as f64 / 1000.0).max(1.0))
    }

    fn rates(&self, ring: &Ring<Counts>, now_ms: u64) -> Rates {
        let (from, to, secs) = self.span(now_ms, RATE_S);
        let recent: u64 = ring.range(from, to).map(|c| c.requests).sum();
        let (from, to, _) = self.span(now_ms, WINDOW_S);
        let mut r = Rates {
            per_second: recent as f64 / secs,
            ..Rates::default()
        };
        for c in ring.range(from, to) {
            r.requests += c.requests;
            r.errors += c.errors;
            r.tokens_per_minute += c.tokens;
        }
        r
    }

    /// Every model together: summed when asked (a few times a second)
    /// rather than counted once more per request.
    pub fn totals(&self, now_ms: u64) -> Rates {
        let mut all = Rates::default();
        for m in self.models.values() {
            let r = self.rates(&m.ring, now_ms);
            all.per_second += r.per_second;
            all.requests += r.requests;
            all.errors += r.errors;
            all.tokens_per_minute += r.tokens_per_minute;
        }
        all
    }

    pub fn model(&self, model: &str, now_ms: u64) -> Rates {
        self.models
            .get(model)
            .map(|m| self.rates(&m.ring, now_ms))
            .unwrap_or_default()
    }

    pub fn deployment(&self, model: &str, deployment: &str, now_ms: u64) -> DeploymentRates {
        let Some(m) = self.models.get(model) else {
            return DeploymentRates::default();
        };
        let (from, to, _) = self.span(now_ms, WINDOW_S);
        let answered_by_model: u64 = m
            .deployments
            .values()
            .flat_map(|ring| ring.range(from, to))
            .map(|c| c.answered)
            .sum();
        let Some(ring) = m.deployments.get(deployment) else {
            return DeploymentRates::default();
        };
        let mut out = DeploymentRates::default();
        let mut hist = [0u64; BINS];
        let mut answered = 0;
        for c in ring.range(from, to) {
            out.attempts += c.attempts;
            out.failures += c.failures;
            answered += c.answered;
            for (h, n) in hist.iter_mut().zip(&c.latency) {
                *h += u64::from(*n);
            }
        }
        out.p50_ms = percentile(&hist, answered, 0.50);
        out.p95_ms = percentile(&hist, answered, 0.95);
        out.share = (answered_by_model > 0).then(|| answered as f64 / answered_by_model as f64);
        out.answered = answered;
        out
    }

    /// Requests completed in each of the last `n` whole seconds, oldest first.
    pub fn history(&self, now_ms: u64, n: usize) -> Vec<u64> {
        let now_sec = now_ms / 1000;
        let n = n.min(HISTORY_S - 1);
        (1..=n as u64)
            .rev()
            .map(|back| {
                let sec = now_sec.saturating_sub(back);
                let (s, count) = self.history[(sec % HISTORY_S as u64) as usize];
                if s == sec { count } else { 0 }
            })
            .collect()
    }
}

/// Statuses that fail a request over (and so count against the deployment);
/// other 4xx are the client's and are passed back.
fn failover_status(status: u16) -> bool {
    matches!(status, 401 | 403 | 404 | 408 | 429)
}

fn percentile(hist: &[u64; BINS], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((total as f64 * q).ceil() as u64).max(1);
    let mut seen = 0;
    for (bin, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(bin_value(bin));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Attempt;

    fn request(at_ms: u64, model: &str, attempts: &[(&str, AttemptOutcome, f64)]) -> RequestEvent {
        let ok = matches!(attempts.last(), Some((_, AttemptOutcome::Ok { .. }, _)));
        RequestEvent {
            id: at_ms,
            at_ms,
            model: model.into(),
            endpoint: "chat.completions".into(),
            stream: false,
            attempts: attempts
                .iter()
                .map(|(d, o, l)| Attempt {
                    model: None,
                    deployment: (*d).into(),
                    outcome: *o,
                    latency_ms: *l,
                })
                .collect(),
            status: if ok { 200 } else { 502 },
            outcome: if ok {
                RequestOutcome::Ok
            } else {
                RequestOutcome::Failed
            },
            latency_ms: attempts.iter().map(|a| a.2).sum(),
            prompt_tokens: 100,
            completion_tokens: 50,
            tokens_estimated: false,
            instance: None,
        }
    }

    const OK: AttemptOutcome = AttemptOutcome::Ok { status: 200 };
    const E429: AttemptOutcome = AttemptOutcome::Status { status: 429 };

    #[test]
    fn rates_tokens_and_errors_over_the_window() {
        let t0 = 1_700_000_000_000;
        let mut s = Stats::new(t0);
        for i in 0..20 {
            s.record(&request(t0 + i * 500, "m", &[("a", OK, 100.0)]));
        }
        s.record(&request(t0 + 3000, "m", &[("a", E429, 2.0)]));
        let now = t0 + 10_000;
        let m = s.model("m", now);
        assert_eq!(m.requests, 21);
        assert_eq!(m.errors, 1);
        assert_eq!(m.tokens_per_minute, 21 * 150);
        // Seconds 1..=9 of the last ten (the tenth has just begun): 19 requests.
        assert!((m.per_second - 19.0 / 9.0).abs() < 1e-9, "{}", m.per_second);
        assert_eq!(s.totals(now), m);
        // A minute later it has all gone.
        let later = s.model("m", now + 61_000);
        assert_eq!((later.requests, later.tokens_per_minute), (0, 0));
        assert_eq!(later.per_second, 0.0);
        assert_eq!(later.error_rate(), None);
    }

    #[test]
    fn deployment_latency_percentiles_failures_and_share() {
        let t0 = 1_700_000_000_000;
        let mut s = Stats::new(t0);
        for i in 0..100 {
            s.record(&request(t0 + i, "m", &[("a", OK, 10.0 + i as f64)]));
        }
        for i in 0..100 {
            s.record(&request(t0 + i, "m", &[("a", E429, 1.0), ("b", OK, 500.0)]));
        }
        let now = t0 + 2000;
        let a = s.deployment("m", "a", now);
        assert_eq!((a.attempts, a.failures), (200, 100));
        let p50 = a.p50_ms.unwrap();
        let p95 = a.p95_ms.unwrap();
        assert!((55.0..=66.0).contains(&p50), "{p50}");
        assert!((98.0..=115.0).contains(&p95), "{p95}");
        assert_eq!(a.share, Some(0.5));
        let b = s.deployment("m", "b", now);
        assert!((470.0..=530.0).contains(&b.p50_ms.unwrap()));
        assert_eq!(s.deployment("m", "nobody", now), DeploymentRates::default());
    }

    #[test]
    fn history_counts_whole_seconds_oldest_first() {
        let t0 = 1_700_000_000_000;
        let mut s = Stats::new(t0);
        for (sec, n) in [(0, 1), (1, 3), (3, 2)] {
            for _ in 0..n {
                s.record(&request(t0 + sec * 1000, "m", &[("a", OK, 0.0)]));
            }
        }
        // At t0+4.5s, the whole seconds are 0..=3; the current one is left out.
        assert_eq!(s.history(t0 + 4500, 5), vec![0, 1, 3, 0, 2]);
    }

    #[test]
    fn bins_follow_the_logarithm() {
        for ms in [0.6, 1.0, 3.7, 12.5, 250.0, 999.9, 4_000.0, 60_000.0, 1e6] {
            let exact = ((ms / BIN_BASE_MS).ln() / BIN_FACTOR.ln()).floor() as i64;
            let fast = bin_of(ms) as i64;
            assert!((exact - fast).abs() <= 1, "{ms}: {exact} vs {fast}");
            // The bin's middle is within a bin of the value.
            assert!((bin_value(bin_of(ms)) / ms - 1.0).abs() < 0.1, "{ms}");
        }
        assert_eq!(bin_of(0.1), 0);
        assert_eq!(bin_of(f64::NAN), 0);
        assert_eq!(bin_of(f64::INFINITY), BINS - 1);
    }

    #[test]
    fn events_older_than_the_window_are_ignored() {
        let t0 = 1_700_000_000_000;
        let mut s = Stats::new(t0);
        s.record(&request(t0 + 120_000, "m", &[("a", OK, 1.0)]));
        s.record(&request(t0, "m", &[("a", OK, 1.0)]));
        assert_eq!(s.model("m", t0 + 120_500).requests, 1);
    }
}
