//! Scripted scenarios on an injected clock for what the random model test
//! (tests/cluster_model.rs) cannot reach or should pin down exactly: the
//! edges of a slice and of the input and output windows after a settle,
//! each decided by the core and by the scripts alike; and the leases'
//! life, which the core has no clock for: taken by a pick, released at
//! the request's end, renewed while it runs, expired within their TTL when
//! their instance stops renewing them, and cleaned by the next pick; and
//! what an instance admitted alone joining each window its limits keep.

mod redis;

use std::time::Duration;

use redis::Redis;
use switchboard::cluster::shared::{
    AloneSecond, Applied, Counted, DepSpec, Mark, ModelKeys, PickRequest, Picked, Scripts, Terms,
    Windows, lease_name,
};
use switchboard::config::RoutingConfig;
use switchboard::router::{Limits, Need, Pool, Spent, Unavailable};

const TTL: Duration = Duration::from_secs(30);

/// One deployment, `d`, with `limits`, in the core and on a private Redis.
struct Both {
    con: ::redis::aio::MultiplexedConnection,
    scripts: Scripts,
    keys: ModelKeys,
    pool: Pool,
    limits: Limits,
    next: u64,
    _server: Redis,
}

impl Both {
    async fn new(limits: Limits) -> Both {
        let server = Redis::start();
        let client = ::redis::Client::open(server.url()).unwrap();
        let con = client.get_multiplexed_async_connection().await.unwrap();
        let mut pool = Pool::new(RoutingConfig::default());
        pool.push("d".into(), limits, true);
        Both {
            con,
            scripts: Scripts::default(),
            keys: ModelKeys::new("leases", "m"),
            pool,
            limits,
            next: 0,
            _server: server,
        }
    }

    fn spec(&self) -> Vec<DepSpec> {
        vec![DepSpec {
            name: "d".into(),
            weight: 1,
            limits: self.limits,
            enabled: true,
            priority: 1,
        }]
    }

    /// A pick by instance `owner` at `ms` on the scripts' side only.
    async fn shared(&mut self, owner: &str, ms: u64, need: Need) -> (Picked, String) {
        self.next += 1;
        let request = PickRequest {
            need,
            marks: vec![Mark::Open],
            session: None,
            lease: self.next,
            wait: Duration::ZERO,
        };
        let terms = Terms {
            probe_ttl: TTL,
            lease_ttl: TTL,
            owner,
            freed: "{sb:leases}:freed",
        };
        let spec = self.spec();
        let (picked, _) = self
            .scripts
            .pick_many(
                &mut self.con,
                &self.keys,
                Some(ms),
                &spec,
                terms,
                &[request],
                &[],
            )
            .await
            .unwrap();
        (picked[0], lease_name(owner, self.next))
    }

    /// A pick at `ms` both ways, which must agree; where it counted.
    async fn pick(&mut self, ms: u64, need: Need) -> Result<Counted, Unavailable> {
        let local = self.pool.pick(Duration::from_millis(ms), need, &[]);
        let (shared, _) = self.shared("a", ms, need).await;
        match (local, shared) {
            (Ok(l), Picked::Deployment { second, .. }) => {
                assert_eq!(l.reservation.second(), second, "at {ms} ms");
                Ok(Counted::new(second, need, Windows::of(&self.limits)))
            }
            (Err(l), Picked::Unavailable(s)) => {
                assert_eq!(l, s, "at {ms} ms");
                Err(l)
            }
            (l, s) => panic!("at {ms} ms: the core says {l:?}, the scripts {s:?}"),
        }
    }

    async fn settle(&mut self, ms: u64, counted: Counted, spent: Spent) {
        self.pool
            .settle(0, Duration::from_millis(ms), counted.reservation, spent);
        let op = Applied::Settle { counted, spent };
        self.apply(ms, op).await;
    }

    async fn apply(&mut self, ms: u64, op: Applied<'_>) {
        self.scripts
            .apply(&mut self.con, &self.keys, Some(ms), "a", &["d"], &[(0, op)])
            .await
            .unwrap();
    }

    async fn in_flight(&mut self, ms: u64) -> u64 {
        let state = self
            .scripts
            .state(&mut self.con, &self.keys, Some(ms), &[("d", true)])
            .await
            .unwrap();
        state[0].in_flight
    }

    /// A key's PTTL: -2 when it is not there, -1 when it never expires.
    async fn pttl(&mut self, key: &str) -> i64 {
        ::redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut self.con)
            .await
            .unwrap()
    }

    async fn renew(&mut self, ms: u64, leases: &[&str]) {
        let held = vec![("d", leases.iter().map(|l| l.to_string()).collect())];
        self.scripts
            .renew(&mut self.con, &self.keys, Some(ms), TTL, &held)
            .await
            .unwrap();
    }
}

fn retry(why: Result<Counted, Unavailable>) -> Duration {
    match why {
        Err(Unavailable::RateLimited { retry_after }) => retry_after,
        other => panic!("expected a rate limit, got {other:?}"),
    }
}

const T0: u64 = 1_000_000;

#[tokio::test]
async fn a_slice_admits_again_exactly_when_its_oldest_request_leaves_it() {
    // 6 a minute in slices of 10 s: one a slice.
    let mut both = Both::new(Limits {
        rpm: Some(6),
        rpm_slice_s: Some(10),
        ..Limits::default()
    })
    .await;
    both.pick(T0, Need::default()).await.unwrap();
    // The request of second 1000 leaves the slice at 1010: not a ms sooner.
    assert_eq!(
        retry(both.pick(T0 + 9_999, Need::default()).await),
        Duration::from_millis(1)
    );
    both.pick(T0 + 10_000, Need::default()).await.unwrap();
    both.pick(T0 + 20_500, Need::default()).await.unwrap();
    // Still inside the minute's 6, but the slice holds the one of 1020.
    assert_eq!(
        retry(both.pick(T0 + 29_000, Need::default()).await),
        Duration::from_secs(1)
    );
}

#[tokio::test]
async fn a_settle_replaces_the_estimates_in_their_own_second_of_each_window() {
    let mut both = Both::new(Limits {
        input_tpm: Some(1_500),
        output_tpm: Some(600),
        ..Limits::default()
    })
    .await;
    let big = Need {
        input: 1_000,
        output: 500,
    };
    let first = both.pick(T0 + 5_000, big).await.unwrap();
    // Output full (500 of 600): 200 more waits for second 1005 to leave.
    let more = Need {
        input: 100,
        output: 200,
    };
    assert_eq!(
        retry(both.pick(T0 + 10_000, more).await),
        Duration::from_secs(55)
    );
    // Settled to what it used: room at once, and what is left still
    // leaves with second 1005, not with the second of the settle.
    both.settle(
        T0 + 10_000,
        first,
        Spent {
            input: 200,
            output: 100,
        },
    )
    .await;
    both.pick(T0 + 10_000, more).await.unwrap();
    let all = Need {
        input: 1_300,
        output: 0,
    };
    assert_eq!(
        retry(both.pick(T0 + 20_000, all).await),
        Duration::from_secs(45)
    );
    both.pick(T0 + 65_000, all).await.unwrap();
}

#[tokio::test]
async fn a_lease_is_released_at_the_end_and_renewed_while_its_request_runs() {
    let mut both = Both::new(Limits {
        max_in_flight: Some(2),
        ..Limits::default()
    })
    .await;
    let (Picked::Deployment { leased: true, .. }, first) =
        both.shared("a", T0, Need::default()).await
    else {
        panic!("a lease")
    };
    let (_, second) = both.shared("b", T0, Need::default()).await;
    assert!(matches!(
        both.shared("c", T0, Need::default()).await.0,
        Picked::Unavailable(Unavailable::RateLimited { retry_after }) if retry_after == Duration::from_secs(1)
    ));
    // Its end frees the place at once.
    both.apply(T0 + 1, Applied::Release { lease: &first }).await;
    assert_eq!(both.in_flight(T0 + 1).await, 1);
    // A stream longer than the TTL: renewed by its instance, it holds.
    both.renew(T0 + 20_000, &[&second]).await;
    assert_eq!(both.in_flight(T0 + 45_000).await, 1);
    // A renewal after the release does not bring the released one back.
    both.renew(T0 + 21_000, &[&first]).await;
    assert_eq!(both.in_flight(T0 + 21_000).await, 1);
    assert!(matches!(
        both.shared("c", T0 + 49_999, Need::default()).await.0,
        Picked::Deployment { .. }
    ));
    assert_eq!(both.in_flight(T0 + 49_999).await, 2);
    // Not renewed after 20 s: free 30 s later.
    assert_eq!(both.in_flight(T0 + 50_000).await, 1);
}

#[tokio::test]
async fn the_leases_of_an_instance_that_died_come_free_within_their_ttl() {
    let mut both = Both::new(Limits {
        max_in_flight: Some(2),
        ..Limits::default()
    })
    .await;
    // Instance "dead" takes both places and is never heard of again.
    for _ in 0..2 {
        let (picked, _) = both.shared("dead", T0, Need::default()).await;
        assert!(matches!(picked, Picked::Deployment { leased: true, .. }));
    }
    let full = |p: Picked| matches!(p, Picked::Unavailable(Unavailable::RateLimited { .. }));
    assert!(full(
        both.shared("alive", T0 + 29_999, Need::default()).await.0
    ));
    // At its TTL the next pick removes the expired leases before counting.
    let (picked, mine) = both
        .shared("alive", T0 + TTL.as_millis() as u64, Need::default())
        .await;
    assert!(matches!(picked, Picked::Deployment { leased: true, .. }));
    assert_eq!(both.in_flight(T0 + 30_000).await, 1);
    assert!(mine.starts_with("alive:"));
}

#[tokio::test]
async fn what_was_admitted_alone_joins_each_window_its_limits_keep() {
    let limits = Limits {
        tpm: Some(10_000),
        rpm: Some(100),
        input_tpm: Some(5_000),
        ..Limits::default()
    };
    let mut both = Both::new(limits).await;
    both.pick(
        T0,
        Need {
            input: 10,
            output: 5,
        },
    )
    .await
    .unwrap();
    let second = |second: u64| AloneSecond {
        second,
        tokens: 300,
        requests: 2,
        input: 200,
        output: 100,
    };
    // Second 970 has left the windows by second 1030; 1020 has not.
    let seconds = [second(970), second(1_020)];
    both.scripts
        .push(
            &mut both.con,
            &both.keys,
            "d",
            Some(T0 + 30_000),
            Windows::of(&limits),
            &seconds,
        )
        .await
        .unwrap();
    let s = &both
        .scripts
        .state(&mut both.con, &both.keys, Some(T0 + 30_000), &[("d", true)])
        .await
        .unwrap()[0];
    assert_eq!(
        (s.tpm_used, s.rpm_used, s.input_tpm_used, s.output_tpm_used),
        (15 + 300, 1 + 2, 10 + 200, 0),
        "no output window without its limit"
    );
}

/// Every key expires once nobody writes it: a deployment's windows key is
/// given its lifetime when it is made, also by a call in a second whose
/// windows an earlier call moved while the key was not there (an idle
/// deployment's windows moved by a look at the state, then a pick).
#[tokio::test]
async fn a_windows_key_made_within_a_second_already_moved_still_expires() {
    let mut both = Both::new(Limits {
        tpm: Some(1_000_000),
        ..Limits::default()
    })
    .await;
    let key = "{sb:leases:m}:t:d";
    both.in_flight(T0).await;
    assert_eq!(both.pttl(key).await, -2, "nothing counted yet: no key");
    both.shared(
        "a",
        T0 + 10,
        Need {
            input: 10,
            output: 5,
        },
    )
    .await;
    let ttl = both.pttl(key).await;
    assert!(ttl > 0, "the windows key has no lifetime: PTTL {ttl}");
    let ttl = both.pttl("{sb:leases:m}:d").await;
    assert!(ttl > 0, "the state key has no lifetime: PTTL {ttl}");
}
