#!/usr/bin/env bash
# Closed-loop throughput through an Anthropic deployment and a Bedrock one
# (translated both ways; Bedrock's requests SigV4-signed and its streams in
# AWS event-stream frames) against an OpenAI one (passed through), on the
# same mock-upstream setup, streaming and not; alternating runs. Targets:
# Anthropic >= 0.8x OpenAI, Bedrock >= 0.7x.
# Usage: benches/providers.sh   (RUNS=3 DUR=10s; SWITCHBOARD_BIN=path to skip the build; needs oha)
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2; fi
SB=$(realpath "${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}"); RUNS=${RUNS:-3}; DUR=${DUR:-10s}
cd "$WORK" || exit 1
trap 'kill ${GW:-} ${M1:-} ${M2:-} ${M3:-} 2>/dev/null; rm -rf "$WORK"' EXIT
$SB mock-upstream --listen 127.0.0.1:18630 > m1.log 2>&1 & M1=$!
$SB mock-upstream --listen 127.0.0.1:18631 --provider anthropic > m2.log 2>&1 & M2=$!
$SB mock-upstream --listen 127.0.0.1:18633 --provider bedrock --aws-access-key-id AKIABENCH000000000001 --aws-secret-access-key bench-secret > m3.log 2>&1 & M3=$!
cat > cfg.toml <<'CFG'
[server]
listen = "127.0.0.1:18632"
workers = 1
[[models]]
name = "via-openai"
[[models.deployments]]
name = "openai"
api_base = "http://127.0.0.1:18630/v1"
model_id = "bench-model"
[[models]]
name = "via-anthropic"
[[models.deployments]]
name = "anthropic"
provider = "anthropic"
api_base = "http://127.0.0.1:18631"
api_key = "sk-ant-bench-0123456789"
model_id = "claude-sonnet-4-5"
[[models]]
name = "via-bedrock"
[[models.deployments]]
name = "bedrock"
provider = "bedrock"
region = "us-east-1"
api_base = "http://127.0.0.1:18633"
aws_access_key_id = "AKIABENCH000000000001"
aws_secret_access_key = "bench-secret"
model_id = "anthropic.claude-sonnet-4-5-20250929-v1:0"
CFG
RUST_LOG=warn $SB serve --config cfg.toml > serve.log 2>&1 & GW=$!
for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18632/health && break; sleep 0.1; done
load() { # model stream -> req/s
  printf '{"model":"%s","max_tokens":16,"stream":%s,"messages":[{"role":"user","content":"Say hello."}]}' "$1" "$2" > body.json
  oha -c 32 -z "$DUR" --no-tui --worker-threads 1 -m POST -T application/json -D body.json http://127.0.0.1:18632/v1/chat/completions 2>/dev/null \
    | awk '/Requests\/sec/ {print $2} /Success rate/ {rate=$3}'
}
for stream in false true; do
  for i in $(seq "$RUNS"); do
    for model in via-openai via-anthropic via-bedrock; do
      echo "stream=$stream $model run $i: $(load $model $stream | head -1) req/s"
    done
  done
done
