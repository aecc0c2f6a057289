"""The OpenAI Agents SDK through the gateway's Responses door: Runner.run_sync
and run_streamed with a function tool. Prints what it saw as JSON."""
import asyncio
import json
import sys

from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

base_url, model = sys.argv[1], sys.argv[2]
set_tracing_disabled(True)

calls = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"sunny in {city}"


def agent():
    # A client per event loop: run_sync runs its own.
    client = AsyncOpenAI(base_url=base_url, api_key="sk-client-key-123456", max_retries=0)
    return Agent(
        name="weather",
        instructions="Answer briefly; use get_weather for the weather.",
        model=OpenAIResponsesModel(model=model, openai_client=client),
        tools=[get_weather],
    )


plain = Runner.run_sync(agent(), "say hi")
tooled = Runner.run_sync(agent(), "use get_weather for Paris")


async def streamed():
    result = Runner.run_streamed(agent(), "use get_weather for Rome")
    kinds = set()
    async for event in result.stream_events():
        kinds.add(event.type)
    return result.final_output, sorted(kinds)


final, kinds = asyncio.run(streamed())
print(json.dumps({
    "plain": plain.final_output,
    "tooled": tooled.final_output,
    "streamed": final,
    "kinds": kinds,
    "calls": calls,
}))
