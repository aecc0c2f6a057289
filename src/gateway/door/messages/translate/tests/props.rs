//! Any stream of valid chat chunks, cut anywhere, becomes a well-formed
//! Messages stream that says the same thing.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::stream::{DONE, delta, finish, usage};
use super::{events, well_formed};
use crate::gateway::door::messages::translate::ChatToMessages;

#[derive(Debug, Clone)]
enum Gen {
    Text(Vec<String>),
    /// Calls made one after the other: name, arguments, where to cut them.
    Calls(Vec<(String, Value, Vec<usize>)>),
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![4 => "\\PC{0,12}", 1 => Just("\n\"\\".to_string()), 1 => Just(String::new())]
}

fn args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,4}",
        prop_oneof![
            any::<i32>().prop_map(Value::from),
            "\\PC{0,6}".prop_map(Value::from)
        ],
        0..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().collect()))
}

fn block() -> impl Strategy<Value = Gen> {
    prop_oneof![
        prop::collection::vec(text(), 1..4).prop_map(Gen::Text),
        prop::collection::vec(
            (
                "[a-z]{1,6}",
                args(),
                prop::collection::vec(0usize..40, 0..3)
            ),
            1..3
        )
        .prop_map(Gen::Calls),
    ]
}

/// The pieces of `s` cut at `cuts` (moved to char boundaries).
fn pieces(s: &str, cuts: &[usize]) -> Vec<String> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&c| c % (s.len() + 1))
        .filter(|&c| s.is_char_boundary(c))
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut from = 0;
    for c in at.into_iter().chain([s.len()]) {
        out.push(s[from..c].to_string());
        from = c;
    }
    out
}

/// The chunk stream for `blocks`, and the text and calls it says.
fn stream(blocks: &[Gen]) -> (String, String, Vec<(String, Value)>) {
    let (mut sse, mut said_text, mut calls) = (
        delta(json!({"role": "assistant", "content": ""})),
        String::new(),
        Vec::new(),
    );
    for b in blocks {
        match b {
            Gen::Text(parts) => {
                for p in parts {
                    sse += &delta(json!({"content": p}));
                    said_text += p;
                }
            }
            Gen::Calls(list) => {
                for (name, args, cuts) in list {
                    let index = calls.len();
                    let text = args.to_string();
                    let mut fragments = pieces(&text, cuts).into_iter();
                    let first = fragments.next().unwrap_or_default();
                    sse += &delta(
                        json!({"tool_calls": [{"index": index, "id": format!("call_{index}"), "type": "function",
                        "function": {"name": name, "arguments": first}}]}),
                    );
                    for f in fragments {
                        sse += &delta(
                            json!({"tool_calls": [{"index": index, "function": {"arguments": f}}]}),
                        );
                    }
                    calls.push((name.clone(), args.clone()));
                }
            }
        }
    }
    (sse, said_text, calls)
}

fn translate(sse: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let mut t = ChatToMessages::new("m", "msg_p");
    let mut out = Vec::new();
    let mut at: Vec<usize> = cuts.iter().map(|&c| c % (sse.len() + 1)).collect();
    at.sort_unstable();
    let mut from = 0;
    for c in at.into_iter().chain([sse.len()]) {
        out.extend(
            t.feed(&sse[from..c])
                .map(|b| b.to_vec())
                .unwrap_or_default(),
        );
        from = c;
    }
    out.extend(t.finish().map(|b| b.to_vec()).unwrap_or_default());
    (out, t.done())
}

proptest! {
    #![proptest_config(crate::props(256))]
    #[test]
    fn any_chat_stream_becomes_a_well_formed_messages_stream(
        blocks in prop::collection::vec(block(), 0..5),
        end in prop::option::of(prop_oneof![Just("stop"), Just("length"), Just("tool_calls")]),
        with_usage in any::<bool>(),
        with_done in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let (mut sse, text, calls) = stream(&blocks);
        if let Some(reason) = end {
            sse += &finish(reason);
        }
        if with_usage {
            sse += &usage(30, 10, 4);
        }
        if with_done {
            sse += DONE;
        }
        let (out, done) = translate(sse.as_bytes(), &cuts);
        prop_assert_eq!(&out, &translate(sse.as_bytes(), &[]).0, "cut or whole, the same events");
        let said = well_formed(&events(&out)).map_err(TestCaseError::fail)?;
        prop_assert_eq!(said.text, text);
        if end.is_some() {
            prop_assert_eq!(said.calls, calls);
        } else {
            // A cut stream: the calls held at the cut never went out whole.
            prop_assert!(said.calls.len() <= calls.len());
            for (got, want) in said.calls.iter().zip(&calls) {
                prop_assert_eq!(&got.0, &want.0);
                prop_assert!(got.1.is_null() || got.1 == want.1);
            }
        }
        prop_assert_eq!(done, end.is_some(), "finished exactly when a finish reason went by");
        prop_assert_eq!(events(&out).last().is_some_and(|(k, _)| k == "message_stop"), end.is_some());
        if let Some(usage) = said.usage.filter(|_| with_usage) {
            prop_assert_eq!(usage["input_tokens"].as_u64(), Some(20));
        }
    }
}

/// Bytes that are nearly the right shape: pieces of real frames and bodies.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop_oneof![
        Just(b"data: ".to_vec()),
        Just(b"\n\n".to_vec()),
        Just(b"[DONE]".to_vec()),
        Just(br#"{"choices":[{"delta":{"tool_calls":[{"index":"#.to_vec()),
        Just(br#"{"index":0,"function":{"arguments":"{"}}]}}]}"#.to_vec()),
        Just(br#"{"model":"m","messages":[{"role":"user","content":[{"type":"#.to_vec()),
        Just(br#""tool_result","content":[{"type":"image","source":"#.to_vec()),
        Just(br#"{"type":"text","text":"x"}]}],"tools":[{"type":null}]}"#.to_vec()),
        Just(br#""finish_reason":"stop","usage":{"prompt_tokens":1}}"#.to_vec()),
        prop::collection::vec(any::<u8>(), 0..8),
    ];
    prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(crate::props(256))]
    #[test]
    fn no_input_makes_a_translator_panic(bytes in noise(), cut in any::<usize>()) {
        let _ = crate::gateway::door::messages::translate::to_chat(&bytes);
        let _ = crate::gateway::door::messages::translate::from_chat(&bytes, "m");
        let mut t = ChatToMessages::new("m", "msg_x");
        let cut = cut % (bytes.len() + 1);
        let mut out = Vec::new();
        for piece in [&bytes[..cut], &bytes[cut..]] {
            out.extend(t.feed(piece).map(|b| b.to_vec()).unwrap_or_default());
        }
        out.extend(t.finish().map(|b| b.to_vec()).unwrap_or_default());
        well_formed(&events(&out)).map_err(TestCaseError::fail)?;
    }
}
