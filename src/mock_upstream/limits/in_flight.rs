//! Requests being served at once (`--max-in-flight`), and the most ever
//! seen, counted whether or not there is a limit so that a load test can
//! read a gateway's concurrency off the stats.
//!
//! A request takes its [`Slot`] on arrival, before its body is read or the
//! latency waited (a gateway counts it from the moment it sends), and the
//! slot rides in the response body: it is given back when hyper drops the
//! body, after the last frame, or when the client leaves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug)]
pub(in crate::mock_upstream) struct InFlight {
    limit: Option<u64>,
    now: AtomicU64,
    max_seen: AtomicU64,
}

/// One request in flight; dropping it ends it.
#[derive(Debug)]
pub(in crate::mock_upstream) struct Slot(Arc<InFlight>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.now.fetch_sub(1, Relaxed);
    }
}

impl InFlight {
    pub(in crate::mock_upstream) fn new(limit: Option<u64>) -> InFlight {
        InFlight {
            limit,
            now: AtomicU64::new(0),
            max_seen: AtomicU64::new(0),
        }
    }

    pub(in crate::mock_upstream) fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// A slot, unless `limit` requests hold one already. The check and the
    /// increment are one atomic step, so a burst never gets past the limit.
    pub(in crate::mock_upstream) fn enter(self: &Arc<Self>) -> Option<Slot> {
        let limit = self.limit.unwrap_or(u64::MAX);
        let before = self
            .now
            .fetch_update(Relaxed, Relaxed, |n| (n < limit).then_some(n + 1))
            .ok()?;
        self.max_seen.fetch_max(before + 1, Relaxed);
        Some(Slot(self.clone()))
    }

    pub(in crate::mock_upstream) fn now(&self) -> u64 {
        self.now.load(Relaxed)
    }

    pub(in crate::mock_upstream) fn max_seen(&self) -> u64 {
        self.max_seen.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_stop_at_the_limit_and_come_back_when_dropped() {
        let f = Arc::new(InFlight::new(Some(2)));
        let a = f.enter().unwrap();
        let b = f.enter().unwrap();
        assert!(f.enter().is_none());
        assert_eq!((f.now(), f.max_seen()), (2, 2));
        drop(a);
        let c = f.enter().unwrap();
        drop((b, c));
        assert_eq!((f.now(), f.max_seen()), (0, 2));
    }

    #[test]
    fn without_a_limit_slots_are_only_counted() {
        let f = Arc::new(InFlight::new(None));
        let slots: Vec<Slot> = (0..100).map(|_| f.enter().unwrap()).collect();
        assert_eq!(f.max_seen(), 100);
        drop(slots);
        assert_eq!(f.now(), 0);
    }

    #[test]
    fn concurrent_entries_never_pass_the_limit() {
        let f = Arc::new(InFlight::new(Some(3)));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..2000 {
                        if let Some(slot) = f.enter() {
                            assert!(f.now() <= 3);
                            drop(slot);
                        }
                    }
                });
            }
        });
        assert!(f.max_seen() <= 3, "{}", f.max_seen());
        assert_eq!(f.now(), 0);
    }
}
