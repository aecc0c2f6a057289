"""Drives a switchboard gateway with the official OpenAI Python SDK.

Usage: python3 openai_client.py BASE_URL
Prints one JSON object with what the SDK saw; tests/openai_sdk.rs asserts on it.
"""
import json
import sys

import openai
from openai import OpenAI

base_url = sys.argv[1]
client = OpenAI(base_url=base_url, api_key="sk-anything", max_retries=0, timeout=20)
out = {}

raw = client.chat.completions.with_raw_response.create(
    model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=8
)
chat = raw.parse()
out["chat"] = {
    "content": chat.choices[0].message.content,
    "usage": chat.usage.total_tokens,
    "deployment": raw.headers.get("x-switchboard-deployment"),
    "attempts": raw.headers.get("x-switchboard-attempts"),
}

# A float is sent as written, `"max_tokens": 8.0`; upstreams take it as 8.
floats = client.chat.completions.with_raw_response.create(
    model="m", messages=[{"role": "user", "content": "hello"}], max_tokens=8.0, n=1.0
)
out["float_counts"] = {
    "completion_tokens": floats.parse().usage.completion_tokens,
    "deployment": floats.headers.get("x-switchboard-deployment"),
}

text, usage_chunks = [], 0
for chunk in client.chat.completions.create(
    model="m", messages=[{"role": "user", "content": "stream"}], stream=True
):
    if chunk.usage is not None:
        usage_chunks += 1
    for c in chunk.choices:
        if c.delta.content:
            text.append(c.delta.content)
out["stream"] = {"text": "".join(text), "usage_chunks": usage_chunks}

last_usage = None
for chunk in client.chat.completions.create(
    model="m",
    messages=[{"role": "user", "content": "stream"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.usage is not None:
        last_usage = chunk.usage.total_tokens
out["stream_with_usage"] = last_usage

emb = client.embeddings.create(model="m", input=["a", "b"])
out["embeddings"] = len(emb.data)
out["models"] = [m.id for m in client.models.list()]

try:
    client.chat.completions.create(model="nope", messages=[])
    out["unknown_model"] = None
except openai.NotFoundError as e:
    out["unknown_model"] = e.code

print(json.dumps(out))
