//! The capacity limits the mock enforces, as providers do: tokens
//! (`--tpm-limit`), requests (`--rpm-limit`, optionally per slice),
//! input and output tokens (`--input-tpm-limit`, `--output-tpm-limit`),
//! and requests in flight (`--max-in-flight`, see [`in_flight`]).
//!
//! One admission checks every window under one lock: a request is counted
//! in all of them or in none, and a refused one in none. The provider
//! modules only turn the outcome into their headers and error shapes.
//!
//! What is counted when, as the providers do it:
//! - tokens (the TPM window): the prompt and the completion the mock will
//!   write, at admission (as before these limits existed);
//! - requests: one per admitted request, at admission;
//! - input: the prompt tokens at admission (Anthropic's ITPM: the input
//!   is known before a token is generated; cache reads are not counted);
//! - output: `max_tokens` (or, without one, the completion the mock will
//!   write) reserved at admission, then replaced by the tokens really
//!   written when the answer's body ends. That is what Anthropic documents
//!   for its OTPM ("estimated based on max_tokens at the beginning of each
//!   request and adjusted at the end"), and what the gateway's own
//!   reservation does, so the two windows agree;
//! - in flight: from the request's arrival until its body's last byte, or
//!   until its client leaves.

pub(super) mod in_flight;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::MockOptions;
use super::window::{Admission, Reservation, SPAN, TokenWindow};
pub(super) use in_flight::{InFlight, Slot};

/// A limit a request can run into, as the stats name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dim {
    Tokens,
    /// The per-minute request limit or its slice.
    Requests,
    Input,
    Output,
    InFlight,
}

const DIMS: usize = 5;

/// What one request asks of the windows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Need {
    /// Counted in the TPM window: input and the output written.
    pub(super) tokens: u64,
    pub(super) input: u64,
    /// Reserved in the output window at admission.
    pub(super) output_reserved: u64,
    /// What the answer writes: the output window's count once it ends.
    pub(super) output_written: u64,
}

impl Need {
    /// A request of `input` tokens answered with `written` tokens, with
    /// `max_tokens` as asked (None: the answer's own length is reserved).
    pub(super) fn new(input: u64, written: u64, max_tokens: Option<u64>) -> Need {
        Need {
            tokens: input + written,
            input,
            output_reserved: max_tokens.unwrap_or(written),
            output_written: written,
        }
    }
}

/// One limit as an answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gauge {
    pub(super) limit: u64,
    /// Left once this request is counted (when refused: left now).
    pub(super) remaining: u64,
    /// Refused: how long until the request fits this limit. Otherwise: how
    /// long until the window is whole again.
    pub(super) reset: Duration,
    /// This limit refused the request.
    pub(super) refused: bool,
}

/// Every configured window's gauge (None: no such limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Gauges {
    pub(super) tokens: Option<Gauge>,
    /// The per-minute limit; its remaining and reset take the slice in.
    pub(super) requests: Option<Gauge>,
    pub(super) input: Option<Gauge>,
    pub(super) output: Option<Gauge>,
}

/// An admitted request: its gauges for the answer's headers, and the
/// output reservation to correct once the answer ends (hold it in the
/// body).
#[derive(Debug, Default)]
pub(super) struct Admitted {
    pub(super) gauges: Gauges,
    pub(super) settle: Option<Settle>,
}

/// A refused request: which limits refused it and when it would fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Refused {
    /// The first limit that refused it, in the order tokens, requests,
    /// input, output (in flight is refused on its own): what the error
    /// message names.
    pub(super) dim: Dim,
    pub(super) gauges: Gauges,
    /// When every limit that refused it has room (at least 1 ms).
    pub(super) retry_after: Duration,
    /// It asks more than a limit allows at all: it will never fit.
    pub(super) too_large: bool,
    pub(super) need: Need,
    /// Refused by the slice, not the minute (`--rpm-slice-s`).
    pub(super) slice: Option<(u64, u64)>,
    /// `--max-in-flight`, for an in-flight refusal.
    pub(super) max_in_flight: Option<u64>,
}

impl Refused {
    /// A refusal because `max` requests are already being served: no
    /// window says when one ends, so a second is the advice.
    pub(super) fn in_flight(max: u64) -> Refused {
        Refused {
            dim: Dim::InFlight,
            gauges: Gauges::default(),
            retry_after: Duration::from_secs(1),
            too_large: false,
            need: Need::default(),
            slice: None,
            max_in_flight: Some(max),
        }
    }
}

/// The output reserved at admission, replaced by what was written when
/// dropped (with the body that carries it: when the answer has ended or
/// its client has left).
#[derive(Debug)]
pub(super) struct Settle {
    windows: Arc<Mutex<Windows>>,
    reservation: Reservation,
    written: u64,
}

impl Drop for Settle {
    fn drop(&mut self) {
        let mut windows = lock(&self.windows);
        if let Some(output) = &mut windows.output {
            output.settle(self.reservation, self.written, Instant::now());
        }
    }
}

#[derive(Debug)]
struct Windows {
    tokens: Option<TokenWindow>,
    requests: Option<TokenWindow>,
    /// `(per slice, slice seconds)` and its window.
    slice: Option<(u64, u64, TokenWindow)>,
    input: Option<TokenWindow>,
    output: Option<TokenWindow>,
}

/// The limits of one mock, and how often each refused.
pub(super) struct Limits {
    windows: Option<Arc<Mutex<Windows>>>,
    pub(super) in_flight: Arc<InFlight>,
    refused: [AtomicU64; DIMS],
}

/// Requests allowed in one slice: `rpm × slice / 60`, rounded down, at
/// least 1 (Azure's rule, and the gateway's).
pub(super) fn per_slice(rpm: u64, slice_s: u64) -> u64 {
    (rpm.saturating_mul(slice_s) / 60).max(1)
}

impl Limits {
    pub(super) fn new(opts: &MockOptions) -> Limits {
        Limits {
            windows: Windows::new(opts).map(|w| Arc::new(Mutex::new(w))),
            in_flight: Arc::new(InFlight::new(opts.max_in_flight)),
            refused: Default::default(),
        }
    }

    /// Counts `need` in every window when it fits them all. A refusal is
    /// boxed: it carries every gauge, and it is the rare path.
    pub(super) fn admit(&self, need: Need) -> Result<Admitted, Box<Refused>> {
        let Some(windows) = &self.windows else {
            return Ok(Admitted::default());
        };
        let mut guard = lock(windows);
        // The clock is read under the lock, so that the windows see time
        // in order whatever order the callers arrive in.
        let now = Instant::now();
        let outcome = guard.admit(need, now);
        drop(guard);
        match outcome {
            Ok((gauges, reservation)) => Ok(Admitted {
                gauges,
                settle: reservation
                    .filter(|_| need.output_written != need.output_reserved)
                    .map(|reservation| Settle {
                        windows: windows.clone(),
                        reservation,
                        written: need.output_written,
                    }),
            }),
            Err(refused) => {
                let g = &refused.gauges;
                for (dim, gauge) in [
                    (Dim::Tokens, g.tokens),
                    (Dim::Requests, g.requests),
                    (Dim::Input, g.input),
                    (Dim::Output, g.output),
                ] {
                    if gauge.is_some_and(|g| g.refused) {
                        self.count_refused(dim);
                    }
                }
                Err(refused)
            }
        }
    }

    pub(super) fn count_refused(&self, dim: Dim) {
        self.refused[dim as usize].fetch_add(1, Relaxed);
    }

    /// 429s sent, by the limit that refused (a request over several
    /// limits is counted under each).
    pub(super) fn refused(&self) -> super::RateLimitedBy {
        let n = |dim: Dim| self.refused[dim as usize].load(Relaxed);
        super::RateLimitedBy {
            tokens: n(Dim::Tokens),
            requests: n(Dim::Requests),
            input: n(Dim::Input),
            output: n(Dim::Output),
            in_flight: n(Dim::InFlight),
        }
    }
}

fn lock(windows: &Mutex<Windows>) -> MutexGuard<'_, Windows> {
    // A panic while holding the lock cannot leave the windows inconsistent
    // in a way that matters to a mock: keep serving.
    windows.lock().unwrap_or_else(|e| e.into_inner())
}

/// One window's verdict on its share of a request.
fn gauge(window: &mut TokenWindow, need: u64, now: Instant) -> (Gauge, bool) {
    let limit = window.limit();
    match window.check(need, now) {
        Admission::Admitted { remaining } => (
            Gauge {
                limit,
                remaining,
                reset: window.until_whole(now),
                refused: false,
            },
            false,
        ),
        Admission::Limited {
            remaining,
            retry_after,
            too_large,
        } => (
            Gauge {
                limit,
                remaining,
                reset: retry_after,
                refused: true,
            },
            too_large,
        ),
    }
}

impl Windows {
    /// The windows of the limits `opts` sets; None when it sets none.
    fn new(opts: &MockOptions) -> Option<Windows> {
        let grace = Duration::from_millis(opts.limit_grace_ms);
        let minute = |limit: Option<u64>| {
            limit.map(|l| TokenWindow::with_span(l, SPAN.saturating_sub(grace)))
        };
        let slice = opts.rpm_limit.zip(opts.rpm_slice_s).map(|(rpm, s)| {
            let per = per_slice(rpm, s);
            let span = Duration::from_secs(s).saturating_sub(grace);
            (per, s, TokenWindow::with_span(per, span))
        });
        let windows = Windows {
            tokens: minute(opts.tpm_limit),
            requests: minute(opts.rpm_limit),
            slice,
            input: minute(opts.input_tpm_limit),
            output: minute(opts.output_tpm_limit),
        };
        let any = windows.tokens.is_some()
            || windows.requests.is_some()
            || windows.input.is_some()
            || windows.output.is_some();
        any.then_some(windows)
    }

    /// Checks every window, then counts in all of them or none. Admitted:
    /// the gauges and the output's reservation.
    fn admit(
        &mut self,
        need: Need,
        now: Instant,
    ) -> Result<(Gauges, Option<Reservation>), Box<Refused>> {
        let mut too_large = false;
        let mut check = |window: Option<&mut TokenWindow>, n: u64| {
            window.map(|w| {
                let (g, large) = gauge(w, n, now);
                too_large |= large;
                g
            })
        };
        let tokens = check(self.tokens.as_mut(), need.tokens);
        let minute = check(self.requests.as_mut(), 1);
        let slice = check(self.slice.as_mut().map(|(_, _, w)| w), 1);
        let input = check(self.input.as_mut(), need.input);
        let output = check(self.output.as_mut(), need.output_reserved);
        let requests = minute.map(|m| merge_slice(m, slice));
        let refusing = [
            (Dim::Tokens, tokens),
            (Dim::Requests, requests),
            (Dim::Input, input),
            (Dim::Output, output),
        ]
        .into_iter()
        .filter_map(|(dim, g)| g.filter(|g| g.refused).map(|g| (dim, g.reset)));
        let mut first = None;
        let mut wait = Duration::ZERO;
        for (dim, reset) in refusing {
            first.get_or_insert(dim);
            wait = wait.max(reset);
        }
        if let Some(dim) = first {
            // Nothing is counted: the limits that would have taken the
            // request still have what they had.
            let left = |g: Option<Gauge>, n: u64| {
                g.map(|g| {
                    if g.refused {
                        g
                    } else {
                        Gauge {
                            remaining: g.remaining + n,
                            ..g
                        }
                    }
                })
            };
            return Err(Box::new(Refused {
                dim,
                gauges: Gauges {
                    tokens: left(tokens, need.tokens),
                    requests: left(requests, 1),
                    input: left(input, need.input),
                    output: left(output, need.output_reserved),
                },
                // A zero wait (a request that never fits, on an empty
                // window) would invite an immediate retry.
                retry_after: wait.max(Duration::from_millis(1)),
                too_large,
                need,
                slice: self
                    .slice
                    .as_ref()
                    .filter(|_| slice.is_some_and(|g| g.refused))
                    .map(|(per, s, _)| (*per, *s)),
                max_in_flight: None,
            }));
        }
        let record = |window: Option<&mut TokenWindow>, n: u64| {
            window.map(|w| {
                let r = w.record(n, now);
                (r, w.until_whole(now))
            })
        };
        let whole_tokens = record(self.tokens.as_mut(), need.tokens);
        let whole_minute = record(self.requests.as_mut(), 1);
        let whole_slice = record(self.slice.as_mut().map(|(_, _, w)| w), 1);
        let whole_input = record(self.input.as_mut(), need.input);
        let reserved = record(self.output.as_mut(), need.output_reserved);
        let reset = |g: Option<Gauge>, whole: Option<(Reservation, Duration)>| {
            g.zip(whole).map(|(g, (_, reset))| Gauge { reset, ..g })
        };
        let mut requests = reset(requests, whole_minute);
        if let (Some(r), Some((_, slice_whole))) = (&mut requests, whole_slice) {
            r.reset = r.reset.max(slice_whole);
        }
        Ok((
            Gauges {
                tokens: reset(tokens, whole_tokens),
                requests,
                input: reset(input, whole_input),
                output: reset(output, reserved),
            },
            reserved.map(|(r, _)| r),
        ))
    }
}

/// The requests gauge: the minute's limit, what is left of it and of the
/// slice (whichever is less), refused by either.
fn merge_slice(minute: Gauge, slice: Option<Gauge>) -> Gauge {
    let Some(slice) = slice else {
        return minute;
    };
    let refused = minute.refused || slice.refused;
    Gauge {
        limit: minute.limit,
        remaining: if refused {
            0
        } else {
            minute.remaining.min(slice.remaining)
        },
        reset: match (minute.refused, slice.refused) {
            (true, false) => minute.reset,
            (false, true) => slice.reset,
            _ => minute.reset.max(slice.reset),
        },
        refused,
    }
}

#[cfg(test)]
mod tests;
