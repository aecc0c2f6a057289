#!/usr/bin/env bash
# Closed-loop throughput of the Messages door against the chat door on the
# same mock-upstream setup, streaming and not, alternating runs:
#   chat → openai            the OpenAI pass-through path (the reference)
#   messages → anthropic     native (passed through)        target ≥ 0.95×
#   messages → bedrock       native (InvokeModel, SigV4, event-stream unwrapped)
#   messages → openai        translated through chat         target ≥ 0.8×
#   responses → openai       passed through (/responses)     target ≥ 0.95×
#   responses → anthropic    bridged through chat            target ≥ 0.8×
#   responses → openai chat  bridged to a chat-only deployment (`responses = "bridged"`)
# and the mocks alone (no gateway): OpenAI's /v1/chat/completions and
# /v1/responses, Anthropic's /v1/messages, to tell each mock's own cost of
# an answer from the gateway's (mock-normalised ratios).
# Usage: benches/doors.sh   (RUNS=3 DUR=8s; SWITCHBOARD_BIN=path to skip the build; needs oha)
#   ONLY="chat responses-native": those paths alone.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2; fi
SB=$(realpath "${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}"); RUNS=${RUNS:-3}; DUR=${DUR:-8s}
cd "$WORK" || exit 1
trap 'kill ${GW:-} ${M1:-} ${M2:-} ${M3:-} 2>/dev/null; rm -rf "$WORK"' EXIT
$SB mock-upstream --listen 127.0.0.1:18640 > m1.log 2>&1 & M1=$!
$SB mock-upstream --listen 127.0.0.1:18641 --provider anthropic > m2.log 2>&1 & M2=$!
$SB mock-upstream --listen 127.0.0.1:18643 --provider bedrock --aws-access-key-id AKIABENCH000000000001 --aws-secret-access-key bench-secret > m3.log 2>&1 & M3=$!
cat > cfg.toml <<'CFG'
[server]
listen = "127.0.0.1:18642"
workers = 1
[[models]]
name = "via-openai"
[[models.deployments]]
name = "openai"
api_base = "http://127.0.0.1:18640/v1"
model_id = "bench-model"
[[models]]
name = "via-anthropic"
[[models.deployments]]
name = "anthropic"
provider = "anthropic"
api_base = "http://127.0.0.1:18641"
api_key = "sk-ant-bench-0123456789"
model_id = "claude-sonnet-4-5"
[[models]]
name = "via-openai-chat"
[[models.deployments]]
name = "openai-chat"
api_base = "http://127.0.0.1:18640/v1"
model_id = "bench-model"
responses = "bridged"
[[models]]
name = "via-bedrock"
[[models.deployments]]
name = "bedrock"
provider = "bedrock"
region = "us-east-1"
api_base = "http://127.0.0.1:18643"
aws_access_key_id = "AKIABENCH000000000001"
aws_secret_access_key = "bench-secret"
model_id = "anthropic.claude-sonnet-4-5-20250929-v1:0"
CFG
RUST_LOG=warn $SB serve --config cfg.toml > serve.log 2>&1 & GW=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18642/health && break; sleep 0.1; done
load() { # path model stream [port] -> req/s
  if [ "$1" = /v1/responses ]; then
    printf '{"model":"%s","max_output_tokens":16,"stream":%s,"input":"Say hello."}' "$2" "$3" > body.json
  else
    printf '{"model":"%s","max_tokens":16,"stream":%s,"messages":[{"role":"user","content":"Say hello."}]}' "$2" "$3" > body.json
  fi
  oha -c 32 -z "$DUR" --no-tui --worker-threads 1 -m POST -T application/json -H 'anthropic-version: 2023-06-01' -D body.json "http://127.0.0.1:${4:-18642}$1" 2>/dev/null \
    | awk '/Requests\/sec/ {print $2}'
}
declare -A sum
for stream in false true; do
  for i in $(seq "$RUNS"); do
    for path in "chat:/v1/chat/completions:via-openai" "messages-native:/v1/messages:via-anthropic" "messages-bedrock:/v1/messages:via-bedrock" "messages-translated:/v1/messages:via-openai" "responses-native:/v1/responses:via-openai" "responses-bridged:/v1/responses:via-anthropic" "responses-chat:/v1/responses:via-openai-chat" "mock-chat:/v1/chat/completions:bench-model:18640" "mock-responses:/v1/responses:bench-model:18640" "mock-anthropic:/v1/messages:bench-model:18641"; do
      IFS=: read -r name url model port <<< "$path"
      if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
      r=$(load "$url" "$model" "$stream" "$port" | head -1)
      echo "stream=$stream $name run $i: $r req/s"
    done
  done
done
