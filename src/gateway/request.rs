//! Reading a client's request body and rewriting it for one deployment.
//!
//! The body is passed through as the client wrote it, except for two targeted
//! edits: the value of `model` is replaced by the deployment's model ID, and a
//! stream that did not ask for usage gets `stream_options.include_usage` so the
//! gateway learns the real token count (the usage chunk is then removed again
//! on the way back). Both edits splice bytes at the spans the parser reports,
//! so the rest of the body is never re-serialised.

use std::borrow::Cow;
use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
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
}

impl Endpoint {
    pub fn path(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
        }
    }
}

/// What the gateway needs to know about a request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspected {
    pub model: String,
    pub stream: bool,
    /// The client asked for the usage chunk itself.
    pub wants_usage: bool,
    /// Prompt tokens, estimated from the size of the prompt (about 4 bytes a
    /// token; Azure OpenAI's own rate limiter also estimates from characters).
    pub prompt_estimate: u64,
    /// Prompt estimate plus the completion tokens the request may use.
    pub estimate: u64,
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
}

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
                _ => return Ok(()),
            };
            // Which one would the upstream use? Refuse rather than guess.
            match slot.replace(value) {
                Some(_) => Err("a duplicate key"),
                None => Ok(()),
            }
        })?;
        Ok(f)
    }
}

/// A member that must be `T` or null (absent).
fn typed<T: serde::de::DeserializeOwned>(
    raw: Option<&[u8]>,
    param: &'static str,
    what: &str,
) -> Result<Option<T>, BadRequest> {
    match raw {
        None => Ok(None),
        Some(raw) => serde_json::from_slice::<Option<T>>(raw)
            .map_err(|_| bad(format!("'{param}' must be {what}"), Some(param))),
    }
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// Why a body cannot be routed; the message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BadRequest {
    pub message: String,
    pub param: Option<&'static str>,
}

fn bad(message: impl Into<String>, param: Option<&'static str>) -> BadRequest {
    BadRequest {
        message: message.into(),
        param,
    }
}

/// Where `raw`, a slice of `body`, lies in it.
fn span_of(body: &[u8], raw: &[u8]) -> (usize, usize) {
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
    let fields = Fields::of(body)
        .map_err(|e| bad(format!("The request body is not valid JSON: {e}"), None))?;
    let raw_model = fields
        .model
        .filter(|raw| *raw != b"null")
        .ok_or_else(|| bad("you must provide a model parameter", Some("model")))?;
    let model: Cow<str> = serde_json::from_slice(raw_model)
        .map_err(|_| bad("'model' must be a string", Some("model")))?;
    if model.is_empty() {
        return Err(bad("you must provide a model parameter", Some("model")));
    }
    let stream = typed::<bool>(fields.stream, "stream", "a boolean")?.unwrap_or(false);
    let wants_usage = typed::<StreamOptions>(
        fields.stream_options,
        "stream_options",
        "an object like {\"include_usage\": true}",
    )?
    .unwrap_or_default()
    .include_usage
    .unwrap_or(false);
    let prompt_bytes = [fields.messages, fields.prompt, fields.input]
        .iter()
        .flatten()
        .filter(|raw| **raw != b"null")
        .map(|r| r.len() as u64)
        .sum::<u64>();
    let prompt_estimate = prompt_bytes.div_ceil(4);
    let count = |raw, param| typed::<u64>(raw, param, "a non-negative integer");
    let max_completion_tokens = count(fields.max_completion_tokens, "max_completion_tokens")?;
    let max_tokens = count(fields.max_tokens, "max_tokens")?;
    let n = count(fields.n, "n")?;
    let completion = match endpoint {
        Endpoint::Embeddings => 0,
        _ => max_completion_tokens
            .or(max_tokens)
            .unwrap_or(DEFAULT_COMPLETION_ESTIMATE)
            .saturating_mul(n.unwrap_or(1).max(1)),
    };
    Ok(Inspected {
        model: model.into_owned(),
        stream,
        wants_usage,
        prompt_estimate,
        estimate: prompt_estimate.saturating_add(completion),
        model_span: span_of(body, raw_model),
        stream_options_span: fields.stream_options.map(|r| span_of(body, r)),
    })
}

impl Inspected {
    /// Whether the body sent upstream asks for usage the client did not want,
    /// so the usage chunk must be taken out of the answer.
    pub fn adds_usage(&self) -> bool {
        self.stream && !self.wants_usage
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
        assert!(
            e(r#"{"model":"a","model":"b"}"#)
                .message
                .contains("duplicate")
        );
        assert!(
            e(r#"{"model":"a","stream":"yes"}"#)
                .message
                .contains("boolean")
        );
        assert!(e("[]").message.contains("JSON object"));
        assert_eq!(
            e(r#"{"model":"a","max_tokens":-1}"#).param,
            Some("max_tokens")
        );
        assert_eq!(e(r#"{"model":"a","n":1.5}"#).param, Some("n"));
        assert_eq!(
            e(r#"{"model":"a","stream_options":"yes"}"#).param,
            Some("stream_options")
        );
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
                .contains("duplicate")
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
}
