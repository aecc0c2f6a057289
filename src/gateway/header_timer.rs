//! hyper's header-read timeout, kept off tokio's timer wheel.
//!
//! hyper arms the timeout anew for every request on a connection (it drops
//! the sleep once the head is read). With tokio's timer that is a wheel entry
//! registered and removed per request, and, whenever the new deadline is
//! earlier than the one the driver last slept towards, a write to the
//! runtime's eventfd to wake a driver that is not asleep (tokio-rs/tokio#5207):
//! 0.24 extra syscalls a request under load, two (the write and the
//! `epoll_wait` it causes) after every request at a low rate.
//!
//! Here a serving thread keeps its connections' deadlines on one shelf: a
//! sleep takes a slot when first polled and gives it back when dropped, and
//! one sweeper task per thread sleeps until the earliest deadline on the
//! shelf and wakes the connections whose time is up. Every connection's
//! timeout is the same length, so a new deadline is almost never earlier
//! than the sweeper's next wake, and the sweeper's one tokio timer is
//! re-armed about once per timeout, not once per request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// The longest the sweeper sleeps. tokio writes to its own eventfd whenever
/// a timer is registered earlier than the driver's next wake (#5207); with
/// no timer pending that wake is "never", so the first timer of every
/// request (its attempt's deadline) cost a write and a wake-up, once the
/// header deadlines that kept a timer pending went with hyper's server
/// (`front`). A sweeper never further off than this keeps the next wake
/// near for every timeout of 10 s or more: at rest, one wake-up each 10 s
/// per serving thread.
const NEAR: Duration = Duration::from_secs(10);

/// One serving thread's deadlines.
#[derive(Default)]
pub(super) struct Shelf {
    inner: Mutex<Slots>,
    /// Wakes the sweeper for a deadline earlier than its next wake.
    nudge: Notify,
}

#[derive(Default)]
struct Slots {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    /// When the sweeper looks next; `None` while it waits for a first entry.
    next_sweep: Option<Instant>,
}

struct Entry {
    deadline: Instant,
    waker: Waker,
    fired: bool,
}

impl Shelf {
    fn slots(&self) -> MutexGuard<'_, Slots> {
        // A panic while the lock was held cannot leave the slots half
        // updated (each change is one assignment): go on with them.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the connections whose deadline has passed; returns the
    /// earliest deadline still waiting.
    fn sweep(&self, now: Instant) -> Option<Instant> {
        let mut s = self.slots();
        let mut next: Option<Instant> = None;
        for entry in s.slots.iter_mut().flatten() {
            if entry.fired {
                continue;
            }
            if entry.deadline <= now {
                entry.fired = true;
                entry.waker.wake_by_ref();
            } else if next.is_none_or(|n| entry.deadline < n) {
                next = Some(entry.deadline);
            }
        }
        s.next_sweep = next;
        next
    }

    /// The sweeper: runs on the serving thread's runtime as long as it does.
    /// It sleeps [`NEAR`] at most, deadlines or not: see there.
    pub(super) async fn run(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let near = now + NEAR;
            let at = self.sweep(now).map_or(near, |at| at.min(near));
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                _ = self.nudge.notified() => {}
            }
        }
    }
}

/// hyper's [`hyper::rt::Timer`] over a [`Shelf`].
#[derive(Clone)]
pub(super) struct HeaderTimer(pub(super) Arc<Shelf>);

impl hyper::rt::Timer for HeaderTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_until(Instant::now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ShelfSleep {
            shelf: self.0.clone(),
            deadline,
            slot: None,
        })
    }
}

struct ShelfSleep {
    shelf: Arc<Shelf>,
    deadline: Instant,
    slot: Option<usize>,
}

impl hyper::rt::Sleep for ShelfSleep {}

impl Future for ShelfSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        let mut s = this.shelf.slots();
        if let Some(i) = this.slot
            && let Some(entry) = &mut s.slots[i]
        {
            if entry.fired {
                return Poll::Ready(());
            }
            if !entry.waker.will_wake(cx.waker()) {
                entry.waker = cx.waker().clone();
            }
            return Poll::Pending;
        }
        let entry = Some(Entry {
            deadline: this.deadline,
            waker: cx.waker().clone(),
            fired: false,
        });
        let i = match s.free.pop() {
            Some(i) => {
                s.slots[i] = entry;
                i
            }
            None => {
                s.slots.push(entry);
                s.slots.len() - 1
            }
        };
        this.slot = Some(i);
        if s.next_sweep.is_none_or(|n| this.deadline < n) {
            s.next_sweep = Some(this.deadline);
            drop(s);
            this.shelf.nudge.notify_one();
        }
        Poll::Pending
    }
}

impl Drop for ShelfSleep {
    fn drop(&mut self) {
        if let Some(i) = self.slot.take() {
            let mut s = self.shelf.slots();
            s.slots[i] = None;
            s.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn a_sleep_fires_once_its_deadline_is_swept_and_not_before() {
        let shelf = Arc::new(Shelf::default());
        let timer = HeaderTimer(shelf.clone());
        let start = Instant::now();
        let mut sleep = timer.sleep_until(start + Duration::from_secs(30));
        let mut cx = noop_cx();
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            shelf.slots().next_sweep,
            Some(start + Duration::from_secs(30))
        );
        assert_eq!(
            shelf.sweep(start + Duration::from_secs(29)),
            Some(start + Duration::from_secs(30))
        );
        assert!(sleep.as_mut().poll(&mut cx).is_pending());
        assert_eq!(shelf.sweep(start + Duration::from_secs(30)), None);
        assert!(sleep.as_mut().poll(&mut cx).is_ready());
    }

    #[test]
    fn a_dropped_sleep_gives_its_slot_back() {
        let shelf = Arc::new(Shelf::default());
        let timer = HeaderTimer(shelf.clone());
        let at = Instant::now() + Duration::from_secs(5);
        let mut cx = noop_cx();
        for _ in 0..1000 {
            let mut sleep = timer.sleep_until(at);
            assert!(sleep.as_mut().poll(&mut cx).is_pending());
        }
        let s = shelf.slots();
        assert_eq!(s.slots.len(), 1, "one slot, reused by every request");
        assert!(s.slots[0].is_none());
    }

    #[test]
    fn an_earlier_deadline_moves_the_next_sweep() {
        let shelf = Arc::new(Shelf::default());
        let timer = HeaderTimer(shelf.clone());
        let now = Instant::now();
        let mut cx = noop_cx();
        let mut late = timer.sleep_until(now + Duration::from_secs(30));
        assert!(late.as_mut().poll(&mut cx).is_pending());
        let mut early = timer.sleep_until(now + Duration::from_millis(300));
        assert!(early.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            shelf.slots().next_sweep,
            Some(now + Duration::from_millis(300))
        );
        assert_eq!(
            shelf.sweep(now + Duration::from_millis(300)),
            Some(now + Duration::from_secs(30))
        );
        assert!(early.as_mut().poll(&mut cx).is_ready());
        assert!(late.as_mut().poll(&mut cx).is_pending());
    }
}
