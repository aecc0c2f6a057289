//! Test harness: real mock upstreams and a real gateway on loopback ports.
#![allow(dead_code)]

pub mod agents;
pub mod claude;
pub mod sdk;

use std::net::SocketAddr;
use std::path::PathBuf;

use switchboard::config::Config;
use switchboard::gateway::{self, Gateway};
use switchboard::mock_upstream::{self, MockHandle, MockOptions, Mode};
use tokio_util::sync::CancellationToken;

pub struct TestGateway {
    pub addr: SocketAddr,
    pub gateway: Gateway,
    pub config_path: PathBuf,
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
    pub client: reqwest::Client,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn mock() -> MockHandle {
    mock_with(|_| {}).await
}

pub async fn mock_with(f: impl FnOnce(&mut MockOptions)) -> MockHandle {
    let mut opts = MockOptions::new("127.0.0.1:0".parse().unwrap());
    f(&mut opts);
    mock_upstream::spawn(opts)
        .await
        .expect("mock upstream starts")
}

/// A deployment table entry pointing at a mock.
pub fn deployment(name: &str, m: &MockHandle, extra: &str) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\napi_base = \"{}\"\napi_key = \"sk-test-{name}-123456\"\nmodel_id = \"{name}-model\"\n{extra}\n",
        m.base_url()
    )
}

pub async fn gateway(config_text: &str) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("switchboard.toml");
    std::fs::write(&config_path, config_text).unwrap();
    let config = Config::load(&config_path).expect("test config is valid");
    let gw = Gateway::new(&config).unwrap();
    let stop = CancellationToken::new();
    let addr = gateway::spawn(gw.clone(), "127.0.0.1:0".parse().unwrap(), stop.clone())
        .await
        .unwrap();
    TestGateway {
        addr,
        gateway: gw,
        config_path,
        dir,
        stop,
        client: reqwest::Client::new(),
    }
}

/// A config with one model `m` and the given deployments.
pub fn one_model(server: &str, deployments: &[String]) -> String {
    format!(
        "[server]\n{server}\n\n[[models]]\nname = \"m\"\n{}",
        deployments.concat()
    )
}

impl TestGateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    pub async fn chat(&self, model: &str) -> reqwest::Response {
        self.post(
            "/v1/chat/completions",
            serde_json::json!({"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
    }

    pub async fn state(&self) -> serde_json::Value {
        json(
            self.client
                .get(self.url("/admin/state"))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// The state of deployment `name` of model `m`.
    pub async fn deployment(&self, name: &str) -> serde_json::Value {
        let s = self.state().await;
        s["models"][0]["deployments"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no deployment {name} in {s}"))
    }
}

/// `n` chat requests to `model`, each answered 200; how many each
/// deployment served.
pub async fn served_by(
    gw: &TestGateway,
    model: &str,
    n: usize,
) -> std::collections::HashMap<String, usize> {
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let r = gw.chat(model).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        *counts
            .entry(header(&r, "x-switchboard-deployment"))
            .or_default() += 1;
    }
    counts
}

pub fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

pub async fn json(r: reqwest::Response) -> serde_json::Value {
    let bytes = r.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// Reads a whole SSE body and returns its `data:` payloads.
pub async fn sse_data(r: reqwest::Response) -> Vec<String> {
    let text = r.text().await.unwrap();
    text.split("\n\n")
        .filter_map(|frame| frame.trim().strip_prefix("data: ").map(str::to_string))
        .collect()
}

/// An upstream error answer of `status`, with an optional Retry-After and message.
pub fn fail(status: u16, retry_after_s: Option<f64>, message: Option<&str>) -> Mode {
    Mode::Fail {
        status,
        retry_after_s,
        message: message.map(str::to_string),
    }
}

/// Deployments `a` and `b` of model `m`, on mocks in the given modes, behind a gateway.
pub async fn pair(
    server: &str,
    a_mode: Mode,
    b_mode: Mode,
) -> (MockHandle, MockHandle, TestGateway) {
    let (a, b) = (mock().await, mock().await);
    a.set_mode(a_mode);
    b.set_mode(b_mode);
    let gw = gateway(&one_model(
        server,
        &[deployment("a", &a, ""), deployment("b", &b, "")],
    ))
    .await;
    (a, b, gw)
}

/// A small real HTTP server on loopback, serving `app`: for upstreams the
/// mock cannot play. Returns its `api_base`; it stops with the test's runtime.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

/// A deployment table entry pointing at any base URL.
pub fn deployment_url(name: &str, api_base: &str, extra: &str) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\napi_base = \"{api_base}\"\napi_key = \"sk-test-{name}-123456\"\nmodel_id = \"{name}-model\"\n{extra}\n"
    )
}

/// Sends `body` as written (not re-serialised: `8.0` stays `8.0`).
pub async fn post_raw(gw: &TestGateway, path: &str, body: &str) -> reqwest::Response {
    gw.client
        .post(gw.url(path))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}
