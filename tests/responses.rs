//! The OpenAI Responses door (Codex CLI, the Agents SDK): routed like
//! chat, passed through to deployments that offer `/responses`, streams
//! held until their first output item.

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_websocket_upgrade_gets_426_so_codex_falls_back_to_http_at_once() {
    let o = mock().await;
    let gw = gateway(&one_model("", &[deployment("o", &o, "")])).await;
    let r = gw
        .client
        .get(gw.url("/v1/responses"))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 426);
    let v: Value = json(r).await;
    assert_eq!(v["error"]["code"], "upgrade_required");
    // A plain GET is the wrong method, not an upgrade.
    let r = gw.client.get(gw.url("/v1/responses")).send().await.unwrap();
    assert_eq!(r.status(), 405);
}

#[tokio::test]
async fn deployments_without_a_responses_api_serve_it_through_the_bridge() {
    let a = mock_with(|o| {
        o.provider = switchboard::mock_upstream::MockProvider::Anthropic;
        o.tokens = 5;
    })
    .await;
    // An OpenAI-compatible server without /responses (vLLM, Ollama): it
    // answers 404 once, and from then on is asked through chat.
    let c = mock_with(|o| {
        o.tokens = 5;
        o.without = vec![switchboard::mock_upstream::MockEndpoint::Responses];
    })
    .await;
    for deployment in [
        format!(
            "\n[[models.deployments]]\nname = \"claude\"\nprovider = \"anthropic\"\napi_base = \"{}\"\nmodel_id = \"claude-up\"\n",
            a.base_url()
        ),
        deployment("chat-only", &c, ""),
    ] {
        let gw = gateway(&format!("[[models]]\nname = \"m\"\n{deployment}")).await;
        for stream in [false, true] {
            let r = gw.post("/v1/responses", ask(stream)).await;
            let status = r.status();
            if status != 200 {
                panic!("{deployment}: {status} {}", r.text().await.unwrap());
            }
            if stream {
                let ev = events(r).await;
                assert_eq!(ev[0].0, "response.created", "{ev:?}");
                let done = ev.last().unwrap();
                assert_eq!(done.0, "response.completed");
                assert_eq!(done.1["response"]["model"], "m");
                assert!(
                    done.1["response"]["usage"]["output_tokens"]
                        .as_u64()
                        .unwrap()
                        > 0
                );
            } else {
                let v = json(r).await;
                assert_eq!(v["object"], "response");
                assert_eq!(v["status"], "completed");
                assert_eq!(v["model"], "m");
            }
        }
        // A stored conversation cannot go through chat: refused by name.
        let r = gw
            .post(
                "/v1/responses",
                json!({"model": "m", "input": "hi", "previous_response_id": "resp_x"}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let v = json(r).await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("previous_response_id"),
            "{v}"
        );
    }
}

fn ask(stream: bool) -> Value {
    json!({"model": "m", "stream": stream, "input": [{"role": "user", "content": "hello there"}], "instructions": "be brief", "store": false, "prompt_cache_key": "thread-1"})
}

/// The SSE events of a body: (event name, data).
async fn events(r: reqwest::Response) -> Vec<(String, Value)> {
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let name = f
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or_default()
                .to_string();
            let data = f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (name, serde_json::from_str(data).unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_responses_request_passes_through_whole_and_streamed() {
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&one_model("", &[deployment("o", &o, "")])).await;
    let r = gw.post("/v1/responses", ask(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "o");
    let v = json(r).await;
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    let sent: Value = serde_json::from_str(&o.stats().last_body.unwrap()).unwrap();
    assert_eq!(sent["model"], "o-model");
    assert!(o.stats().last_path.unwrap().ends_with("/responses"));
    let r = gw.post("/v1/responses", ask(true)).await;
    assert_eq!(r.status(), 200);
    let ev = events(r).await;
    assert_eq!(ev[0].0, "response.created");
    assert_eq!(ev.last().unwrap().0, "response.completed");
    let s = gw.deployment("o").await;
    assert_eq!(s["requests"], 2, "{s}");
    // Usage from response.completed settles the window.
    assert!(s["tpm_used"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn failures_before_the_first_output_item_are_replaced_invisibly() {
    for mode in [
        fail(429, Some(20.0), None),
        fail(500, None, None),
        switchboard::mock_upstream::Mode::ErrorMidStream {
            after_chunks: 1,
            exception: None,
        },
    ] {
        let (a, _b, gw) = pair("", mode.clone(), switchboard::mock_upstream::Mode::Normal).await;
        for _ in 0..3 {
            let r = gw.post("/v1/responses", ask(true)).await;
            assert_eq!(r.status(), 200);
            assert_eq!(header(&r, "x-switchboard-deployment"), "b", "{mode:?}");
            let ev = events(r).await;
            assert_eq!(
                ev.iter().filter(|(n, _)| n == "response.created").count(),
                1
            );
            assert!(ev.iter().all(|(n, _)| n != "response.failed"), "{mode:?}");
            assert_eq!(ev.last().unwrap().0, "response.completed");
        }
        assert!(a.stats().requests >= 1);
    }
}

#[tokio::test]
async fn a_break_after_the_first_output_ends_with_response_failed() {
    let o = mock_with(|o| o.tokens = 8).await;
    o.set_mode(switchboard::mock_upstream::Mode::ResetMidStream { after_chunks: 6 });
    let gw = gateway(&one_model("", &[deployment("o", &o, "")])).await;
    let ev = events(gw.post("/v1/responses", ask(true)).await).await;
    let (name, data) = ev.last().unwrap();
    assert_eq!(name, "response.failed", "{ev:?}");
    assert_eq!(data["response"]["status"], "failed");
    assert!(ev.iter().all(|(n, _)| n != "response.completed"));
}

#[tokio::test]
async fn the_openai_sdk_creates_and_streams_responses_through_the_gateway() {
    if !common::sdk::sdk_available("openai") {
        return;
    }
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&one_model("", &[deployment("o", &o, "")])).await;
    let script = r#"
import json, sys, openai
c = openai.OpenAI(base_url=sys.argv[1], api_key="k", max_retries=0)
r = c.responses.create(model="m", input="hello", instructions="be brief")
with c.responses.stream(model="m", input="hello") as s:
    final = s.get_final_response()
tools = [{"type": "function", "name": "get_weather", "description": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
t = c.responses.create(model="m", input="use get_weather for Paris", tools=tools)
calls = [i for i in t.output if i.type == "function_call"]
print(json.dumps({"text": r.output_text, "streamed": final.output_text, "status": final.status, "call": calls[0].name if calls else None}))
"#;
    let path = gw.dir.path().join("responses_sdk.py");
    std::fs::write(&path, script).unwrap();
    let out = tokio::task::spawn_blocking({
        let url = gw.url("/v1");
        move || {
            std::process::Command::new("python3")
                .arg(path)
                .arg(url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(!v["text"].as_str().unwrap().is_empty());
    assert!(!v["streamed"].as_str().unwrap().is_empty());
    assert_eq!(v["status"], "completed");
    assert_eq!(v["call"], "get_weather");
}

#[tokio::test]
async fn a_continuation_goes_where_its_response_is_and_nowhere_else() {
    let (a, b, gw) = pair(
        "",
        switchboard::mock_upstream::Mode::Normal,
        switchboard::mock_upstream::Mode::Normal,
    )
    .await;
    for stream in [false, true] {
        let first = gw
            .post(
                "/v1/responses",
                json!({"model": "m", "input": "hello", "stream": stream}),
            )
            .await;
        let producer = header(&first, "x-switchboard-deployment");
        let id = if stream {
            let ev = events(first).await;
            ev[0].1["response"]["id"].as_str().unwrap().to_string()
        } else {
            json(first).await["id"].as_str().unwrap().to_string()
        };
        // Every follow-up to it goes to its producer, whatever the weights say.
        for _ in 0..4 {
            let r = gw
                .post(
                    "/v1/responses",
                    json!({"model": "m", "input": "and then?", "previous_response_id": id}),
                )
                .await;
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            assert_eq!(header(&r, "x-switchboard-deployment"), producer);
        }
        // The producer down: the client hears why, and nothing goes elsewhere.
        let (down, other) = if producer == "a" { (&a, &b) } else { (&b, &a) };
        down.set_mode(fail(500, None, None));
        let before = other.stats().requests;
        let r = gw
            .post(
                "/v1/responses",
                json!({"model": "m", "input": "and then?", "previous_response_id": id}),
            )
            .await;
        assert_eq!(r.status(), 400);
        let v = json(r).await;
        assert_eq!(v["error"]["code"], "previous_response_not_found");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("`{producer}`")), "{message}");
        assert_eq!(other.stats().requests, before);
        down.set_mode(switchboard::mock_upstream::Mode::Normal);
        // Let its cooldown pass before the next round.
        gw.client
            .put(gw.url(&format!("/admin/models/m/deployments/{producer}/enabled")))
            .body("true")
            .send()
            .await
            .unwrap();
    }
    // Responses made with store: false are not remembered (no upstream keeps them).
    let r = gw
        .post(
            "/v1/responses",
            json!({"model": "m", "input": "hi", "store": false}),
        )
        .await;
    let id = json(r).await["id"].as_str().unwrap().to_string();
    assert!(!gw.gateway.remembers_response(&id));
}

#[tokio::test]
async fn a_stored_response_is_read_and_deleted_at_its_producer() {
    let (a, b, gw) = pair(
        "",
        switchboard::mock_upstream::Mode::Normal,
        switchboard::mock_upstream::Mode::Normal,
    )
    .await;
    let r = gw
        .post("/v1/responses", json!({"model": "m", "input": "hello"}))
        .await;
    let producer = header(&r, "x-switchboard-deployment");
    let id = json(r).await["id"].as_str().unwrap().to_string();
    let other = if producer == "a" { &b } else { &a };
    let before = other.stats().requests;
    let got = gw
        .client
        .get(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(header(&got, "x-switchboard-deployment"), producer);
    assert_eq!(json(got).await["id"], id.as_str());
    let items = gw
        .client
        .get(gw.url(&format!("/v1/responses/{id}/input_items?limit=5")))
        .send()
        .await
        .unwrap();
    assert_eq!(items.status(), 200);
    let deleted = gw
        .client
        .delete(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        other.stats().requests,
        before,
        "nothing went to the other deployment"
    );
    // Forgotten now, and an id it never made: OpenAI's 404, saying why.
    for unknown in [id.as_str(), "resp_never"] {
        let r = gw
            .client
            .get(gw.url(&format!("/v1/responses/{unknown}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        let v = json(r).await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("did not produce it"),
            "{v}"
        );
    }
    // Its producer disabled: still not asked elsewhere, and said so.
    let r = gw
        .post("/v1/responses", json!({"model": "m", "input": "again"}))
        .await;
    let producer = header(&r, "x-switchboard-deployment");
    let id = json(r).await["id"].as_str().unwrap().to_string();
    gw.client
        .put(gw.url(&format!("/admin/models/m/deployments/{producer}/enabled")))
        .body("false")
        .send()
        .await
        .unwrap();
    let r = gw
        .client
        .get(gw.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v = json(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("is disabled"),
        "{v}"
    );
}

/// The OpenAI Agents SDK (Python `openai-agents`): `Runner.run_sync` and
/// `run_streamed` with a function tool, natively and through the bridge.
#[tokio::test]
async fn the_agents_sdk_runs_its_tools_through_the_gateway() {
    if !common::sdk::sdk_available("agents") {
        return;
    }
    let o = mock_with(|o| o.tokens = 5).await;
    let a = mock_with(|o| {
        o.provider = switchboard::mock_upstream::MockProvider::Anthropic;
        o.tokens = 5;
    })
    .await;
    for deployment in [
        deployment("openai", &o, ""),
        format!(
            "\n[[models.deployments]]\nname = \"claude\"\nprovider = \"anthropic\"\napi_base = \"{}\"\nmodel_id = \"claude-up\"\n",
            a.base_url()
        ),
    ] {
        let gw = gateway(&format!("[[models]]\nname = \"m\"\n{deployment}")).await;
        let v = common::sdk::python("agents_responses.py", vec![gw.url("/v1"), "m".into()]).await;
        assert!(!v["plain"].as_str().unwrap().is_empty(), "{v}");
        assert!(!v["tooled"].as_str().unwrap().is_empty(), "{v}");
        assert!(!v["streamed"].as_str().unwrap().is_empty(), "{v}");
        assert_eq!(
            v["calls"].as_array().unwrap().len(),
            2,
            "one call each: {v}"
        );
        assert!(
            v["kinds"]
                .as_array()
                .unwrap()
                .iter()
                .any(|k| k == "raw_response_event"),
            "{v}"
        );
    }
}

#[tokio::test]
async fn responses_bridged_sends_an_openai_deployment_through_its_chat_endpoint() {
    let o = mock_with(|o| o.tokens = 5).await;
    let gw = gateway(&one_model(
        "",
        &[deployment("o", &o, "responses = \"bridged\"")],
    ))
    .await;
    let r = gw.post("/v1/responses", ask(false)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["object"], "response");
    assert!(o.stats().last_path.unwrap().ends_with("/chat/completions"));
    // A value it does not know, or on a provider without a Responses API: named.
    let dir = tempfile::tempdir().unwrap();
    for (extra, words) in [
        ("responses = \"sometimes\"", "\"native\" or \"bridged\""),
        (
            "provider = \"anthropic\"\nresponses = \"bridged\"",
            "only openai and azure",
        ),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, one_model("", &[deployment("o", &o, extra)])).unwrap();
        let err = switchboard::config::Config::load(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("responses") && err.contains(words), "{err}");
    }
}
