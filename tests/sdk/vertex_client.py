"""google-auth against mock-upstream --provider vertex: the service-account
file the mock wrote is refreshed at the mock's token endpoint, and the
token it gets is what rawPredict takes.

Usage: python3 vertex_client.py BASE_URL CREDENTIALS_FILE
Prints one JSON object; tests/vertex.rs asserts on it.
"""
import json
import sys

import google.auth.transport.requests
import requests
from google.oauth2 import service_account

base, path = sys.argv[1], sys.argv[2]
out = {}
creds = service_account.Credentials.from_service_account_file(
    path, scopes=["https://www.googleapis.com/auth/cloud-platform"])
creds.refresh(google.auth.transport.requests.Request())
out["token_prefix"] = creds.token[:10]
out["valid"] = creds.valid
model = base + "/v1/projects/mock-project/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929"
body = {"anthropic_version": "vertex-2023-10-16", "max_tokens": 5, "messages": [{"role": "user", "content": "Hello"}]}
r = requests.post(model + ":rawPredict", headers={"Authorization": "Bearer " + creds.token}, json=body, timeout=10)
out["raw_predict"] = {"status": r.status_code, "stop_reason": r.json().get("stop_reason")}
r = requests.post(model + ":rawPredict", headers={"Authorization": "Bearer ya29.not-issued"}, json=body, timeout=10)
out["wrong_token"] = {"status": r.status_code, "error": r.json()["error"]["status"]}
with_model = dict(body, model="claude-sonnet-4-5")
r = requests.post(model + ":rawPredict", headers={"Authorization": "Bearer " + creds.token}, json=with_model, timeout=10)
out["model_in_body"] = r.status_code
print(json.dumps(out))
