use super::*;

const CHUNK: &str =
    "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n";
const USAGE: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
const DONE: &str = "data: [DONE]\n\n";

fn feed_all(scanner: &mut SseScanner, parts: &[&str]) -> String {
    let mut out = Vec::new();
    for p in parts {
        if let Some(b) = scanner.feed(Bytes::copy_from_slice(p.as_bytes())) {
            out.extend_from_slice(&b);
        }
    }
    if let Some(b) = scanner.finish() {
        out.extend_from_slice(&b);
    }
    String::from_utf8(out).unwrap()
}

#[test]
fn passes_frames_through_unchanged_when_the_client_asked_for_usage() {
    let mut s = SseScanner::new(false);
    let input = [CHUNK, CHUNK, USAGE, DONE].concat();
    let out = feed_all(&mut s, &[&input]);
    assert_eq!(out, input);
    assert_eq!(s.usage.unwrap().total(), 7);
    assert!(s.done);
    assert_eq!(s.frames, 3);
}

#[test]
fn strips_what_the_gateway_added() {
    let mut s = SseScanner::new(true);
    let out = feed_all(&mut s, &[CHUNK, USAGE, DONE]);
    let expected = [CHUNK.replace(",\"usage\":null", ""), DONE.to_string()].concat();
    assert_eq!(out, expected);
    assert_eq!(s.usage.unwrap().prompt_tokens, 5);
}

#[test]
fn an_error_inside_a_chunk_is_not_an_error_frame() {
    let mut s = SseScanner::new(false);
    let azure = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"content_filter_results\":{\"error\":{\"code\":\"content_filter_error\",\"message\":\"The contents are not filtered\"}}}]}\n\n";
    feed_all(&mut s, &[azure]);
    assert!(!s.saw_error);
    let mut s = SseScanner::new(false);
    feed_all(
        &mut s,
        &["data: {\"id\":\"x\",\"error\":{\"message\":\"boom\"}}\n\n"],
    );
    assert!(s.saw_error);
}

#[test]
fn frames_split_across_chunks_are_reassembled() {
    let mut s = SseScanner::new(false);
    let input = [CHUNK, USAGE, DONE].concat();
    let pieces: Vec<String> = input
        .as_bytes()
        .chunks(7)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let refs: Vec<&str> = pieces.iter().map(|s| s.as_str()).collect();
    assert_eq!(feed_all(&mut s, &refs), input);
    assert!(s.done);
    assert_eq!(s.usage.unwrap().completion_tokens, 2);
}

const FINISH: &str =
    "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";

#[test]
fn a_stream_cut_before_its_finish_is_not_done() {
    let mut s = SseScanner::new(false);
    let out = feed_all(&mut s, &[CHUNK, "data: {\"partial\""]);
    assert!(!s.done && !s.finished);
    // The cut frame is not sent on (nor counted as a skipped one).
    assert_eq!(out, CHUNK);
    assert_eq!(s.skipped, 0);
}

#[test]
fn a_clean_end_after_the_finish_reason_is_a_finish() {
    // The usage chunk last, unterminated, and no [DONE].
    let mut s = SseScanner::new(false);
    let usage = USAGE.trim_end();
    let out = feed_all(&mut s, &[CHUNK, FINISH, usage]);
    assert!(s.done && s.finished);
    assert_eq!(out, [CHUNK, FINISH, USAGE, DONE].concat());
    assert_eq!(s.usage.unwrap().total(), 7);
    // With [DONE] nothing is added.
    let mut s = SseScanner::new(false);
    assert_eq!(
        feed_all(&mut s, &[CHUNK, FINISH, DONE]),
        [CHUNK, FINISH, DONE].concat()
    );
    // A null finish_reason is no finish; spaced JSON is read alike.
    let mut s = SseScanner::new(false);
    s.feed(Bytes::from_static(
        b"data: {\"choices\": [{\"finish_reason\": null}]}\n\n",
    ));
    assert!(!s.finished);
    s.feed(Bytes::from_static(
        b"data: {\"choices\": [{\"finish_reason\" : \"length\"}]}\n\n",
    ));
    assert!(s.finished);
}

#[test]
fn a_broken_end_or_an_error_never_gets_a_done() {
    let mut s = SseScanner::new(false);
    s.feed(Bytes::from_static(FINISH.as_bytes()));
    assert_eq!(s.abandon(), None);
    assert!(!s.done);
    let mut s = SseScanner::new(false);
    let error = "data: {\"error\":{\"message\":\"x\"}}\n\n";
    assert_eq!(feed_all(&mut s, &[FINISH, error]), [FINISH, error].concat());
    assert!(!s.done);
}

#[test]
fn frames_that_are_not_json_are_taken_out_and_counted() {
    let mut s = SseScanner::new(false);
    let out = feed_all(
        &mut s,
        &[
            CHUNK,
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"x\"}}\n\n",
            "data: not json\n\n",
            CHUNK,
            DONE,
        ],
    );
    assert_eq!(out, [CHUNK, CHUNK, DONE].concat());
    assert_eq!((s.skipped, s.frames, s.saw_invalid), (2, 2, false));
    assert_eq!(s.last_skipped.as_deref(), Some("not json"));
    // The first one decides the attempt.
    let mut s = SseScanner::new(false);
    assert_eq!(s.feed(Bytes::from_static(b"data: {nope}\n\n")), None);
    assert!(s.saw_invalid && s.skipped == 1);
}

#[test]
fn braces_inside_strings_are_not_a_malformed_frame() {
    let mut s = SseScanner::new(false);
    let code = "data: {\"choices\":[{\"delta\":{\"content\":\"fn x() {\"}}]}\n\n";
    let out = feed_all(&mut s, &[CHUNK, code, "data: { }\n\n"]);
    assert_eq!(out, [CHUNK, code, "data: { }\n\n"].concat());
    assert_eq!(s.skipped, 0);
    for (payload, plausible) in [
        (&b"{\"a\":{\"b\":1}}"[..], true),
        (b" {} ", true),
        (b"{\"a\":{\"b\":1}", false),
        (b"{invalid json}", false),
        (b"[1]", false),
        (b"hello", false),
        (b"", false),
    ] {
        assert_eq!(plausible_object(payload), plausible, "{payload:?}");
    }
}

#[test]
fn crlf_frames_and_error_frames_are_understood() {
    let mut s = SseScanner::new(false);
    let out = feed_all(
        &mut s,
        &[
            "data: {\"error\":{\"message\":\"x\"}}\r\n\r\n",
            "data: [DONE]\r\n\r\n",
        ],
    );
    assert!(s.saw_error && s.done);
    assert!(out.ends_with("[DONE]\r\n\r\n"));
}

#[test]
fn usage_in_the_finish_chunk_is_read_and_taken_out_when_the_gateway_asked() {
    let finish = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n";
    let mut s = SseScanner::new(true);
    let out = feed_all(&mut s, &[CHUNK, finish, DONE]);
    let expected = [
        CHUNK.replace(",\"usage\":null", ""),
        "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n".into(),
        DONE.to_string(),
    ]
    .concat();
    assert_eq!(out, expected);
    assert_eq!(s.usage.unwrap().total(), 7);
    // Asked for by the client: left alone.
    let mut s = SseScanner::new(false);
    assert_eq!(feed_all(&mut s, &[finish, DONE]), [finish, DONE].concat());
    assert_eq!(s.usage.unwrap().total(), 7);
}

#[test]
fn a_usage_member_is_cut_out_wherever_it_stands() {
    let cut = |payload: &str| {
        let frame = format!("event: x\r\ndata: {payload}\r\n\r\n");
        let p = data_of(frame.as_bytes()).unwrap();
        let out = without_usage(frame.as_bytes(), p).map(|v| String::from_utf8(v).unwrap());
        out.map(|o| {
            o.strip_prefix("event: x\r\ndata: ")
                .and_then(|o| o.strip_suffix("\r\n\r\n"))
                .unwrap()
                .to_string()
        })
    };
    let choices = r#""choices":[{"usage":{"x":1}}]"#;
    let usage = r#""usage" : {"total_tokens": 3}"#;
    assert_eq!(
        cut(&format!("{{{choices}, {usage}}}")).unwrap(),
        format!("{{{choices}}}")
    );
    assert_eq!(
        cut(&format!("{{ {usage} ,\t{choices} }}")).unwrap(),
        format!("{{ \t{choices} }}")
    );
    assert_eq!(
        cut(&format!("{{\"a\":1,{usage},{choices}}}")).unwrap(),
        format!("{{\"a\":1,{choices}}}")
    );
    assert_eq!(cut(&format!("{{{usage}}}")).unwrap(), "{}");
    assert_eq!(
        cut(r#"{"us\u0061ge":{"total_tokens":1},"id":2}"#).unwrap(),
        r#"{"id":2}"#
    );
    assert_eq!(cut(&format!("{{{choices}}}")), None);
    assert_eq!(cut("{\"usage\":{}"), None);
}

#[test]
fn a_null_usage_is_cut_out_in_each_form_upstreams_send() {
    let frames = [
        (
            "{\"id\":\"c\",\"choices\":[],\"usage\":null}",
            "{\"id\":\"c\",\"choices\":[]}",
        ),
        (
            "{\"usage\":null,\"id\":\"c\",\"choices\":[]}",
            "{\"id\":\"c\",\"choices\":[]}",
        ),
        (
            "{\"id\":\"c\", \"usage\": null, \"choices\":[]}",
            "{\"id\":\"c\", \"choices\":[]}",
        ),
        // Alone, with no comma to take along: left as it is.
        ("{\"usage\":null}", "{\"usage\":null}"),
        // A first one in a form not cut (nested here): the next is.
        (
            "{\"x\":{\"usage\" : null},\"choices\":[],\"usage\":null}",
            "{\"x\":{\"usage\" : null},\"choices\":[]}",
        ),
    ];
    for (payload, expected) in frames {
        // Two frames in one chunk, the cut one first: the second follows it
        // whole.
        let mut s = SseScanner::new(true);
        let input = format!("data: {payload}\n\n{CHUNK}");
        let out = feed_all(&mut s, &[&input]);
        let want = format!(
            "data: {expected}\n\n{}",
            CHUNK.replace(",\"usage\":null", "")
        );
        assert_eq!(out, want, "{payload}");
    }
    // Renamed too, for a fallback model's stream.
    let mut s = SseScanner::new(true).renaming(Some("asked".into()));
    let out = feed_all(
        &mut s,
        &["data: {\"model\":\"other\",\"choices\":[],\"usage\":null}\n\n"],
    );
    assert_eq!(out, "data: {\"model\":\"asked\",\"choices\":[]}\n\n");
}

#[test]
fn unchanged_aligned_chunks_are_not_copied() {
    let mut s = SseScanner::new(false);
    let chunk = Bytes::from_static(CHUNK.as_bytes());
    let out = s.feed(chunk.clone()).unwrap();
    assert_eq!(out.as_ptr(), chunk.as_ptr());
}

#[test]
fn frames_end_at_a_blank_line_of_either_kind() {
    for (data, end) in [
        (&b"data: x\n\ndata: y"[..], Some(9)),
        (b"data: x\r\n\r\n", Some(11)),
        (b"data: x\n\r\n", Some(10)),
        (b"\n\n", Some(2)),
        (b"data: x\n", None),
        (b"data: x\n\r", None),
        (b"a\nb\nc\n\rd", None),
        (b"", None),
    ] {
        assert_eq!(
            frame_end(data),
            end,
            "{:?}",
            data.escape_ascii().to_string()
        );
    }
}

mod usage_oracle {
    use super::super::{Usage, probe_chunk, read_usage};
    use proptest::prelude::*;

    #[derive(serde::Deserialize)]
    struct ChunkProbe {
        #[serde(default)]
        usage: Option<Usage>,
        #[serde(default)]
        choices: Option<Vec<serde::de::IgnoredAny>>,
    }

    /// A member value as an upstream might write it: counts, their near
    /// misses, and other shapes.
    fn member_value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u32>().prop_map(|n| n.to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            Just("18446744073709551616".to_string()),
            Just("-0".to_string()),
            Just("-1".to_string()),
            Just("1.0".to_string()),
            Just("1e3".to_string()),
            Just("null".to_string()),
            Just("\"3\"".to_string()),
            Just("true".to_string()),
            Just("{\"cached_tokens\": 2}".to_string()),
            Just("[]".to_string()),
        ]
    }

    fn key() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "prompt_tokens",
            "completion_tokens",
            "total_tokens",
            "prompt_tokens_details",
            "prompt_t\\u006fkens",
            "other",
        ])
    }

    fn usage_object() -> impl Strategy<Value = String> {
        prop::collection::vec((key(), member_value()), 0..5).prop_map(|members| {
            let inner: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("\"{k}\": {v}"))
                .collect();
            format!("{{{}}}", inner.join(", "))
        })
    }

    fn usage_value() -> impl Strategy<Value = String> {
        prop_oneof![
            8 => usage_object(),
            1 => Just("null".to_string()),
            1 => Just("7".to_string()),
            1 => Just("\"x\"".to_string()),
        ]
    }

    fn choices_value() -> impl Strategy<Value = Option<&'static str>> {
        prop::option::of(prop::sample::select(vec![
            "[]",
            "[ ]",
            "[{\"index\": 0}]",
            "null",
            "{}",
            "3",
        ]))
    }

    proptest! {
        #![proptest_config(crate::props(3000))]
        #[test]
        fn usage_reads_as_serde_does(value in usage_value()) {
            let ours = read_usage(value.as_bytes());
            let serde = serde_json::from_slice::<Option<Usage>>(value.as_bytes()).map_err(|_| ());
            prop_assert_eq!(ours, serde, "{}", value);
        }

        #[test]
        fn a_chunk_is_probed_as_serde_does(
            usage in prop::option::of(usage_value()),
            choices in choices_value(),
            twice in any::<bool>(),
        ) {
            let mut members = vec!["\"id\": \"c\"".to_string()];
            if let Some(c) = choices {
                members.push(format!("\"choices\": {c}"));
            }
            if let Some(u) = &usage {
                members.push(format!("\"usage\": {u}"));
                if twice {
                    members.push(format!("\"usage\": {u}"));
                }
            }
            let payload = format!("{{{}}}", members.join(", "));
            let ours = probe_chunk(payload.as_bytes());
            let serde = serde_json::from_slice::<ChunkProbe>(payload.as_bytes())
                .map(|p| (p.usage, p.choices.as_ref().is_none_or(|c| c.is_empty())))
                .map_err(|_| ());
            prop_assert_eq!(ours, serde, "{}", payload);
        }
    }
}
