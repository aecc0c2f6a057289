"""The official anthropic Python SDK against switchboard's Messages door
(`POST /v1/messages`, `/v1/messages/count_tokens`): what Claude Code's
siblings, the SDK users, run.

Usage: python3 anthropic_door.py BASE_URL API_KEY MODEL [LIMITED_MODEL]
MODEL is served by a deployment (native or translated); with LIMITED_MODEL
(a model whose every deployment is rate limited) the error cases are run
too. Prints one JSON object; tests/anthropic_sdk.rs asserts on it.
"""
import json
import sys

import anthropic

base_url, key, model = sys.argv[1:4]
limited = sys.argv[4] if len(sys.argv) > 4 else None
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)
out = {}

TOOLS = [{
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}]
ASKED = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]


def blocks(message):
    return [b.type for b in message.content]


def text(message):
    return "".join(b.text for b in message.content if b.type == "text")


def tool_use(message):
    uses = [b for b in message.content if b.type == "tool_use"]
    return uses[0] if uses else None


# A plain turn, whole.
msg = client.messages.create(
    model=model,
    max_tokens=64,
    system="Be brief.",
    messages=[{"role": "user", "content": "Hello"}],
    metadata={"user_id": "u-1"},
)
out["create"] = {
    "type": msg.type,
    "role": msg.role,
    "blocks": blocks(msg),
    "text": text(msg),
    "stop_reason": msg.stop_reason,
    "model": msg.model,
    "input_tokens": msg.usage.input_tokens,
    "output_tokens": msg.usage.output_tokens,
}

# Tools: the model calls one; the result goes back in a second turn.
raw = client.messages.with_raw_response.create(
    model=model,
    max_tokens=256,
    messages=ASKED,
    tools=TOOLS,
    tool_choice={"type": "tool", "name": "get_weather"},
)
msg = raw.parse()
use = tool_use(msg)
out["tools"] = {
    "blocks": blocks(msg),
    "stop_reason": msg.stop_reason,
    "name": use.name if use else None,
    "id": use.id if use else None,
    "input": use.input if use else None,
    "deployment": raw.headers.get("x-switchboard-deployment"),
}
second = client.messages.create(
    model=model,
    max_tokens=64,
    messages=ASKED + [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in msg.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21 C"}]},
    ],
    tools=TOOLS,
)
out["tool_result_turn"] = {
    "blocks": blocks(second),
    "stop_reason": second.stop_reason,
    "text": text(second),
}

# Streams, read the way the SDK's helpers read them.
with client.messages.stream(model=model, max_tokens=64,
                            messages=[{"role": "user", "content": "Hello"}]) as stream:
    streamed = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {
    "text": streamed,
    "final_text": text(final),
    "blocks": blocks(final),
    "stop_reason": final.stop_reason,
    "input_tokens": final.usage.input_tokens,
    "output_tokens": final.usage.output_tokens,
}
with client.messages.stream(model=model, max_tokens=256, messages=ASKED, tools=TOOLS,
                            tool_choice={"type": "any"}) as stream:
    events = [e.type for e in stream]
    final = stream.get_final_message()
use = tool_use(final)
out["stream_tools"] = {
    "blocks": blocks(final),
    "stop_reason": final.stop_reason,
    "name": use.name if use else None,
    "input": use.input if use else None,
    "input_json_events": events.count("input_json"),
    "first_event": events[0] if events else None,
    "last_event": events[-1] if events else None,
}

# count_tokens: a deployment's count, or the gateway's estimate marked so.
raw = client.messages.with_raw_response.count_tokens(model=model, messages=ASKED, tools=TOOLS,
                                                     system="Be brief.")
out["count"] = {
    "input_tokens": raw.parse().input_tokens,
    "estimate": raw.headers.get("x-switchboard-estimate"),
    "deployment": raw.headers.get("x-switchboard-deployment"),
}


def error(call):
    """What the SDK raised: its class, the status, the body's error type and
    message, and the retry-after header."""
    try:
        call()
    except anthropic.APIStatusError as e:
        body = e.body if isinstance(e.body, dict) else {}
        return {
            "class": type(e).__name__,
            "status": e.status_code,
            "envelope": body.get("type"),
            "type": (body.get("error") or {}).get("type"),
            "message": (body.get("error") or {}).get("message"),
            "retry_after": e.response.headers.get("retry-after"),
        }
    return None


if limited:
    hello = [{"role": "user", "content": "Hello"}]
    out["errors"] = {
        "unknown_model": error(lambda: client.messages.create(
            model="no-such-model", max_tokens=16, messages=hello)),
        "bad_key": error(lambda: anthropic.Anthropic(
            base_url=base_url, api_key="not-a-client-key", max_retries=0, timeout=20,
        ).messages.create(model=model, max_tokens=16, messages=hello)),
        "rate_limited": error(lambda: client.messages.create(
            model=limited, max_tokens=16, messages=hello)),
        "rate_limited_stream": error(lambda: client.messages.create(
            model=limited, max_tokens=16, messages=hello, stream=True)),
        # The upstream's own 400: a temperature beyond Anthropic's range
        # (this SDK no longer takes it as an argument).
        "upstream_400": error(lambda: client.messages.create(
            model=model, max_tokens=16, messages=hello, extra_body={"temperature": 1.5})),
        "count_unknown_model": error(lambda: client.messages.count_tokens(
            model="no-such-model", messages=hello)),
    }

# The beta client last (the test reads what its upstream got last): its
# betas in `anthropic-beta`, `?beta=true` on the path.
raw = client.beta.messages.with_raw_response.create(
    model=model,
    max_tokens=64,
    messages=[{"role": "user", "content": "Hello"}],
    betas=["interleaved-thinking-2025-05-14", "token-efficient-tools-2025-02-19"],
)
beta = raw.parse()
out["beta"] = {
    "text": text(beta),
    "stop_reason": beta.stop_reason,
    "dropped": raw.headers.get("x-switchboard-dropped-betas"),
}

print(json.dumps(out))
