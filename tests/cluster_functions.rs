//! The cluster's operations as one library of Redis functions: reloaded
//! by itself when Redis lost it, with no request lost for that (alone,
//! batched, and through a fleet of instances); side by side with another
//! version's library; scripts on a Redis without functions; and what a
//! pick costs Redis (`#[ignore]`d: a measurement, run by hand).

mod common;
mod fleet;
mod redis;
mod serve;

use std::time::Duration;

use common::mock_with;
use fleet::*;
use redis::Redis;
use switchboard::cluster::functions::LIBRARY;
use switchboard::cluster::responses::{self as remembered, Note, ResponseKeys};
use switchboard::cluster::shared::{
    Applied, Counted, DepSpec, Loaded, Mark, ModelKeys, PickRequest, Picked, Scripts, Terms,
    Windows,
};
use switchboard::router::{Limits, Need, Spent};

async fn connect(server: &Redis) -> ::redis::aio::MultiplexedConnection {
    let client = ::redis::Client::open(server.url()).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

async fn command<T: ::redis::FromRedisValue>(
    con: &mut ::redis::aio::MultiplexedConnection,
    args: &[&str],
) -> T {
    let mut c = ::redis::cmd(args[0]);
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query_async(con).await.unwrap()
}

/// The libraries loaded, by name, with their functions' names.
async fn libraries(con: &mut ::redis::aio::MultiplexedConnection) -> Vec<(String, Vec<String>)> {
    let list: Vec<::redis::Value> = command(con, &["FUNCTION", "LIST"]).await;
    let text = |v: &::redis::Value| match v {
        ::redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        ::redis::Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    // Each library: a flat list of field, value (RESP2).
    let field = |lib: &[::redis::Value], name: &str| {
        lib.chunks(2)
            .find(|kv| text(&kv[0]) == name)
            .map(|kv| kv[1].clone())
    };
    let mut out: Vec<(String, Vec<String>)> = list
        .iter()
        .filter_map(|lib| {
            let ::redis::Value::Array(lib) = lib else {
                return None;
            };
            let name = text(&field(lib, "library_name")?);
            let Some(::redis::Value::Array(fs)) = field(lib, "functions") else {
                return None;
            };
            let mut names: Vec<String> = fs
                .iter()
                .filter_map(|f| match f {
                    ::redis::Value::Array(f) => field(f, "name").map(|n| text(&n)),
                    _ => None,
                })
                .collect();
            names.sort();
            Some((name, names))
        })
        .collect();
    out.sort();
    out
}

/// Our library's functions' names, sorted.
fn ours() -> Vec<String> {
    let mut names: Vec<String> = [
        "apply", "pick", "push", "remember", "renew", "state", "toggle",
    ]
    .iter()
    .map(|op| format!("sb_{op}_{}", LIBRARY.version))
    .collect();
    names.sort();
    names
}

fn terms() -> Terms<'static> {
    Terms {
        probe_ttl: Duration::from_secs(120),
        lease_ttl: Duration::from_secs(30),
        owner: "test-4000-00ff",
        freed: "{sb:test}:freed",
    }
}

fn request(n: u64, deps: usize) -> PickRequest {
    PickRequest {
        need: Need {
            input: 20,
            output: 64,
        },
        marks: vec![Mark::Open; deps],
        session: None,
        lease: n,
        wait: Duration::ZERO,
    }
}

#[tokio::test]
async fn calls_that_find_the_library_gone_load_it_and_go_on() {
    let server = Redis::start();
    let mut con = connect(&server).await;
    let scripts = Scripts::default();
    let keys = ModelKeys::new("test", "m");
    let deps = bench_model();
    assert_eq!(scripts.load(&mut con).await.unwrap(), Loaded::Functions);
    assert_eq!(
        libraries(&mut con).await,
        vec![(LIBRARY.name.clone(), ours())]
    );
    // Loading it again (another instance, a reconnect) is no error.
    assert_eq!(scripts.load(&mut con).await.unwrap(), Loaded::Functions);

    let counted = Counted::new(1, request(0, 2).need, Windows::default());
    let spent = Spent {
        input: 10,
        output: 10,
    };
    for round in 0..3 {
        let _: () = command(&mut con, &["FUNCTION", "FLUSH"]).await;
        assert!(libraries(&mut con).await.is_empty());
        match round {
            // One pick alone, with a settle riding along.
            0 => {
                let ops = [(0, Applied::Settle { counted, spent })];
                let (picked, applied) = scripts
                    .pick_many(
                        &mut con,
                        &keys,
                        None,
                        &deps,
                        terms(),
                        &[request(1, 2)],
                        &ops,
                    )
                    .await
                    .unwrap();
                assert!(
                    matches!(picked[..], [Picked::Deployment { .. }]),
                    "{picked:?}"
                );
                assert_eq!(applied.len(), 1);
            }
            // Batches side by side over one connection, as a lane sends
            // them: each finds the library gone, each loads it (the
            // later loads find it there) and each is sent again.
            1 => {
                let batches = (0..4).map(|b| {
                    let (mut con, scripts, keys, deps) = (con.clone(), &scripts, &keys, &deps);
                    async move {
                        let requests: Vec<PickRequest> =
                            (0..8).map(|r| request(b * 8 + r, 2)).collect();
                        scripts
                            .pick_many(&mut con, keys, None, deps, terms(), &requests, &[])
                            .await
                    }
                });
                for answer in futures_util::future::join_all(batches).await {
                    let (picked, _) = answer.unwrap();
                    assert_eq!(picked.len(), 8);
                    assert!(
                        picked
                            .iter()
                            .all(|p| matches!(p, Picked::Deployment { .. }))
                    );
                }
            }
            // The other operations, each the first call after the flush.
            _ => {
                scripts
                    .settle(&mut con, &keys, "bench-a", None, counted, spent)
                    .await
                    .unwrap();
                let _: () = command(&mut con, &["FUNCTION", "FLUSH"]).await;
                let state = scripts
                    .state(
                        &mut con,
                        &keys,
                        None,
                        &[("bench-a", true), ("bench-b", true)],
                    )
                    .await
                    .unwrap();
                assert_eq!(state.len(), 2);
                let _: () = command(&mut con, &["FUNCTION", "FLUSH"]).await;
                let note = Note::Forget {
                    id: "resp_1".into(),
                };
                remembered::write(
                    &mut con,
                    &scripts,
                    &ResponseKeys::new("test"),
                    None,
                    &[note],
                )
                .await
                .unwrap();
            }
        }
        assert_eq!(
            libraries(&mut con).await,
            vec![(LIBRARY.name.clone(), ours())]
        );
    }
    assert!(!scripts.calls_scripts());
    let stats: String = command(&mut con, &["INFO", "commandstats"]).await;
    assert!(!stats.contains("cmdstat_evalsha:"), "{stats}");
}

#[tokio::test]
async fn another_versions_library_lives_beside_ours_untouched() {
    let server = Redis::start();
    let mut con = connect(&server).await;
    let other = if LIBRARY.version == "0badc0de" {
        "0badc0df"
    } else {
        "0badc0de"
    };
    // Another version's whole library (the same Lua under another name:
    // no function's name clashes), and one whose pick answers otherwise.
    let _: String = command(
        &mut con,
        &[
            "FUNCTION",
            "LOAD",
            &LIBRARY.text().replace(&LIBRARY.version, other),
        ],
    )
    .await;
    let odd = "#!lua name=switchboard_feedbeef\nredis.register_function('sb_pick_feedbeef', function(keys, args) return 'the other pick' end)";
    let _: String = command(&mut con, &["FUNCTION", "LOAD", odd]).await;

    let scripts = Scripts::default();
    assert_eq!(scripts.load(&mut con).await.unwrap(), Loaded::Functions);
    let theirs: Vec<String> = ours()
        .iter()
        .map(|f| f.replace(&LIBRARY.version, other))
        .collect();
    let mut expected = vec![
        (LIBRARY.name.clone(), ours()),
        (format!("switchboard_{other}"), theirs),
        (
            "switchboard_feedbeef".to_string(),
            vec!["sb_pick_feedbeef".to_string()],
        ),
    ];
    expected.sort();
    assert_eq!(libraries(&mut con).await, expected);

    let keys = ModelKeys::new("test", "m");
    let picked = pick(&scripts, &mut con, &keys, &bench_model(), 1).await;
    assert!(matches!(picked, Picked::Deployment { .. }), "{picked:?}");
    let answer: String = command(&mut con, &["FCALL", "sb_pick_feedbeef", "0"]).await;
    assert_eq!(answer, "the other pick");

    // The other version's going leaves ours.
    let _: String = command(
        &mut con,
        &["FUNCTION", "DELETE", &format!("switchboard_{other}")],
    )
    .await;
    let _: String = command(&mut con, &["FUNCTION", "DELETE", "switchboard_feedbeef"]).await;
    assert_eq!(
        libraries(&mut con).await,
        vec![(LIBRARY.name.clone(), ours())]
    );
    pick(&scripts, &mut con, &keys, &bench_model(), 2).await;
    let stats: String = command(&mut con, &["INFO", "commandstats"]).await;
    assert!(!stats.contains("cmdstat_evalsha:"), "{stats}");
}

/// A Redis without functions, as Redis < 7 is: this one's FCALL and
/// FUNCTION renamed away, so that it answers them "unknown command".
#[tokio::test]
async fn without_functions_the_calls_are_scripts() {
    let server = Redis::start_with(&[
        "--rename-command",
        "FCALL",
        "",
        "--rename-command",
        "FUNCTION",
        "",
    ]);
    let mut con = connect(&server).await;
    let keys = ModelKeys::new("test", "m");
    // Decided by the load when connecting...
    let scripts = Scripts::default();
    assert_eq!(scripts.load(&mut con).await.unwrap(), Loaded::Scripts);
    assert!(scripts.calls_scripts());
    let picked = pick(&scripts, &mut con, &keys, &bench_model(), 1).await;
    assert!(matches!(picked, Picked::Deployment { .. }), "{picked:?}");
    // ... or by the first call, when no load came first.
    let scripts = Scripts::default();
    let picked = pick(&scripts, &mut con, &keys, &bench_model(), 2).await;
    assert!(matches!(picked, Picked::Deployment { .. }), "{picked:?}");
    assert!(scripts.calls_scripts());
    remembered::write(
        &mut con,
        &scripts,
        &ResponseKeys::new("test"),
        None,
        &[Note::Forget {
            id: "resp_1".into(),
        }],
    )
    .await
    .unwrap();
    let stats: String = command(&mut con, &["INFO", "commandstats"]).await;
    assert!(stats.contains("cmdstat_evalsha:calls=3,"), "{stats}");
}

/// Through a fleet that answers 503 rather than decide alone: the library
/// flushed between requests, and every request still served, with the
/// shares of a pick that went through Redis and the tokens settled there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_flush_between_requests_costs_no_request() {
    let redis = Redis::start();
    let (a, b) = (mock_with(|_| {}).await, mock_with(|_| {}).await);
    let cluster = fleet_with(
        2,
        Some(&redis),
        "on_redis_down = \"closed\"",
        &model(&[
            deployment("a", &a, "tpm_limit = 2000000"),
            deployment("b", &b, "tpm_limit = 1000000"),
        ]),
    );
    let mut con = connect(&redis).await;
    let mut sent = 0;
    for (count, parallel) in [(6, 1), (6, 1), (30, 6), (30, 6)] {
        let _: () = command(&mut con, &["FUNCTION", "FLUSH"]).await;
        let statuses = burst(&cluster, count, parallel, 8).await;
        assert_eq!(
            statuses,
            vec![200; count],
            "{count} requests, {parallel} at a time"
        );
        sent += count as u64;
        assert_eq!(
            libraries(&mut con).await,
            vec![(LIBRARY.name.clone(), ours())]
        );
    }
    let (to_a, to_b) = (a.stats().requests, b.stats().requests);
    assert_eq!(to_a + to_b, sent);
    assert_eq!(
        (to_a, to_b),
        (sent * 2 / 3, sent / 3),
        "the cluster's shares"
    );
    let served = served_tokens(&a) + served_tokens(&b);
    wait_until("the tokens settled in Redis", || {
        let used: u64 = ["a", "b"]
            .iter()
            .map(|d| cluster.deployment(0, d)["tpm_used"].as_u64().unwrap_or(0))
            .sum();
        used == served
    });
    assert_eq!(cluster.state(0)["cluster"]["redis"], "ok");
}

/// The two-deployment TPM-only model of `benches/cluster.sh`.
fn bench_model() -> Vec<DepSpec> {
    ["bench-a", "bench-b"]
        .into_iter()
        .map(|name| DepSpec {
            name: name.into(),
            weight: 1_000_000,
            limits: Limits::tpm(Some(1_000_000_000_000)),
            enabled: true,
            priority: 1,
        })
        .collect()
}

/// One request's pick as the gateway sends it (the server's clock).
async fn pick(
    scripts: &Scripts,
    con: &mut ::redis::aio::MultiplexedConnection,
    keys: &ModelKeys,
    deps: &[DepSpec],
    n: u64,
) -> Picked {
    let (picked, _) = scripts
        .pick_many(
            con,
            keys,
            None,
            deps,
            terms(),
            &[request(n, deps.len())],
            &[],
        )
        .await
        .unwrap();
    picked[0]
}

/// Redis's own figures since the last `CONFIG RESETSTAT`: per command
/// called, its calls and `usec_per_call`.
async fn commandstats(con: &mut ::redis::aio::MultiplexedConnection) -> Vec<(String, u64, f64)> {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(con)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let field = |f: &str| {
                rest.split(',')
                    .find_map(|kv| kv.strip_prefix(f)?.strip_prefix('='))
                    .unwrap_or("0")
                    .to_string()
            };
            Some((
                name.to_string(),
                field("calls").parse().ok()?,
                field("usec_per_call").parse().ok()?,
            ))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Redis's `usec_per_call` for the pick of a two-deployment TPM-only
/// model replayed with real arguments, called as a function (FCALL) and
/// as a script (EVALSHA, the same Lua with the library at its top: what
/// every call was before the library), interleaved on one Redis so that
/// both ways meet the same load on a shared box: per round and way 20,000
/// back-to-back calls (in blocks of 100, the ways taking turns), then 500
/// calls 5 ms apart (the ways taking turns call by call); ROUNDS rounds
/// (default 3), medians. Run with
/// `cargo test --test cluster_functions -- --ignored --nocapture pick_cost`.
#[tokio::test(flavor = "current_thread")]
#[ignore = "a measurement, run by hand"]
async fn pick_cost() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let server = Redis::start();
    let mut con = connect(&server).await;
    let ways = [
        ("fcall", Scripts::default()),
        ("evalsha", Scripts::scripts_only()),
    ];
    let keys = ModelKeys::new("bench", "bench-model");
    let deps = bench_model();
    let mut n = 0;
    // Loaded and warm before the first round.
    for (_, scripts) in &ways {
        for _ in 0..100 {
            n += 1;
            assert!(matches!(
                pick(scripts, &mut con, &keys, &deps, n).await,
                Picked::Deployment { .. }
            ));
        }
    }
    // Per way: back to back, 5 ms apart.
    let mut figures = [[Vec::new(), Vec::new()], [Vec::new(), Vec::new()]];
    for round in 1..=rounds {
        for (phase, turns, block, gap) in [
            (0, 200, 100, Duration::ZERO),
            (1, 500, 1, Duration::from_millis(5)),
        ] {
            let _: () = ::redis::cmd("CONFIG")
                .arg("RESETSTAT")
                .query_async(&mut con)
                .await
                .unwrap();
            for turn in 0..turns {
                for w in [turn % 2, (turn + 1) % 2] {
                    for _ in 0..block {
                        n += 1;
                        pick(&ways[w].1, &mut con, &keys, &deps, n).await;
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                    }
                }
            }
            let stats = commandstats(&mut con).await;
            for (w, (command, _)) in ways.iter().enumerate() {
                let (_, count, usec) = stats
                    .iter()
                    .find(|(name, _, _)| name == command)
                    .cloned()
                    .expect("the pick's command in INFO commandstats");
                assert_eq!(count, (turns * block) as u64, "{stats:?}");
                println!(
                    "round {round}: {count} calls {gap:?} apart: {command} {usec} usec_per_call"
                );
                figures[w][phase].push(usec);
            }
        }
    }
    for ((command, _), [hot, cold]) in ways.iter().zip(figures) {
        println!(
            "{command}, medians of {rounds}: back to back {} µs, 5 ms apart {} µs",
            median(hot),
            median(cold)
        );
    }
}
