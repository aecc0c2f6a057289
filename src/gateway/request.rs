//! Reading a client's request body and rewriting it for one deployment.
//!
//! The body is passed through as the client wrote it, except for two targeted
//! edits: the value of `model` is replaced by the deployment's model ID, and a
//! stream that did not ask for usage gets `stream_options.include_usage` so the
//! gateway learns the real token count (the usage chunk is then removed again
//! on the way back). Both edits splice bytes at the spans the parser reports,
//! so the rest of the body is never re-serialised.
//!
//! The gateway refuses only what it cannot route: a body that is not one JSON
//! object, a `model` that is missing, not a string or given twice. Everything
//! else is the upstream's to judge. What the gateway reads for itself but
//! cannot interpret (`"max_tokens": -1`, `"n": "2"`, `"stream": "yes"`) is
//! estimated as if absent and passed on unchanged, so the client gets the
//! upstream's own verdict. Counts are read as JSON Schema's `integer`: any
//! number without a fractional part (`8`, `8.0`, `1e3`), as Python clients
//! send them. Only `"stream": true` is a stream to the gateway, and
//! `include_usage` is only added when `stream_options` is absent, null or an
//! object whose `include_usage` is absent, null or false.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::value::RawValue;

use super::json;

/// Completion tokens assumed when a request sets no `max_tokens`: enough to
/// keep a burst of such requests from overshooting a limit before the real
/// usage comes back, small enough not to block a deployment needlessly.
pub const DEFAULT_COMPLETION_ESTIMATE: u64 = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    /// Anthropic's Messages API: the Messages door, and what Claude
    /// deployments serve natively.
    Messages,
    /// Anthropic's token counting (`/v1/messages/count_tokens`).
    CountTokens,
    /// OpenAI's Responses API: the Responses door.
    Responses,
}

/// How many endpoints there are: the size of per-endpoint tables.
pub const ENDPOINTS: usize = 6;

impl Endpoint {
    pub fn path(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Messages => "/messages",
            Endpoint::CountTokens => "/messages/count_tokens",
            Endpoint::Responses => "/responses",
        }
    }

    /// Every deployment serves it, natively or through the door's one
    /// translation to chat completions: never a reason to skip one.
    pub fn everywhere(&self) -> bool {
        matches!(
            self,
            Endpoint::ChatCompletions | Endpoint::Messages | Endpoint::Responses
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "messages.count_tokens",
            Endpoint::Responses => "responses",
        }
    }
}

/// What the gateway needs to know about a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub model: String,
    /// `"stream": true` (and given once): the client asked for a stream.
    pub stream: bool,
    /// The client asked for the usage chunk itself (`include_usage: true`).
    pub wants_usage: bool,
    /// Prompt tokens, estimated from the size of the prompt (about 4 bytes a
    /// token; Azure OpenAI's own rate limiter also estimates from characters).
    pub prompt_estimate: u64,
    /// Prompt estimate plus the completion tokens the request may use.
    pub estimate: u64,
    /// `prompt_cache_key` (OpenAI's, and Codex's thread id): a session key
    /// when no header names one.
    pub cache_key: Option<crate::router::SessionKey>,
    /// The gateway adds `include_usage` to the body it sends upstream.
    add_usage: bool,
    model_span: (usize, usize),
    stream_options_span: Option<(usize, usize)>,
}

/// The members of a request body the gateway reads, as raw JSON.
#[derive(Default)]
struct Fields<'a> {
    model: Option<&'a [u8]>,
    stream: Option<&'a [u8]>,
    stream_options: Option<&'a [u8]>,
    max_tokens: Option<&'a [u8]>,
    max_completion_tokens: Option<&'a [u8]>,
    n: Option<&'a [u8]>,
    messages: Option<&'a [u8]>,
    prompt: Option<&'a [u8]>,
    input: Option<&'a [u8]>,
    prompt_cache_key: Option<&'a [u8]>,
    /// `stream` or `stream_options` appears twice.
    stream_ambiguous: bool,
}

/// Why [`Fields::of`] refuses a body whose JSON is fine.
const DUPLICATE_MODEL: &str = "a second `model`";

impl<'a> Fields<'a> {
    /// Reads the top-level members of `body`, checking it is JSON as it goes.
    fn of(body: &'a [u8]) -> Result<Self, json::Invalid> {
        let mut f = Fields::default();
        json::object_members(body, |key, value| {
            let slot = match key {
                b"model" => &mut f.model,
                b"stream" => &mut f.stream,
                b"stream_options" => &mut f.stream_options,
                b"max_tokens" => &mut f.max_tokens,
                b"max_completion_tokens" => &mut f.max_completion_tokens,
                b"n" => &mut f.n,
                b"messages" => &mut f.messages,
                b"prompt" => &mut f.prompt,
                b"input" => &mut f.input,
                b"prompt_cache_key" => &mut f.prompt_cache_key,
                _ => return Ok(()),
            };
            if slot.replace(value).is_some() {
                match key {
                    // Which one would the upstream use? Routing on one while
                    // the upstream reads the other would let a client past
                    // the router: refuse rather than guess.
                    b"model" => return Err(DUPLICATE_MODEL),
                    // Not edited, and not relayed as a stream unless the
                    // upstream answers with one (the estimates take the last).
                    b"stream" | b"stream_options" => f.stream_ambiguous = true,
                    _ => {}
                }
            }
            Ok(())
        })?;
        Ok(f)
    }
}

/// A count as JSON Schema's `integer` has it: a number without a fractional
/// part (`8`, `8.0`, `1e3`), here not negative; beyond `u64`, `u64::MAX`.
/// `None` for anything else (`-1`, `8.5`, `"8"`, `true`, `null`): the
/// upstream judges those, the estimate treats them as absent.
pub(crate) fn count_of(raw: &[u8]) -> Option<u64> {
    // The common case, plain digits: no float parse.
    if !raw.is_empty() && raw.len() <= 19 && raw.iter().all(u8::is_ascii_digit) {
        return Some(raw.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')));
    }
    if !matches!(raw.first(), Some(b'-' | b'0'..=b'9')) {
        return None;
    }
    // A JSON number (the scanner checked it) is a valid Rust float literal.
    let v: f64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    // `as` saturates: 1e30 is u64::MAX; -0 is 0.
    (v.is_finite() && v >= 0.0 && v.fract() == 0.0).then_some(v as u64)
}

/// What to do about `stream_options` for a stream: `(wants_usage, add_usage)`.
/// Only an object the gateway fully understands is edited; any other value
/// is passed on for the upstream to judge, with no usage added.
fn usage_plan(stream_options: Option<&[u8]>) -> (bool, bool) {
    let raw = match stream_options {
        None | Some(b"null") => return (false, true),
        Some(raw) if raw.first() == Some(&b'{') => raw,
        Some(_) => return (false, false),
    };
    let mut include_usage: Option<&[u8]> = None;
    let mut twice = false;
    let read = json::object_members(raw, |key, value| {
        if key == b"include_usage" {
            twice |= include_usage.replace(value).is_some();
        }
        Ok(())
    });
    if read.is_err() || twice {
        return (false, false);
    }
    match include_usage {
        Some(b"true") => (true, false),
        None | Some(b"false" | b"null") => (false, true),
        Some(_) => (false, false),
    }
}

/// Why a body cannot be routed; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    pub message: String,
    pub param: Option<&'static str>,
}

pub(crate) fn bad(message: impl Into<String>, param: Option<&'static str>) -> BadRequest {
    BadRequest {
        message: message.into(),
        param,
    }
}

/// Where `raw`, a slice of `body`, lies in it.
pub(crate) fn span_of(body: &[u8], raw: &[u8]) -> (usize, usize) {
    let start = raw.as_ptr() as usize - body.as_ptr() as usize;
    (start, start + raw.len())
}

pub fn inspect(body: &[u8], endpoint: Endpoint) -> Result<Inspected, BadRequest> {
    let first = body.iter().position(|b| !b.is_ascii_whitespace());
    if first.map(|i| body[i]) != Some(b'{') {
        return Err(bad(
            "The request body must be a JSON object (see the API reference).",
            None,
        ));
    }
    let fields = Fields::of(body).map_err(|e| match e.what {
        DUPLICATE_MODEL => bad(
            "'model' is given more than once: the gateway routes on it and cannot tell which one the upstream would use.",
            Some("model"),
        ),
        _ => bad(format!("The request body is not valid JSON: {e}"), None),
    })?;
    let raw_model = fields
        .model
        .filter(|raw| *raw != b"null")
        .ok_or_else(|| bad("you must provide a model parameter", Some("model")))?;
    let model: Cow<str> = serde_json::from_slice(raw_model)
        .map_err(|_| bad("'model' must be a string", Some("model")))?;
    if model.is_empty() {
        return Err(bad("you must provide a model parameter", Some("model")));
    }
    // From here on nothing is refused: what the gateway cannot interpret is
    // the upstream's to judge.
    let stream = fields.stream == Some(&b"true"[..]) && !fields.stream_ambiguous;
    let (wants_usage, add_usage) = if stream {
        usage_plan(fields.stream_options)
    } else {
        (false, false)
    };
    let prompt_bytes = [fields.messages, fields.prompt, fields.input]
        .iter()
        .flatten()
        .filter(|raw| **raw != b"null")
        .map(|r| r.len() as u64)
        .sum::<u64>();
    let prompt_estimate = prompt_bytes.div_ceil(4);
    let count = |raw: Option<&[u8]>| raw.and_then(count_of);
    let completion = match endpoint {
        Endpoint::Embeddings | Endpoint::CountTokens => 0,
        _ => count(fields.max_completion_tokens)
            .or(count(fields.max_tokens))
            .unwrap_or(DEFAULT_COMPLETION_ESTIMATE)
            .saturating_mul(count(fields.n).unwrap_or(1).max(1)),
    };
    Ok(Inspected {
        model: model.into_owned(),
        stream,
        wants_usage,
        prompt_estimate,
        estimate: prompt_estimate.saturating_add(completion),
        cache_key: fields
            .prompt_cache_key
            .and_then(|raw| serde_json::from_slice::<Cow<str>>(raw).ok())
            .filter(|key| !key.is_empty())
            .map(|key| crate::router::SessionKey::of(&key)),
        add_usage,
        model_span: span_of(body, raw_model),
        stream_options_span: fields.stream_options.map(|r| span_of(body, r)),
    })
}

impl Inspected {
    /// A request read by another door: routed on `model`, its span spliced
    /// for native deployments, nothing else edited.
    pub(crate) fn of_door(
        model: String,
        stream: bool,
        prompt_estimate: u64,
        completion: u64,
        model_span: (usize, usize),
    ) -> Self {
        Inspected {
            model,
            stream,
            wants_usage: false,
            prompt_estimate,
            estimate: prompt_estimate.saturating_add(completion),
            cache_key: None,
            add_usage: false,
            model_span,
            stream_options_span: None,
        }
    }

    /// Whether the body sent upstream asks for usage the client did not want,
    /// so the usage chunk must be taken out of the answer.
    pub fn adds_usage(&self) -> bool {
        self.add_usage
    }

    /// The body for a deployment: `model_json` (a JSON string literal) in
    /// place of the client's model, plus `include_usage` for streams.
    pub fn rewrite(&self, body: &[u8], model_json: &[u8]) -> Bytes {
        let (ms, me) = self.model_span;
        let mut out = BytesMut::with_capacity(body.len() + model_json.len() + 48);
        if !self.adds_usage() {
            out.put_slice(&body[..ms]);
            out.put_slice(model_json);
            out.put_slice(&body[me..]);
            return out.freeze();
        }
        match self.stream_options_span {
            None => {
                // Insert right after the opening brace; the object has at least
                // `model`, so a trailing comma is always followed by a member.
                let open = body.iter().position(|&b| b == b'{').unwrap_or(0);
                out.put_slice(&body[..=open]);
                out.put_slice(br#""stream_options":{"include_usage":true},"#);
                out.put_slice(&body[open + 1..ms]);
                out.put_slice(model_json);
                out.put_slice(&body[me..]);
            }
            Some((ss, se)) => {
                let options = merged_stream_options(&body[ss..se]);
                // Splice both spans in the order they occur.
                let mut edits = [(ms, me, model_json), (ss, se, options.as_slice())];
                edits.sort_by_key(|e| e.0);
                let mut at = 0;
                for (start, end, with) in edits {
                    out.put_slice(&body[at..start]);
                    out.put_slice(with);
                    at = end;
                }
                out.put_slice(&body[at..]);
            }
        }
        out.freeze()
    }
}

fn merged_stream_options(raw: &[u8]) -> Vec<u8> {
    // Raw values are written back as the client wrote them: through `Value`,
    // a number beyond u64 (or with more digits than f64 holds) would change.
    let mut map = serde_json::from_slice::<Option<BTreeMap<String, Box<RawValue>>>>(raw)
        .ok()
        .flatten()
        .unwrap_or_default();
    if let Ok(yes) = RawValue::from_string("true".to_string()) {
        map.insert("include_usage".into(), yes);
    }
    serde_json::to_vec(&map).unwrap_or_else(|_| br#"{"include_usage":true}"#.to_vec())
}

/// A model ID as a JSON string literal, computed once per deployment.
pub fn json_string(s: &str) -> Bytes {
    Bytes::from(serde_json::to_vec(s).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn rewrite(body: &str) -> Value {
        let i = inspect(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        let out = i.rewrite(body.as_bytes(), &json_string("upstream-id"));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn replaces_only_the_model() {
        let body = r#"{ "messages":[{"role":"user","content":"model"}], "model" : "gpt-4o", "temperature":0.5 }"#;
        let i = inspect(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        let out = i.rewrite(body.as_bytes(), &json_string("azure \"x\""));
        let expected = body.replace(r#""gpt-4o""#, r#""azure \"x\"""#);
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
        assert_eq!(i.model, "gpt-4o");
        assert!(!i.stream);
    }

    #[test]
    fn streams_get_include_usage_added_and_flagged() {
        let v = rewrite(r#"{"model":"m","stream":true,"messages":[]}"#);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        assert_eq!(v["model"], "upstream-id");
        let v = rewrite(
            r#"{"stream_options":{"foo":1,"include_usage":false},"model":"m","stream":true}"#,
        );
        assert_eq!(v["stream_options"], json!({"foo":1,"include_usage": true}));
        assert_eq!(v["model"], "upstream-id");
        let v = rewrite(r#"{"model":"m","stream":true,"stream_options":null}"#);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn the_clients_stream_options_are_kept_as_written() {
        // Found by fuzz/request_rewrite: through `Value` the number became 1.8674403709861615e19.
        let body = r#"{"stream_options":{"":18674403709861615351,"x":[1.0, 2]},"model":"m","stream":true}"#;
        let i = inspect(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        let out = i.rewrite(body.as_bytes(), &json_string("upstream-id"));
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"stream_options":{"":18674403709861615351,"include_usage":true,"x":[1.0, 2]},"model":"upstream-id","stream":true}"#
        );
    }

    #[test]
    fn a_client_that_asked_for_usage_keeps_its_body() {
        let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#;
        let i = inspect(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        assert!(i.wants_usage && !i.adds_usage());
        let v = rewrite(body);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
    }

    #[test]
    fn estimates_prompt_plus_max_tokens() {
        let body = format!(
            r#"{{"model":"m","max_tokens":100,"n":2,"messages":"{}"}}"#,
            "x".repeat(398)
        );
        let i = inspect(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
        assert_eq!(i.prompt_estimate, 100);
        assert_eq!(i.estimate, 300);
        let i = inspect(br#"{"model":"m","input":"abcd"}"#, Endpoint::Embeddings).unwrap();
        assert_eq!(i.estimate, 2);
        let i = inspect(br#"{"model":"m","input":null}"#, Endpoint::Embeddings).unwrap();
        assert_eq!(i.estimate, 0);
        let i = inspect(br#"{"model":"m"}"#, Endpoint::ChatCompletions).unwrap();
        assert_eq!(i.estimate, DEFAULT_COMPLETION_ESTIMATE);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let e = |b: &str| inspect(b.as_bytes(), Endpoint::ChatCompletions).unwrap_err();
        assert!(e("not json").message.contains("JSON object"));
        assert!(e(r#"{"model": "m""#).message.contains("not valid JSON"));
        assert_eq!(e(r#"{"messages":[]}"#).param, Some("model"));
        assert_eq!(e(r#"{"model":42}"#).param, Some("model"));
        assert_eq!(e(r#"{"model":"a","model":"b"}"#).param, Some("model"));
        assert!(
            e(r#"{"model":"a","x":[1,}"#)
                .message
                .contains("expected a value at byte 20")
        );
        // A key spelled with escapes is the same key: no second `model`
        // for the upstream to pick over the one the gateway routed on.
        assert!(
            e(r#"{"model":"cheap","mod\u0065l":"dear"}"#)
                .message
                .contains("more than once")
        );
        let i = inspect(br#"{"mod\u0065l":"m"}"#, Endpoint::ChatCompletions).unwrap();
        assert_eq!(i.model, "m");
        // Null is as good as absent.
        let i = inspect(
            br#"{"model":"a","stream":null,"max_tokens":null}"#,
            Endpoint::ChatCompletions,
        );
        assert_eq!(i.unwrap().estimate, DEFAULT_COMPLETION_ESTIMATE);
    }

    #[test]
    fn counts_are_json_schema_integers() {
        let estimate = |extra: &str| {
            let body = format!(r#"{{"model":"m"{extra}}}"#);
            inspect(body.as_bytes(), Endpoint::ChatCompletions)
                .unwrap()
                .estimate
        };
        // What the openai Python SDK sends for a float, and other spellings
        // of whole numbers.
        assert_eq!(estimate(r#","max_tokens":8.0"#), 8);
        assert_eq!(estimate(r#","max_tokens":1e3"#), 1000);
        assert_eq!(estimate(r#","max_tokens":2.5E1"#), 25);
        assert_eq!(estimate(r#","max_tokens":-0"#), 0);
        assert_eq!(estimate(r#","max_tokens":10,"n":2.0"#), 20);
        assert_eq!(
            estimate(r#","max_completion_tokens":5e0,"max_tokens":9"#),
            5
        );
        assert_eq!(estimate(r#","max_tokens":1e30"#), u64::MAX);
        assert_eq!(estimate(r#","max_tokens":99999999999999999999"#), u64::MAX);
        assert_eq!(
            estimate(r#","max_tokens":9999999999999999999"#),
            9_999_999_999_999_999_999
        );
        // What the gateway cannot read is estimated as absent, and passed on.
        for odd in [
            r#","max_tokens":-1"#,
            r#","max_tokens":8.5"#,
            r#","max_tokens":"8""#,
            r#","max_tokens":true"#,
            r#","max_tokens":[8]"#,
            r#","max_tokens":1e400"#,
            r#","n":1.5"#,
            r#","n":"2""#,
            r#","n":-3"#,
        ] {
            assert_eq!(estimate(odd), DEFAULT_COMPLETION_ESTIMATE, "{odd}");
        }
        assert_eq!(
            estimate(r#","max_tokens":"8","max_completion_tokens":-1"#),
            256
        );
        assert_eq!(estimate(r#","max_completion_tokens":-1,"max_tokens":7"#), 7);
    }

    #[test]
    fn what_the_gateway_cannot_interpret_is_passed_on_unchanged() {
        for body in [
            r#"{"model":"m","stream":"yes","messages":[]}"#,
            r#"{"model":"m","stream":1,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","stream":true,"stream_options":"yes"}"#,
            r#"{"model":"m","stream":true,"stream_options":[]}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":"yes"}}"#,
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":false,"include_usage":true}}"#,
            r#"{"model":"m","stream":true,"stream":false}"#,
            r#"{"model":"m","stream":true,"stream_options":null,"stream_options":{}}"#,
            r#"{"model":"m","max_tokens":-1,"n":8.5,"max_completion_tokens":"x"}"#,
            r#"{"model":"m","stream":false,"stream_options":{"include_usage":false}}"#,
        ] {
            let i = inspect(body.as_bytes(), Endpoint::ChatCompletions).unwrap();
            assert!(!i.adds_usage(), "{body}");
            let out = i.rewrite(body.as_bytes(), &json_string("m"));
            assert_eq!(std::str::from_utf8(&out).unwrap(), body);
        }
        // Only `true` is a stream.
        let stream = |b: &str| {
            inspect(b.as_bytes(), Endpoint::ChatCompletions)
                .unwrap()
                .stream
        };
        assert!(stream(r#"{"model":"m","stream":true}"#));
        assert!(stream(
            r#"{"model":"m","stream":true,"stream_options":"yes"}"#
        ));
        assert!(!stream(r#"{"model":"m","stream":"true"}"#));
        assert!(!stream(r#"{"model":"m","stream":true,"stream":true}"#));
        // include_usage false or null is the gateway's to set.
        let v = rewrite(r#"{"model":"m","stream":true,"stream_options":{"include_usage":null}}"#);
        assert_eq!(v["stream_options"], json!({"include_usage": true}));
        // Other duplicates: the estimate takes the last, as the upstream would.
        let i = inspect(
            br#"{"model":"m","max_tokens":5,"max_tokens":7}"#,
            Endpoint::ChatCompletions,
        )
        .unwrap();
        assert_eq!(i.estimate, 7);
    }
}
