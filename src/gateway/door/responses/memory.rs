//! Which deployment produced each response: a request that continues one
//! (`previous_response_id`) must go where its state is. Bounded and timed:
//! an entry lives `TTL` after its response and the oldest go first past
//! `CAPACITY`; responses made with `store: false` (Codex's) are not kept,
//! since no upstream keeps them either.
//!
//! This is one instance's memory. In a cluster (`[cluster]`) each id is
//! also written to Redis (`cluster::responses`): a key
//! `{sb:<name>}:r:<id>` with the same `TTL`, and an index that holds the
//! newest `CAPACITY` of the whole cluster, the oldest deleted past it. A
//! whole stored answer is written before it goes (a follow-up may come
//! through another instance at once); a stream's id off the path, when
//! its first output event passes, long before the stream ends. A request that names
//! a response (`previous_response_id`, `GET` / `DELETE
//! /v1/responses/{id}`, …) looks here first and asks Redis (one GET) only
//! when the id is not known here; a DELETE forgets it in both. When Redis
//! is away, noting is lost for the others and looking up is this memory
//! alone (said in the debug log): an id unknown here is then treated as
//! unknown, as without a cluster.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a response is remembered: the providers keep stored responses
/// for 30 days; a conversation resumed after a day is rare enough.
pub const TTL: Duration = Duration::from_secs(24 * 3600);
/// The most responses remembered.
pub const CAPACITY: usize = 100_000;

/// Who produced a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub model: Arc<str>,
    pub deployment: Arc<str>,
}

#[derive(Debug, Default)]
pub struct Memory {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// foldhash (seeded per process) rather than SipHash: an insert on
    /// every stored answer.
    by_id: HashMap<Arc<str>, (Producer, Duration), foldhash::fast::RandomState>,
    /// Ids in the order they were noted, with the time each entry ends
    /// (eviction reads it here, without a lookup); the same allocation as
    /// the map's key.
    order: VecDeque<(Arc<str>, Duration)>,
}

impl Memory {
    /// Notes that `deployment` of `model` produced response `id` at `now`
    /// (the gateway's clock).
    pub fn note(&self, id: &str, producer: Producer, now: Duration) {
        let until = now + TTL;
        let key: Arc<str> = Arc::from(id);
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // An id noted again keeps its first place in the line, with the
        // later end: it is checked against the map when it comes up.
        if inner.by_id.insert(key.clone(), (producer, until)).is_none() {
            inner.order.push_back((key, until));
        }
        // Expired first, then the oldest past the bound.
        while let Some((oldest, noted_until)) = inner.order.front() {
            let over = inner.by_id.len() > CAPACITY;
            if !over && *noted_until > now {
                break;
            }
            let oldest = oldest.clone();
            inner.order.pop_front();
            // Forgotten or noted again since: only an entry still due goes.
            let due = inner
                .by_id
                .get(&oldest)
                .is_some_and(|(_, until)| over || *until <= now);
            if due {
                inner.by_id.remove(&oldest);
            } else if let Some((_, until)) = inner.by_id.get(&oldest) {
                // Noted again: back in line with its new end.
                let until = *until;
                inner.order.push_back((oldest, until));
            }
        }
    }

    /// Who produced `id`, if it is remembered and not expired at `now`.
    pub fn producer(&self, id: &str, now: Duration) -> Option<Producer> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner
            .by_id
            .get(id)
            .filter(|(_, until)| *until > now)
            .map(|(p, _)| p.clone())
    }

    pub fn forget(&self, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.by_id.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(d: &str) -> Producer {
        Producer {
            model: "m".into(),
            deployment: d.into(),
        }
    }

    #[test]
    fn remembers_until_its_time_runs_out() {
        let m = Memory::default();
        let t0 = Duration::from_secs(100);
        m.note("resp_1", p("eastus"), t0);
        assert_eq!(m.producer("resp_1", t0 + TTL / 2), Some(p("eastus")));
        assert_eq!(m.producer("resp_1", t0 + TTL), None);
        assert_eq!(m.producer("resp_2", t0), None);
        m.forget("resp_1");
        assert_eq!(m.producer("resp_1", t0), None);
    }

    #[test]
    fn the_oldest_go_first_past_the_bound() {
        let m = Memory::default();
        let t = Duration::from_secs(1);
        for i in 0..CAPACITY + 10 {
            m.note(&format!("resp_{i}"), p("d"), t);
        }
        assert_eq!(m.producer("resp_0", t), None);
        assert_eq!(m.producer("resp_9", t), None);
        assert!(m.producer("resp_10", t).is_some());
        assert!(m.producer(&format!("resp_{}", CAPACITY + 9), t).is_some());
    }
}
