//! The written requests against the `Value`-built ones: the same JSON
//! (the same bytes where nothing passes on verbatim), the same tools, the
//! same refusal.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::super::to_chat_with_tools;
use super::request as before;

fn same(body: &[u8]) {
    let shown = String::from_utf8_lossy(body);
    match (before::to_chat_with_tools(body), to_chat_with_tools(body)) {
        (Ok((a, ta)), Ok((b, tb))) => {
            let va: Value = serde_json::from_slice(&a).unwrap();
            let vb: Value = serde_json::from_slice(&b)
                .unwrap_or_else(|e| panic!("{e}: {} for {shown}", String::from_utf8_lossy(&b)));
            assert_eq!(va, vb, "{shown}");
            assert_eq!(ta, tb, "{shown}");
        }
        (Err(a), Err(b)) => assert_eq!(a.message, b.message, "{shown}"),
        (a, b) => panic!(
            "{:?} / {:?} for {shown}",
            a.map(|(c, _)| c),
            b.map(|(c, _)| c)
        ),
    }
}

/// Without a member passed on verbatim, the very bytes.
fn same_bytes(body: &[u8]) {
    same(body);
    let a = before::to_chat_with_tools(body).unwrap().0;
    let b = to_chat_with_tools(body).unwrap().0;
    assert_eq!(String::from_utf8_lossy(&a), String::from_utf8_lossy(&b));
}

#[test]
fn fixtures_translate_the_same() {
    let dir = format!("{}/tests/fixtures/agents/codex", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let capture: Value =
            serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        if let Some(body) = capture["body"].as_str() {
            same(body.as_bytes());
            n += 1;
        }
    }
    assert!(n >= 5, "{n} fixtures");
}

#[test]
fn examples_translate_the_same() {
    same_bytes(br#"{"model":"bench-model","max_output_tokens":16,"input":"Say hello."}"#);
    same_bytes(br#"{"model":"m","instructions":"be \"brief\"","input":"hi\u00e9\n","max_output_tokens":50,"temperature":0.5,"top_p":1,"user":"u","stream":true}"#);
    same_bytes(br#"{"model":"m","input":[{"role":"developer","content":[{"type":"input_text","text":"a"},{"type":"input_text","text":""},{"type":"refusal","refusal":"r"}]},{"role":"user","content":[{"type":"input_text","text":"look"},{"type":"input_image","image_url":"data:x","detail":"low"},{"type":"input_image","image_url":"https://i"}]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"seen"}]},{"type":"function_call","call_id":"c1","name":"f","arguments":"{\"a\":1}"},{"type":"function_call","call_id":"c0","name":"f"},{"type":"custom_tool_call","call_id":"c2","name":"exec","input":"echo \"hi\""},{"type":"function_call_output","call_id":"c1","output":[{"type":"input_image","image_url":"u1"},{"type":"input_text","text":""},{"type":"input_text","text":"x"}]},{"type":"custom_tool_call_output","call_id":"c2","output":"out"},{"type":"function_call","call_id":"c3","name":"g","arguments":null},{"role":"user","content":null}]}"#);
    same_bytes(br#"{"model":"m","input":"x","tools":[{"type":"function","name":"f","description":"d","strict":false},{"type":"custom","name":"exec","format":{"type":"grammar","syntax":"lark","definition":"start: /.+/"}},{"type":"custom","name":"c2","description":5,"format":{"type":"regex"}},{"type":"namespace","name":"ns","tools":[{"type":"function","name":"g","parameters":[]}]},{"type":"tool_search"}],"tool_choice":{"type":"custom","name":"exec"},"parallel_tool_calls":true}"#);
    same_bytes(br#"{"model":"m","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":"required","parallel_tool_calls":"yes","text":{"format":{"type":"json_object"}}}"#);
    same_bytes(br#"{"model":"m","input":"x","max_output_tokens":16.0,"temperature":"hot","top_p":1e2,"user":5,"stream":"true","background":false,"previous_response_id":null,"text":{"format":{"type":"text"}}}"#);
    // Verbatim members: the same JSON.
    same(br#"{"model":"m","input":"x","tools":[{"type":"function","name":"f","parameters":{ "type" : "object", "properties": {"b": {}, "a": {"type": "string"}}, "required": ["a"] }}],"text":{"format":{"type":"json_schema","name":"n","schema":{"z":1,"a":[1.5,null]},"strict":null}}}"#);
    same(br#"{"model":"m","input":[{"type":"function_call","call_id":"c","name":"f","arguments":{"b":1,"a":[true]}}]}"#);
    // Keys given twice: the last one.
    same(br#"{"model":"m","input":"first","input":"second","tools":[{"type":"function","name":"a","name":"b"}]}"#);
    same(br#"{"model":"m","input":"x","text":{"format":{"type":"json_schema"},"format":{"type":"json_object"}}}"#);
    // Escaped keys.
    same(br#"{"mod\u0065l":"m","\u0069nput":"x"}"#);
}

#[test]
fn refusals_are_the_same() {
    for body in [
        &b"{"[..],
        b"[]",
        b"\"x\"",
        b"",
        b"{\"model\":\"m\"} x",
        b"{\"model\":\"m\",\"input\":\"\xff\"}",
        b"{\"model\":\"m\",\"metadata\":{\"k\":\"\xff\"}}",
        br#"{"input":"x"}"#,
        br#"{"model":5}"#,
        br#"{"model":"m","input":5}"#,
        br#"{"model":"m","input":{"a":1}}"#,
        br#"{"model":"m","instructions":5}"#,
        br#"{"model":"m","instructions":[5]}"#,
        br#"{"model":"m","input":[5]}"#,
        br#"{"model":"m","input":[{"type":null,"role":"user"}]}"#,
        br#"{"model":"m","input":[{"content":"x"}]}"#,
        br#"{"model":"m","input":[{"role":null}]}"#,
        br#"{"model":"m","input":[{"role":5,"content":"x"}]}"#,
        br#"{"model":"m","input":[{"role":"tool","content":"x"}]}"#,
        br#"{"model":"m","input":[{"role":"user","content":5}]}"#,
        br#"{"model":"m","input":[{"role":"user","content":[5]}]}"#,
        br#"{"model":"m","input":[{"role":"user","content":[{"text":"x"}]}]}"#,
        br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_file"}]}]}"#,
        br#"{"model":"m","input":[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]}"#,
        br#"{"model":"m","input":[{"role":"assistant","content":[{"type":"input_image","image_url":"u"}]}]}"#,
        br#"{"model":"m","input":[{"type":"function_call","call_id":"c"}]}"#,
        br#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#,
        br#"{"model":"m","input":[{"type":"custom_tool_call","name":5,"call_id":5}]}"#,
        br#"{"model":"m","input":[{"type":"function_call_output","output":"x"}]}"#,
        br#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":5}]}"#,
        br#"{"model":"m","input":[{"type":"function_call_output","call_id":"c","output":[{"type":"bogus"}]}]}"#,
        br#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#,
        br#"{"model":"m","input":[{"type":"additional_tools","tools":[{"type":"mcp"}]}]}"#,
        br#"{"model":"m","input":"x","tools":null}"#,
        br#"{"model":"m","input":"x","tools":{}}"#,
        br#"{"model":"m","input":"x","tools":[5]}"#,
        br#"{"model":"m","input":"x","tools":[{"name":"f"}]}"#,
        br#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
        br#"{"model":"m","input":"x","tools":[{"type":"custom","name":null}]}"#,
        br#"{"model":"m","input":"x","tools":[{"type":"web_search_preview"}]}"#,
        br#"{"model":"m","input":"x","tools":[{"type":"bogus"}]}"#,
        br#"{"model":"m","input":"x","tool_choice":"bogus"}"#,
        br#"{"model":"m","input":"x","tool_choice":"a\"b"}"#,
        br#"{"model":"m","input":"x","tool_choice":[1, {"b":2,"a":1}]}"#,
        br#"{"model":"m","input":"x","tool_choice":true}"#,
        br#"{"model":"m","input":"x","tool_choice":{"type":"function"}}"#,
        br#"{"model":"m","input":"x","tool_choice":{"type":"file_search"}}"#,
        br#"{"model":"m","input":"x","tool_choice":{"type":"allowed_tools"}}"#,
        br#"{"model":"m","input":"x","tool_choice":{}}"#,
        br#"{"model":"m","input":"x","text":{"format":{"type":"grammar"}}}"#,
        br#"{"model":"m","input":"x","previous_response_id":"r","conversation":"c"}"#,
        br#"{"model":"m","input":"x","conversation":{"id":"c"}}"#,
        br#"{"model":"m","input":"x","prompt":{"id":"p"}}"#,
        br#"{"model":"m","input":"x","background":true}"#,
        // The first refusal wins: items before tools before tool_choice
        // before the format.
        br#"{"model":"m","input":[5],"tools":[{"type":"mcp"}],"tool_choice":5,"text":{"format":{"type":"x"}}}"#,
        br#"{"model":"m","input":"x","tools":[{"type":"mcp"}],"tool_choice":5,"text":{"format":{"type":"x"}}}"#,
        br#"{"model":"m","input":"x","tool_choice":5,"text":{"format":{"type":"x"}}}"#,
    ] {
        same(body);
    }
}

/// A member's value: the usual kinds, or an odd one a client may send.
fn odd(usual: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    prop_oneof![
        24 => usual,
        1 => Just(Value::Null),
        1 => prop_oneof![Just(json!(3)), Just(json!(true)), Just(json!(1.5))],
        1 => Just(json!([])),
        1 => Just(json!({"x": 1})),
    ]
    .boxed()
}

fn text() -> BoxedStrategy<Value> {
    "[a-z\"\\\\é\n ]{0,5}".prop_map(Value::from).boxed()
}

fn pick(values: &'static [&'static str]) -> BoxedStrategy<Value> {
    proptest::sample::select(values)
        .prop_map(Value::from)
        .boxed()
}

/// An object of the members that came out as Some.
fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
            .collect::<Map<_, _>>(),
    )
}

fn maybe(s: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    proptest::option::weighted(0.7, s).boxed()
}

fn part() -> BoxedStrategy<Value> {
    let kinds = pick(&[
        "input_text",
        "output_text",
        "text",
        "refusal",
        "input_image",
        "input_file",
        "",
    ]);
    (
        maybe(odd(kinds)),
        maybe(odd(text())),
        maybe(odd(text())),
        maybe(odd(text())),
        maybe(odd(text())),
    )
        .prop_map(|(k, t, r, u, d)| {
            object(vec![
                ("type", k),
                ("text", t),
                ("refusal", r),
                ("image_url", u),
                ("detail", d),
            ])
        })
        .boxed()
}

fn parts() -> BoxedStrategy<Value> {
    odd(prop_oneof![
        text(),
        proptest::collection::vec(odd(part()), 0..3).prop_map(Value::from)
    ]
    .boxed())
}

fn tool(depth: u32) -> BoxedStrategy<Value> {
    let kinds = pick(&[
        "function",
        "custom",
        "namespace",
        "tool_search",
        "web_search",
        "bogus",
    ]);
    let names = pick(&["f", "exec", "g"]);
    let parameters = prop_oneof![
        Just(json!({"type": "object", "properties": {"b": {}, "a": {"type": "string"}}})),
        Just(json!({})),
    ];
    let grammar = (
        maybe(odd(pick(&["grammar", "regex"]))),
        maybe(odd(text())),
        maybe(odd(text())),
    )
        .prop_map(|(k, s, d)| object(vec![("type", k), ("syntax", s), ("definition", d)]));
    let inner = if depth == 0 {
        Just(None).boxed()
    } else {
        maybe(odd(proptest::collection::vec(tool(depth - 1), 0..3)
            .prop_map(Value::from)
            .boxed()))
    };
    (
        maybe(odd(kinds)),
        maybe(odd(names)),
        maybe(odd(text())),
        maybe(odd(parameters.boxed())),
        maybe(odd(any::<bool>().prop_map(Value::from).boxed())),
        maybe(odd(grammar.boxed())),
        inner,
    )
        .prop_map(|(k, n, d, p, s, f, t)| {
            object(vec![
                ("type", k),
                ("name", n),
                ("description", d),
                ("parameters", p),
                ("strict", s),
                ("format", f),
                ("tools", t),
            ])
        })
        .boxed()
}

fn item() -> BoxedStrategy<Value> {
    let kinds = pick(&[
        "message",
        "function_call",
        "custom_tool_call",
        "function_call_output",
        "custom_tool_call_output",
        "reasoning",
        "additional_tools",
        "item_reference",
    ]);
    let roles = pick(&["user", "assistant", "system", "developer", "tool"]);
    let arguments = prop_oneof![text(), Just(json!({"b": 1, "a": "x"}))];
    let tools = proptest::collection::vec(tool(0), 0..2).prop_map(Value::from);
    (
        (maybe(odd(kinds)), maybe(odd(roles)), maybe(parts())),
        (
            maybe(odd(pick(&["f", "exec"]))),
            maybe(odd(text())),
            maybe(odd(arguments.boxed())),
        ),
        (
            maybe(odd(text())),
            maybe(parts()),
            maybe(odd(tools.boxed())),
        ),
    )
        .prop_map(|((k, r, c), (n, id, a), (i, o, t))| {
            object(vec![
                ("type", k),
                ("role", r),
                ("content", c),
                ("name", n),
                ("call_id", id),
                ("arguments", a),
                ("input", i),
                ("output", o),
                ("tools", t),
            ])
        })
        .boxed()
}

fn items() -> BoxedStrategy<Value> {
    odd(prop_oneof![
        1 => text(),
        4 => proptest::collection::vec(odd(item()), 0..5).prop_map(Value::from)
    ]
    .boxed())
}

fn request() -> impl Strategy<Value = Vec<u8>> {
    let choice = prop_oneof![
        pick(&["auto", "none", "required", "bogus"]),
        Just(json!({"type": "function", "name": "f"})),
        Just(json!({"type": "custom"})),
        Just(json!({"type": "web_search"})),
        Just(json!({"type": "other"})),
    ];
    let format = prop_oneof![
        Just(
            json!({"format": {"type": "json_schema", "name": "n", "schema": {"b": 1, "a": 2}, "strict": true}})
        ),
        Just(json!({"format": {"type": "json_object"}})),
        Just(json!({"format": {"type": "text"}})),
        Just(json!({"format": {"type": "bogus"}})),
        Just(json!({"verbosity": "low"})),
    ];
    let number = prop_oneof![Just(json!(16)), Just(json!(0.5)), Just(json!(-1))];
    (
        (
            prop_oneof![9 => Just(Some(json!("m"))), 1 => maybe(odd(text()))],
            maybe(items()),
            maybe(items()),
        ),
        (
            maybe(odd(proptest::collection::vec(tool(1), 0..3)
                .prop_map(Value::from)
                .boxed())),
            maybe(odd(choice.boxed())),
            maybe(odd(any::<bool>().prop_map(Value::from).boxed())),
        ),
        (
            maybe(odd(number.clone().boxed())),
            maybe(odd(number.boxed())),
            maybe(odd(text())),
            maybe(odd(format.boxed())),
            maybe(odd(any::<bool>().prop_map(Value::from).boxed())),
            proptest::option::weighted(0.1, prop_oneof![Just(Value::Null), Just(json!("resp_1"))]),
        ),
    )
        .prop_map(
            |((m, ins, inp), (tools, choice, par), (max, temp, user, format, stream, prev))| {
                object(vec![
                    ("model", m),
                    ("instructions", ins),
                    ("input", inp),
                    ("tools", tools),
                    ("tool_choice", choice),
                    ("parallel_tool_calls", par),
                    ("max_output_tokens", max.clone()),
                    ("temperature", temp),
                    ("top_p", max),
                    ("user", user),
                    ("text", format),
                    ("stream", stream),
                    ("previous_response_id", prev),
                ])
                .to_string()
                .into_bytes()
            },
        )
}

proptest! {
    #![proptest_config(crate::props(1024))]
    #[test]
    fn any_request_translates_the_same(body in request()) {
        same(&body);
    }
}
