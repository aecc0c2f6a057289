//! The dashboard's remote source against a real `switchboard serve` on
//! loopback (the binary, so it can be killed and started again): the first
//! check of URL and key, state, events, the toggle, the form's test and
//! save, the test of a deployment, and a gateway that goes away and comes
//! back. Plus the admin API's side of it: event ids, resuming, the counts of
//! what was missed.

mod common;
mod serve;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serve::{Serve, free_port};
use switchboard::config::{ApiKey, DeploymentSpec, Provider};
use switchboard::dashboard::source::AttachError;
use switchboard::dashboard::tui::Msg;
use switchboard::dashboard::{Remote, Source};
use switchboard::events::Event;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The admin key `serve` gets in `SB_ADMIN`.
pub const ADMIN_KEY: &str = "adm-test-0123456789";

fn key() -> Option<ApiKey> {
    Some(ApiKey::literal(ADMIN_KEY))
}

/// A config with `gpt-4o` on two mocks, guarded by the admin key.
fn config(dir: &Path, a: &str, b: &str) -> PathBuf {
    let path = dir.join("switchboard.toml");
    let text = format!(
        "# the operator's comment\n[server]\nadmin_key = \"env:SB_ADMIN\"\n\n[[models]]\nname = \"gpt-4o\"\n\n[[models.deployments]]\nname = \"eastus\"\napi_base = \"{a}\"\napi_key = \"sk-east-0123456789\"\nmodel_id = \"east-model\"\ntpm_limit = 60000\n\n[[models.deployments]]\nname = \"westus\"\napi_base = \"{b}\"\napi_key = \"sk-west-0123456789\"\nmodel_id = \"west-model\"\ntpm_limit = 30000\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// The next message that `pred` picks, within 10 s.
async fn next<T>(
    rx: &mut mpsc::Receiver<Msg>,
    what: &str,
    mut pred: impl FnMut(Msg) -> Option<T>,
) -> T {
    let wait = async {
        while let Some(msg) = rx.recv().await {
            if let Some(t) = pred(msg) {
                return t;
            }
        }
        panic!("the feeds stopped");
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn link(live: bool) -> impl FnMut(Msg) -> Option<switchboard::dashboard::app::Link> {
    move |m| match m {
        Msg::Link(l) if l.live == live => Some(l),
        _ => None,
    }
}

async fn chat(url: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(r#"{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn spec(name: &str, api_base: &str) -> DeploymentSpec {
    DeploymentSpec {
        name: name.into(),
        provider: Provider::OpenAi,
        api_base: api_base.into(),
        api_version: None,
        api_key: None,
        model_id: "fallback-model".into(),
        tpm_limit: Some(40_000),
        enabled: None,
        ..DeploymentSpec::default()
    }
}

#[tokio::test]
async fn attach_checks_the_url_and_the_key_before_anything_else() {
    let (a, b) = (mock().await, mock().await);
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(
        &config(dir.path(), &a.base_url(), &b.base_url()),
        free_port(),
        ADMIN_KEY,
    );

    let err = Remote::connect(&serve.url(), None).await.err().unwrap();
    assert!(matches!(err, AttachError::KeyMissing { .. }), "{err}");
    let err = Remote::connect(&serve.url(), Some(ApiKey::literal("adm-wrong-key-0000")))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, AttachError::KeyRefused { status: 401, .. }),
        "{err}"
    );
    assert!(
        !err.to_string().contains("adm-wrong"),
        "never the key: {err}"
    );

    let closed = format!("http://127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let err = Remote::connect(&closed, key()).await.err().unwrap();
    assert!(matches!(err, AttachError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("connection refused"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Not a gateway: a mock upstream answers /admin/state with 404.
    let err = Remote::connect(&a.base_url(), key()).await.err().unwrap();
    assert!(
        matches!(err, AttachError::Refused { status: 404, .. }),
        "{err}"
    );

    // The /v1 an operator may paste is taken off.
    let (remote, state) = Remote::connect(&format!("{}/v1", serve.url()), key())
        .await
        .unwrap();
    assert_eq!(remote.url(), serve.url());
    assert_eq!(state.models[0].name, "gpt-4o");
    assert!(state.gateway.config_path.ends_with("switchboard.toml"));
    assert!(!remote.key_in_clear(), "loopback");
}

#[tokio::test]
async fn the_remote_source_shows_state_and_events_and_acts_on_the_gateway() {
    let (a, b) = (mock().await, mock().await);
    let fallback = mock_with(|o| o.model = Some("fallback-model".into())).await;
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &a.base_url(), &b.base_url());
    let serve = Serve::start(&path, free_port(), ADMIN_KEY);
    // Traffic before the dashboard attaches: its figures show from the first state.
    for _ in 0..6 {
        assert_eq!(chat(&serve.url()).await, 200);
    }
    let (remote, first) = Remote::connect(&serve.url(), key()).await.unwrap();
    let gpt = &first.models[0];
    assert_eq!(gpt.last_minute.requests, 6, "{:?}", gpt.last_minute);
    assert_eq!(
        gpt.deployments[0].last_minute.attempts, 4,
        "eastus has 2/3 of the weight"
    );
    assert!(gpt.deployments[0].last_minute.p50_ms.is_some());
    assert_eq!(first.last_minute.requests, 6);
    // Whole seconds only: the one under way is not in the sparkline yet.
    assert_eq!(first.requests_per_s_history.len(), 300);
    assert!(first.requests_per_s_history.iter().sum::<u64>() <= 6);

    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    remote.spawn_feeds(tx, stop.clone());
    next(&mut rx, "live", link(true)).await;
    next(&mut rx, "a state", |m| {
        matches!(m, Msg::State { .. }).then_some(())
    })
    .await;

    // Each request the gateway serves arrives as an event.
    assert_eq!(chat(&serve.url()).await, 200);
    let routed = next(&mut rx, "a request event", |m| match m {
        Msg::Events { events, .. } => events.iter().find_map(|e| match &**e {
            Event::Request(r) => Some(r.attempts[0].deployment.to_string()),
            _ => None,
        }),
        _ => None,
    })
    .await;
    assert!(routed == "eastus" || routed == "westus");

    // Space: the gateway's config file and its state change.
    remote
        .set_enabled("gpt-4o".into(), "eastus".into(), false)
        .await
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("enabled = false") && text.contains("# the operator's comment"),
        "{text}"
    );
    let state = remote.state_now().await.unwrap();
    let Msg::State { state, .. } = state else {
        panic!()
    };
    assert!(!state.models[0].deployments[0].enabled);
    let err = remote
        .set_enabled("gpt-4o".into(), "nowhere".into(), true)
        .await
        .unwrap_err();
    assert!(err.contains("404") && err.contains("nowhere"), "{err}");

    // t: one request through the deployment, reported by the gateway.
    let tested = remote.test_existing("gpt-4o".into(), "westus".into()).await;
    assert!(tested.ok, "{tested:?}");
    assert_eq!(tested.model.as_deref(), Some("west-model"));

    // The form: Test & continue tests without saving; Save adds it.
    let bad = remote
        .test_new(
            "gpt-4o".into(),
            spec("fallback", &format!("http://127.0.0.1:{}/v1", free_port())),
        )
        .await
        .unwrap();
    assert!(
        !bad.ok && bad.message.contains("could not reach"),
        "{bad:?}"
    );
    let good = remote
        .test_new("gpt-4o".into(), spec("fallback", &fallback.base_url()))
        .await
        .unwrap();
    assert!(
        good.ok && good.model.as_deref() == Some("fallback-model"),
        "{good:?}"
    );
    assert!(
        !std::fs::read_to_string(&path).unwrap().contains("fallback"),
        "a test saves nothing"
    );
    let refused = remote
        .test_new("gpt-4o".into(), spec("westus", &fallback.base_url()))
        .await
        .unwrap_err();
    assert_eq!(refused.field.as_deref(), Some("name"), "{refused:?}");
    let refused = remote
        .test_new("gpt-4o".into(), spec("x", "not a url"))
        .await
        .unwrap_err();
    assert_eq!(refused.field.as_deref(), Some("api_base"), "{refused:?}");

    let name = remote
        .add("gpt-4o".into(), spec("fallback", &fallback.base_url()))
        .await
        .unwrap();
    assert_eq!(name, "fallback");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains("name = \"fallback\"") && text.contains("tpm_limit = 40000"),
        "{text}"
    );
    let again = remote
        .add("gpt-4o".into(), spec("fallback", &fallback.base_url()))
        .await
        .unwrap_err();
    assert_eq!(again.field.as_deref(), Some("name"));
    // It is live at once: traffic reaches it.
    for _ in 0..6 {
        assert_eq!(chat(&serve.url()).await, 200);
    }
    assert!(fallback.stats().ok >= 2, "{:?}", fallback.stats());
    stop.cancel();
}

#[tokio::test]
async fn a_gateway_that_goes_away_is_shown_down_and_resumed_when_it_is_back() {
    let (a, b) = (mock().await, mock().await);
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(
        &config(dir.path(), &a.base_url(), &b.base_url()),
        free_port(),
        ADMIN_KEY,
    );
    let (remote, _) = Remote::connect(&serve.url(), key()).await.unwrap();
    let (tx, mut rx) = mpsc::channel(1024);
    let stop = CancellationToken::new();
    remote.spawn_feeds(tx, stop.clone());
    let up = next(&mut rx, "live", link(true)).await;

    serve.kill();
    let down = next(&mut rx, "the connection lost", link(false)).await;
    assert!(down.since_ms >= up.since_ms);
    assert!(down.error.is_some());

    serve.restart();
    next(&mut rx, "live again", link(true)).await;
    // The new gateway cannot know what the old one published: said, not skipped.
    let missed = next(&mut rx, "the missed events", |m| match m {
        Msg::Events { events, .. } => events.iter().find_map(|e| match &**e {
            Event::Lagged(l) => Some(l.clone()),
            _ => None,
        }),
        _ => None,
    })
    .await;
    assert_eq!(missed.missed, None);
    let note = missed.note.unwrap();
    assert!(
        note.contains("restarted") && note.contains("disconnected for"),
        "{note}"
    );

    // And the panes go on: events and states of the new gateway.
    assert_eq!(chat(&serve.url()).await, 200);
    next(&mut rx, "a request event after the restart", |m| match m {
        Msg::Events { events, .. } => events
            .iter()
            .any(|e| matches!(&**e, Event::Request(_)))
            .then_some(()),
        _ => None,
    })
    .await;
    next(&mut rx, "a state after the restart", |m| {
        matches!(m, Msg::State { .. }).then_some(())
    })
    .await;
    stop.cancel();
}

/// The admin API's side: ids on every event, and a watcher that comes back
/// with `Last-Event-ID` is told exactly how many it missed.
#[tokio::test]
async fn a_resumed_event_stream_says_how_many_events_it_missed() {
    let m = mock().await;
    let gw = gateway(&one_model("", &[deployment("a", &m, "")])).await;
    let first = gw.client.get(gw.url("/admin/events")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], "text/event-stream");
    let mut body = first.bytes_stream();
    // The stream's position comes first, as an id alone.
    let start = read_until(&mut body, "\n\n").await;
    assert!(
        start.starts_with("id: ") && !start.contains("data:"),
        "{start}"
    );
    assert_eq!(gw.chat("m").await.status(), 200);
    let text = read_until(&mut body, "\"type\":\"request\"").await;
    let id = text
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("an id: {text}"))
        .to_string();
    assert_ne!(
        start.trim(),
        format!("id: {id}"),
        "the event moved the position"
    );
    drop(body);

    for _ in 0..3 {
        assert_eq!(gw.chat("m").await.status(), 200);
    }
    let resumed = gw
        .client
        .get(gw.url("/admin/events"))
        .header("last-event-id", &id)
        .send()
        .await
        .unwrap();
    let mut body = resumed.bytes_stream();
    let text = read_until(&mut body, "\n\n").await;
    let data: serde_json::Value =
        serde_json::from_str(text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap()).unwrap();
    assert_eq!(data["type"], "lagged");
    assert_eq!(data["missed"], 3, "{data}");

    // An id from another start of the gateway: how many is unknown.
    let other = gw
        .client
        .get(gw.url("/admin/events"))
        .header("last-event-id", "1.5")
        .send()
        .await
        .unwrap();
    let mut body = other.bytes_stream();
    let text = read_until(&mut body, "\n\n").await;
    assert!(
        text.contains("\"missed\":null") && text.contains("restarted"),
        "{text}"
    );
}

async fn read_until(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    end: &str,
) -> String {
    use futures_util::StreamExt;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !text.contains(end) {
            let chunk = body.next().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; so far: {text}"));
    text
}

/// `POST .../test` and the add's `?dry_run=true`, as the contract has them.
#[tokio::test]
async fn the_test_routes_answer_ok_or_the_upstreams_error_with_keys_masked() {
    let good = mock().await;
    let locked = mock_with(|o| o.api_key = Some("sk-right-0123456789".into())).await;
    let gw = gateway(&one_model(
        "",
        &[deployment("a", &good, ""), deployment("b", &locked, "")],
    ))
    .await;
    let ok = json(
        gw.post(
            "/admin/models/m/deployments/a/test",
            serde_json::json!(null),
        )
        .await,
    )
    .await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["model"], "a-model");
    assert!(ok["latency_ms"].as_f64().is_some());
    let bad = gw
        .post(
            "/admin/models/m/deployments/b/test",
            serde_json::json!(null),
        )
        .await;
    assert_eq!(bad.status(), 200);
    let bad = json(bad).await;
    assert_eq!(bad["ok"], false, "{bad}");
    assert_eq!(bad["status"], 401);
    let error = bad["error"].as_str().unwrap();
    assert!(!error.contains("sk-test-b-123456"), "masked: {error}");
    assert_eq!(
        gw.post(
            "/admin/models/m/deployments/zz/test",
            serde_json::json!(null)
        )
        .await
        .status(),
        404
    );
    assert_eq!(
        gw.post(
            "/admin/models/zz/deployments/a/test",
            serde_json::json!(null)
        )
        .await
        .status(),
        404
    );

    let spec = serde_json::json!({"name": "c", "api_base": good.base_url(), "model_id": "c-model"});
    let dry = gw
        .post("/admin/models/m/deployments?dry_run=true", spec.clone())
        .await;
    assert_eq!(dry.status(), 200);
    assert_eq!(json(dry).await["ok"], true);
    assert!(
        !std::fs::read_to_string(&gw.config_path)
            .unwrap()
            .contains("\"c\"")
    );
    assert_eq!(
        gw.state().await["models"][0]["deployments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let dup = serde_json::json!({"name": "a", "api_base": good.base_url(), "model_id": "x"});
    assert_eq!(
        gw.post("/admin/models/m/deployments?dry_run=true", dup)
            .await
            .status(),
        409
    );
}
