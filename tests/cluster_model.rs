//! The cluster's Lua functions held to the router core: the same random
//! sequences of picks (with and without sessions, over tiers), settles,
//! undos, ends of requests, verdicts, toggles and clock steps run on a
//! `router::Pool` and on a real Redis (with the same injected clock), over
//! deployments with a TPM limit only or with every kind of limit (requests
//! with and without slices, input and output windows, requests in flight),
//! and every decision and every deployment's state must agree. The same
//! Lua called as scripts (EVALSHA, for Redis < 7) is held to it too.

mod redis;
#[path = "cluster_model/run.rs"]
mod run;

use std::time::Duration;

use proptest::prelude::*;
use redis::Redis;
use run::Run;
use switchboard::cluster::shared::{DepSpec, ModelKeys, Scripts, Terms};
use switchboard::config::RoutingConfig;
use switchboard::router::{Limits, Need, Pool, SessionKey, Verdict, Want};

/// The deployments' limits: a TPM limit only (or none), as before capacity;
/// or every kind of limit, spread so that each deployment has some.
const PROFILES: [[Limits; 3]; 3] = [
    [tpm(6_000), tpm(3_000), NONE],
    [
        // 12 a minute, at most 2 in any 10 s.
        Limits {
            tpm: Some(6_000),
            rpm: Some(12),
            rpm_slice_s: Some(10),
            ..NONE
        },
        Limits {
            input_tpm: Some(3_000),
            output_tpm: Some(1_500),
            max_in_flight: Some(2),
            ..NONE
        },
        // 30 a minute, at most 1 in any second.
        Limits {
            rpm: Some(30),
            rpm_slice_s: Some(1),
            max_in_flight: Some(3),
            ..NONE
        },
    ],
    [
        Limits {
            rpm: Some(8),
            max_in_flight: Some(1),
            ..NONE
        },
        Limits {
            tpm: Some(3_000),
            output_tpm: Some(800),
            ..NONE
        },
        NONE,
    ],
];

const NONE: Limits = Limits {
    tpm: None,
    rpm: None,
    rpm_slice_s: None,
    input_tpm: None,
    output_tpm: None,
    max_in_flight: None,
};

const fn tpm(limit: u64) -> Limits {
    Limits {
        tpm: Some(limit),
        ..NONE
    }
}

#[derive(Debug, Clone)]
enum Op {
    Advance(u64),
    Pick {
        need: (u64, u64),
        tried: u8,
        /// Known not to offer the endpoint: tried last.
        avoid: u8,
        session: Option<u8>,
    },
    /// Concurrent requests' picks, batched into one script call, with an
    /// earlier request's settle and end riding along when `ride`.
    PickMany {
        needs: Vec<((u64, u64), Option<u8>)>,
        ride: bool,
    },
    /// `ride`: sent as a pick's rider (with no requests), not on its own.
    /// `end`: the request ends with it (an answer read whole).
    Settle {
        pick: usize,
        spent: (u64, u64),
        end: bool,
        ride: bool,
    },
    /// The request ends without a settle (its client went away).
    End {
        pick: usize,
        ride: bool,
    },
    /// The request was never sent.
    Undo {
        pick: usize,
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

fn need() -> impl Strategy<Value = (u64, u64)> {
    (0u64..2000, prop_oneof![Just(0u64), 0u64..1200])
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop_oneof![0u64..1500, Just(61_000u64), 1000u64..20_000].prop_map(Op::Advance),
        5 => (need(), 0u8..8, prop_oneof![3 => Just(0u8), 1 => 0u8..8], session()).prop_map(|(need, tried, avoid, session)| Op::Pick { need, tried, avoid: avoid & !tried, session }),
        1 => (prop::collection::vec((need(), session()), 1..6), any::<bool>()).prop_map(|(needs, ride)| Op::PickMany { needs, ride }),
        2 => (0usize..64, (0u64..2500, 0u64..1500), any::<bool>(), any::<bool>()).prop_map(|(pick, spent, end, ride)| Op::Settle { pick, spent, end, ride }),
        2 => (0usize..64, any::<bool>()).prop_map(|(pick, ride)| Op::End { pick, ride }),
        1 => (0usize..64, any::<bool>()).prop_map(|(pick, ride)| Op::Undo { pick, ride }),
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

fn need_of((input, output): (u64, u64)) -> Need {
    Need { input, output }
}

const NAMES: [&str; 3] = ["east", "west", "local"];
const HOLD: Duration = Duration::from_secs(3600);
const OWNER: &str = "model";

/// Probes held long; leases never expire here (the core has no clock for
/// them: their expiry is tested on its own, in tests/cluster_leases.rs).
fn terms() -> Terms<'static> {
    Terms {
        probe_ttl: HOLD,
        lease_ttl: Duration::from_secs(1 << 30),
        owner: OWNER,
        freed: "{sb:model}:freed",
    }
}

/// The deployments as the gateway hands them to the cluster.
fn specs(pool: &mut Pool, now: Duration, limits: &[Limits; 3]) -> Vec<DepSpec> {
    pool.statuses(now, HOLD)
        .iter()
        .zip(limits)
        .map(|(s, limits)| DepSpec {
            name: s.name.clone(),
            weight: s.weight,
            limits: *limits,
            enabled: true,
            priority: s.priority,
        })
        .collect()
}

async fn run(
    con: &mut ::redis::aio::MultiplexedConnection,
    scripts: Scripts,
    case: u64,
    profile: usize,
    tiers: [u32; 3],
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let policy = RoutingConfig::default();
    let limits = PROFILES[profile];
    let mut pool = Pool::new(policy.clone());
    for ((name, limits), tier) in NAMES.iter().zip(limits).zip(tiers) {
        let i = pool.push((*name).into(), limits, true);
        pool.set_priority(i, tier);
    }
    let mut run = Run {
        con,
        scripts,
        keys: ModelKeys::new(&format!("model-test-{case}"), "m"),
        pool,
        policy,
        limits,
        flying: Vec::new(),
        leases: 0,
        now_ms: 1_000_000,
    };
    for (step, op) in ops.iter().enumerate() {
        run.step(step, op).await?;
        run.same_state(step, op).await?;
    }
    Ok(())
}

#[test]
fn the_lua_functions_decide_as_the_router_core_does() {
    model(Scripts::default, 300);
}

/// The path of a Redis without functions (forced: this Redis has them),
/// on fewer cases: the Lua is the same, called differently.
#[test]
fn the_scripts_for_redis_before_7_decide_as_the_router_core_does() {
    model(Scripts::scripts_only, 60);
}

/// `MODEL_CASES` (default `cases`) random cases, called as `scripts` says.
fn model(scripts: fn() -> Scripts, cases: u32) {
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
    let cases = std::env::var("MODEL_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(cases);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases,
        ..ProptestConfig::default()
    });
    runner
        .run(
            &(
                0..PROFILES.len(),
                tiers(),
                prop::collection::vec(op(), 1..80),
            ),
            |(profile, tiers, ops)| {
                let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let mut con = con.clone();
                rt.block_on(run(&mut con, scripts(), n, profile, tiers, &ops))
            },
        )
        .unwrap();
    // They went the way they were meant to, and only that way.
    let mut con = con.clone();
    let stats: String = rt
        .block_on(
            ::redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut con),
        )
        .unwrap();
    let (used, unused) = if scripts().calls_scripts() {
        ("cmdstat_evalsha:", "cmdstat_fcall:")
    } else {
        ("cmdstat_fcall:", "cmdstat_evalsha:")
    };
    assert!(stats.contains(used) && !stats.contains(unused), "{stats}");
}
