#!/usr/bin/env bash
# Instructions per proxied request (callgrind counts instructions, not time:
# the same binary and inputs give the same figure whatever else the machine
# does). The gateway runs under callgrind with `workers = 1` in front of a
# mock-upstream; N requests at 8 connections, minus a run with none (startup
# and shutdown), divided by N.
# Usage: benches/callgrind.sh [BIN]   (N=3000; needs valgrind and oha)
#   SESSION=1: every request carries an x-switchboard-session header, to
#   price the pin lookup (with DEPLOYMENTS=2, or a one-deployment model has
#   nothing to stick to and ignores it).
#   DOOR=messages: Anthropic's Messages door to an Anthropic mock (native);
#   DOOR=messages-translated: the Messages door to the OpenAI mock (through chat).
#   DOOR=responses: the Responses door to the OpenAI mock (passed through);
#   DOOR=responses-bridged: the Responses door to an Anthropic mock (through chat);
#   DOOR=responses-chat: the Responses door to the OpenAI mock's chat endpoint
#   (`responses = "bridged"`).
#   STREAM=1: streaming requests.
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SB=$(realpath "${1:-$ROOT/target/release/switchboard}"); N=${N:-3000}
WORK="$(mktemp -d)"; cd "$WORK" || exit 1
trap 'kill ${MOCK:-} 2>/dev/null; rm -rf "$WORK"' EXIT
DOOR=${DOOR:-chat}; PATH_=/v1/chat/completions; PROVIDER=""; MOCK_PROVIDER=openai; BASE=http://127.0.0.1:18620/v1
case "$DOOR" in
  messages) PATH_=/v1/messages; MOCK_PROVIDER=anthropic; PROVIDER='provider = "anthropic"\napi_key = "sk-ant-bench-0123456789"\n'; BASE=http://127.0.0.1:18620 ;;
  messages-translated) PATH_=/v1/messages ;;
  responses) PATH_=/v1/responses ;;
  responses-bridged) PATH_=/v1/responses; MOCK_PROVIDER=anthropic; PROVIDER='provider = "anthropic"\napi_key = "sk-ant-bench-0123456789"\n'; BASE=http://127.0.0.1:18620 ;;
  responses-chat) PATH_=/v1/responses; PROVIDER='responses = "bridged"\n' ;;
esac
$SB mock-upstream --listen 127.0.0.1:18620 --provider "$MOCK_PROVIDER" > mock.log 2>&1 & MOCK=$!
# LIMITS=0: no tpm_limit (a model with no limit: no x-ratelimit-* headers).
TPM='tpm_limit = 100000000\n'; [ "${LIMITS:-1}" = 0 ] && TPM=''
printf "[server]\nlisten = \"127.0.0.1:18621\"\nworkers = 1\n[[models]]\nname = \"bench-model\"\n[[models.deployments]]\nname = \"mock\"\n${PROVIDER}api_base = \"$BASE\"\nmodel_id = \"bench-model\"\n${TPM}" > cfg.toml
# DEPLOYMENTS=2: a second deployment (the same mock), so that a session has
# a choice to stick to.
[ "${DEPLOYMENTS:-1}" = 2 ] && printf '[[models.deployments]]\nname = "mock2"\napi_base = "http://127.0.0.1:18620/v1"\nmodel_id = "bench-model"\ntpm_limit = 100000000\n' >> cfg.toml
case "$PATH_" in
  /v1/responses) echo '{"model":"bench-model","max_output_tokens":16,"input":"Say hello."}' > body.json ;;
  *) echo '{"model":"bench-model","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}' > body.json ;;
esac
[ "${STREAM:-0}" = 1 ] && sed -i 's/^{/{"stream":true,/' body.json
total() { # requests -> instructions of the whole run
  RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file=cg.out "$SB" serve --config cfg.toml > /dev/null 2>&1 & local vg=$!
  for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/18621) 2>/dev/null && break; sleep 0.1; done
  local extra=()
  [ "${SESSION:-0}" = 1 ] && extra=(-H "x-switchboard-session: bench-session-$((RANDOM % 100))")
  if [ "$1" -gt 0 ]; then oha -n "$1" -c 8 --no-tui -m POST -T application/json -D body.json "${extra[@]}" -H 'anthropic-version: 2023-06-01' "http://127.0.0.1:18621$PATH_" > /dev/null 2>&1; fi
  kill -TERM $vg; wait $vg 2>/dev/null
  awk '/^summary:/ {print $2}' cg.out
}
idle=$(total 0); busy=$(total "$N")
# KEEP=FILE keeps the busy run's profile (for callgrind_annotate).
[ -n "${KEEP:-}" ] && cp cg.out "$KEEP"
echo "instructions: idle run $idle, $N requests $busy"
echo "per request: $(( (busy - idle) / N ))"
