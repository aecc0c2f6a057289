//! The state of an attached dashboard's connection, from the two halves
//! that use it (the state poll and the event stream), and the back-off of
//! their retries.

use std::time::Duration;

use crate::dashboard::app::Link;

/// Retries after a failure wait this long, doubling up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The two halves of the connection.
#[derive(Debug, Clone, Copy)]
pub(super) enum Part {
    Poll,
    Stream,
}

/// Whether the poll and the stream work; the connection is live when both do.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    poll: Option<Result<(), String>>,
    stream: Option<Result<(), String>>,
    shown: Option<Link>,
}

impl Tracker {
    /// Records one outcome; returns the link when what it shows changed.
    pub(super) fn report(
        &mut self,
        part: Part,
        outcome: Result<(), String>,
        now_ms: u64,
    ) -> Option<Link> {
        match part {
            Part::Poll => self.poll = Some(outcome),
            Part::Stream => self.stream = Some(outcome),
        }
        let error = [&self.poll, &self.stream]
            .into_iter()
            .find_map(|o| o.as_ref().and_then(|r| r.as_ref().err()).cloned());
        let live =
            error.is_none() && matches!((&self.poll, &self.stream), (Some(Ok(())), Some(Ok(()))));
        // Until both halves have reported, a first success says nothing yet.
        if !live && error.is_none() {
            return None;
        }
        let since_ms = match &self.shown {
            Some(l) if l.live == live => l.since_ms,
            _ => now_ms,
        };
        let link = Link {
            live,
            since_ms,
            error,
        };
        if self.shown.as_ref() == Some(&link) {
            return None;
        }
        self.shown = Some(link.clone());
        Some(link)
    }

    pub(super) fn down_since(&self) -> Option<u64> {
        self.shown.as_ref().filter(|l| !l.live).map(|l| l.since_ms)
    }
}

/// Doubles from [`FIRST_BACKOFF`] to [`MAX_BACKOFF`]; back to the start after a success.
#[derive(Debug, Default)]
pub(super) struct Backoff(u32);

impl Backoff {
    pub(super) fn next(&mut self) -> Duration {
        let d = FIRST_BACKOFF
            .saturating_mul(1 << self.0.min(8))
            .min(MAX_BACKOFF);
        self.0 += 1;
        d
    }

    pub(super) fn reset(&mut self) {
        self.0 = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_live_when_both_halves_work_and_keeps_its_since() {
        let mut t = Tracker::default();
        assert_eq!(t.report(Part::Poll, Ok(()), 1), None);
        let live = t.report(Part::Stream, Ok(()), 2).unwrap();
        assert!(live.live && live.since_ms == 2);
        assert_eq!(t.report(Part::Poll, Ok(()), 3), None);
        let down = t
            .report(Part::Stream, Err("connection refused".into()), 4)
            .unwrap();
        assert!(!down.live && down.since_ms == 4);
        // Down for another reason too: the time it went down stays.
        let again = t.report(Part::Poll, Err("timed out".into()), 6).unwrap();
        assert_eq!((again.live, again.since_ms), (false, 4));
        assert_eq!(t.down_since(), Some(4));
        assert_eq!(
            t.report(Part::Stream, Ok(()), 7),
            None,
            "the poll still fails"
        );
        let back = t.report(Part::Poll, Ok(()), 8).unwrap();
        assert!(back.live && back.since_ms == 8);
    }

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::default();
        let waits: Vec<u64> = (0..7).map(|_| b.next().as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), FIRST_BACKOFF);
    }
}
