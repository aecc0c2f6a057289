"""Drives `mock-upstream --provider anthropic` with the official Anthropic
Python SDK, to show the mock is faithful enough for it.

Usage: python3 anthropic_client.py BASE_URL API_KEY
Prints one JSON object with what the SDK saw; tests/provider_sdks.rs asserts on it.
"""
import json
import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)
out = {}

msg = client.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=64,
    system="Be brief.",
    messages=[{"role": "user", "content": "Hello"}],
    stop_sequences=["never-said"],
    metadata={"user_id": "u-1"},
)
out["message"] = {
    "text": msg.content[0].text,
    "stop_reason": msg.stop_reason,
    "input_tokens": msg.usage.input_tokens,
    "output_tokens": msg.usage.output_tokens,
    "cache_read": msg.usage.cache_read_input_tokens,
    "model": msg.model,
}

with client.messages.stream(
    model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "Hello"}]
) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {"text": text, "final_text": final.content[0].text, "output_tokens": final.usage.output_tokens}

tools = [
    {"name": "get_weather", "description": "Weather in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "get_time", "description": "Time in a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
]
asked = [{"role": "user", "content": "What is the weather and the time in Paris?"}]
called = client.messages.create(model="claude-sonnet-4-5", max_tokens=200, tools=tools, tool_choice={"type": "any"}, messages=asked)
uses = [b for b in called.content if b.type == "tool_use"]
out["tool_use"] = {"stop_reason": called.stop_reason, "names": [u.name for u in uses], "input": uses[0].input}

# The results of both calls in one user turn, as the API wants them.
answered = client.messages.create(
    model="claude-sonnet-4-5",
    max_tokens=64,
    tools=tools,
    messages=asked
    + [
        {"role": "assistant", "content": [u.model_dump() for u in uses]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": u.id, "content": "sunny"} for u in uses]},
    ],
)
out["after_tools"] = answered.stop_reason

with client.messages.stream(model="claude-sonnet-4-5", max_tokens=200, tools=tools, tool_choice={"type": "tool", "name": "get_weather"}, messages=asked) as stream:
    final = stream.get_final_message()
out["stream_tool_input"] = [b.input for b in final.content if b.type == "tool_use"]

try:
    client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        tools=tools,
        messages=asked
        + [
            {"role": "assistant", "content": [u.model_dump() for u in uses]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id, "content": "sunny"}]},
        ],
    )
    out["ungrouped"] = None
except anthropic.BadRequestError as e:
    out["ungrouped"] = e.body["error"]["type"]

bad = anthropic.Anthropic(base_url=base_url, api_key="wrong", max_retries=0)
try:
    bad.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    out["wrong_key"] = None
except anthropic.AuthenticationError as e:
    out["wrong_key"] = e.status_code

print(json.dumps(out))
