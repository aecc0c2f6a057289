"""The official OpenAI Python SDK against switchboard, whose deployments
speak Anthropic's and Azure's APIs (mock-upstream --provider ...): what a
user of a translated provider sees.

Usage: python3 translation_client.py BASE_URL MODEL [converse]
("converse": the model is on Bedrock, which takes no image URLs and has no
way to ask for one tool call per turn: those are checked to be refused.)
Prints one JSON object; tests/provider_sdks.rs asserts on it.
"""
import json
import sys

import openai
from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
converse = sys.argv[3:] == ["converse"]
client = OpenAI(base_url=base_url, api_key="sk-anything", max_retries=0, timeout=20)
out = {}

raw = client.chat.completions.with_raw_response.create(
    model=model,
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Answer in English."},
        {"role": "user", "content": "Hello"},
    ],
    max_tokens=64,
    temperature=0.2,
    user="user-7",
    n=1,
    presence_penalty=0,
)
chat = raw.parse()
out["chat"] = {
    "id": chat.id,
    "object": chat.object,
    "model": chat.model,
    "content": chat.choices[0].message.content,
    "finish": chat.choices[0].finish_reason,
    "prompt_tokens": chat.usage.prompt_tokens,
    "completion_tokens": chat.usage.completion_tokens,
    "cached": chat.usage.prompt_tokens_details.cached_tokens if chat.usage.prompt_tokens_details else None,
    "deployment": raw.headers.get("x-switchboard-deployment"),
}
short = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], max_completion_tokens=2)
out["short"] = {"content": short.choices[0].message.content, "finish": short.choices[0].finish_reason}
stopped = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], stop=["fox"])
out["stopped"] = {"content": stopped.choices[0].message.content, "finish": stopped.choices[0].finish_reason}

text, usage_chunks, ids, models, roles = [], 0, set(), set(), []
for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], stream=True):
    ids.add(chunk.id)
    models.add(chunk.model)
    if chunk.usage is not None:
        usage_chunks += 1
    for c in chunk.choices:
        if c.delta.role:
            roles.append(c.delta.role)
        if c.delta.content:
            text.append(c.delta.content)
out["stream"] = {"text": "".join(text), "usage_chunks": usage_chunks, "ids": len(ids), "models": sorted(models), "roles": roles}

usage = None
for chunk in client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hello"}], stream=True, stream_options={"include_usage": True}):
    if chunk.usage is not None:
        usage = chunk.usage.total_tokens
out["stream_usage"] = usage

with client.chat.completions.stream(model=model, messages=[{"role": "user", "content": "Hello"}]) as s:
    final = s.get_final_completion()
out["final"] = final.choices[0].message.content

tools = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Time", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
]
asked = [{"role": "user", "content": "Weather and time in Paris?"}]
called = client.chat.completions.create(model=model, messages=asked, tools=tools, tool_choice="required")
calls = called.choices[0].message.tool_calls or []
out["tools"] = {
    "finish": called.choices[0].finish_reason,
    "names": [c.function.name for c in calls],
    "args": [json.loads(c.function.arguments) for c in calls],
    "content": called.choices[0].message.content,
}
try:
    single = client.chat.completions.create(model=model, messages=asked, tools=tools, tool_choice="required", parallel_tool_calls=False)
    out["single"] = len(single.choices[0].message.tool_calls or [])
except openai.BadRequestError as e:
    out["single"] = "refused: " + str(e.param)
named = client.chat.completions.create(model=model, messages=asked, tools=tools, tool_choice={"type": "function", "function": {"name": "get_time"}})
out["named"] = [c.function.name for c in named.choices[0].message.tool_calls]

# The results go back as two tool messages; the gateway groups them into one turn.
followup = client.chat.completions.create(
    model=model,
    tools=tools,
    messages=asked
    + [
        {"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
    ]
    + [{"role": "tool", "tool_call_id": c.id, "content": "sunny, 12:00"} for c in calls],
)
out["followup"] = followup.choices[0].finish_reason

with client.chat.completions.stream(model=model, messages=asked, tools=tools, tool_choice="required") as s:
    final = s.get_final_completion()
streamed_calls = final.choices[0].message.tool_calls or []
out["stream_tools"] = {
    "names": [c.function.name for c in streamed_calls],
    "args": [json.loads(c.function.arguments) for c in streamed_calls],
    "finish": final.choices[0].finish_reason,
}

images = [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]
url_image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
if not converse:
    images.append(url_image)
image = client.chat.completions.create(
    model=model,
    messages=[{"role": "user", "content": [{"type": "text", "text": "What is this?"}] + images}],
)
out["image"] = image.choices[0].finish_reason
if converse:
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": [url_image]}])
        out["refused_image_url"] = None
    except openai.BadRequestError as e:
        out["refused_image_url"] = e.param

for name, kwargs in [("n", {"n": 2}), ("logprobs", {"logprobs": True}), ("presence_penalty", {"presence_penalty": 0.5})]:
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}], **kwargs)
        out["refused_" + name] = None
    except openai.BadRequestError as e:
        out["refused_" + name] = e.param

try:
    client.embeddings.create(model=model, input="x")
    out["embeddings"] = None
except openai.NotFoundError as e:
    out["embeddings"] = e.code

print(json.dumps(out))
