//! `request::inspect` and `Inspected::rewrite` on arbitrary bodies.
//!
//! The whole input is the body; its length picks the endpoint and the
//! deployment's model ID (so the seeds are plain JSON files). Checks, when
//! `inspect` accepts the body:
//! - the rewritten body is accepted by `inspect` again, with `model` equal to
//!   the new ID, the same `stream` and estimate, and usage asked for when the
//!   gateway added it (then nothing left to add), else as the client asked;
//! - if the body parses as a `serde_json::Value`, so does the rewritten one,
//!   and compared as values only `model` changed, plus `stream_options` when
//!   the gateway added `include_usage` (the client's other options kept).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use switchboard::gateway::request::{Endpoint, inspect, json_string};

const MODEL_IDS: [&str; 4] = [
    "upstream-id",
    "azure \"x\" \\ y/\u{1}",
    "modèle-模型-🚀",
    "gpt-4o-2024-08-06",
];
const ENDPOINTS: [Endpoint; 3] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
];

fuzz_target!(|body: &[u8]| {
    let new_id = MODEL_IDS[body.len() % MODEL_IDS.len()];
    let endpoint = ENDPOINTS[(body.len() / MODEL_IDS.len()) % ENDPOINTS.len()];
    let Ok(inspected) = inspect(body, endpoint) else {
        return;
    };
    assert!(!inspected.model.is_empty());
    assert!(inspected.estimate >= inspected.prompt_estimate);

    let out = inspected.rewrite(body, &json_string(new_id));
    let again = match inspect(&out, endpoint) {
        Ok(i) => i,
        Err(e) => panic!(
            "rewritten body rejected ({}): {:?}",
            e.message,
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(again.model, new_id);
    assert_eq!(again.stream, inspected.stream);
    assert_eq!(again.estimate, inspected.estimate);
    assert_eq!(again.prompt_estimate, inspected.prompt_estimate);
    if inspected.adds_usage() {
        assert!(
            inspected.stream,
            "usage added to a request that is not a stream"
        );
        assert!(again.wants_usage, "include_usage added but not read back");
    } else {
        assert_eq!(again.wants_usage, inspected.wants_usage);
    }
    assert!(!again.adds_usage(), "usage to add after it was added");

    let Ok(Value::Object(before)) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    let after = match serde_json::from_slice::<Value>(&out) {
        Ok(Value::Object(m)) => m,
        other => panic!(
            "rewritten body is not a JSON object ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    let mut expected = before.clone();
    expected.insert("model".into(), Value::String(new_id.into()));
    if inspected.adds_usage() {
        let mut options = match before.get("stream_options") {
            Some(Value::Object(o)) => o.clone(),
            _ => Map::new(),
        };
        options.insert("include_usage".into(), Value::Bool(true));
        expected.insert("stream_options".into(), Value::Object(options));
    }
    assert_eq!(
        after,
        expected,
        "body {:?} rewritten as {:?}",
        String::from_utf8_lossy(body),
        String::from_utf8_lossy(&out)
    );
});
