//! Provider keys never leave the gateway: not in its log (at debug level),
//! the routing events, /admin/state, /metrics, the errors clients get, nor
//! what an upstream echoes back. The real binary, real upstreams.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use futures_util::StreamExt;

const KEY_A: &str = "sk-LEAKCHECK-aaaa-0123456789abcdef";
const KEY_B: &str = "sk-LEAKCHECK-bbbb-0123456789abcdef";
const KEY_C: &str = "sk-LEAKCHECK-cccc-0123456789abcdef";
const KEY_D: &str = "sk-LEAKCHECK-dddd-0123456789abcdef";
const ADMIN: &str = "admin-LEAKCHECK-0123456789";

fn entry(name: &str, base: &str, key: &str) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\napi_base = \"{base}\"\napi_key = \"{key}\"\nmodel_id = \"x\"\n"
    )
}

/// Stops the gateway process even when an assertion fails first.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary serving `config` on `port`, its debug log in `log`,
/// once it answers.
async fn serve_logging(
    config: &std::path::Path,
    log: &std::path::Path,
    port: u16,
) -> (Reap, String) {
    let server = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
        .spawn()
        .unwrap();
    let server = Reap(server);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (server, base)
}

impl Reap {
    /// SIGTERM, and wait for the gateway to stop (its log is then complete).
    async fn terminate(&mut self) {
        Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        let stop = Instant::now() + Duration::from_secs(15);
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < stop, "the gateway stops");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn assert_clean(what: &str, text: &str) {
    for key in [KEY_A, KEY_B, KEY_C, KEY_D, ADMIN] {
        assert!(!text.contains(key), "{what} leaks {key}:\n{text}");
    }
}

#[tokio::test]
async fn keys_stay_out_of_logs_events_state_metrics_and_errors() {
    let a = mock_with(|o| o.api_key = Some(KEY_A.into())).await;
    // b and d reject their keys and quote them in full, as some servers do;
    // c answers a client error that quotes its key.
    let (b, c, d) = (mock().await, mock().await, mock().await);
    b.set_mode(fail(
        401,
        None,
        Some(&format!("Incorrect API key: {KEY_B}")),
    ));
    c.set_mode(fail(
        400,
        None,
        Some(&format!("bad request for key {KEY_C}")),
    ));
    d.set_mode(fail(
        401,
        None,
        Some(&format!("Incorrect API key: {KEY_D}")),
    ));

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("sb.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_key = \"{ADMIN}\"\n\n[[models]]\nname = \"m\"\n{}{}\n[[models]]\nname = \"m2\"\n{}",
            entry("b", &b.base_url(), KEY_B),
            entry("a", &a.base_url(), KEY_A),
            entry("c", &c.base_url(), KEY_C),
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let (mut server, base) = serve_logging(&config, &log, port).await;
    let client = reqwest::Client::new();

    // Watch the events while the traffic runs.
    let events = client
        .get(format!("{base}/admin/events"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let watcher = tokio::spawn(async move {
        let mut text = String::new();
        let mut body = events.bytes_stream();
        let stop = tokio::time::sleep(Duration::from_secs(3));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                chunk = body.next() => match chunk {
                    Some(Ok(c)) => text.push_str(&String::from_utf8_lossy(&c)),
                    _ => break,
                },
            }
        }
        text
    });

    let mut seen = String::new();
    let chat = |model: &'static str| {
        client
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string())
            .send()
    };
    for _ in 0..4 {
        let r = chat("m").await.unwrap();
        assert_eq!(r.status(), 200, "b's 401 fails over to a");
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&r.text().await.unwrap());
    }
    let r = chat("m2").await.unwrap();
    assert_eq!(r.status(), 400, "c's client error is passed back");
    let text = r.text().await.unwrap();
    assert!(text.contains("sk-…"), "the echoed key is masked: {text}");
    seen.push_str(&text);
    // A deployment whose test fails: 422 with the upstream's error, scrubbed.
    let r = client
        .post(format!("{base}/admin/models/m/deployments"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body(serde_json::json!({"name": "d", "api_base": d.base_url(), "api_key": KEY_D, "model_id": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    seen.push_str(&r.text().await.unwrap());
    for path in ["/admin/state", "/metrics"] {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let text = r.text().await.unwrap();
        if path == "/admin/state" {
            assert!(
                text.contains("\"api_key\":\"sk-…"),
                "masked keys are shown: {text}"
            );
        }
        assert_clean(path, &text);
    }
    assert_clean("client responses", &seen);
    let events = watcher.await.unwrap();
    assert!(
        events.contains("\"deployment\":\"b\""),
        "events were seen: {events}"
    );
    assert_clean("/admin/events", &events);

    server.terminate().await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("attempt refused by the upstream"),
        "b's refused key was logged: {log}"
    );
    assert!(log.contains("DEBUG"), "debug log was on: {log}");
    assert_clean("the log", &log);
}

const AWS_SECRET: &str = "LEAKCHECKawsSecretKey0123456789abcdefABCD";
const AWS_TOKEN: &str = "LEAKCHECKsessionToken0123456789abcdefABCDEFGH";
const AWS_KEY_ID: &str = "AKIALEAKCHECK0123456";

/// The cloud providers' secrets: an AWS secret and session token (one
/// deployment signing right, one signing with a secret Bedrock refuses,
/// one whose upstream echoes the secret in a client error), and a Vertex
/// service-account key with the tokens issued for it.
#[tokio::test]
async fn aws_secrets_and_service_account_keys_stay_out_of_everything() {
    use switchboard::mock_upstream::MockProvider;
    let bedrock = |secret: &'static str| {
        mock_with(move |o| {
            o.provider = MockProvider::Bedrock;
            o.aws_access_key_id = Some(AWS_KEY_ID.into());
            o.aws_secret_access_key = Some(secret.into());
        })
    };
    let good = bedrock(AWS_SECRET).await;
    let refusing = bedrock("some-other-secret").await;
    let echoing = bedrock(AWS_SECRET).await;
    echoing.set_mode(fail(
        400,
        None,
        Some(&format!(
            "malformed request signed with {AWS_SECRET} / {AWS_TOKEN}"
        )),
    ));
    let vertex = mock_with(|o| o.provider = MockProvider::Vertex).await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("sa.json");
    let credentials_text = vertex.credentials_json();
    std::fs::write(&credentials, &credentials_text).unwrap();
    let key_line: String =
        serde_json::from_str::<serde_json::Value>(&credentials_text).unwrap()["private_key"]
            .as_str()
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let aws = |name: &str, m: &switchboard::mock_upstream::MockHandle| {
        format!(
            "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\naws_access_key_id = \"{AWS_KEY_ID}\"\naws_secret_access_key = \"{AWS_SECRET}\"\naws_session_token = \"{AWS_TOKEN}\"\nmodel_id = \"anthropic.claude-v2:1\"\n",
            m.base_url()
        )
    };
    let config = dir.path().join("sb.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_key = \"{ADMIN}\"\n\n[[models]]\nname = \"m\"\n{}{}\n[[models.deployments]]\nname = \"vertex\"\nprovider = \"vertex\"\nproject = \"p\"\nregion = \"us-east5\"\napi_base = \"{}\"\ncredentials = \"file:sa.json\"\nmodel_id = \"claude-sonnet-4-5\"\n\n[[models]]\nname = \"m2\"\n{}",
            aws("refused", &refusing),
            aws("good", &good),
            vertex.base_url(),
            aws("echoing", &echoing),
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let (mut server, base) = serve_logging(&config, &log, port).await;
    let client = reqwest::Client::new();
    let clean = |what: &str, text: &str| {
        for secret in [
            AWS_SECRET,
            AWS_TOKEN,
            AWS_KEY_ID,
            key_line.as_str(),
            "ya29.mock",
            ADMIN,
        ] {
            assert!(!text.contains(secret), "{what} leaks {secret}:\n{text}");
        }
    };
    let mut seen = String::new();
    for model in ["m", "m", "m", "m", "m", "m", "m2"] {
        let r = client
            .post(format!("{base}/v1/chat/completions"))
            .header("content-type", "application/json")
            .body(serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}).to_string())
            .send()
            .await
            .unwrap();
        if model == "m" {
            assert_eq!(r.status(), 200, "the refused signature fails over");
        } else {
            assert_eq!(r.status(), 400, "the echoing upstream's client error");
        }
        seen.push_str(&format!("{:?}", r.headers()));
        seen.push_str(&r.text().await.unwrap());
    }
    assert!(vertex.stats().token_requests >= 1, "vertex took traffic");
    clean("client responses", &seen);
    for path in ["/admin/state", "/metrics"] {
        let text = client
            .get(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if path == "/admin/state" {
            assert!(
                text.contains("\"aws_access_key_id\":\"AKI"),
                "masked: {text}"
            );
            assert!(text.contains("sa.json"), "{text}");
        }
        clean(path, &text);
    }
    server.terminate().await;
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("InvalidSignatureException"),
        "debug log was on: {log}"
    );
    clean("the log", &log);
}
