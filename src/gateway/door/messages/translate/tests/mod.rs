//! The translators' tests, one file per direction, plus the properties.

mod answer;
mod props;
mod request;
mod stream;

use serde_json::Value;

/// The events of a Messages stream, as (event name, data).
pub fn events(sse: &[u8]) -> Vec<(String, Value)> {
    let text = std::str::from_utf8(sse).expect("the translator writes UTF-8");
    assert!(
        text.is_empty() || text.ends_with("\n\n"),
        "whole events only: {text:?}"
    );
    text.split_terminator("\n\n")
        .map(|frame| {
            let (event, data) = frame
                .strip_prefix("event: ")
                .and_then(|rest| rest.split_once("\ndata: "))
                .unwrap_or_else(|| panic!("not an event: {frame:?}"));
            let data: Value =
                serde_json::from_str(data).unwrap_or_else(|e| panic!("not JSON ({e}): {data:?}"));
            assert_eq!(data["type"], event, "the event name is the data's type");
            (event.to_string(), data)
        })
        .collect()
}

/// What a well-formed Messages stream says: its text, its tool calls
/// (name, input) and its stop reason; or what is wrong with it.
#[derive(Debug, Default, PartialEq)]
pub struct Said {
    pub text: String,
    pub calls: Vec<(String, Value)>,
    pub stop_reason: Option<String>,
    pub usage: Option<Value>,
}

pub fn well_formed(events: &[(String, Value)]) -> Result<Said, String> {
    let mut said = Said::default();
    let mut open: Option<(u64, String, String)> = None; // index, type, json so far
    let mut next = 0;
    let mut stopped = false;
    for (i, (kind, data)) in events.iter().enumerate() {
        if stopped {
            return Err(format!("{kind} after message_stop"));
        }
        if (i == 0) != (kind == "message_start") {
            return Err(format!("event {i} is {kind}: message_start first, once"));
        }
        match kind.as_str() {
            "message_start" => {
                let m = &data["message"];
                if m["role"] != "assistant" || m["content"] != Value::Array(vec![]) {
                    return Err(format!("odd message_start {data}"));
                }
            }
            "content_block_start" => {
                if open.is_some() {
                    return Err("a block started inside another".into());
                }
                if data["index"] != next {
                    return Err(format!(
                        "block index {} where {next} was due",
                        data["index"]
                    ));
                }
                let block = &data["content_block"];
                let kind = block["type"].as_str().unwrap_or_default().to_string();
                match kind.as_str() {
                    "text" => {}
                    "tool_use" if block["id"].as_str().is_some_and(|id| !id.is_empty()) => {
                        said.calls.push((
                            block["name"].as_str().unwrap_or_default().into(),
                            Value::Null,
                        ));
                    }
                    _ => return Err(format!("odd block {block}")),
                }
                open = Some((next, kind, String::new()));
            }
            "content_block_delta" => {
                let Some((index, block, json)) = open.as_mut() else {
                    return Err("a delta outside a block".into());
                };
                if data["index"] != *index {
                    return Err("a delta for another block".into());
                }
                let delta = &data["delta"];
                match (block.as_str(), delta["type"].as_str()) {
                    ("text", Some("text_delta")) => {
                        said.text += delta["text"].as_str().ok_or("text_delta without text")?
                    }
                    ("tool_use", Some("input_json_delta")) => {
                        *json += delta["partial_json"].as_str().ok_or("no partial_json")?
                    }
                    _ => return Err(format!("{delta} in a {block} block")),
                }
            }
            "content_block_stop" => {
                let Some((index, block, json)) = open.take() else {
                    return Err("a stop outside a block".into());
                };
                if data["index"] != index {
                    return Err("a stop for another block".into());
                }
                if block == "tool_use" {
                    let input: Value = if json.is_empty() {
                        Value::Object(Default::default())
                    } else {
                        serde_json::from_str(&json).map_err(|e| format!("input {json:?}: {e}"))?
                    };
                    if !input.is_object() {
                        return Err(format!("input {input} is no object"));
                    }
                    said.calls.last_mut().ok_or("no call")?.1 = input;
                }
                next += 1;
            }
            "message_delta" => {
                if open.is_some() {
                    return Err("message_delta with a block open".into());
                }
                said.stop_reason = data["delta"]["stop_reason"].as_str().map(String::from);
                said.usage = Some(data["usage"].clone());
            }
            "message_stop" => {
                if said.stop_reason.is_none() {
                    return Err("message_stop without a stop reason".into());
                }
                stopped = true;
            }
            other => return Err(format!("unexpected event {other}")),
        }
    }
    Ok(said)
}
