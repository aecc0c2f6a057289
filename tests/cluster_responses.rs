//! Stored Responses-API responses across three `switchboard serve`
//! processes sharing one private Redis: whichever instance a follow-up or a
//! `GET /v1/responses/{id}` reaches, it goes to the deployment that
//! produced the response, and only there.

mod fleet;
mod redis;
mod serve;

use std::time::{Duration, Instant};

use fleet::*;
use redis::Redis;
use serde_json::{Value, json};
use switchboard::cluster::responses::{self as remembered, Note, ResponseKeys};
use switchboard::cluster::shared::Scripts;
use switchboard::mock_upstream::{self, MockHandle, MockOptions};

async fn mock() -> MockHandle {
    mock_upstream::spawn(MockOptions::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap()
}

/// A request to instance `i`: its status, the deployment that served, and
/// its body (each `data:` payload's JSON, for a stream).
async fn send(
    fleet: &Fleet,
    i: usize,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, String, Vec<Value>) {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", fleet.url(i));
    let mut req = match method {
        "GET" => client.get(url),
        "DELETE" => client.delete(url),
        _ => client.post(url),
    }
    .timeout(Duration::from_secs(10));
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let served = r
        .headers()
        .get("x-switchboard-deployment")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = r.text().await.unwrap();
    let values = match serde_json::from_str(&text) {
        Ok(v) => vec![v],
        Err(_) => text
            .split("\n\n")
            .filter_map(|f| f.lines().find_map(|l| l.strip_prefix("data: ")))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect(),
    };
    (status, served, values)
}

/// A follow-up of `id` through instance `i`.
async fn follow_up(fleet: &Fleet, i: usize, id: &str) -> (u16, String, Vec<Value>) {
    let body = json!({"model": "m", "input": "and then?", "previous_response_id": id});
    send(fleet, i, "POST", "/v1/responses", Some(body)).await
}

fn message(v: &[Value]) -> String {
    v.first()
        .and_then(|v| v["error"]["message"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Checks that the cluster has response `id`: at once for a whole answer
/// (written before the answer goes), within a second for a stream (its id
/// is written off the path, see README).
async fn noted(redis: &Redis, id: &str, stream: bool) {
    let client = ::redis::Client::open(redis.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let key = ResponseKeys::new("test").of(id);
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let found: Option<String> = ::redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        if found.is_some() {
            return;
        }
        assert!(stream, "{id} not in Redis when its whole answer came");
        assert!(
            Instant::now() < deadline,
            "{id} not in Redis after a second"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Retries `f` until `done` holds of its answer, for at most 5 s.
async fn eventually<F, Fut>(
    what: &str,
    mut f: F,
    done: impl Fn(&(u16, String, Vec<Value>)) -> bool,
) -> (u16, String, Vec<Value>)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (u16, String, Vec<Value>)>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = f().await;
        if done(&answer) {
            return answer;
        }
        assert!(Instant::now() < deadline, "{what}: {answer:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_made_through_one_instance_is_found_through_the_others() {
    let redis = Redis::start();
    let (a, b) = (mock().await, mock().await);
    let cluster = fleet(
        3,
        Some(&redis),
        &model(&[deployment("a", &a, ""), deployment("b", &b, "")]),
    );
    for stream in [false, true] {
        let body = json!({"model": "m", "input": "hello", "store": true, "stream": stream});
        let (status, producer, first) =
            send(&cluster, 0, "POST", "/v1/responses", Some(body)).await;
        assert_eq!(status, 200, "{first:?}");
        let id = if stream {
            &first[0]["response"]["id"]
        } else {
            &first[0]["id"]
        };
        let id = id.as_str().unwrap().to_string();
        let other = if producer == "a" { &b } else { &a };
        let before = other.stats().requests;
        noted(&redis, &id, stream).await;
        // Even weights: routed freely, two follow-ups in a row through one
        // instance would reach both deployments.
        for i in [1, 2, 1, 2] {
            let (status, served, v) = follow_up(&cluster, i, &id).await;
            assert_eq!(status, 200, "instance {i}: {v:?}");
            assert_eq!(served, producer, "instance {i}, stream {stream}");
        }
        let (status, served, v) =
            send(&cluster, 1, "GET", &format!("/v1/responses/{id}"), None).await;
        assert_eq!((status, served.as_str()), (200, producer.as_str()), "{v:?}");
        assert_eq!(v[0]["id"], id.as_str());
        let (status, served, _) = send(
            &cluster,
            2,
            "GET",
            &format!("/v1/responses/{id}/input_items"),
            None,
        )
        .await;
        assert_eq!((status, served.as_str()), (200, producer.as_str()));
        assert_eq!(
            other.stats().requests,
            before,
            "nothing went to the other deployment"
        );
    }

    // The producer disabled through one instance: the others say so, as
    // OpenAI answers for a response it does not have, and send nothing on.
    let body = json!({"model": "m", "input": "hello again"});
    let (_, producer, first) = send(&cluster, 0, "POST", "/v1/responses", Some(body)).await;
    let id = first[0]["id"].as_str().unwrap().to_string();
    noted(&redis, &id, false).await;
    let other = if producer == "a" { &b } else { &a };
    let path = format!("/v1/responses/{id}");
    let r = reqwest::Client::new()
        .put(format!(
            "{}/admin/models/m/deployments/{producer}/enabled",
            cluster.url(0)
        ))
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the producer is disabled everywhere", || {
        (0..3).all(|i| cluster.deployment(i, &producer)["enabled"] == false)
    });
    let before = other.stats().requests;
    // Redis says so at once; instance 2's own flag follows within the second.
    let (status, _, v) = eventually(
        "a follow-up through another instance says the producer is disabled",
        || follow_up(&cluster, 2, &id),
        |(_, _, v)| message(v).contains("is disabled"),
    )
    .await;
    assert_eq!(status, 400, "{v:?}");
    assert_eq!(v[0]["error"]["code"], "previous_response_not_found");
    assert!(
        message(&v).contains(&format!("`{producer}` that produced it is disabled")),
        "{v:?}"
    );
    let (_, _, v) = eventually(
        "GET through another instance says the producer is disabled",
        || send(&cluster, 1, "GET", &path, None),
        |(status, _, _)| *status == 404,
    )
    .await;
    assert!(message(&v).contains("is disabled"), "{v:?}");
    assert_eq!(other.stats().requests, before);

    // Enabled again and deleted through a third instance: forgotten by all.
    reqwest::Client::new()
        .put(format!(
            "{}/admin/models/m/deployments/{producer}/enabled",
            cluster.url(0)
        ))
        .body("true")
        .send()
        .await
        .unwrap();
    wait_until("the producer is enabled everywhere", || {
        (0..3).all(|i| cluster.deployment(i, &producer)["enabled"] == true)
    });
    let (status, _, _) = eventually(
        "DELETE through instance 2",
        || send(&cluster, 2, "DELETE", &path, None),
        |(status, _, _)| *status == 200,
    )
    .await;
    assert_eq!(status, 200);
    let (_, _, v) = eventually(
        "instance 1 forgot it",
        || send(&cluster, 1, "GET", &path, None),
        |(status, _, v)| *status == 404 && message(v).contains("did not produce it"),
    )
    .await;
    assert!(message(&v).contains("by the whole cluster"), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_away_each_instance_knows_only_its_own() {
    let mut redis = Redis::start();
    let (a, b) = (mock().await, mock().await);
    let cluster = fleet(
        2,
        Some(&redis),
        &model(&[deployment("a", &a, ""), deployment("b", &b, "")]),
    );
    let body = json!({"model": "m", "input": "hello"});
    let (_, producer, first) = send(&cluster, 0, "POST", "/v1/responses", Some(body)).await;
    let id = first[0]["id"].as_str().unwrap().to_string();
    noted(&redis, &id, false).await;
    redis.stop();
    wait_until("both instances see Redis down", || {
        (0..2).all(|i| cluster.state(i)["cluster"]["redis"] == "down")
    });
    // The instance that served it still holds follow-ups to their producer.
    for _ in 0..3 {
        let (status, served, v) = follow_up(&cluster, 0, &id).await;
        assert_eq!((status, served.as_str()), (200, producer.as_str()), "{v:?}");
    }
    // The other cannot ask, and says so.
    let (status, _, v) = send(&cluster, 1, "GET", &format!("/v1/responses/{id}"), None).await;
    assert_eq!(status, 404, "{v:?}");
    assert!(message(&v).contains("cannot be reached"), "{v:?}");
}

/// The function alone, on its own Redis, with an injected clock and a small bound.
#[tokio::test]
async fn past_the_bound_the_oldest_ids_go_and_each_keeps_its_ttl() {
    let server = Redis::start();
    let client = ::redis::Client::open(server.url()).unwrap();
    let mut con = client.get_multiplexed_async_connection().await.unwrap();
    let keys = ResponseKeys::new("t");
    let scripts = Scripts::default();
    let note = |i: usize| Note::Remember {
        id: format!("resp_{i}").into(),
        model: "m".into(),
        deployment: format!("d{i}").into(),
        ttl: Duration::from_secs(60),
        bound: 3,
    };
    let t0 = 1_000_000;
    // Two notes in one call, then one per call.
    remembered::write(&mut con, &scripts, &keys, Some(t0), &[note(0), note(1)])
        .await
        .unwrap();
    for i in 2..5 {
        remembered::write(&mut con, &scripts, &keys, Some(t0 + i as u64), &[note(i)])
            .await
            .unwrap();
    }
    for i in 0..2 {
        assert_eq!(
            remembered::producer(&mut con, &keys, &format!("resp_{i}"))
                .await
                .unwrap(),
            None,
            "resp_{i}"
        );
    }
    for i in 2..5 {
        let found = remembered::producer(&mut con, &keys, &format!("resp_{i}"))
            .await
            .unwrap();
        assert_eq!(found, Some(("m".to_string(), format!("d{i}"))));
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(keys.of(&format!("resp_{i}")))
            .query_async(&mut con)
            .await
            .unwrap();
        assert!((1..=60_000).contains(&ttl), "{ttl}");
    }
    let index: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(keys.index())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(index, ["resp_2", "resp_3", "resp_4"]);

    // Forgotten: gone from both; ids noted a TTL ago leave the index.
    remembered::write(
        &mut con,
        &scripts,
        &keys,
        Some(t0 + 10),
        &[Note::Forget {
            id: "resp_3".into(),
        }],
    )
    .await
    .unwrap();
    assert_eq!(
        remembered::producer(&mut con, &keys, "resp_3")
            .await
            .unwrap(),
        None
    );
    remembered::write(&mut con, &scripts, &keys, Some(t0 + 61_000), &[note(9)])
        .await
        .unwrap();
    let index: Vec<String> = ::redis::cmd("ZRANGE")
        .arg(keys.index())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(index, ["resp_9"]);
}
