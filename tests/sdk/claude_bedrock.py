"""The anthropic SDK's AnthropicBedrock client and boto3's bedrock-runtime
InvokeModel family against mock-upstream --provider bedrock: proof that the
mock signs, answers and frames Claude on Bedrock as the SDKs expect.

Usage: python3 claude_bedrock.py ENDPOINT_URL ACCESS_KEY_ID SECRET
Prints one JSON object; tests/mock_claude.rs asserts on it.
"""
import base64
import json
import sys

import anthropic
import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, key_id, secret = sys.argv[1:4]
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
out = {}

client = anthropic.AnthropicBedrock(aws_access_key=key_id, aws_secret_key=secret, aws_region="us-east-1",
                                    base_url=endpoint, max_retries=0, timeout=20)
msg = client.messages.create(model=MODEL, max_tokens=64, system="Be brief.",
                             messages=[{"role": "user", "content": "Hello"}])
out["create"] = {"text": msg.content[0].text, "stop_reason": msg.stop_reason, "model": msg.model,
                 "id": msg.id, "input_tokens": msg.usage.input_tokens}
with client.messages.stream(model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hello"}]) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
out["stream"] = {"text": text, "final_text": final.content[0].text, "stop_reason": final.stop_reason,
                 "output_tokens": final.usage.output_tokens}

tools = [{"name": "get_weather", "description": "Weather in a city",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
asked = [{"role": "user", "content": "What is the weather in Paris?"}]
with client.messages.stream(model=MODEL, max_tokens=200, tools=tools, tool_choice={"type": "any"},
                            messages=asked) as stream:
    called = stream.get_final_message()
out["stream_tools"] = {"stop_reason": called.stop_reason,
                       "inputs": [b.input for b in called.content if b.type == "tool_use"]}

# A beta Bedrock takes, through the SDK's beta client (anthropic_beta in the body).
beta = client.beta.messages.create(model=MODEL, max_tokens=8, betas=["interleaved-thinking-2025-05-14"],
                                   messages=[{"role": "user", "content": "Hello"}])
out["beta_ok"] = beta.stop_reason
try:
    client.beta.messages.create(model=MODEL, max_tokens=8, betas=["claude-code-20250219"],
                                messages=[{"role": "user", "content": "Hello"}])
    out["beta_refused"] = None
except anthropic.BadRequestError as e:
    out["beta_refused"] = [e.status_code, str(e.body)]

wrong = anthropic.AnthropicBedrock(aws_access_key=key_id, aws_secret_key="not-the-secret", aws_region="us-east-1",
                                   base_url=endpoint, max_retries=0)
try:
    wrong.messages.create(model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    out["wrong_secret"] = None
except anthropic.PermissionDeniedError as e:
    out["wrong_secret"] = e.status_code

# boto3, the InvokeModel family.
c = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=endpoint, aws_access_key_id=key_id,
                 aws_secret_access_key=secret, config=Config(retries={"max_attempts": 1}))
body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Hello", "cache_control": {"type": "ephemeral"}}]}]}
r = c.invoke_model(modelId=MODEL, body=json.dumps(body), contentType="application/json", accept="application/json")
answer = json.loads(r["body"].read())
headers = r["ResponseMetadata"]["HTTPHeaders"]
out["invoke"] = {"type": answer["type"], "text": answer["content"][0]["text"], "stop_reason": answer["stop_reason"],
                 "input_header": headers.get("x-amzn-bedrock-input-token-count"),
                 "input_tokens": answer["usage"]["input_tokens"]}

r = c.invoke_model_with_response_stream(modelId=MODEL, body=json.dumps(body))
events, text, metrics = [], [], None
for e in r["body"]:
    event = json.loads(e["chunk"]["bytes"])
    events.append(event["type"])
    if event["type"] == "content_block_delta":
        text.append(event["delta"]["text"])
    metrics = event.get("amazon-bedrock-invocationMetrics", metrics)
out["invoke_stream"] = {"events": events, "text": "".join(text), "metrics": metrics}

try:
    c.invoke_model(modelId=MODEL, body=json.dumps(dict(body, model="claude")))
    out["invoke_refused"] = None
except botocore.exceptions.ClientError as e:
    out["invoke_refused"] = [e.response["Error"]["Code"], e.response["Error"]["Message"]]

if hasattr(c, "count_tokens"):
    n = c.count_tokens(modelId=MODEL, input={"invokeModel": {"body": json.dumps(body)}})
    out["count_tokens"] = n["inputTokens"]
    n = c.count_tokens(modelId=MODEL, input={"converse": {"messages": [{"role": "user", "content": [{"text": "Hello"}]}]}})
    out["count_converse"] = n["inputTokens"]
    try:
        c.count_tokens(modelId=MODEL, input={"invokeModel": {"body": json.dumps({"messages": []})}})
        out["count_refused"] = None
    except botocore.exceptions.ClientError as e:
        out["count_refused"] = e.response["Error"]["Code"]
print(json.dumps(out))
