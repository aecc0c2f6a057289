//! Waiting for room (CONTRACT.md, "Capacity"): a model's requests that no
//! deployment can take now, when room is due soon enough, wait in line
//! instead of getting a 429.
//!
//! First in, first out: only the head of the line tries for room, so a
//! newcomer never overtakes a request that waited; when the head gets its
//! deployment (or leaves), the next one tries at once. The head sleeps until
//! the soonest moment the router says room is due, or until something frees
//! room earlier (a request ends, a settle returns tokens, a deployment comes
//! back): [`Queue::kick`], or, in a cluster, room freed on another instance
//! ([`Queue::wake`], see `cluster::freed`). A client that goes away drops
//! its place, and the line moves on.
//!
//! Nothing here runs for a model whose line is empty beyond one atomic read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// One model's line of waiting requests.
#[derive(Debug, Default)]
pub struct Queue {
    /// Places in line; read before any lock on every request.
    len: AtomicUsize,
    line: Mutex<Line>,
    /// Room may have freed: wakes the head.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Line {
    next_id: u64,
    places: VecDeque<Entry>,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    since: Instant,
    /// Wakes this place when it becomes the head.
    turn: Arc<Notify>,
}

/// A request's place in line; leaving (dropping it) lets the next one on.
#[derive(Debug)]
pub struct Place<'a> {
    queue: &'a Queue,
    id: u64,
    turn: Arc<Notify>,
    pub since: Instant,
}

impl Queue {
    /// Nobody waits.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len.load(Ordering::Acquire) == 0
    }

    /// How many wait, and how long the first has.
    pub fn snapshot(&self) -> (usize, Option<Duration>) {
        let line = self.lock();
        (
            line.places.len(),
            line.places.front().map(|e| e.since.elapsed()),
        )
    }

    /// Room may have freed: the head tries again now.
    #[inline]
    pub fn kick(&self) {
        if !self.is_empty() {
            self.changed.notify_one();
        }
    }

    /// Room freed on another instance of the cluster: the head tries again
    /// now. Unlike [`Queue::kick`], kept for the next head even when nobody
    /// waits yet: a request whose pick just found no room may not have
    /// joined the line when the message comes. At worst that costs one
    /// early try; messages come only while some instance waits.
    pub fn wake(&self) {
        self.changed.notify_one();
    }

    /// A place at the end of the line; `None` when `max` already wait.
    pub fn join(&self, max: usize) -> Option<Place<'_>> {
        let mut line = self.lock();
        if line.places.len() >= max {
            return None;
        }
        line.next_id += 1;
        let id = line.next_id;
        let turn = Arc::new(Notify::new());
        let since = Instant::now();
        line.places.push_back(Entry {
            id,
            since,
            turn: turn.clone(),
        });
        self.len.store(line.places.len(), Ordering::Release);
        Some(Place {
            queue: self,
            id,
            turn,
            since,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Line> {
        self.line.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Place<'_> {
    fn is_head(&self) -> bool {
        self.queue
            .lock()
            .places
            .front()
            .is_some_and(|e| e.id == self.id)
    }

    /// Waits until this place is the head of the line.
    pub async fn turn(&self) {
        while !self.is_head() {
            // A wake-up between the check and here is kept as a permit.
            self.turn.notified().await;
        }
    }

    /// At the head: waits until room is due (`hint`) or something frees
    /// room sooner.
    pub async fn room(&self, hint: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(hint) => {}
            _ = self.queue.changed.notified() => {}
        }
    }

    /// How long it has waited.
    pub fn waited(&self) -> Duration {
        self.since.elapsed()
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut line = self.queue.lock();
        let was_head = line.places.front().is_some_and(|e| e.id == self.id);
        line.places.retain(|e| e.id != self.id);
        self.queue.len.store(line.places.len(), Ordering::Release);
        if was_head && let Some(next) = line.places.front() {
            next.turn.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_take_turns_in_order_and_leaving_moves_the_line() {
        let q = Queue::default();
        assert!(q.is_empty());
        let a = q.join(3).unwrap();
        let b = q.join(3).unwrap();
        let c = q.join(3).unwrap();
        assert!(q.join(3).is_none(), "bounded");
        assert_eq!(q.snapshot().0, 3);
        a.turn().await;
        // b is not the head while a waits.
        assert!(
            tokio::time::timeout(Duration::from_millis(20), b.turn())
                .await
                .is_err()
        );
        // c's client goes away: b is still next.
        drop(c);
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), b.turn())
            .await
            .expect("b is the head once a leaves");
        drop(b);
        assert!(q.is_empty());
        assert_eq!(q.snapshot(), (0, None));
    }

    #[tokio::test]
    async fn a_wake_before_anyone_waits_is_kept_for_the_first_head() {
        let q = Queue::default();
        q.kick();
        q.wake();
        let p = q.join(10).unwrap();
        p.turn().await;
        tokio::time::timeout(Duration::from_secs(5), p.room(Duration::from_secs(3600)))
            .await
            .expect("the wake was kept");
        // Kept once: the next wait is for its hint (or a new kick).
        assert!(
            tokio::time::timeout(Duration::from_millis(20), p.room(Duration::from_secs(3600)))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_kick_wakes_the_head_before_its_hint() {
        let q = Arc::new(Queue::default());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                let p = q.join(10).unwrap();
                p.turn().await;
                p.room(Duration::from_secs(3600)).await;
            })
        };
        while q.is_empty() {
            tokio::task::yield_now().await;
        }
        q.kick();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the kick")
            .unwrap();
    }
}
