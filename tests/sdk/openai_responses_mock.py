"""The official openai SDK's Responses API against mock-upstream directly.

Usage: openai_responses_mock.py BASE_URL; prints what it saw as JSON."""
import json
import sys

import openai

client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0)
seen = {}

created = client.responses.create(model="gpt-5", input="Say hi", instructions="Be brief.")
seen["create"] = {
    "id": created.id,
    "status": created.status,
    "text": created.output_text,
    "usage": created.usage.model_dump(),
}
seen["retrieve"] = client.responses.retrieve(created.id).output_text

deltas = []
with client.responses.stream(model="gpt-5", input=[{"role": "user", "content": "Say hi"}]) as stream:
    for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    final = stream.get_final_response()
seen["stream"] = {
    "deltas": len(deltas),
    "text": "".join(deltas),
    "final": final.output_text,
    "status": final.status,
    "total_tokens": final.usage.total_tokens,
}

tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "strict": True,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}]
question = [{"role": "user", "content": "Call get_weather for Paris"}]
with client.responses.stream(model="gpt-5", input=question, tools=tools) as stream:
    arg_deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
    called = stream.get_final_response()
call = called.output[0]
seen["call"] = {
    "type": call.type,
    "name": call.name,
    "arguments": json.loads(call.arguments),
    "streamed": "".join(arg_deltas),
}
answer = client.responses.create(
    model="gpt-5",
    input=question + [call.model_dump(exclude_none=True),
                      {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    tools=tools,
)
seen["after_call"] = answer.output[0].type

try:
    client.responses.retrieve("resp_unknown")
    seen["not_found"] = None
except openai.NotFoundError as e:
    seen["not_found"] = e.status_code

print(json.dumps(seen))
