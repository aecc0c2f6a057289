//! The official openai Python SDK's Responses API against mock-upstream
//! directly: `responses.create`, `responses.stream` with
//! `get_final_response()`, a function tool call and `responses.retrieve`.
//! Needs `python3 -m pip install openai` (.ci/run installs it); outside CI
//! the test says so and passes when it is missing.

mod common;

use common::sdk::{python, sdk_available};
use switchboard::mock_upstream::MockProvider;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_accepts_the_mock_responses_api() {
    if !sdk_available("openai") {
        return;
    }
    for provider in [MockProvider::Openai, MockProvider::Azure] {
        let mock = common::mock_with(|o| {
            o.tokens = 5;
            o.provider = provider;
        })
        .await;
        let seen = python("openai_responses_mock.py", vec![mock.base_url()]).await;
        assert_eq!(seen["create"]["status"], "completed", "{seen}");
        assert_eq!(
            seen["create"]["text"], "The quick brown fox jumps",
            "{seen}"
        );
        let usage = &seen["create"]["usage"];
        assert_eq!(usage["output_tokens"], 5, "{seen}");
        assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);
        assert_eq!(seen["retrieve"], "The quick brown fox jumps", "{seen}");
        assert_eq!(seen["stream"]["deltas"], 5, "{seen}");
        assert_eq!(seen["stream"]["text"], "The quick brown fox jumps");
        assert_eq!(seen["stream"]["final"], "The quick brown fox jumps");
        assert_eq!(seen["stream"]["status"], "completed");
        assert_eq!(seen["call"]["type"], "function_call", "{seen}");
        assert_eq!(seen["call"]["name"], "get_weather");
        assert_eq!(seen["call"]["arguments"]["city"], "Paris");
        assert_eq!(seen["call"]["streamed"], r#"{"city":"Paris"}"#);
        assert_eq!(seen["after_call"], "message", "{seen}");
        assert_eq!(seen["not_found"], 404, "{seen}");
    }
}
