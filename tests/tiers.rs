//! Priority tiers, fallback models and sticky sessions through real HTTP:
//! a gateway on loopback in front of mock upstreams.

mod common;

use common::*;
use serde_json::json;
use switchboard::events::{Event, RouteChange};
use switchboard::mock_upstream::{MockHandle, Mode};

/// The route events published so far (the receiver was made before).
fn route_events(
    rx: &mut tokio::sync::broadcast::Receiver<switchboard::events::Published>,
) -> Vec<RouteChange> {
    let mut out = Vec::new();
    while let Ok(p) = rx.try_recv() {
        if let Event::Route(r) = &*p.event {
            out.push(r.change.clone());
        }
    }
    out
}

#[tokio::test]
async fn tier_one_takes_everything_then_spills_with_shares_and_returns_at_once() {
    let (ptu, a, b) = (mock().await, mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("ptu", &ptu, "tpm_limit = 60000\npriority = 1"),
            deployment("paygo-a", &a, "tpm_limit = 200000\npriority = 2"),
            deployment("paygo-b", &b, "tpm_limit = 100000\npriority = 2"),
        ],
    ))
    .await;
    let mut rx = gw.gateway.events().subscribe();
    let counts = served_by(&gw, "m", 6).await;
    assert_eq!(counts.get("ptu"), Some(&6), "{counts:?}");
    assert!(route_events(&mut rx).is_empty());

    // The PTU deployment is rate limited: traffic spills to tier 2, by weight.
    ptu.set_mode(fail(429, Some(60.0), None));
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    let counts = served_by(&gw, "m", 6).await;
    assert_eq!((counts["paygo-a"], counts["paygo-b"]), (4, 2), "{counts:?}");
    let spills = route_events(&mut rx);
    assert_eq!(spills.len(), 1, "one spill, said once: {spills:?}");
    match &spills[0] {
        RouteChange::Spilled {
            from_tier,
            to_tier,
            reason,
        } => {
            assert_eq!((*from_tier, *to_tier), (1, 2));
            assert_eq!(reason, "tier 1 full (ptu rate limited)");
        }
        other => panic!("not a spill: {other:?}"),
    }
    let state = gw.state().await;
    assert_eq!(state["models"][0]["spilling"], 2);
    assert_eq!(state["models"][0]["deployments"][0]["priority"], 1);
    assert_eq!(state["models"][0]["deployments"][1]["priority"], 2);

    // Back in service (an operator re-enables it): the next request is its.
    ptu.set_mode(Mode::Normal);
    for enabled in ["false", "true"] {
        let r = gw
            .client
            .put(gw.url("/admin/models/m/deployments/ptu/enabled"))
            .body(enabled)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let counts = served_by(&gw, "m", 3).await;
    assert_eq!(counts.get("ptu"), Some(&3), "{counts:?}");
    let back = route_events(&mut rx);
    assert!(
        matches!(back.as_slice(), [RouteChange::Returned { tier: 1 }]),
        "{back:?}"
    );
    assert!(gw.state().await["models"][0]["spilling"].is_null());
}

#[tokio::test]
async fn failover_walks_the_rest_of_the_tier_before_the_next() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    a.set_mode(fail(503, None, None));
    b.set_mode(fail(503, None, None));
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, "priority = 1"),
            deployment("c", &c, "priority = 2"),
            deployment("b", &b, "priority = 1"),
        ],
    ))
    .await;
    let r = gw.chat("m").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "c");
    assert_eq!(header(&r, "x-switchboard-attempts"), "3");
    assert_eq!((a.stats().requests, b.stats().requests), (1, 1));
}

/// `gpt-4o` on deployment `a` (its model lines `m_extra`) and `gpt-4o-mini`
/// on `mini` (its deployment lines `mini_extra`), each on its own mock in
/// the given mode.
async fn fallback_pair(
    a_mode: Mode,
    m_extra: &str,
    mini_mode: Mode,
    mini_extra: &str,
) -> (MockHandle, MockHandle, TestGateway) {
    let (a, mini) = (mock().await, mock().await);
    a.set_mode(a_mode);
    mini.set_mode(mini_mode);
    let gw = gateway(&two_models(
        &deployment("a", &a, ""),
        m_extra,
        &deployment("mini", &mini, mini_extra),
    ))
    .await;
    (a, mini, gw)
}

/// A 400 with OpenAI's error shape and this message.
fn refusal(message: &str) -> Mode {
    fail(400, None, Some(message))
}

/// The error message of an answer.
async fn message_of(r: reqwest::Response) -> String {
    json(r).await["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn two_models(m_deployments: &str, m_extra: &str, mini: &str) -> String {
    format!(
        "[[models]]\nname = \"gpt-4o\"\n{m_extra}\n{m_deployments}\n[[models]]\nname = \"gpt-4o-mini\"\n{mini}"
    )
}

#[tokio::test]
async fn a_model_with_nothing_left_is_served_by_its_fallback_named_as_asked() {
    let (a, mini) = (mock().await, mock().await);
    let gw = gateway(&two_models(
        &deployment("a", &a, "enabled = false"),
        "fallbacks = [\"gpt-4o-mini\"]",
        &deployment("mini", &mini, ""),
    ))
    .await;
    let mut rx = gw.gateway.events().subscribe();
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o-mini");
    assert_eq!(header(&r, "x-switchboard-deployment"), "mini");
    let body = json(r).await;
    assert_eq!(body["model"], "gpt-4o", "the name the client asked for");
    let events = route_events(&mut rx);
    assert!(
        matches!(events.as_slice(), [RouteChange::FellBack { to_model, reason }]
            if &**to_model == "gpt-4o-mini" && reason == "no deployment enabled"),
        "{events:?}"
    );
    // While it lasts, the fallback is not said again.
    assert_eq!(gw.chat("gpt-4o").await.status(), 200);
    assert!(route_events(&mut rx).is_empty());
    // A model served directly names itself.
    let r = gw.chat("gpt-4o-mini").await;
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o-mini");
    // Its own deployment back: said once, and its requests are its own.
    let r = gw
        .client
        .put(gw.url("/admin/models/gpt-4o/deployments/a/enabled"))
        .body("true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = gw.chat("gpt-4o").await;
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o");
    let events = route_events(&mut rx);
    assert!(
        matches!(events.as_slice(), [RouteChange::ServesAgain { after }] if &**after == "gpt-4o-mini"),
        "{events:?}"
    );
}

#[tokio::test]
async fn report_served_model_names_the_fallback_in_the_body() {
    let (_a, _mini, gw) = fallback_pair(
        fail(500, None, None),
        "fallbacks = [\"gpt-4o-mini\"]\nreport_served_model = true",
        Mode::Normal,
        "",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    assert_eq!(json(r).await["model"], "mini-model");
}

#[tokio::test]
async fn a_chain_that_runs_out_answers_for_the_model_asked_with_the_worst_reason() {
    let (_a, _mini, gw) = fallback_pair(
        fail(429, Some(30.0), None),
        "fallbacks = [\"gpt-4o-mini\"]",
        Mode::Normal,
        "enabled = false",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 429);
    let retry: f64 = header(&r, "retry-after").parse().unwrap();
    assert!(retry > 20.0, "{retry}");
    let message = message_of(r).await;
    assert!(message.contains("`gpt-4o`"), "{message}");
    assert!(
        message.contains("fallback models tried: gpt-4o-mini"),
        "{message}"
    );
}

#[tokio::test]
async fn a_prompt_too_long_goes_to_the_context_window_fallback_and_policy_refusals_do_not() {
    let (small, big, gw) = fallback_pair(
        refusal("This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens."),
        "context_window_fallbacks = [\"gpt-4o-mini\"]\nfallbacks = [\"gpt-4o-mini\"]",
        Mode::Normal,
        "",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o-mini");
    assert_eq!(header(&r, "x-switchboard-deployment"), "mini");
    // The deployment that said "too long" is not at fault.
    assert_eq!(gw.deployment("a").await["state"], "healthy");

    // A content-policy refusal goes back to the client, whatever the fallbacks.
    small.set_mode(refusal(
        "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
    ));
    let before = big.stats().requests;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o");
    let message = message_of(r).await;
    assert!(message.contains("content management policy"), "{message}");
    assert_eq!(big.stats().requests, before, "never routed around");
}

#[tokio::test]
async fn content_policy_fallbacks_take_a_refusal_when_named() {
    let (_strict, _lenient, gw) = fallback_pair(
        refusal("Your request was rejected as a result of our safety system."),
        "content_policy_fallbacks = [\"gpt-4o-mini\"]",
        Mode::Normal,
        "",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o-mini");
}

#[tokio::test]
async fn a_prompt_too_long_without_a_larger_model_goes_back_to_the_client() {
    let (_small, _big, gw) = fallback_pair(
        refusal("prompt is too long: 210000 tokens > 200000 maximum"),
        "context_window_fallbacks = [\"gpt-4o-mini\"]",
        refusal("prompt is too long: 210000 tokens > 400000 maximum"),
        "",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 400);
    // The first answer, from the model asked for.
    assert_eq!(header(&r, "x-switchboard-deployment"), "a");
    assert_eq!(header(&r, "x-switchboard-attempts"), "2");
    let message = message_of(r).await;
    assert!(message.contains("200000 maximum"), "{message}");
}

async fn chat_with(gw: &TestGateway, headers: &[(&str, &str)], extra: serde_json::Value) -> String {
    let mut body =
        json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let mut req = gw
        .client
        .post(gw.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200);
    header(&r, "x-switchboard-deployment")
}

#[tokio::test]
async fn sessions_stick_by_each_clients_key_and_rotation_goes_on_around_them() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, ""),
            deployment("b", &b, ""),
            deployment("c", &c, ""),
        ],
    ))
    .await;
    for (headers, body) in [
        (vec![("x-switchboard-session", "ours-1")], json!({})),
        (vec![("X-Claude-Code-Session-Id", "claude-1")], json!({})),
        (vec![("session-id", "codex-1")], json!({})),
        (vec![], json!({"prompt_cache_key": "thread-1"})),
    ] {
        let first = chat_with(&gw, &headers, body.clone()).await;
        for _ in 0..4 {
            // Unkeyed traffic in between rotates as ever.
            let spread = served_by(&gw, "m", 3).await;
            assert_eq!(spread.len(), 3, "{spread:?}");
            assert_eq!(
                chat_with(&gw, &headers, body.clone()).await,
                first,
                "{headers:?} {body}"
            );
        }
    }
    let pinned: u64 = gw.state().await["models"][0]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["pinned_sessions"].as_u64().unwrap())
        .sum();
    assert_eq!(pinned, 4);
}

#[tokio::test]
async fn our_header_wins_over_the_clients_and_the_body() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    let first = chat_with(&gw, &[("x-switchboard-session", "s")], json!({})).await;
    for _ in 0..4 {
        let again = chat_with(
            &gw,
            &[("x-switchboard-session", "s"), ("session-id", &rand_id())],
            json!({"prompt_cache_key": rand_id()}),
        )
        .await;
        assert_eq!(again, first);
    }
}

fn rand_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("other-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test]
async fn a_session_whose_deployment_fails_is_re_pinned_and_said_so() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    let mut rx = gw.gateway.events().subscribe();
    let first = chat_with(&gw, &[("x-switchboard-session", "s")], json!({})).await;
    let (gone, other) = if first == "a" { (&a, "b") } else { (&b, "a") };
    gone.set_mode(fail(429, Some(60.0), None));
    assert_eq!(
        chat_with(&gw, &[("x-switchboard-session", "s")], json!({})).await,
        other
    );
    gone.set_mode(Mode::Normal);
    // It stays where it went, though the first may be back.
    assert_eq!(
        chat_with(&gw, &[("x-switchboard-session", "s")], json!({})).await,
        other
    );
    let events = route_events(&mut rx);
    assert!(
        events.iter().any(|e| matches!(e, RouteChange::Repinned { from, to, .. } if **from == *first && &**to == other)),
        "{events:?}"
    );
}

#[tokio::test]
async fn affinity_off_rotates_keyed_requests_too() {
    let (a, b) = (mock().await, mock().await);
    let gw = gateway(&format!(
        "[[models]]\nname = \"m\"\naffinity = \"off\"\n{}{}",
        deployment("a", &a, ""),
        deployment("b", &b, "")
    ))
    .await;
    let picks: Vec<String> = futures_join(&gw).await;
    assert_ne!(picks[0], picks[1]);
}

async fn futures_join(gw: &TestGateway) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..2 {
        out.push(chat_with(gw, &[("x-switchboard-session", "s")], json!({})).await);
    }
    out
}

#[tokio::test]
async fn a_recovered_primary_is_probed_and_takes_its_traffic_back_within_the_interval() {
    let (ptu, backup) = (mock().await, mock().await);
    let gw = gateway(&format!(
        "[routing]\ncooldown_s = 120\nprobe_interval_s = 0.2\n\n[[models]]\nname = \"m\"\n{}{}",
        deployment("ptu", &ptu, "priority = 1"),
        deployment("backup", &backup, "priority = 2")
    ))
    .await;
    ptu.set_mode(fail(503, None, None));
    for _ in 0..3 {
        let r = gw.chat("m").await;
        assert_eq!(header(&r, "x-switchboard-deployment"), "backup");
    }
    assert_eq!(gw.deployment("ptu").await["state"], "cooling_down");
    let mut rx = gw.gateway.events().subscribe();
    let failed_probes = ptu.stats().requests;
    ptu.set_mode(Mode::Normal);
    // The gateway's own probe, not a user's request, brings it back.
    let recovered = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            if let Ok(p) = rx.recv().await
                && let Event::Deployment(d) = &*p.event
                && &*d.deployment == "ptu"
                && matches!(d.change, switchboard::events::DeploymentChange::Recovered)
            {
                return;
            }
        }
    })
    .await;
    assert!(
        recovered.is_ok(),
        "no recovery within 5 s of a 120 s cooldown"
    );
    assert!(ptu.stats().requests > failed_probes, "the probe reached it");
    let r = gw.chat("m").await;
    assert_eq!(header(&r, "x-switchboard-deployment"), "ptu");
}

#[tokio::test]
async fn a_fallbacks_stream_names_the_model_asked_for_in_every_chunk() {
    let (a, mini) = (mock().await, mock().await);
    let gw = gateway(&two_models(
        &deployment("a", &a, "enabled = false"),
        "fallbacks = [\"gpt-4o-mini\"]",
        &deployment("mini", &mini, ""),
    ))
    .await;
    let r = gw
        .post(
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-model"), "gpt-4o-mini");
    let frames = sse_data(r).await;
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> = frames[..frames.len() - 1]
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert!(chunks.len() > 1);
    for c in &chunks {
        assert_eq!(c["model"], "gpt-4o", "{c}");
    }
}

/// A deployment of model `gpt-4o` on a mock speaking `provider`'s API.
async fn provider_mock(provider: switchboard::mock_upstream::MockProvider) -> (MockHandle, String) {
    use switchboard::mock_upstream::MockProvider;
    let m = mock_with(|o| {
        o.provider = provider;
        if provider != MockProvider::Openai {
            o.api_key = Some("sk-test-provider-0123456789".into());
        }
        if provider == MockProvider::Bedrock {
            o.api_key = Some("bedrock-api-key-0123456789".into());
        }
    })
    .await;
    let entry = match provider {
        MockProvider::Anthropic => format!(
            "\n[[models.deployments]]\nname = \"small\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"sk-test-provider-0123456789\"\nmodel_id = \"claude-sonnet-4-5\"\n",
            m.base_url()
        ),
        MockProvider::Bedrock => format!(
            "\n[[models.deployments]]\nname = \"small\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\napi_key = \"bedrock-api-key-0123456789\"\nmodel_id = \"anthropic.claude-sonnet-4-5-20250929-v1:0\"\n",
            m.base_url()
        ),
        MockProvider::Azure => format!(
            "\n[[models.deployments]]\nname = \"small\"\nprovider = \"azure\"\napi_base = \"{}\"\napi_version = \"2024-10-21\"\napi_key = \"sk-test-provider-0123456789\"\nmodel_id = \"gpt-4o\"\n",
            m.base_url()
                .trim_end_matches("/v1")
                .trim_end_matches("/openai")
        ),
        _ => deployment("small", &m, ""),
    };
    (m, entry)
}

#[tokio::test]
async fn each_providers_prompt_too_long_goes_to_the_larger_model() {
    use switchboard::mock_upstream::MockProvider;
    for (provider, message) in [
        (
            MockProvider::Openai,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
        ),
        (
            MockProvider::Azure,
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.",
        ),
        (
            MockProvider::Anthropic,
            "prompt is too long: 211384 tokens > 200000 maximum",
        ),
        (
            MockProvider::Bedrock,
            "Input is too long for requested model.",
        ),
    ] {
        let (small, entry) = provider_mock(provider).await;
        let big = mock().await;
        let gw = gateway(&two_models(
            &entry,
            "context_window_fallbacks = [\"gpt-4o-mini\"]",
            &deployment("big", &big, ""),
        ))
        .await;
        small.set_mode(fail(400, None, Some(message)));
        let r = gw.chat("gpt-4o").await;
        assert_eq!(r.status(), 200, "{provider:?}: {}", r.text().await.unwrap());
        assert_eq!(
            header(&r, "x-switchboard-model"),
            "gpt-4o-mini",
            "{provider:?}"
        );
        assert_eq!(small.stats().requests, 1, "{provider:?}");
    }
}

#[tokio::test]
async fn after_a_fallback_with_nothing_the_answer_names_the_deployment_last_tried() {
    let (_a, _mini, gw) = fallback_pair(
        fail(500, None, None),
        "fallbacks = [\"gpt-4o-mini\"]",
        Mode::Normal,
        "enabled = false",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 502);
    assert_eq!(header(&r, "x-switchboard-deployment"), "a");
    assert_eq!(header(&r, "x-switchboard-attempts"), "1");
}

#[tokio::test]
async fn a_policy_refusal_from_the_larger_model_goes_back_with_its_own_reason() {
    let (_small, _big, gw) = fallback_pair(
        refusal("prompt is too long: 210000 tokens > 200000 maximum"),
        "context_window_fallbacks = [\"gpt-4o-mini\"]",
        refusal("Your request was rejected as a result of our safety system."),
        "",
    )
    .await;
    let r = gw.chat("gpt-4o").await;
    assert_eq!(r.status(), 400);
    assert_eq!(header(&r, "x-switchboard-deployment"), "mini");
    assert!(message_of(r).await.contains("safety system"));
}

#[tokio::test]
async fn a_two_hop_fallback_is_said_once_per_hop_while_it_lasts() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let gw = gateway(&format!(
        "[[models]]\nname = \"m\"\nfallbacks = [\"b\", \"c\"]\n{}\n[[models]]\nname = \"b\"\n{}\n[[models]]\nname = \"c\"\n{}",
        deployment("a", &a, "enabled = false"),
        deployment("b1", &b, "enabled = false"),
        deployment("c1", &c, ""),
    ))
    .await;
    let mut rx = gw.gateway.events().subscribe();
    for _ in 0..3 {
        let r = gw.chat("m").await;
        assert_eq!(header(&r, "x-switchboard-model"), "c");
    }
    let hops: Vec<String> = route_events(&mut rx)
        .into_iter()
        .map(|e| match e {
            RouteChange::FellBack { to_model, .. } => to_model.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(hops, vec!["b", "c"]);
}
