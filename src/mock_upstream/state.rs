//! What every connection shares: options, mode, counters, the limits.
//!
//! The hot path only touches atomics, an `ArcSwap` load and short std
//! mutexes (the last body, the limits' windows) that are never held across
//! an await.

use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use hyper::StatusCode;

use super::limits::Limits;
use super::{MockOptions, MockStats, Mode};

pub(super) struct Shared {
    pub(super) opts: MockOptions,
    mode: ArcSwap<Mode>,
    counters: Counters,
    last_body: Mutex<Option<Bytes>>,
    /// The last API request's path (with its query) and headers.
    last_head: Mutex<Option<(String, hyper::HeaderMap)>>,
    pub(super) limits: Limits,
    /// Feeds ids; ids only need to be unique, not unpredictable.
    id_counter: AtomicU64,
    id_salt: u64,
    /// The fail-rate draws: the n-th draw is a pure function of (seed, n).
    fail_draws: AtomicU64,
    fail_seed: u64,
    /// Vertex: the access tokens issued.
    pub(super) issued: super::vertex::Issued,
    /// Where it listens, once bound (Vertex's token audience).
    pub(super) addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// OpenAI Responses kept for `GET /responses/{id}`.
    pub(super) responses: super::openai::ResponseStore,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    ok: AtomicU64,
    errors: AtomicU64,
    rate_limited: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
}

impl Shared {
    pub(super) fn new(opts: MockOptions) -> Self {
        let limits = Limits::new(&opts);
        let fail_seed = opts.seed.unwrap_or_else(random_u64);
        Shared {
            opts,
            mode: ArcSwap::from_pointee(Mode::Normal),
            counters: Counters::default(),
            last_body: Mutex::new(None),
            last_head: Mutex::new(None),
            limits,
            id_counter: AtomicU64::new(0),
            id_salt: random_u64(),
            fail_draws: AtomicU64::new(0),
            fail_seed,
            issued: Default::default(),
            addr: Default::default(),
            responses: Default::default(),
        }
    }

    pub(super) fn mode(&self) -> Mode {
        Mode::clone(&self.mode.load())
    }

    pub(super) fn current_mode(&self) -> Arc<Mode> {
        self.mode.load_full()
    }

    pub(super) fn set_mode(&self, mode: Mode) {
        self.mode.store(Arc::new(mode));
    }

    pub(super) fn count_request(&self) {
        self.counters.requests.fetch_add(1, Relaxed);
    }

    /// Files an answered request under ok, rate_limited or errors.
    pub(super) fn count_answer(&self, status: StatusCode) {
        let counter = if status.is_success() {
            &self.counters.ok
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            &self.counters.rate_limited
        } else {
            &self.counters.errors
        };
        counter.fetch_add(1, Relaxed);
    }

    /// A connection dropped without an answer counts as an error.
    pub(super) fn count_reset(&self) {
        self.counters.errors.fetch_add(1, Relaxed);
    }

    pub(super) fn count_tokens(&self, prompt: u64, completion: u64) {
        self.counters.prompt_tokens.fetch_add(prompt, Relaxed);
        self.counters
            .completion_tokens
            .fetch_add(completion, Relaxed);
    }

    pub(super) fn record_body(&self, body: &Bytes) {
        // A refcount bump, not a copy: the stats decode it only when asked.
        *self.last_body.lock().unwrap_or_else(|e| e.into_inner()) = Some(body.clone());
    }

    /// The head of the last API request: headers are refcounted bytes,
    /// so this is a few small copies, not a deep one.
    pub(super) fn record_head(&self, uri: &hyper::Uri, headers: &hyper::HeaderMap) {
        let path = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
        *self.last_head.lock().unwrap_or_else(|e| e.into_inner()) = Some((path, headers.clone()));
    }

    pub(super) fn stats(&self) -> MockStats {
        let c = &self.counters;
        let last_body = self
            .last_body
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let (last_path, last_headers) = self
            .last_head
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(path, headers)| (Some(path.clone()), header_map(headers)))
            .unwrap_or_default();
        MockStats {
            last_path,
            last_headers,
            requests: c.requests.load(Relaxed),
            ok: c.ok.load(Relaxed),
            errors: c.errors.load(Relaxed),
            rate_limited: c.rate_limited.load(Relaxed),
            prompt_tokens: c.prompt_tokens.load(Relaxed),
            completion_tokens: c.completion_tokens.load(Relaxed),
            last_model: last_body.as_deref().and_then(model_of),
            last_body: last_body.map(|b| String::from_utf8_lossy(&b).into_owned()),
            token_requests: self.issued.requests.load(Relaxed),
            rate_limited_by: self.limits.refused(),
            in_flight: self.limits.in_flight.now(),
            max_in_flight_seen: self.limits.in_flight.max_seen(),
        }
    }

    /// Draws whether this request fails under `--fail-rate`.
    pub(super) fn draw_failure(&self) -> bool {
        let rate = self.opts.fail_rate;
        if rate <= 0.0 {
            return false;
        }
        if rate >= 1.0 {
            return true;
        }
        let n = self.fail_draws.fetch_add(1, Relaxed);
        unit_f64(splitmix64(self.fail_seed, n)) < rate
    }

    fn next_random(&self) -> u64 {
        splitmix64(self.id_salt, self.id_counter.fetch_add(1, Relaxed))
    }

    /// `req_` and 32 hex digits, like OpenAI's `x-request-id`.
    pub(super) fn request_id(&self) -> String {
        let mut id = String::with_capacity(36);
        let _ = write!(
            id,
            "req_{:016x}{:016x}",
            self.next_random(),
            self.next_random()
        );
        id
    }

    /// `prefix` and 29 base-62 characters, like "chatcmpl-B9MBs8Cjcv…".
    pub(super) fn completion_id(&self, prefix: &str) -> String {
        const ALPHABET: &[u8; 62] =
            b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut id = String::with_capacity(prefix.len() + 29);
        id.push_str(prefix);
        let mut bits = 0;
        for i in 0..29 {
            // 10 base-62 digits use 60 of the 64 bits of a draw.
            if i % 10 == 0 {
                bits = self.next_random();
            }
            id.push(char::from(ALPHABET[(bits % 62) as usize]));
            bits /= 62;
        }
        id
    }
}

/// Headers by lower-case name, repeated ones joined with ", ".
fn header_map(headers: &hyper::HeaderMap) -> std::collections::BTreeMap<String, String> {
    let mut map = std::collections::BTreeMap::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        map.insert(name.as_str().to_string(), values.join(", "));
    }
    map
}

/// The `model` field of a request body, if it is JSON with a string model.
pub(super) fn model_of(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    serde_json::from_slice::<ModelOnly>(body).ok()?.model
}

/// The n-th output of SplitMix64 seeded with `seed`: cheap, stateless and
/// well mixed, so concurrent draws need no lock.
pub(super) fn splitmix64(seed: u64, n: u64) -> u64 {
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from the top 53 bits.
pub(super) fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// A per-process random value from std's randomly keyed hasher; never fails.
fn random_u64() -> u64 {
    std::collections::hash_map::RandomState::new().hash_one(0x6d6f_636b_u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(fail_rate: f64, seed: u64) -> Shared {
        let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
        opts.fail_rate = fail_rate;
        opts.seed = Some(seed);
        Shared::new(opts)
    }

    #[test]
    fn fail_draws_follow_the_rate_and_the_seed() {
        let a = shared(0.25, 42);
        let b = shared(0.25, 42);
        let draws_a: Vec<bool> = (0..4000).map(|_| a.draw_failure()).collect();
        let draws_b: Vec<bool> = (0..4000).map(|_| b.draw_failure()).collect();
        assert_eq!(draws_a, draws_b, "the same seed gives the same draws");
        let failures = draws_a.iter().filter(|&&f| f).count();
        assert!(
            (850..1150).contains(&failures),
            "{failures} failures out of 4000 at 25%"
        );
        let c = shared(0.25, 43);
        let draws_c: Vec<bool> = (0..4000).map(|_| c.draw_failure()).collect();
        assert_ne!(draws_a, draws_c);
    }

    #[test]
    fn fail_rate_bounds_are_exact() {
        let never = shared(0.0, 1);
        let always = shared(1.0, 1);
        assert!((0..1000).all(|_| !never.draw_failure()));
        assert!((0..1000).all(|_| always.draw_failure()));
    }

    #[test]
    fn ids_look_like_openai_ids() {
        let s = shared(0.0, 1);
        let id = s.completion_id("chatcmpl-");
        assert_eq!(id.len(), "chatcmpl-".len() + 29);
        assert!(
            id["chatcmpl-".len()..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric())
        );
        assert_ne!(id, s.completion_id("chatcmpl-"));
        let rid = s.request_id();
        assert_eq!(rid.len(), 36);
        assert!(rid.starts_with("req_"));
    }

    #[test]
    fn last_model_comes_from_the_last_body() {
        let s = shared(0.0, 1);
        assert_eq!(s.stats().last_model, None);
        s.record_body(&Bytes::from_static(br#"{"model":"gpt-4o","messages":[]}"#));
        let stats = s.stats();
        assert_eq!(stats.last_model.as_deref(), Some("gpt-4o"));
        assert_eq!(
            stats.last_body.as_deref(),
            Some(r#"{"model":"gpt-4o","messages":[]}"#)
        );
        s.record_body(&Bytes::from_static(b"not json"));
        assert_eq!(s.stats().last_model, None);
    }
}
