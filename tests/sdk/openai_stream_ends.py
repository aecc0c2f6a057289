"""Streams through a switchboard gateway with the official OpenAI Python SDK,
from upstreams whose streams end without [DONE] or carry a malformed chunk.

Usage: python3 openai_stream_ends.py BASE_URL MODEL...
Prints one JSON object, per model what the SDK saw (or the error it raised);
tests/openai_sdk.rs asserts on it.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="sk-anything", max_retries=0, timeout=20)
out = {}
for model in sys.argv[2:]:
    seen = {"text": "", "finish_reason": None, "usage": None, "error": None}
    try:
        for chunk in client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": "stream"}],
            stream=True,
            stream_options={"include_usage": True},
        ):
            if chunk.usage is not None:
                seen["usage"] = chunk.usage.completion_tokens
            for c in chunk.choices:
                if c.delta.content:
                    seen["text"] += c.delta.content
                if c.finish_reason:
                    seen["finish_reason"] = c.finish_reason
    except Exception as e:  # what the user's code would have to catch
        seen["error"] = f"{type(e).__name__}: {e}"
    out[model] = seen
print(json.dumps(out))
