//! Waiting for room across a cluster: three `switchboard serve` processes
//! sharing one private Redis and one deployment with `max_in_flight = 1`.
//! Instance 0 holds the one place with a slow request; instances 1 and 2
//! each get a request that must wait in its own line. When a place frees
//! on one instance, the others learn it through Redis (the release script
//! publishes on `{sb:<name>}:freed` while some instance marks the model as
//! waited for) and their first in line tries at once, instead of sleeping
//! out the router's 1 s hint for a full `max_in_flight`.
//!
//! Below them, the scripts alone: they mark, and tell, only when they should.
//!
//! The property that proves the wake-up through Redis: each waiter is
//! admitted within [`MARGIN`] of the request before it ending on another
//! instance. Without the publish, the waiters re-try only on their 1 s
//! hints; with 1.2 s answers the hint's phase puts that about 0.8 s after
//! the end, well past the margin (checked by disabling the publish).

mod common;
mod fleet;
mod redis;
mod serve;

use std::time::{Duration, Instant};

use common::mock_with;
use fleet::*;
use futures_util::StreamExt;
use redis::Redis;
use switchboard::cluster::shared::{
    Applied, Counted, DepSpec, Mark, ModelKeys, PickRequest, Picked, Scripts, Terms, Windows,
    lease_name,
};
use switchboard::router::{Limits, Need};

/// How long each answer of the mock takes: longer than the 1 s hint, so
/// that a waiter's hint runs out once before the place frees.
const ANSWER: Duration = Duration::from_millis(1200);
/// The most a waiter may start after the place it waited for freed. Far
/// below the hint (1 s), far above a pub/sub message and a pick (a few
/// ms), for a noisy 2-core box running three gateways, Redis and the test.
const MARGIN: Duration = Duration::from_millis(400);

fn models(m: &switchboard::mock_upstream::MockHandle) -> String {
    format!(
        "[[models]]\nname = \"m\"\nmax_wait_s = 10\n\n{}",
        deployment("a", m, "max_in_flight = 1")
    )
}

/// One request through instance `i`, timed by the test.
struct Timed {
    instance: usize,
    status: u16,
    sent: Instant,
    /// `x-switchboard-queued-ms`, when it waited.
    queued: Option<Duration>,
    done: Instant,
}

impl Timed {
    /// When its deployment took it: sent, then waited in line.
    fn admitted(&self) -> Instant {
        self.sent + self.queued.unwrap_or_default()
    }
}

async fn timed(fleet_url: String, instance: usize) -> Timed {
    let sent = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{fleet_url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let queued = r
        .headers()
        .get("x-switchboard-queued-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| Duration::from_micros((ms * 1000.0) as u64));
    let _ = r.bytes().await;
    Timed {
        instance,
        status,
        sent,
        queued,
        done: Instant::now(),
    }
}

/// How many instances listen for freed capacity (the subscriptions are
/// made in the background at start, and again after Redis came back).
fn listeners(redis: &Redis) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args([
            "-p",
            &redis.port.to_string(),
            "PUBSUB",
            "NUMSUB",
            "{sb:test}:freed",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Instance 0 takes the place; 1 and 2 wait for it; every one is served.
/// Returns, in the order their deployment took them, the three requests.
async fn one_slow_two_waiting(
    fleet: &Fleet,
    m: &switchboard::mock_upstream::MockHandle,
) -> Vec<Timed> {
    let before = m.stats().requests;
    let first = tokio::spawn(timed(fleet.url(0), 0));
    // The place is taken (an event, polled: the mock counts it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while m.stats().in_flight == 0 {
        assert!(
            Instant::now() < deadline,
            "the first request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiting = [
        tokio::spawn(timed(fleet.url(1), 1)),
        tokio::spawn(timed(fleet.url(2), 2)),
    ];
    let mut all = vec![first.await.unwrap()];
    for w in waiting {
        all.push(w.await.unwrap());
    }
    let statuses: Vec<u16> = all.iter().map(|t| t.status).collect();
    assert_eq!(statuses, [200, 200, 200], "every request served, none 429");
    assert!(all[0].queued.is_none(), "the first did not wait");
    assert!(
        all[1..].iter().all(|t| t.queued.is_some()),
        "the others waited in line"
    );
    assert_eq!(m.stats().requests - before, 3);
    all.sort_by_key(Timed::admitted);
    all
}

/// Each request after the first started within [`MARGIN`] of the one
/// before it ending (on another instance).
fn assert_woken_promptly(served: &[Timed], round: &str) {
    for pair in served.windows(2) {
        let (before, next) = (&pair[0], &pair[1]);
        let late = next.admitted().saturating_duration_since(before.done);
        let early = before.done.saturating_duration_since(next.admitted());
        eprintln!(
            "{round}: instance {} admitted {} ms after instance {} ended{}",
            next.instance,
            late.as_millis(),
            before.instance,
            if early.is_zero() {
                String::new()
            } else {
                format!(
                    " ({} ms before its answer reached the test)",
                    early.as_millis()
                )
            }
        );
        assert!(
            late < MARGIN,
            "{round}: instance {} waited {late:?} after instance {}'s request ended \
             (woken by its hint, not through Redis?)",
            next.instance,
            before.instance
        );
        // Admitted no sooner than the place could free: at most the time
        // the answer takes to reach the test before the end is seen.
        assert!(
            early < MARGIN,
            "{round}: admitted {early:?} before the place freed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_other_instances_are_woken_through_redis_when_a_place_frees() {
    let redis = Redis::start();
    let m = mock_with(|o| {
        o.latency_ms = ANSWER.as_millis() as u64;
        o.max_in_flight = Some(1);
    })
    .await;
    let cluster = fleet(3, Some(&redis), &models(&m));
    wait_until("every instance listens for freed places", || {
        listeners(&redis) == 3
    });

    let served = one_slow_two_waiting(&cluster, &m).await;
    assert_eq!(
        m.stats().max_in_flight_seen,
        1,
        "one at a time at the upstream"
    );
    assert_woken_promptly(&served, "first round");
    wait_until("no request in flight in the cluster's view", || {
        cluster.deployment(1, "a")["in_flight"] == 0
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wake_up_comes_back_when_redis_does() {
    let mut redis = Redis::start();
    let m = mock_with(|o| {
        o.latency_ms = ANSWER.as_millis() as u64;
        o.max_in_flight = Some(1);
    })
    .await;
    let cluster = fleet(3, Some(&redis), &models(&m));
    wait_until("every instance listens for freed places", || {
        listeners(&redis) == 3
    });

    // Redis killed and started again, empty: each instance subscribes
    // again by itself.
    redis.restart();
    wait_until("every instance listens again", || listeners(&redis) == 3);
    wait_until("every instance is back in the cluster", || {
        (0..3).all(|i| cluster.state(i)["cluster"]["redis"] == "ok")
    });
    let served = one_slow_two_waiting(&cluster, &m).await;
    assert_eq!(
        m.stats().max_in_flight_seen,
        1,
        "one at a time at the upstream"
    );
    assert_woken_promptly(&served, "after Redis came back");
}

/// The scripts on a private Redis, one deployment `d` with one place in
/// flight and a token limit, the clock injected (the mark's TTL is Redis's own).
struct Scripted {
    con: ::redis::aio::MultiplexedConnection,
    scripts: Scripts,
    keys: ModelKeys,
    next: u64,
}

const CHANNEL: &str = "{sb:q}:freed";
const T0: u64 = 1_000_000;
const NEED: Need = Need {
    input: 10,
    output: 10,
};

impl Scripted {
    fn spec() -> Vec<DepSpec> {
        vec![DepSpec {
            name: "d".into(),
            weight: 1,
            limits: Limits {
                tpm: Some(1000),
                max_in_flight: Some(1),
                ..Limits::default()
            },
            enabled: true,
            priority: 1,
        }]
    }

    /// A pick by instance `owner` for a request that waits `wait` when it
    /// finds no room; with `ops` riding along.
    async fn pick(
        &mut self,
        owner: &str,
        wait: Duration,
        ops: &[(usize, Applied<'_>)],
    ) -> Option<(Counted, String)> {
        self.next += 1;
        let request = PickRequest {
            need: NEED,
            marks: vec![Mark::Open],
            session: None,
            lease: self.next,
            wait,
        };
        let terms = Terms {
            probe_ttl: Duration::from_secs(120),
            lease_ttl: Duration::from_secs(30),
            owner,
            freed: CHANNEL,
        };
        let (picked, _) = self
            .scripts
            .pick_many(
                &mut self.con,
                &self.keys,
                Some(T0),
                &Self::spec(),
                terms,
                &[request],
                ops,
            )
            .await
            .unwrap();
        match picked[0] {
            Picked::Deployment {
                second,
                leased: true,
                ..
            } => Some((
                Counted::new(second, NEED, Windows::of(&Self::spec()[0].limits)),
                lease_name(owner, self.next),
            )),
            _ => None,
        }
    }

    async fn apply(&mut self, owner: &str, op: Applied<'_>) {
        self.scripts
            .apply(
                &mut self.con,
                &self.keys,
                Some(T0),
                owner,
                &["d"],
                &[(0, op)],
            )
            .await
            .unwrap();
    }

    /// The mark's time to live, ms (-2: none).
    async fn mark_ttl(&mut self) -> i64 {
        ::redis::cmd("PTTL")
            .arg(format!("{}:q", self.keys.tag()))
            .query_async(&mut self.con)
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn the_scripts_tell_of_freed_room_only_while_a_request_waits_for_it() {
    let server = Redis::start();
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(CHANNEL).await.unwrap();
    let mut messages = pubsub.into_on_message();
    let mut s = Scripted {
        con: client.get_multiplexed_async_connection().await.unwrap(),
        scripts: Scripts::default(),
        keys: ModelKeys::new("q", "m"),
        next: 0,
    };
    let tag = s.keys.tag().to_string();
    let none = Duration::ZERO;

    // Nobody waits (a request that finds no room but does not wait marks
    // nothing): a release tells no one.
    let (first, lease) = s.pick("a", none, &[]).await.expect("the place");
    assert!(s.pick("b", none, &[]).await.is_none());
    assert_eq!(s.mark_ttl().await, -2, "no mark");
    s.apply("nobody-waits", Applied::Release { lease: &lease })
        .await;

    // A request that will wait marks the model, for its hint (1 s for a
    // place in flight) and a second more.
    let (second, lease) = s.pick("a", none, &[]).await.expect("the place");
    assert!(s.pick("b", Duration::from_secs(10), &[]).await.is_none());
    let ttl = s.mark_ttl().await;
    assert!((1000..=2000).contains(&ttl), "{ttl} ms");
    // A settle that gives nothing back frees nothing: no message.
    let spent = NEED;
    s.apply(
        "nothing-freed",
        Applied::Settle {
            counted: first,
            spent,
        },
    )
    .await;
    // The release does; so does a settle giving tokens back, and a release
    // riding along with a pick.
    s.apply("released", Applied::Release { lease: &lease })
        .await;
    let spent = Need {
        input: 10,
        output: 2,
    };
    s.apply(
        "tokens-back",
        Applied::Settle {
            counted: second,
            spent,
        },
    )
    .await;
    let (_, lease) = s.pick("a", none, &[]).await.expect("the place");
    s.pick(
        "rode-along",
        none,
        &[(0, Applied::Release { lease: &lease })],
    )
    .await
    .expect("the place, freed by the release that rode along");

    let mut told = Vec::new();
    for _ in 0..3 {
        let msg = tokio::time::timeout(Duration::from_secs(5), messages.next())
            .await
            .expect("a message")
            .unwrap();
        told.push(String::from_utf8(msg.get_payload_bytes().to_vec()).unwrap());
    }
    assert_eq!(
        told,
        ["released", "tokens-back", "rode-along"].map(|who| format!("{who} {tag}")),
        "in order, and none from the ops that freed nothing or that nobody waited for"
    );
}
