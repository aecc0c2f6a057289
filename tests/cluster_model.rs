//! The cluster's Lua scripts held to the router core: the same random
//! sequences of picks (with and without sessions, over tiers), settles,
//! verdicts, toggles and clock steps run on a `router::Pool` and on a real
//! Redis (with the same injected clock), and every decision and every
//! deployment's state must agree.

mod redis;

use std::time::Duration;

use proptest::prelude::*;
use redis::Redis;
use switchboard::cluster::shared::{
    Applied, DepSpec, Mark, ModelKeys, PickRequest, Picked, Scripts,
};
use switchboard::config::RoutingConfig;
use switchboard::router::{Pick, Pool, Reservation, SessionKey, Unavailable, Verdict, Want};

const LIMITS: [Option<u64>; 3] = [Some(6_000), Some(3_000), None];

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Pick {
        estimate: u64,
        tried: u8,
        /// Known not to offer the endpoint: tried last.
        avoid: u8,
        session: Option<u8>,
    },
    /// Concurrent requests' picks, batched into one script call, with an
    /// earlier request's settle riding along when `ride`.
    PickMany {
        estimates: Vec<(u64, Option<u8>)>,
        ride: bool,
    },
    /// `ride`: sent as a pick's rider (with no requests), not on its own.
    Settle {
        pick: usize,
        actual: u64,
        ride: bool,
    },
    Record {
        dep: usize,
        verdict: u8,
        hint_ms: Option<u64>,
        ride: bool,
    },
    Toggle {
        dep: usize,
        enabled: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![0u64..1500, Just(61_000u64), 1000u64..20_000].prop_map(Op::Advance),
        5 => (0u64..2500, 0u8..8, prop_oneof![3 => Just(0u8), 1 => 0u8..8], session()).prop_map(|(estimate, tried, avoid, session)| Op::Pick { estimate, tried, avoid: avoid & !tried, session }),
        1 => (prop::collection::vec((0u64..2500, session()), 1..6), any::<bool>()).prop_map(|(estimates, ride)| Op::PickMany { estimates, ride }),
        2 => (0usize..64, 0u64..3000, any::<bool>()).prop_map(|(pick, actual, ride)| Op::Settle { pick, actual, ride }),
        4 => (0usize..3, 0u8..4, prop::option::of(0u64..30_000), any::<bool>()).prop_map(|(dep, verdict, hint_ms, ride)| Op::Record { dep, verdict, hint_ms, ride }),
        1 => (0usize..3, any::<bool>()).prop_map(|(dep, enabled)| Op::Toggle { dep, enabled }),
    ]
}

/// No session half the time, else one of a few.
fn session() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![Just(None), (0u8..4).prop_map(Some)]
}

/// The deployments' tiers: one, two or three.
fn tiers() -> impl Strategy<Value = [u32; 3]> {
    prop_oneof![
        Just([1, 1, 1]),
        Just([1, 1, 2]),
        Just([2, 1, 2]),
        Just([1, 2, 3])
    ]
}

/// Shorter than the clock steps, so that pins expire in the sequences.
const PIN_TTL: Duration = Duration::from_secs(30);

fn want(session: Option<u8>) -> Want {
    Want {
        session: session.map(|s| (SessionKey(u64::from(s) + 1), PIN_TTL)),
    }
}

fn verdict(v: u8, hint_ms: Option<u64>) -> Verdict {
    match v {
        0 => Verdict::Answered,
        1 => Verdict::RateLimited(hint_ms.map(Duration::from_millis)),
        2 => Verdict::Failed,
        _ => Verdict::Abandoned,
    }
}

const NAMES: [&str; 3] = ["east", "west", "local"];
const HOLD: Duration = Duration::from_secs(3600);

/// The deployments as the gateway hands them to the cluster.
fn specs(pool: &mut Pool, now: Duration) -> Vec<DepSpec> {
    pool.statuses(now, HOLD)
        .iter()
        .zip(LIMITS)
        .map(|(s, limit)| DepSpec {
            name: s.name.clone(),
            weight: s.weight,
            limit,
            enabled: true,
            priority: s.priority,
        })
        .collect()
}

/// The same decision, both ways; a pick joins those to settle.
fn compare(
    local: Result<Pick, Unavailable>,
    shared: Picked,
    step: usize,
    op: &Op,
    picks: &mut Vec<(usize, Reservation)>,
) -> Result<(), TestCaseError> {
    match (local, shared) {
        (
            Ok(l),
            Picked::Deployment {
                index,
                second,
                probe,
                repinned_from,
            },
        ) => {
            prop_assert_eq!(
                (l.index, l.probe, l.reservation.second(), l.repinned_from),
                (index, probe, second, repinned_from),
                "step {}: {:?}",
                step,
                op
            );
            picks.push((index, l.reservation));
        }
        (Err(l), Picked::Unavailable(s)) => {
            prop_assert_eq!(format!("{l:?}"), format!("{s:?}"), "step {}", step)
        }
        (l, s) => prop_assert!(false, "step {}: {:?} vs {:?}", step, l, s),
    }
    Ok(())
}

async fn run(
    con: &mut ::redis::aio::MultiplexedConnection,
    case: u64,
    tiers: [u32; 3],
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let scripts = Scripts::default();
    let keys = ModelKeys::new(&format!("model-test-{case}"), "m");
    let policy = RoutingConfig::default();
    let mut pool = Pool::new(policy.clone());
    for ((name, limit), tier) in NAMES.iter().zip(LIMITS).zip(tiers) {
        let i = pool.push((*name).into(), limit, true);
        pool.set_priority(i, tier);
    }
    let mut now_ms = 1_000_000u64;
    let mut picks: Vec<(usize, Reservation)> = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        let now = Duration::from_millis(now_ms);
        match op {
            Op::Advance(ms) => now_ms += ms,
            Op::Pick {
                estimate,
                tried,
                avoid,
                session,
            } => {
                let set =
                    |mask: u8| -> Vec<usize> { (0..3).filter(|i| mask & (1 << i) != 0).collect() };
                // As a flight picks: the ones not offering the endpoint last.
                let local = match pool.pick_for(now, *estimate, &set(tried | avoid), want(*session))
                {
                    Err(_) if *avoid != 0 => {
                        pool.pick_for(now, *estimate, &set(*tried), want(*session))
                    }
                    first => first,
                };
                let marks = (0..3)
                    .map(|i| match (tried & (1 << i) != 0, avoid & (1 << i) != 0) {
                        (true, _) => Mark::Tried,
                        (false, true) => Mark::NotOffering,
                        _ => Mark::Open,
                    })
                    .collect();
                let request = PickRequest {
                    estimate: *estimate,
                    marks,
                    session: want(*session).session,
                };
                let (shared, _) = scripts
                    .pick_many(
                        con,
                        &keys,
                        Some(now_ms),
                        &specs(&mut pool, now),
                        HOLD,
                        &[request],
                        &[],
                    )
                    .await
                    .unwrap();
                compare(local, shared[0], step, op, &mut picks)?;
            }
            Op::PickMany { estimates, ride } => {
                let requests: Vec<PickRequest> = estimates
                    .iter()
                    .map(|(e, s)| PickRequest {
                        estimate: *e,
                        marks: vec![Mark::Open; 3],
                        session: want(*s).session,
                    })
                    .collect();
                // The rider happened first: settled first, both ways.
                let mut riders = Vec::new();
                if *ride && !picks.is_empty() {
                    let (index, reservation) = picks.remove(0);
                    let actual = reservation.tokens() / 2;
                    pool.settle(index, now, reservation, actual);
                    riders.push((
                        index,
                        Applied::Settle {
                            reservation,
                            actual,
                        },
                    ));
                }
                let specs = specs(&mut pool, now);
                let (shared, applied) = scripts
                    .pick_many(con, &keys, Some(now_ms), &specs, HOLD, &requests, &riders)
                    .await
                    .unwrap();
                prop_assert_eq!(shared.len(), estimates.len());
                prop_assert_eq!(applied.len(), riders.len());
                for ((e, session), s) in estimates.iter().zip(shared) {
                    let local = pool.pick_for(now, *e, &[], want(*session));
                    compare(local, s, step, op, &mut picks)?;
                }
            }
            Op::Settle { pick, actual, ride } => {
                if picks.is_empty() {
                    continue;
                }
                let (index, reservation) = picks[pick % picks.len()];
                pool.settle(index, now, reservation, *actual);
                if *ride {
                    let settle = Applied::Settle {
                        reservation,
                        actual: *actual,
                    };
                    scripts
                        .pick_many(
                            con,
                            &keys,
                            Some(now_ms),
                            &specs(&mut pool, now),
                            HOLD,
                            &[],
                            &[(index, settle)],
                        )
                        .await
                        .unwrap();
                } else {
                    scripts
                        .settle(con, &keys, NAMES[index], Some(now_ms), reservation, *actual)
                        .await
                        .unwrap();
                }
                // A reservation settles once.
                picks.remove(pick % picks.len());
            }
            Op::Record {
                dep,
                verdict: v,
                hint_ms,
                ride,
            } => {
                let v = verdict(*v, *hint_ms);
                let local = pool.record(*dep, now, v);
                let shared = if *ride {
                    let record = Applied::Record {
                        verdict: v,
                        policy: &policy,
                    };
                    let specs = specs(&mut pool, now);
                    let (_, mut applied) = scripts
                        .pick_many(
                            con,
                            &keys,
                            Some(now_ms),
                            &specs,
                            HOLD,
                            &[],
                            &[(*dep, record)],
                        )
                        .await
                        .unwrap();
                    applied.pop().flatten()
                } else {
                    scripts
                        .record(con, &keys, NAMES[*dep], Some(now_ms), v, &policy)
                        .await
                        .unwrap()
                };
                prop_assert_eq!(
                    format!("{local:?}"),
                    format!("{shared:?}"),
                    "step {}: {:?}",
                    step,
                    op
                );
            }
            Op::Toggle { dep, enabled } => {
                let local = pool.set_enabled(*dep, *enabled);
                let shared = scripts
                    .toggle(con, &keys, NAMES[*dep], *enabled, true)
                    .await
                    .unwrap();
                prop_assert_eq!(local, shared, "step {}", step);
            }
        }
        // After every step, every deployment looks the same in both.
        let now = Duration::from_millis(now_ms);
        let local = pool.statuses(now, HOLD);
        let deps: Vec<(&str, bool)> = NAMES.iter().map(|n| (*n, true)).collect();
        let shared = scripts
            .state(con, &keys, Some(now_ms), &deps)
            .await
            .unwrap();
        for (l, s) in local.iter().zip(&shared) {
            let local_cooldown = l
                .cooldown_cause
                .map(|c| (c, (l.cooldown_remaining_s * 1000.0).round() as u64));
            let shared_cooldown = s.cooldown.map(|(c, d)| (c, d.as_millis() as u64));
            prop_assert_eq!(
                (
                    l.enabled,
                    l.tpm_used,
                    local_cooldown,
                    l.consecutive_failures,
                    l.requests,
                    l.failures
                ),
                (
                    s.enabled,
                    s.tpm_used,
                    shared_cooldown,
                    s.consecutive_failures,
                    s.requests,
                    s.failures
                ),
                "step {}: {} after {:?}",
                step,
                l.name,
                op
            );
        }
    }
    Ok(())
}

#[test]
fn the_lua_scripts_decide_as_the_router_core_does() {
    let server = Redis::start();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = ::redis::Client::open(server.url()).unwrap();
    let con = rt
        .block_on(client.get_multiplexed_async_connection())
        .unwrap();
    // MultiplexedConnection is a cheap handle: each case clones it.
    let case = std::sync::atomic::AtomicU64::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 200,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(tiers(), prop::collection::vec(op(), 1..80)),
            |(tiers, ops)| {
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut con = con.clone();
                rt.block_on(run(&mut con, n, tiers, &ops))
            },
        )
        .unwrap();
}
