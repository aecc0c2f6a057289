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
async fn a_model_with_no_deployment_offering_responses_says_so() {
    let a = mock_with(|o| {
        o.provider = switchboard::mock_upstream::MockProvider::Anthropic;
    })
    .await;
    let gw = gateway(&format!(
        "[[models]]\nname = \"m\"\n\n[[models.deployments]]\nname = \"a\"\nprovider = \"anthropic\"\napi_base = \"{}\"\nmodel_id = \"claude\"\n",
        a.base_url()
    ))
    .await;
    let r = gw
        .post("/v1/responses", json!({"model": "m", "input": "hi"}))
        .await;
    assert_eq!(r.status(), 404);
    let v = json(r).await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/responses"),
        "{v}"
    );
    assert_eq!(a.stats().requests, 0);
}
