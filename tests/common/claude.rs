//! Claude on each platform's mock: Anthropic, Bedrock (SigV4), Vertex
//! (a service account the mock issues tokens for), as deployments.

use super::*;
use switchboard::mock_upstream::{MockHandle, MockProvider};

pub const KEY_ID: &str = "AKIDSWITCHBOARDTEST";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzSWITCH";
pub const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789";

pub async fn bedrock_mock() -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Bedrock;
        o.aws_access_key_id = Some(KEY_ID.into());
        o.aws_secret_access_key = Some(SECRET.into());
        o.tokens = 6;
    })
    .await
}

pub fn bedrock(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"bedrock\"\nregion = \"us-east-1\"\napi_base = \"{}\"\naws_access_key_id = \"{KEY_ID}\"\naws_secret_access_key = \"{SECRET}\"\nmodel_id = \"us.anthropic.claude-sonnet-4-5-20250929-v1:0\"\n",
        m.base_url()
    )
}

pub async fn vertex_mock() -> (MockHandle, tempfile::TempDir, String) {
    let m = mock_with(|o| {
        o.provider = MockProvider::Vertex;
        o.tokens = 6;
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vertex-sa.json");
    std::fs::write(&path, m.credentials_json()).unwrap();
    (m, dir, path.display().to_string())
}

pub fn vertex(name: &str, m: &MockHandle, credentials: &str) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"vertex\"\nproject = \"mock-project\"\nregion = \"us-east5\"\napi_base = \"{}\"\ncredentials = \"file:{credentials}\"\nmodel_id = \"claude-sonnet-4-5@20250929\"\n",
        m.base_url()
    )
}

pub async fn anthropic_mock() -> MockHandle {
    mock_with(|o| {
        o.provider = MockProvider::Anthropic;
        o.api_key = Some(ANTHROPIC_KEY.into());
        o.tokens = 6;
    })
    .await
}

pub fn anthropic(name: &str, m: &MockHandle) -> String {
    format!(
        "\n[[models.deployments]]\nname = \"{name}\"\nprovider = \"anthropic\"\napi_base = \"{}\"\napi_key = \"{ANTHROPIC_KEY}\"\nmodel_id = \"claude-sonnet-4-5-20250929\"\n",
        m.base_url()
    )
}
