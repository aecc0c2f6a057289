//! The HTTP surface: bad input, auth, /v1/models, /health, /metrics and the
//! admin API with its writes to the config file.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use serde_json::json;
use switchboard::mock_upstream::Mode;

#[tokio::test]
async fn bad_requests_get_clear_openai_errors() {
    let a = mock().await;
    let gw = gateway(&one_model("max_body_mb = 3", &[deployment("a", &a, "")])).await;
    let send = |body: Vec<u8>| {
        gw.client
            .post(gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let r = send(b"{not json".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"]["type"], "invalid_request_error");

    let r = send(br#"{"messages": []}"#.to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"]["param"], "model");

    let r = gw.chat("no-such-model").await;
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await["error"]["code"], "model_not_found");

    // 2 MB is fine under a 3 MB limit and reaches the upstream whole.
    let big = json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": "x".repeat(2 << 20)}]});
    let r = send(big.to_string().into_bytes()).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(a.stats().last_body.unwrap().len() > 2 << 20);

    let huge =
        json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(4 << 20)}]});
    let r = send(huge.to_string().into_bytes()).await.unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(json(r).await["error"]["code"], "request_too_large");

    let r = gw
        .client
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(json(r).await["error"]["code"], "method_not_allowed");

    let r = gw.client.get(gw.url("/v2/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    // Still serving after all that.
    assert_eq!(gw.chat("m").await.status(), 200);
}

#[tokio::test]
async fn client_and_admin_keys_are_enforced() {
    let a = mock().await;
    // SAFETY: tests in this binary use distinct variable names.
    unsafe {
        std::env::set_var("SB_TEST_CLIENT_KEY", "sk-client-secret-1");
        std::env::set_var("SB_TEST_ADMIN_KEY", "sk-admin-secret-2");
    }
    let gw = gateway(&one_model(
        "api_keys = [\"env:SB_TEST_CLIENT_KEY\"]\nadmin_key = \"env:SB_TEST_ADMIN_KEY\"",
        &[deployment("a", &a, "")],
    ))
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let call = |key: Option<&'static str>| {
        let mut rb = gw
            .client
            .post(gw.url("/v1/chat/completions"))
            .body(body.clone());
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        rb.send()
    };
    let r = call(None).await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["error"]["code"], "invalid_api_key");
    assert_eq!(
        call(Some("sk-client-secret-0")).await.unwrap().status(),
        401
    );
    assert_eq!(call(Some("sk-admin-secret-2")).await.unwrap().status(), 401);
    assert_eq!(
        call(Some("sk-client-secret-1")).await.unwrap().status(),
        200
    );
    let models = gw
        .client
        .get(gw.url("/v1/models"))
        .bearer_auth("sk-client-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(json(models).await["data"][0]["id"], "m");
    let one = gw
        .client
        .get(gw.url("/v1/models/m"))
        .bearer_auth("sk-client-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(json(one).await["id"], "m");
    let none = gw
        .client
        .get(gw.url("/v1/models/zz"))
        .bearer_auth("sk-client-secret-1")
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 404);

    assert_eq!(
        gw.client
            .get(gw.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for path in ["/admin/state", "/metrics", "/admin/events"] {
        let r = gw.client.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        let r = gw
            .client
            .get(gw.url(path))
            .bearer_auth("sk-client-secret-1")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a client key");
    }
    let r = gw
        .client
        .get(gw.url("/admin/state"))
        .bearer_auth("sk-admin-secret-2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let state = r.text().await.unwrap();
    assert!(
        !state.contains("sk-test-a-123456"),
        "keys are masked: {state}"
    );
    assert!(state.contains("3456"));
}

#[tokio::test]
async fn admin_state_has_the_contract_fields() {
    let a = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 1000")])).await;
    let d = gw.deployment("a").await;
    for field in [
        "name",
        "provider",
        "api_base",
        "model_id",
        "api_key",
        "enabled",
        "tpm_limit",
        "tpm_used",
        "state",
        "cooldown_remaining_s",
        "requests",
        "failures",
    ] {
        assert!(d.get(field).is_some(), "missing {field} in {d}");
    }
    assert_eq!(d["api_key"], "sk-…3456");
    assert_eq!(d["provider"], "openai");
    assert_eq!(d["state"], "healthy");
}

#[tokio::test]
async fn toggling_moves_traffic_at_once_and_is_written_to_the_config() {
    let (a, b) = (mock().await, mock().await);
    let config = format!(
        "# my gateway\n[server]\nlisten = \"127.0.0.1:4000\" # port\n\n[[models]]\nname = \"m\" # the model\n{}{}",
        deployment("a", &a, "# a's limit\ntpm_limit = 5000"),
        deployment("b", &b, "")
    );
    let gw = gateway(&config).await;
    let put = |enabled: &'static str| {
        gw.client
            .put(gw.url("/admin/models/m/deployments/a/enabled"))
            .body(enabled)
            .send()
    };
    let r = put("false").await.unwrap();
    assert_eq!(r.status(), 200);
    for _ in 0..4 {
        assert_eq!(header(&gw.chat("m").await, "x-switchboard-deployment"), "b");
    }
    assert_eq!(gw.deployment("a").await["state"], "disabled");
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(
        text.contains("# my gateway")
            && text.contains("# a's limit")
            && text.contains("# the model")
    );
    assert!(text.contains("enabled = false"), "{text}");
    // The file still loads, with `a` disabled.
    let reloaded = switchboard::config::Config::load(&gw.config_path).unwrap();
    assert!(!reloaded.models[0].deployments[0].enabled);

    assert_eq!(put("true").await.unwrap().status(), 200);
    let mut to_a = 0;
    for _ in 0..4 {
        to_a += (header(&gw.chat("m").await, "x-switchboard-deployment") == "a") as usize;
    }
    assert_eq!(to_a, 2);

    assert_eq!(put("maybe").await.unwrap().status(), 400);
    let r = gw
        .client
        .put(gw.url("/admin/models/m/deployments/zz/enabled"))
        .body("true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = gw
        .client
        .put(gw.url("/admin/models/zz/deployments/a/enabled"))
        .body("true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn adding_a_deployment_tests_it_saves_it_and_routes_to_it() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    let add = |body: serde_json::Value, query: &'static str| {
        gw.client
            .post(gw.url(&format!("/admin/models/m/deployments{query}")))
            .body(body.to_string())
            .send()
    };
    let spec = json!({"name": "b", "api_base": b.base_url(), "api_key": "sk-new-key-987654", "model_id": "b-model", "tpm_limit": 1000});
    let r = add(spec.clone(), "").await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(json(r).await["api_key"], "sk-…7654");
    assert_eq!(b.stats().requests, 1, "tested before saving");
    let mut to_b = 0;
    for _ in 0..4 {
        to_b += (header(&gw.chat("m").await, "x-switchboard-deployment") == "b") as usize;
    }
    assert!(to_b >= 1);
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(text.contains("name = \"b\"") && text.contains("sk-new-key-987654"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&gw.config_path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "a literal key makes the file private");
    assert_eq!(
        switchboard::config::Config::load(&gw.config_path)
            .unwrap()
            .models[0]
            .deployments
            .len(),
        2
    );

    assert_eq!(add(spec, "").await.unwrap().status(), 409);
    let c = mock().await;
    c.set_mode(Mode::Fail {
        status: 401,
        retry_after_s: None,
        message: Some("Incorrect API key provided".into()),
    });
    let r = add(
        json!({"name": "c", "api_base": c.base_url(), "model_id": "x"}),
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    assert!(
        json(r).await["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Incorrect API key")
    );
    let r = add(
        json!({"name": "c", "api_base": c.base_url(), "model_id": "x"}),
        "?test=false",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = add(
        json!({"name": "d", "api_base": "ftp://x", "model_id": "x"}),
        "?test=false",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = add(
        json!({"name": "d", "api_base": c.base_url(), "model_id": "x", "tpm_limit": 0}),
        "?test=false",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = add(
        json!({"name": "d", "api_base": c.base_url(), "model_id": "x", "colour": 1}),
        "",
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = gw
        .client
        .post(gw.url("/admin/models/zz/deployments"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn metrics_count_requests_failovers_and_tokens() {
    let (a, b) = (mock().await, mock().await);
    a.set_mode(Mode::Fail {
        status: 500,
        retry_after_s: None,
        message: None,
    });
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, "tpm_limit = 100000"),
            deployment("b", &b, ""),
        ],
    ))
    .await;
    for _ in 0..2 {
        gw.chat("m").await;
    }
    let text = gw
        .client
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("switchboard_requests_total{model=\"m\",status=\"200\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_failovers_total{model=\"m\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_tokens_total{model=\"m\",deployment=\"b\",kind=\"completion\"}"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("switchboard_deployment_tpm_limit{model=\"m\",deployment=\"a\"} 100000"),
        "{text}"
    );
}

#[tokio::test]
async fn admin_events_stream_routing_events() {
    let a = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    let r = gw.client.get(gw.url("/admin/events")).send().await.unwrap();
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let mut body = r.bytes_stream();
    gw.chat("m").await;
    let mut text = String::new();
    // The stream starts with its position (an `id:` alone, no event).
    tokio::time::timeout(Duration::from_secs(5), async {
        while !text.contains("data: ") || !text.ends_with("\n\n") {
            text.push_str(&String::from_utf8_lossy(
                &body.next().await.unwrap().unwrap(),
            ));
        }
    })
    .await
    .expect("an event arrives");
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    assert!(text.contains("\nid: "), "each event has an id: {text}");
    let ev: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(ev["type"], "request");
    assert_eq!(ev["model"], "m");
    assert_eq!(ev["attempts"][0]["deployment"], "a");
    assert_eq!(ev["status"], 200);
}

/// The body a mock received, as sent: `model` replaced, the rest unchanged.
fn as_forwarded(body: &str, model_id: &str) -> String {
    body.replacen(r#""model":"m""#, &format!(r#""model":"{model_id}""#), 1)
}

#[tokio::test]
async fn whole_numbers_written_as_floats_are_served_and_passed_through() {
    // `max_tokens=8.0` in the openai Python SDK sends `"max_tokens": 8.0`;
    // the upstream takes it (JSON Schema's integer), so must the gateway.
    let a = mock_with(|o| o.tokens = 50).await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "tpm_limit = 100000")])).await;
    for (body, completion) in [
        (
            r#"{"model":"m","max_tokens":8.0,"n":1.0,"messages":[{"role":"user","content":"hi"}]}"#,
            8,
        ),
        (
            r#"{"model":"m","max_completion_tokens":1e1,"messages":[{"role":"user","content":"hi"}]}"#,
            10,
        ),
    ] {
        let r = post_raw(&gw, "/v1/chat/completions", body).await;
        assert_eq!(r.status(), 200, "{body}");
        assert_eq!(header(&r, "x-switchboard-deployment"), "a");
        assert_eq!(json(r).await["usage"]["completion_tokens"], completion);
        assert_eq!(
            a.stats().last_body.unwrap(),
            as_forwarded(body, "a-model"),
            "passed on byte for byte"
        );
    }
}

#[tokio::test]
async fn what_the_gateway_cannot_interpret_is_the_upstreams_to_judge() {
    let a = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    for body in [
        r#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":-1,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":8.5,"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","max_tokens":"8","messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"model":"m","stream":true,"stream_options":"yes","messages":[{"role":"user","content":"hi"}]}"#,
    ] {
        let r = post_raw(&gw, "/v1/chat/completions", body).await;
        // The upstream's own 400, as it gave it, from one attempt.
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(header(&r, "x-switchboard-deployment"), "a", "{body}");
        assert_eq!(header(&r, "x-switchboard-attempts"), "1");
        let e = json(r).await;
        assert_eq!(e["error"]["type"], "invalid_request_error");
        assert!(
            !e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("'max_tokens' must"),
            "the gateway's own verdict: {e}"
        );
        assert_eq!(a.stats().last_body.unwrap(), as_forwarded(body, "a-model"));
    }
    let d = gw.deployment("a").await;
    assert_eq!(
        (d["failures"].as_u64(), d["state"].as_str()),
        (Some(0), Some("healthy"))
    );
    assert_eq!(d["tpm_used"], 0, "a refused request used no tokens");
    // What it cannot route at all stays its own 400 (or 404), with no upstream named.
    for (body, status) in [
        ("{not json", 400),
        (r#"{"messages":[]}"#, 400),
        (r#"{"model":42}"#, 400),
        (r#"{"model":"m","model":"m2"}"#, 400),
        (r#"{"model":"nope"}"#, 404),
    ] {
        let r = post_raw(&gw, "/v1/chat/completions", body).await;
        assert_eq!(r.status(), status, "{body}");
        assert_eq!(header(&r, "x-switchboard-deployment"), "", "{body}");
    }
    assert_eq!(a.stats().requests, 5);
}

#[tokio::test]
async fn whole_numbers_count_in_the_estimate_and_unreadable_ones_as_absent() {
    use axum::routing::post;
    // An upstream that reports no usage: the gateway keeps its estimate.
    let base = serve(axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            axum::Json(json!({"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}))
        }),
    ))
    .await;
    let messages = r#"[{"role":"user","content":"hello there, how are you?"}]"#;
    let prompt = (messages.len() as u64).div_ceil(4);
    for (counts, completion) in [
        (r#""max_tokens":1e3,"n":2.0"#, 2000),
        (r#""max_completion_tokens":64.0,"max_tokens":9"#, 64),
        (r#""max_tokens":-1"#, 256),
        (r#""max_tokens":8.5,"n":"3""#, 256),
    ] {
        let gw = gateway(&one_model(
            "",
            &[deployment_url("a", &base, "tpm_limit = 1000000")],
        ))
        .await;
        let body = format!(r#"{{"model":"m",{counts},"messages":{messages}}}"#);
        let r = post_raw(&gw, "/v1/chat/completions", &body).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            gw.deployment("a").await["tpm_used"].as_u64().unwrap(),
            prompt + completion,
            "{counts}"
        );
    }
}

#[tokio::test]
async fn a_stream_the_gateway_could_not_tell_is_relayed_as_the_upstream_streams_it() {
    use axum::routing::post;
    // A lenient upstream that takes `"stream": "yes"` for true.
    let base = serve(axum::Router::new().route(
        "/v1/chat/completions",
        post(|| async {
            let frames = "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n\
                          data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
                          data: [DONE]\n\n";
            ([("content-type", "text/event-stream")], frames)
        }),
    ))
    .await;
    let gw = gateway(&one_model("", &[deployment_url("a", &base, "")])).await;
    let body = r#"{"model":"m","stream":"yes","messages":[{"role":"user","content":"hi"}]}"#;
    let r = post_raw(&gw, "/v1/chat/completions", body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), "text/event-stream");
    let frames = sse_data(r).await;
    assert_eq!(frames.len(), 3);
    assert_eq!(frames.last().unwrap(), "[DONE]");
    assert_eq!(gw.deployment("a").await["failures"], 0);
}
