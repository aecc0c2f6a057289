"""The anthropic SDK's AnthropicVertex client against mock-upstream
--provider vertex, with google-auth credentials refreshed at the mock's own
token endpoint: messages, streams and count_tokens as the SDK sends them.

Usage: python3 claude_vertex.py BASE_URL CREDENTIALS_FILE
Prints one JSON object; tests/mock_claude.rs asserts on it.
"""
import json
import sys

import anthropic
from google.oauth2 import service_account

base, path = sys.argv[1], sys.argv[2]
MODEL = "claude-sonnet-4-5@20250929"
creds = service_account.Credentials.from_service_account_file(
    path, scopes=["https://www.googleapis.com/auth/cloud-platform"])
client = anthropic.AnthropicVertex(region="us-east5", project_id="mock-project", credentials=creds,
                                   base_url=base + "/v1", max_retries=0, timeout=20)
out = {}
msg = client.messages.create(model=MODEL, max_tokens=64, system="Be brief.",
                             messages=[{"role": "user", "content": "Hello"}])
out["create"] = {"text": msg.content[0].text, "stop_reason": msg.stop_reason}
with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {"text": text, "final_text": final.content[0].text}
tools = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
counted = client.messages.count_tokens(model=MODEL, system="Be brief.", tools=tools,
                                       messages=[{"role": "user", "content": "Hello"}])
out["count_tokens"] = counted.input_tokens
try:
    client.messages.count_tokens(model=MODEL, messages=[{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]}], tools=tools)
    out["count_refused"] = None
except anthropic.BadRequestError as e:
    out["count_refused"] = e.status_code
print(json.dumps(out))
