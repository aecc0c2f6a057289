//! Session pins: which deployment served a session's last request.
//!
//! A provider's prompt cache belongs to one account and region, so the turns
//! of one conversation should keep going where the first went. A pin lives
//! until its session has been idle for the model's TTL; their number is
//! bounded, and when the table is full of live pins the least recently used
//! one goes. Sessions are known by a 64-bit hash of their key: the client's
//! session ids never sit in memory (or Redis) longer than a request.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Pins kept per model at most (about 2 MB of table).
pub const MAX_PINS: usize = 65_536;

/// A session, as the router knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub u64);

impl SessionKey {
    /// The same key for the same text in every instance of a cluster: a
    /// fixed-seed hash, not a per-process random one.
    pub fn of(text: &str) -> SessionKey {
        let mut h = foldhash::fast::FixedState::with_seed(0x5b17_c4a3_e1d2_9f07).build_hasher();
        h.write(text.as_bytes());
        SessionKey(h.finish())
    }
}

#[derive(Debug, Clone, Copy)]
struct Pin {
    index: usize,
    last: Duration,
    /// The session's recent tokens, fading linearly to nothing over a
    /// minute: for a steady session about half its last minute's tokens.
    tokens: u64,
}

/// A pinned session: where it goes and how heavy it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    pub index: usize,
    /// Its tokens of about the last minute (see [`fade`]).
    pub tokens: u64,
}

/// `tokens` counted `ago` earlier, faded: linearly to nothing over a
/// minute, in integers so that the cluster's Lua computes the same.
pub fn fade(tokens: u64, ago: Duration) -> u64 {
    const MINUTE_MS: u128 = 60_000;
    let ago = ago.as_millis();
    if ago >= MINUTE_MS {
        return 0;
    }
    (u128::from(tokens) * (MINUTE_MS - ago) / MINUTE_MS) as u64
}

#[derive(Debug, Clone, Default)]
pub struct Pins {
    /// Rehashed with a per-process seed: the keys come from a fixed-seed
    /// hash of what clients send, which a client could aim at one bucket.
    map: HashMap<SessionKey, Pin, foldhash::fast::RandomState>,
}

impl Pins {
    /// The deployment the session is pinned to, if its pin is still alive,
    /// with its tokens faded to `now`.
    pub fn get(&self, key: SessionKey, now: Duration, ttl: Duration) -> Option<Pinned> {
        self.map
            .get(&key)
            .filter(|p| now.saturating_sub(p.last) < ttl)
            .map(|p| Pinned {
                index: p.index,
                tokens: fade(p.tokens, now.saturating_sub(p.last)),
            })
    }

    /// Pins the session to `index` as of `now`, with `tokens` of late.
    pub fn set(
        &mut self,
        key: SessionKey,
        index: usize,
        now: Duration,
        ttl: Duration,
        tokens: u64,
    ) {
        if self.map.len() >= MAX_PINS && !self.map.contains_key(&key) {
            self.make_room(now, ttl);
        }
        self.map.insert(
            key,
            Pin {
                index,
                last: now,
                tokens,
            },
        );
    }

    /// Drops the pins to a deployment that left (its sessions go elsewhere).
    pub fn forget(&mut self, index: usize) {
        self.map.retain(|_, p| p.index != index);
    }

    /// Live pins per deployment index (`len` entries).
    pub fn counts(&mut self, len: usize, now: Duration, ttl: Duration) -> Vec<u32> {
        self.map.retain(|_, p| now.saturating_sub(p.last) < ttl);
        let mut counts = vec![0u32; len];
        for p in self.map.values() {
            if let Some(c) = counts.get_mut(p.index) {
                *c += 1;
            }
        }
        counts
    }

    /// Expired pins go first; when that is not enough, the eighth idle
    /// longest. Both are a pass over the table, so they make room for many
    /// sessions at once: a client sending a new session id with every
    /// request costs a pass per 8,192 of them, not one each.
    #[cold]
    fn make_room(&mut self, now: Duration, ttl: Duration) {
        self.map.retain(|_, p| now.saturating_sub(p.last) < ttl);
        if self.map.len() < MAX_PINS - MAX_PINS / 8 {
            return;
        }
        let mut lasts: Vec<Duration> = self.map.values().map(|p| p.last).collect();
        let cut = lasts.len() / 8;
        let (_, threshold, _) = lasts.select_nth_unstable(cut);
        let threshold = *threshold;
        self.map.retain(|_, p| p.last > threshold);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: u64) -> Duration {
        Duration::from_secs(v)
    }

    #[test]
    fn a_pin_expires_after_its_ttl_of_idleness() {
        let mut pins = Pins::default();
        let k = SessionKey::of("conversation-1");
        pins.set(k, 2, s(0), s(300), 10);
        assert_eq!(pins.get(k, s(299), s(300)).map(|p| p.index), Some(2));
        pins.set(k, 2, s(299), s(300), 10);
        assert_eq!(
            pins.get(k, s(598), s(300)).map(|p| p.index),
            Some(2),
            "a use renews it"
        );
        assert_eq!(pins.get(k, s(599), s(300)), None);
    }

    #[test]
    fn the_table_is_bounded_and_the_longest_idle_go_first_an_eighth_at_a_time() {
        let mut pins = Pins::default();
        for i in 0..MAX_PINS as u64 {
            pins.set(SessionKey(i), 0, Duration::from_millis(i + 1), s(3600), 0);
        }
        pins.set(SessionKey(u64::MAX), 1, s(100), s(3600), 0);
        assert!(pins.len() <= MAX_PINS - MAX_PINS / 8 + 1, "{}", pins.len());
        let at = |k| pins.get(SessionKey(k), s(100), s(3600)).map(|p| p.index);
        assert_eq!(at(0), None, "the longest idle went");
        assert_eq!(at(MAX_PINS as u64 / 8 - 1), None);
        assert_eq!(at(MAX_PINS as u64 / 8 + 1), Some(0), "the rest stayed");
        assert_eq!(at(MAX_PINS as u64 - 1), Some(0));
        assert_eq!(at(u64::MAX), Some(1));
    }

    #[test]
    fn a_sessions_tokens_fade_over_a_minute() {
        assert_eq!(fade(6000, Duration::ZERO), 6000);
        assert_eq!(fade(6000, s(15)), 4500);
        assert_eq!(fade(6000, Duration::from_millis(59_999)), 0);
        assert_eq!(fade(6000, s(60)), 0);
        let mut pins = Pins::default();
        let k = SessionKey(9);
        pins.set(k, 1, s(0), s(300), 1000);
        assert_eq!(
            pins.get(k, s(30), s(300)),
            Some(Pinned {
                index: 1,
                tokens: 500
            })
        );
    }

    #[test]
    fn keys_hash_the_same_everywhere() {
        assert_eq!(SessionKey::of("abc"), SessionKey::of("abc"));
        assert_ne!(SessionKey::of("abc"), SessionKey::of("abd"));
    }
}
