"""Drives `mock-upstream --provider azure` with the openai SDK's AzureOpenAI
client (the classic deployments API), to show the mock is faithful enough.

Usage: python3 azure_client.py ENDPOINT API_KEY
"""
import json
import sys

import openai
from openai import AzureOpenAI

endpoint, key = sys.argv[1], sys.argv[2]
client = AzureOpenAI(azure_endpoint=endpoint, api_key=key, api_version="2024-10-21", max_retries=0, timeout=20)
out = {}
chat = client.chat.completions.create(model="gpt-4o-east", messages=[{"role": "user", "content": "hi"}])
out["chat"] = {"content": chat.choices[0].message.content, "filtered": chat.choices[0].model_extra.get("content_filter_results") is not None}
text, empty_choice_chunks = [], 0
for chunk in client.chat.completions.create(model="gpt-4o-east", messages=[{"role": "user", "content": "hi"}], stream=True):
    if not chunk.choices:
        empty_choice_chunks += 1
    for c in chunk.choices:
        if c.delta and c.delta.content:
            text.append(c.delta.content)
out["stream"] = {"text": "".join(text), "empty_choice_chunks": empty_choice_chunks}
emb = client.embeddings.create(model="embed-east", input="x")
out["embeddings"] = len(emb.data[0].embedding)
try:
    AzureOpenAI(azure_endpoint=endpoint, api_key="wrong", api_version="2024-10-21", max_retries=0).chat.completions.create(
        model="gpt-4o-east", messages=[{"role": "user", "content": "hi"}]
    )
    out["wrong_key"] = None
except openai.AuthenticationError as e:
    out["wrong_key"] = e.status_code
print(json.dumps(out))
