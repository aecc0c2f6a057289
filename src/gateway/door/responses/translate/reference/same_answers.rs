//! The written answers against the `Value`-built ones: the same bytes.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::super::{Tools, from_chat_with_tools, from_completion, to_chat_with_tools};
use super::answer as before;
use crate::gateway::provider::chunk::{Call, Completion, Finish, Tokens};

fn tools() -> Tools {
    let body = json!({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "f"},
        {"type": "namespace", "name": "functions", "tools": [
            {"type": "custom", "name": "exec"}, {"type": "function", "name": "g"}]}]});
    to_chat_with_tools(body.to_string().as_bytes()).unwrap().1
}

fn same(chat: &[u8]) {
    for tools in [Tools::default(), tools()] {
        let now = before::from_chat_with_tools(chat, "asked \"m\"", &tools);
        let live = from_chat_with_tools(chat, "asked \"m\"", &tools);
        match (now, live) {
            (Ok(a), Ok(b)) => assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{}",
                String::from_utf8_lossy(chat)
            ),
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("{a:?} / {b:?} for {}", String::from_utf8_lossy(chat)),
        }
    }
}

fn answer(id: Value, message: Value, finish: Value, usage: Value) -> Vec<u8> {
    json!({"id": id, "object": "chat.completion", "created": 7, "model": "x",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})
    .to_string()
    .into_bytes()
}

#[test]
fn examples_write_the_same_bytes() {
    let messages = [
        json!({"role": "assistant", "content": "hello"}),
        json!({"role": "assistant", "content": "a \"quoted\"\n\u{1} é \\ </x>"}),
        json!({"role": "assistant", "content": "", "refusal": "no"}),
        json!({"role": "assistant", "content": "half", "refusal": "no"}),
        json!({"role": "assistant", "content": null}),
        json!({"role": "assistant", "content": 5, "refusal": ["x"]}),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            {"id": "", "function": {"name": "exec", "arguments": "{\"input\":\"ls \\\"x\\\"\"}"}},
            {"function": {"name": "g", "arguments": "{\"a\":1}"}},
            {"id": "c\"3", "function": {"name": "exec", "arguments": "not json"}},
            {"id": null, "function": null},
            {}]}),
        json!({"role": "assistant", "content": "and", "tool_calls": [
            {"id": "c", "function": {"name": "h", "arguments": 7}}]}),
        json!({"role": "assistant", "tool_calls": null}),
        json!(null),
        json!("text"),
    ];
    let ids = [
        json!("chatcmpl-abc"),
        json!("msg_01"),
        json!("chatcmpl-"),
        json!(""),
        json!(null),
        json!(3),
        json!("chatcmpl-a\"b\\c\u{7}"),
        json!("chatcmpl-é"),
    ];
    let finishes = [
        json!("stop"),
        json!("length"),
        json!("content_filter"),
        json!("tool_calls"),
        json!(null),
        json!(1),
    ];
    let usages = [
        json!(null),
        json!({"prompt_tokens": 10, "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2}}),
        json!({"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 40}}),
        json!({"prompt_tokens": 1.0, "completion_tokens": -3, "prompt_tokens_details": 5,
            "completion_tokens_details": {"reasoning_tokens": "2"}}),
        json!({"prompt_tokens": 18446744073709551615u64, "completion_tokens": 0}),
        json!([1]),
        json!("usage"),
        json!({}),
    ];
    for m in &messages {
        for id in &ids {
            same(&answer(
                id.clone(),
                m.clone(),
                json!("stop"),
                usages[1].clone(),
            ));
        }
        for f in &finishes {
            same(&answer(
                json!("chatcmpl-1"),
                m.clone(),
                f.clone(),
                json!(null),
            ));
        }
        for u in &usages {
            same(&answer(
                json!("chatcmpl-1"),
                m.clone(),
                json!("stop"),
                u.clone(),
            ));
        }
    }
    // Members given twice, usage among them: a `Value` keeps the last.
    same(br#"{"id":"chatcmpl-1","created":1,"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":1,"prompt_tokens":5,"completion_tokens":2}}"#);
    same(br#"{"id":"chatcmpl-1","created":1,"choices":[{"message":{"content":"x"}}],"usage":{"prompt_tokens":3,"prompt_tokens_details":{"cached_tokens":1,"cached_tokens":2}}}"#);
    same(br#"{"id":"a","created":1,"choices":[],"usage":null}"#);
    same(br#"{"id":"a","created":1,"choices":[{"finish_reason":"stop"}]}"#);
    same(br#"{"id":"a","created":1,"choices":[{"message":{"content":"x"}},{"message":{"content":"y"}}]}"#);
    same(br#"{"id":"a","created":1.5,"choices":[{"message":{"content":"x"}}]}"#.as_slice());
    same(b"{}");
    same(b"nope");
    same(b"[]");
}

fn completion(
    text: Option<&'static str>,
    calls: &[(&str, &str, &str)],
    finish: Finish,
) -> Completion<'static> {
    Completion {
        id: "msg_01\"x".into(),
        created: 9,
        model: "asked",
        text: text.map(Into::into),
        calls: calls
            .iter()
            .map(|(id, name, arguments)| Call {
                id: id.to_string(),
                name: name.to_string(),
                arguments: arguments.to_string(),
            })
            .collect(),
        finish,
        tokens: Tokens {
            input: 5,
            cache_write: 2,
            cache_read: 3,
            output: 7,
        },
    }
}

#[test]
fn a_completion_writes_what_its_chat_json_would() {
    let calls = [
        ("toolu_1", "f", "{\"city\":\"Paris\"}"),
        ("", "exec", "{\"input\":\"ls\"}"),
        ("toolu_3", "g", "{}"),
    ];
    for finish in [
        Finish::Stop,
        Finish::Length,
        Finish::ToolCalls,
        Finish::ContentFilter,
    ] {
        for (text, calls) in [
            (Some("hi \"there\""), &calls[..0]),
            (Some(""), &calls[..0]),
            (None, &calls[..]),
            (Some("Let me."), &calls[..2]),
        ] {
            let c = completion(text, calls, finish);
            for tools in [Tools::default(), tools()] {
                let chat = c.to_json();
                let now = before::from_chat_with_tools(&chat, "asked", &tools).unwrap();
                assert_eq!(now, from_completion(&c, "asked", &tools));
            }
        }
    }
}

/// A member's value: the usual kind, or one of the odd ones a server may
/// send.
fn odd(usual: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => usual,
        1 => Just(Value::Null),
        1 => any::<i64>().prop_map(Value::from),
        1 => Just(json!([])),
        1 => Just(json!({"x": 1})),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<Value> {
    "[a-z\"\\\\é\n ]{0,6}".prop_map(Value::from).boxed()
}

fn count() -> BoxedStrategy<Value> {
    prop_oneof![any::<u32>().prop_map(Value::from), Just(json!(1.5))].boxed()
}

fn call() -> BoxedStrategy<Value> {
    let function = (odd(text()), odd(text())).prop_map(|(n, a)| json!({"name": n, "arguments": a}));
    (odd(text()), odd(function.boxed()))
        .prop_map(|(id, f)| json!({"id": id, "type": "function", "function": f}))
        .boxed()
}

fn chat_answer() -> impl Strategy<Value = Vec<u8>> {
    let names = prop_oneof![Just("f"), Just("exec"), Just("g"), Just("other")];
    let usage =
        (odd(count()), odd(count()), odd(count()), odd(count())).prop_map(|(p, c, ca, r)| {
            json!({"prompt_tokens": p, "completion_tokens": c,
            "prompt_tokens_details": {"cached_tokens": ca},
            "completion_tokens_details": {"reasoning_tokens": r}})
        });
    let calls = proptest::collection::vec((call(), names), 0..4).prop_map(|calls| {
        calls
            .into_iter()
            .map(|(mut c, n)| {
                if c["function"].is_object() && c["function"]["name"].is_string() {
                    c["function"]["name"] = json!(n);
                }
                c
            })
            .collect::<Vec<_>>()
    });
    let message = (odd(text()), odd(text()), odd(calls.prop_map(Value::from).boxed()))
        .prop_map(|(content, refusal, tool_calls)| {
            json!({"role": "assistant", "content": content, "refusal": refusal, "tool_calls": tool_calls})
        });
    (odd(text()), odd(message.boxed()), odd(text()), odd(usage.boxed())).prop_map(
        |(id, message, finish, usage)| {
            json!({"id": id, "created": 7, "choices": [{"message": message, "finish_reason": finish}], "usage": usage})
                .to_string()
                .into_bytes()
        },
    )
}

proptest! {
    #![proptest_config(crate::props(512))]
    #[test]
    fn any_chat_answer_writes_the_same_bytes(chat in chat_answer()) {
        same(&chat);
    }
}
