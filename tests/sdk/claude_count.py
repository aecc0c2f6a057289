"""The anthropic SDK's count_tokens against mock-upstream --provider
anthropic, as the plain and the beta client send it (the beta one on
`/v1/messages/count_tokens?beta=true` with `anthropic-beta`).

Usage: python3 claude_count.py BASE_URL API_KEY
Prints one JSON object; tests/mock_claude.rs asserts on it.
"""
import json
import sys

import anthropic

base_url, key = sys.argv[1], sys.argv[2]
client = anthropic.Anthropic(base_url=base_url, api_key=key, max_retries=0, timeout=20)
out = {}
asked = [{"role": "user", "content": "Hello there"}]
tools = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
out["plain"] = client.messages.count_tokens(model="claude-sonnet-4-5", messages=asked).input_tokens
out["again"] = client.messages.count_tokens(model="claude-sonnet-4-5", messages=asked).input_tokens
out["with_tools"] = client.messages.count_tokens(model="claude-sonnet-4-5", messages=asked, tools=tools,
                                                 system="Be brief.").input_tokens
out["beta"] = client.beta.messages.count_tokens(model="claude-sonnet-4-5", messages=asked,
                                                betas=["token-counting-2024-11-01"]).input_tokens
try:
    client.messages.count_tokens(model="claude-sonnet-4-5", messages=[])
    out["empty"] = None
except anthropic.BadRequestError as e:
    out["empty"] = e.body["error"]["type"]
bad = anthropic.Anthropic(base_url=base_url, api_key="wrong", max_retries=0)
try:
    bad.messages.count_tokens(model="claude-sonnet-4-5", messages=asked)
    out["wrong_key"] = None
except anthropic.AuthenticationError as e:
    out["wrong_key"] = e.status_code
print(json.dumps(out))
