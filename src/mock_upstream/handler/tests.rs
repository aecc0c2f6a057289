use super::*;
use crate::mock_upstream::refusal::{RESET_TOKENS, RETRY_AFTER_MS};

#[test]
fn api_routes_match_every_base_url() {
    assert_eq!(route("/v1/chat/completions"), Route::Api(Endpoint::Chat));
    assert_eq!(
        route("/openai/deployments/gpt4/chat/completions"),
        Route::Api(Endpoint::Chat)
    );
    assert_eq!(
        route("/openai/v1/completions"),
        Route::Api(Endpoint::Completions)
    );
    assert_eq!(route("/v1/embeddings"), Route::Api(Endpoint::Embeddings));
    assert_eq!(route("/v1/models"), Route::Api(Endpoint::Models));
    assert_eq!(route("/v1/other"), Route::NotFound);
    assert_eq!(
        route("/v1/messages/count_tokens"),
        Route::Api(Endpoint::CountTokens)
    );
    assert_eq!(
        route("/model/anthropic.claude-x%3A0/invoke-with-response-stream"),
        Route::Api(Endpoint::InvokeStream)
    );
    assert_eq!(
        route("/model/m/count-tokens"),
        Route::Api(Endpoint::InvokeCount)
    );
    assert_eq!(route("/mock/mode"), Route::Mode);
}

#[test]
fn keys_are_accepted_in_both_headers() {
    let mut headers = HeaderMap::new();
    assert!(authorized(None, &headers));
    assert!(!authorized(Some("k"), &headers));
    headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
    assert!(authorized(Some("k"), &headers));
    assert!(!authorized(Some("other"), &headers));
    let mut azure = HeaderMap::new();
    azure.insert(API_KEY, HeaderValue::from_static("k"));
    assert!(authorized(Some("k"), &azure));
    let mut basic = HeaderMap::new();
    basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic k"));
    assert!(!authorized(Some("k"), &basic));
}

#[test]
fn fail_statuses_outside_errors_become_500() {
    assert_eq!(
        fail_response(200, None, None).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(
        fail_response(1000, None, None).status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let r = fail_response(429, Some(2.5), None);
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    assert_eq!(r.headers()[RETRY_AFTER_MS], "2500");
    assert_eq!(r.headers()[RESET_TOKENS], "2.5s");
    let r = fail_response(503, Some(-1.0), None);
    assert!(r.headers().get(header::RETRY_AFTER).is_none());
    let r = fail_response(503, Some(f64::NAN), Some("down"));
    assert!(r.headers().get(header::RETRY_AFTER).is_none());
    assert!(r.headers().get(RESET_TOKENS).is_none());
}
