"""A two-turn conversation with the official OpenAI Python SDK through a
switchboard gateway, once with an x-switchboard-session header and once with
prompt_cache_key, and a fallback answer read through the SDK.

Usage: python3 openai_sessions.py BASE_URL
Prints one JSON object; tests/openai_sdk.rs asserts on it.
"""
import json
import sys

from openai import OpenAI

client = OpenAI(base_url=sys.argv[1], api_key="sk-anything", max_retries=0, timeout=20)


def conversation(**session):
    messages = [{"role": "user", "content": "Remember the number 7."}]
    served = []
    for _ in range(2):
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=messages, max_tokens=20, **session
        )
        answer = raw.parse()
        served.append(raw.headers["x-switchboard-deployment"])
        messages += [
            {"role": "assistant", "content": answer.choices[0].message.content},
            {"role": "user", "content": "Which number was it?"},
        ]
    return served


out = {
    "header": conversation(extra_headers={"x-switchboard-session": "conversation-42"}),
    "cache_key": conversation(extra_body={"prompt_cache_key": "thread-7"}),
}
raw = client.chat.completions.with_raw_response.create(
    model="gone", messages=[{"role": "user", "content": "hi"}], max_tokens=5
)
out["fallback"] = {
    "model_header": raw.headers["x-switchboard-model"],
    "body_model": raw.parse().model,
}
print(json.dumps(out))
