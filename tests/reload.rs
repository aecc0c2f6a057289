//! Hot reload of the config file: real files, a real gateway, the reload
//! awaited through its routing event rather than a sleep.

mod common;

use std::time::Duration;

use common::*;
use switchboard::events::{ConfigEvent, Event, Published};
use switchboard::mock_upstream::Mode;
use tokio::sync::broadcast;

/// The next config event, or a failure after 10 s (the watcher polls every 0.5 s).
async fn next_config_event(rx: &mut broadcast::Receiver<Published>) -> ConfigEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    if let Event::Config(c) = &*ev {
                        return c.clone();
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(e) => panic!("event bus closed: {e}"),
            }
        }
    })
    .await
    .expect("a config event within 10 s")
}

async fn served_by(gw: &TestGateway, n: usize) -> Vec<String> {
    let mut names = Vec::new();
    for _ in 0..n {
        let r = gw.chat("m").await;
        assert_eq!(r.status(), 200);
        names.push(header(&r, "x-switchboard-deployment"));
    }
    names
}

#[tokio::test]
async fn an_edit_on_disk_is_applied_and_keeps_what_the_router_knows() {
    let (a, b, c) = (mock().await, mock().await, mock().await);
    let gw = gateway(&one_model(
        "",
        &[
            deployment("a", &a, "tpm_limit = 100000"),
            deployment("b", &b, "tpm_limit = 100000"),
        ],
    ))
    .await;
    served_by(&gw, 4).await;
    let before = gw.deployment("a").await;
    assert_eq!(before["requests"], 2);
    let used = before["tpm_used"].as_u64().unwrap();
    assert!(used > 0);

    let mut rx = gw.gateway.events().subscribe();
    // By hand: a's limit doubles, b leaves, c comes in.
    std::fs::write(
        &gw.config_path,
        one_model(
            "",
            &[
                deployment("a", &a, "tpm_limit = 200000"),
                deployment("c", &c, "tpm_limit = 200000"),
            ],
        ),
    )
    .unwrap();
    let event = next_config_event(&mut rx).await;
    assert!(event.applied, "{}", event.message);
    assert!(event.message.contains("m/a updated"), "{}", event.message);
    assert!(event.message.contains("m/b removed"), "{}", event.message);
    assert!(event.message.contains("m/c added"), "{}", event.message);

    let state = gw.state().await;
    let names: Vec<&str> = state["models"][0]["deployments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
    let after = gw.deployment("a").await;
    assert_eq!(after["tpm_limit"], 200000);
    assert_eq!(after["requests"], 2, "counters survive the reload");
    assert_eq!(
        after["tpm_used"].as_u64().unwrap(),
        used,
        "the TPM window survives"
    );

    let served = served_by(&gw, 4).await;
    assert_eq!(served.iter().filter(|n| *n == "a").count(), 2, "{served:?}");
    assert_eq!(served.iter().filter(|n| *n == "c").count(), 2, "{served:?}");
    assert_eq!(b.stats().requests, 2, "b got nothing after it left");
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_running_config_and_says_where() {
    let (a, b) = (mock().await, mock().await);
    let good = one_model("", &[deployment("a", &a, ""), deployment("b", &b, "")]);
    let gw = gateway(&good).await;
    let mut rx = gw.gateway.events().subscribe();

    let broken = good.replace("name = \"b\"", "name = \"b\"\ntpm_limit = -5");
    std::fs::write(&gw.config_path, &broken).unwrap();
    let event = next_config_event(&mut rx).await;
    assert!(!event.applied);
    let line = 1 + broken.lines().position(|l| l == "tpm_limit = -5").unwrap();
    let at = format!("switchboard.toml:{line}: models[0].deployments[1].tpm_limit");
    assert!(event.message.contains(&at), "{}", event.message);

    // Still serving both deployments, exactly as before.
    let served = served_by(&gw, 4).await;
    assert_eq!(served.iter().filter(|n| *n == "b").count(), 2, "{served:?}");

    // A fix is picked up.
    std::fs::write(
        &gw.config_path,
        good.replace("name = \"b\"", "name = \"b\"\nenabled = false"),
    )
    .unwrap();
    let event = next_config_event(&mut rx).await;
    assert!(event.applied, "{}", event.message);
    assert_eq!(event.message, "m/b disabled");
    assert_eq!(served_by(&gw, 3).await, ["a", "a", "a"]);
}

#[tokio::test]
async fn a_half_written_file_is_not_applied_until_it_is_whole() {
    let a = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &a, "")])).await;
    let mut rx = gw.gateway.events().subscribe();
    // A model added in one go: the reload sees the final file only.
    let text = format!(
        "{}\n[[models]]\nname = \"second\"\n{}",
        one_model("", &[deployment("a", &a, "")]),
        deployment("x", &a, "")
    );
    std::fs::write(&gw.config_path, &text).unwrap();
    let event = next_config_event(&mut rx).await;
    assert!(event.applied, "{}", event.message);
    assert!(
        event.message.contains("model second added"),
        "{}",
        event.message
    );
    let r = gw.chat("second").await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-switchboard-deployment"), "x");
}

#[tokio::test]
async fn a_toggle_through_the_admin_api_keeps_a_hand_edit_made_meanwhile() {
    let (_a, _b, gw) = pair("", Mode::Normal, Mode::Normal).await;
    let mut rx = gw.gateway.events().subscribe();
    // A hand edit lands, and before the watcher has even seen it, an
    // operator toggles b: the write starts from the file as it is now.
    let edited = std::fs::read_to_string(&gw.config_path).unwrap().replace(
        "name = \"a\"",
        "# edited by hand\nname = \"a\"\ntpm_limit = 5000",
    );
    std::fs::write(&gw.config_path, &edited).unwrap();
    let r = gw
        .client
        .put(gw.url("/admin/models/m/deployments/b/enabled"))
        .body("false")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    assert!(text.contains("# edited by hand"), "{text}");
    assert!(text.contains("tpm_limit = 5000"), "{text}");
    assert!(text.contains("enabled = false"), "{text}");
    // And the hand edit reaches the router too.
    let event = next_config_event(&mut rx).await;
    assert!(event.applied);
    assert!(event.message.contains("m/a updated"), "{}", event.message);
    assert_eq!(gw.deployment("a").await["tpm_limit"], 5000);
    assert_eq!(gw.deployment("b").await["enabled"], false);
}

#[tokio::test]
async fn our_own_writes_do_not_announce_a_reload() {
    let (_a, _b, gw) = pair("", Mode::Normal, Mode::Normal).await;
    let mut rx = gw.gateway.events().subscribe();
    gw.gateway.set_enabled("m", "b", false).await.unwrap();
    // Reading our own write back finds nothing to change, and says nothing.
    assert_eq!(gw.gateway.reload().await.as_deref(), Some("no change"));
    let mut seen = Vec::new();
    while let Ok(ev) = rx.try_recv() {
        seen.push(ev);
    }
    assert!(
        !seen.iter().any(|ev| matches!(&**ev, Event::Config(_))),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 1, "only the toggle itself: {seen:?}");
    assert_eq!(gw.deployment("b").await["enabled"], false);
}

/// A fixed AWS secret, a new region or API version in the file is a new way
/// to call the deployment: applied, not ignored because the limit is the same.
#[tokio::test]
async fn an_edit_to_a_cloud_deployments_keys_or_region_is_applied() {
    use switchboard::mock_upstream::MockProvider;
    let m = mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.aws_access_key_id = Some("AKIDRELOAD".into());
        o.aws_secret_access_key = Some("the-right-secret".into());
    })
    .await;
    let bedrock = |secret: &str, region: &str| {
        format!(
            "\n[[models.deployments]]\nname = \"b\"\nprovider = \"bedrock\"\nregion = \"{region}\"\napi_base = \"{}\"\naws_access_key_id = \"AKIDRELOAD\"\naws_secret_access_key = \"{secret}\"\nmodel_id = \"anthropic.claude-v2:1\"\n",
            m.base_url()
        )
    };
    let gw = gateway(&one_model("", &[bedrock("a-wrong-secret", "us-east-1")])).await;
    assert_eq!(
        gw.chat("m").await.status(),
        502,
        "the wrong secret is refused"
    );
    let mut rx = gw.gateway.events().subscribe();
    std::fs::write(
        &gw.config_path,
        one_model("", &[bedrock("the-right-secret", "us-east-1")]),
    )
    .unwrap();
    let event = next_config_event(&mut rx).await;
    assert!(event.message.contains("m/b updated"), "{}", event.message);
    assert!(
        !event.message.contains("the-right-secret"),
        "{}",
        event.message
    );
    // Its failure cooldown stays (the router's), so ask the deployment itself.
    let r = gw
        .post("/admin/models/m/deployments/b/test", serde_json::json!({}))
        .await;
    let v = json(r).await;
    assert_eq!(v["ok"], true, "{v}");

    std::fs::write(
        &gw.config_path,
        one_model("", &[bedrock("the-right-secret", "eu-west-1")]),
    )
    .unwrap();
    let event = next_config_event(&mut rx).await;
    assert!(event.message.contains("m/b updated"), "{}", event.message);
    assert_eq!(gw.deployment("b").await["region"], "eu-west-1");
}
