//! A deployment's limits and what counts against them (CONTRACT.md,
//! "Capacity"): tokens, requests (with an optional slice), input and output
//! tokens in their own sliding windows, and requests in flight.
//!
//! Every window counts whether or not its limit is set: the admin API shows
//! what was used, and the forecast needs the rate before a limit is added.
//! A window's add is a few instructions; the checks run only for the limits
//! a deployment has.

use std::time::Duration;

use super::window::{Reservation, TpmWindow, WINDOW_SECS};

/// A deployment's limits; every one optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub tpm: Option<u64>,
    pub rpm: Option<u64>,
    /// With `rpm`: at most `rpm × slice / 60` requests in any `slice` seconds.
    pub rpm_slice_s: Option<u64>,
    pub input_tpm: Option<u64>,
    pub output_tpm: Option<u64>,
    pub max_in_flight: Option<u64>,
}

impl Limits {
    /// Only a TPM limit (or none): the limits before capacity had more.
    pub fn tpm(tpm: Option<u64>) -> Limits {
        Limits {
            tpm,
            ..Limits::default()
        }
    }

    /// Any limit beyond tokens per minute.
    fn more(&self) -> bool {
        self.rpm.is_some()
            || self.input_tpm.is_some()
            || self.output_tpm.is_some()
            || self.max_in_flight.is_some()
    }

    /// The token capacity a minute, for the weights and the headroom:
    /// `tpm`, else the split limits together (a deployment's tokens are
    /// its input and output).
    pub fn tokens(&self) -> Option<u64> {
        self.tpm.or(match (self.input_tpm, self.output_tpm) {
            (None, None) => None,
            (i, o) => Some(i.unwrap_or(0).saturating_add(o.unwrap_or(0))),
        })
    }

    /// Requests allowed in one slice.
    fn per_slice(&self) -> Option<(u64, u64)> {
        let (rpm, slice) = (self.rpm?, self.rpm_slice_s?);
        Some(((rpm * slice / WINDOW_SECS).max(1), slice))
    }
}

impl From<&crate::config::DeploymentConfig> for Limits {
    fn from(d: &crate::config::DeploymentConfig) -> Limits {
        let c = d.capacity;
        Limits {
            tpm: d.tpm_limit,
            rpm: c.rpm_limit,
            rpm_slice_s: c.rpm_slice_s,
            input_tpm: c.input_tpm_limit,
            output_tpm: c.output_tpm_limit,
            max_in_flight: c.max_in_flight,
        }
    }
}

/// Only a TPM limit, or none.
impl From<Option<u64>> for Limits {
    fn from(tpm: Option<u64>) -> Limits {
        Limits::tpm(tpm)
    }
}

/// What a request asks of a deployment's windows: its input estimate and
/// the output it may produce (`max_tokens`, or the default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Need {
    pub input: u64,
    pub output: u64,
}

impl Need {
    pub fn total(&self) -> u64 {
        self.input.saturating_add(self.output)
    }
}

/// A request of `n` tokens not split (tests, and callers that know only a total).
impl From<u64> for Need {
    fn from(n: u64) -> Need {
        Need {
            input: n,
            output: 0,
        }
    }
}

/// The tokens an answer really used, as the upstream reports them.
pub type Spent = Need;

/// One of a deployment's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dim {
    Tokens,
    Requests,
    /// The requests of one slice of `rpm_slice_s`.
    Slice,
    Input,
    Output,
    InFlight,
}

impl Dim {
    /// Why a deployment at this limit cannot take a request, in a few words.
    pub fn at_limit(self) -> &'static str {
        match self {
            Dim::Tokens => "at limit",
            Dim::Requests | Dim::Slice => "at RPM limit",
            Dim::Input => "at input TPM limit",
            Dim::Output => "at output TPM limit",
            Dim::InFlight => "at max in flight",
        }
    }
}

/// The dimensions a provider can say ran out ([`Meter::exhaust`]).
const EXHAUSTIBLE: [Dim; 3] = [Dim::Requests, Dim::Input, Dim::Output];

/// What counts against a deployment's limits.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    tokens: TpmWindow,
    requests: TpmWindow,
    input: TpmWindow,
    output: TpmWindow,
    in_flight: u64,
    /// Until when the provider said a dimension ran out (requests, input,
    /// output), whatever our own windows say.
    exhausted: [Option<Duration>; 3],
}

impl Meter {
    /// Counts a request of `need` picked now; it is in flight until
    /// [`Meter::end`].
    pub fn add(&mut self, now: Duration, need: Need) -> Reservation {
        self.requests.add(now, 1);
        self.input.add(now, need.input);
        self.output.add(now, need.output);
        self.in_flight += 1;
        self.tokens.add(now, need.total()).with_output(need.output)
    }

    /// Replaces the estimate counted at pick time by what was spent.
    pub fn settle(&mut self, now: Duration, r: Reservation, spent: Spent) {
        self.tokens.settle(now, r, spent.total());
        let (input, output) = (r.tokens() - r.output(), r.output());
        self.input
            .settle(now, Reservation::at(r.second(), input), spent.input);
        self.output
            .settle(now, Reservation::at(r.second(), output), spent.output);
    }

    /// The request was never sent: nothing of it counts.
    pub fn undo(&mut self, now: Duration, r: Reservation) {
        self.settle(now, r, Spent::default());
        self.requests.settle(now, Reservation::at(r.second(), 1), 0);
    }

    /// A request picked here finished (or was never sent).
    pub fn end(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// The provider says `dim` ran out until `until`.
    pub fn exhaust(&mut self, dim: Dim, until: Duration) {
        if let Some(i) = EXHAUSTIBLE.iter().position(|&d| d == dim) {
            let slot = &mut self.exhausted[i];
            *slot = Some(slot.map_or(until, |u| u.max(until)));
        }
    }

    /// The first limit (of `limits`, each cut to `1/share`) the request
    /// would break now, if any.
    pub fn full(&mut self, now: Duration, need: Need, limits: &Limits, share: u64) -> Option<Dim> {
        if let Some(limit) = limits.tpm
            && !self.tokens.fits(now, need.total(), part(limit, share))
        {
            return Some(Dim::Tokens);
        }
        if !limits.more() && self.exhausted == [None; 3] {
            return None;
        }
        self.full_beyond_tokens(now, need, limits, share)
    }

    #[inline(never)]
    fn full_beyond_tokens(
        &mut self,
        now: Duration,
        need: Need,
        limits: &Limits,
        share: u64,
    ) -> Option<Dim> {
        for (i, dim) in EXHAUSTIBLE.iter().enumerate() {
            match self.exhausted[i] {
                Some(until) if until > now => return Some(*dim),
                Some(_) => self.exhausted[i] = None,
                None => {}
            }
        }
        if let Some(max) = limits.max_in_flight
            && self.in_flight >= part(max, share)
        {
            return Some(Dim::InFlight);
        }
        if let Some(limit) = limits.rpm
            && !self.requests.fits(now, 1, part(limit, share))
        {
            return Some(Dim::Requests);
        }
        if let Some((per, slice)) = limits.per_slice() {
            let used = self.requests.used_within(now, slice);
            if used > 0 && used >= part(per, share) {
                return Some(Dim::Slice);
            }
        }
        if let Some(limit) = limits.input_tpm
            && !self.input.fits(now, need.input, part(limit, share))
        {
            return Some(Dim::Input);
        }
        if let Some(limit) = limits.output_tpm
            && !self.output.fits(now, need.output, part(limit, share))
        {
            return Some(Dim::Output);
        }
        None
    }

    /// How long until the request fits every limit; `None` when a request
    /// in flight must finish first (no clock says when).
    pub fn time_until_fits(
        &mut self,
        now: Duration,
        need: Need,
        limits: &Limits,
        share: u64,
    ) -> Option<Duration> {
        let mut wait = Duration::ZERO;
        if let Some(limit) = limits.tpm {
            wait = wait.max(
                self.tokens
                    .time_until_fits(now, need.total(), part(limit, share)),
            );
        }
        for until in self.exhausted.iter().flatten() {
            wait = wait.max(until.saturating_sub(now));
        }
        if let Some(limit) = limits.rpm {
            wait = wait.max(self.requests.time_until_fits(now, 1, part(limit, share)));
        }
        if let Some((per, slice)) = limits.per_slice() {
            wait = wait.max(
                self.requests
                    .time_until_fits_within(now, 1, part(per, share), slice),
            );
        }
        if let Some(limit) = limits.input_tpm {
            wait = wait.max(
                self.input
                    .time_until_fits(now, need.input, part(limit, share)),
            );
        }
        if let Some(limit) = limits.output_tpm {
            wait = wait.max(
                self.output
                    .time_until_fits(now, need.output, part(limit, share)),
            );
        }
        match limits.max_in_flight {
            Some(max) if self.in_flight >= part(max, share) => None,
            _ => Some(wait),
        }
    }

    pub fn tokens_used(&mut self, now: Duration) -> u64 {
        self.tokens.used(now)
    }

    pub fn used(&mut self, now: Duration) -> Used {
        Used {
            tokens: self.tokens.used(now),
            requests: self.requests.used(now),
            input: self.input.used(now),
            output: self.output.used(now),
            in_flight: self.in_flight,
        }
    }

    /// Seconds until the first of `limits` is reached at the recent rate
    /// (0 when one is reached now), `None` when none will be at this rate.
    pub fn forecast(&mut self, now: Duration, limits: &Limits) -> Option<f64> {
        self.forecasts(now, limits)
            .into_iter()
            .filter_map(|f| f.full_s)
            .reduce(f64::min)
    }

    /// The forecast of each limit the deployment has.
    pub fn forecasts(&mut self, now: Duration, limits: &Limits) -> Vec<Forecast> {
        let mut out = Vec::new();
        for (limit, window, max) in [
            (Dim::Tokens, &mut self.tokens, limits.tpm),
            (Dim::Requests, &mut self.requests, limits.rpm),
            (Dim::Input, &mut self.input, limits.input_tpm),
            (Dim::Output, &mut self.output, limits.output_tpm),
        ] {
            if let Some(max) = max {
                let rate = window.rate(now);
                out.push(Forecast {
                    limit,
                    full_s: window.time_until_full(now, max, rate),
                });
            }
        }
        if let Some(max) = limits.max_in_flight {
            // No rate says when places run out: full now, or not said.
            out.push(Forecast {
                limit: Dim::InFlight,
                full_s: (self.in_flight >= max).then_some(0.0),
            });
        }
        out
    }

    /// Requests in the window, and when it is whole again.
    pub fn requests_left(&mut self, now: Duration) -> (u64, Duration) {
        (self.requests.used(now), self.requests.time_until_empty(now))
    }

    /// Tokens counted against `limits`' token capacity (`tpm`, else input
    /// and output together), and when that window is whole again.
    pub fn tokens_left(&mut self, now: Duration, limits: &Limits) -> (u64, Duration) {
        if limits.tpm.is_some() {
            return (self.tokens.used(now), self.tokens.time_until_empty(now));
        }
        let used = self.input.used(now) + self.output.used(now);
        let reset = self
            .input
            .time_until_empty(now)
            .max(self.output.time_until_empty(now));
        (used, reset)
    }

    /// Tokens a second lately (see [`TpmWindow::rate`]).
    pub fn token_rate(&mut self, now: Duration) -> f64 {
        self.tokens.rate(now)
    }
}

/// When one limit will be reached at the recent rate (`None`: not at
/// this rate).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Forecast {
    pub limit: Dim,
    pub full_s: Option<f64>,
}

/// What a deployment's windows hold now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub tokens: u64,
    pub requests: u64,
    pub input: u64,
    pub output: u64,
    pub in_flight: u64,
}

/// This instance's part of a limit shared by `share` instances deciding alone.
pub fn part(limit: u64, share: u64) -> u64 {
    if share > 1 {
        (limit / share).max(1)
    } else {
        limit
    }
}

#[cfg(test)]
mod tests;
