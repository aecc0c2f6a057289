//! The Messages door's request read on arbitrary bodies:
//! `door::messages::inspect` (the skim for routing), `Inspected::rewrite`,
//! `door::messages::to_chat` (the translation for the hub) and
//! `skim::members` itself.
//!
//! The whole input is the body. Checks:
//! - none of them panics;
//! - if the body parses as a JSON object (`serde_json`), `skim::members`
//!   reads it too, with the same set of top-level keys, and each key's value
//!   (the last, for a key given twice) parses to the same JSON;
//! - when `inspect` accepts the body: the rewrite with `"x"` is accepted
//!   again, with model `x` and the same stream and estimates; if the body
//!   is a JSON object, its `model` is the one `inspect` read (no spelling
//!   of `model` routes one way and reaches the upstream as another), and the
//!   rewritten body is the same object with only `model` changed;
//! - when `to_chat` translates it too: the same model and stream.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchboard::gateway::door::messages::{inspect, to_chat};
use switchboard::gateway::skim;

/// A key as written between its quotes, decoded.
fn decoded(raw: &[u8]) -> Option<String> {
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

fuzz_target!(|body: &[u8]| {
    let parsed = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Some(m),
        _ => None,
    };

    let mut skimmed: BTreeMap<String, &[u8]> = BTreeMap::new();
    let mut undecodable = Vec::new();
    let read = skim::members(body, |k, v| match decoded(k) {
        Some(k) => {
            skimmed.insert(k, v);
        }
        None => undecodable.push(k),
    });
    if let Some(object) = &parsed {
        if let Err(e) = read {
            panic!(
                "skim refused a JSON object ({e}): {:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(
            undecodable.is_empty(),
            "skim read keys JSON does not have: {undecodable:?}"
        );
        let keys: Vec<&String> = skimmed.keys().collect();
        let want: Vec<&String> = object.keys().collect();
        assert_eq!(keys, want, "body {:?}", String::from_utf8_lossy(body));
        for (k, v) in &skimmed {
            let value: Value = serde_json::from_slice(v).unwrap_or_else(|e| {
                panic!(
                    "skim's value of {k:?} is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(v)
                )
            });
            assert_eq!(&value, &object[k], "value of {k:?}");
        }
    }

    let translated = to_chat(body);

    let Ok(req) = inspect(body) else {
        return;
    };
    assert!(!req.model.is_empty());
    assert!(req.estimate >= req.prompt_estimate);
    let out = req.rewrite(body, b"\"x\"");
    let again = match inspect(&out) {
        Ok(r) => r,
        Err(e) => panic!(
            "rewritten body refused ({}): {:?}",
            e.message,
            String::from_utf8_lossy(&out)
        ),
    };
    assert_eq!(again.model, "x");
    assert_eq!(again.stream, req.stream);
    assert_eq!(again.estimate, req.estimate);
    assert_eq!(again.prompt_estimate, req.prompt_estimate);

    if let Ok((chat, _)) = &translated {
        assert_eq!(
            chat.model, req.model,
            "to_chat and inspect read another model"
        );
        assert_eq!(
            chat.stream, req.stream,
            "to_chat and inspect read another stream"
        );
    }

    let Some(before) = parsed else {
        return;
    };
    assert_eq!(
        before.get("model").and_then(Value::as_str),
        Some(req.model.as_str()),
        "routed on another model than the upstream reads: {:?}",
        String::from_utf8_lossy(body)
    );
    let after = match serde_json::from_slice::<Value>(&out) {
        Ok(Value::Object(m)) => m,
        other => panic!(
            "rewritten body is not a JSON object ({other:?}): {:?}",
            String::from_utf8_lossy(&out)
        ),
    };
    let mut expected = before;
    expected.insert("model".into(), Value::String("x".into()));
    assert_eq!(after, expected);
});
