"""boto3's bedrock-runtime client against mock-upstream --provider bedrock:
proof that the mock signs, answers and streams as Bedrock does.

Usage: python3 bedrock_client.py ENDPOINT_URL ACCESS_KEY_ID SECRET API_KEY
Prints one JSON object; tests/bedrock.rs asserts on it.
"""
import json
import os
import sys

import boto3
import botocore.exceptions
from botocore.config import Config

endpoint, key_id, secret, api_key = sys.argv[1:5]
MODEL = "anthropic.claude-3-5-sonnet-20240620-v1:0"
config = Config(retries={"max_attempts": 1})


def client(secret_key):
    return boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=endpoint,
                        aws_access_key_id=key_id, aws_secret_access_key=secret_key, config=config)


c = client(secret)
out = {}
r = c.converse(modelId=MODEL, system=[{"text": "Be brief."}],
               messages=[{"role": "user", "content": [{"text": "Hello"}]}],
               inferenceConfig={"maxTokens": 5, "temperature": 0.5})
out["converse"] = {"text": r["output"]["message"]["content"][0]["text"], "stop": r["stopReason"], "usage": r["usage"]}

tools = {"tools": [{"toolSpec": {"name": "get_weather", "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}}}],
         "toolChoice": {"any": {}}}
asked = [{"role": "user", "content": [{"text": "Weather in Paris?"}]}]
r = c.converse(modelId=MODEL, messages=asked, toolConfig=tools)
use = [b["toolUse"] for b in r["output"]["message"]["content"] if "toolUse" in b]
out["tool_use"] = {"stop": r["stopReason"], "names": [u["name"] for u in use], "input": use[0]["input"]}
followup = asked + [r["output"]["message"], {"role": "user", "content": [
    {"toolResult": {"toolUseId": use[0]["toolUseId"], "content": [{"text": "sunny"}]}}]}]
out["after_tools"] = c.converse(modelId=MODEL, messages=followup, toolConfig=tools)["stopReason"]

events, text, tool_input = [], [], []
for e in c.converse_stream(modelId=MODEL, messages=asked, toolConfig=tools)["stream"]:
    kind = next(iter(e))
    events.append(kind)
    d = e[kind].get("delta", {})
    if "text" in d:
        text.append(d["text"])
    if "toolUse" in d:
        tool_input.append(d["toolUse"]["input"])
out["stream"] = {"events": sorted(set(events)), "first": events[0], "last": events[-1], "text": "".join(text),
                 "tool_input": json.loads("".join(tool_input))}

try:
    client("not-the-secret").converse(modelId=MODEL, messages=asked)
    out["wrong_secret"] = None
except botocore.exceptions.ClientError as e:
    out["wrong_secret"] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]

try:
    c.converse(modelId=MODEL, messages=[{"role": "assistant", "content": [{"text": "first"}]}])
    out["validation"] = None
except botocore.exceptions.ClientError as e:
    out["validation"] = e.response["Error"]["Code"]

# A Bedrock API key: botocore sends it as a bearer token.
os.environ["AWS_BEARER_TOKEN_BEDROCK"] = api_key
bearer = boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=endpoint, config=config)
out["api_key"] = bearer.converse(modelId=MODEL, messages=asked)["stopReason"]
print(json.dumps(out))
