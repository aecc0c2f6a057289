"""The official openai and anthropic SDKs meet mock-upstream's limits:
each SDK raises its RateLimitError and exposes the headers it reads.

Usage: rate_limits_mock.py OPENAI_BASE_URL ANTHROPIC_BASE_URL
(the OpenAI mock with --rpm-limit 1, the Anthropic mock with
--output-tpm-limit below two requests' max_tokens). Prints what each SDK
saw as JSON."""
import json
import sys

import anthropic
import openai

openai_url, anthropic_url = sys.argv[1], sys.argv[2]
seen = {}

oa = openai.OpenAI(base_url=openai_url, api_key="sk-test", max_retries=0, timeout=20)
chat = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
raw = oa.chat.completions.with_raw_response.create(**chat)
seen["openai_ok"] = {
    "remaining": raw.headers.get("x-ratelimit-remaining-requests"),
    "text": raw.parse().choices[0].message.content,
}
try:
    oa.chat.completions.create(**chat)
    seen["openai"] = "no error"
except openai.RateLimitError as e:
    h = e.response.headers
    seen["openai"] = {
        "class": type(e).__name__,
        "status": e.status_code,
        "type": e.body.get("type") if isinstance(e.body, dict) else None,
        "code": e.code,
        "limit": h.get("x-ratelimit-limit-requests"),
        "remaining": h.get("x-ratelimit-remaining-requests"),
        "reset": h.get("x-ratelimit-reset-requests"),
        "retry_after": h.get("retry-after"),
    }

an = anthropic.Anthropic(base_url=anthropic_url, api_key="sk-ant-test", max_retries=0, timeout=20)
msg = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
raw = an.messages.with_raw_response.create(**msg)
seen["anthropic_ok"] = {
    "output_remaining": raw.headers.get("anthropic-ratelimit-output-tokens-remaining"),
    "stop_reason": raw.parse().stop_reason,
}
try:
    # While a stream holds its reservation, a second request does not fit.
    with an.messages.stream(**msg) as stream:
        next(iter(stream))
        an.messages.create(**msg)
    seen["anthropic"] = "no error"
except anthropic.RateLimitError as e:
    h = e.response.headers
    seen["anthropic"] = {
        "class": type(e).__name__,
        "status": e.status_code,
        "type": e.body["error"]["type"],
        "output_limit": h.get("anthropic-ratelimit-output-tokens-limit"),
        "output_remaining": h.get("anthropic-ratelimit-output-tokens-remaining"),
        "output_reset": h.get("anthropic-ratelimit-output-tokens-reset"),
        "input_remaining": h.get("anthropic-ratelimit-input-tokens-remaining"),
        "retry_after": h.get("retry-after"),
    }

print(json.dumps(seen))
