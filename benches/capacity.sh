#!/usr/bin/env bash
# Capacity under load (issue 22's "done when"): three deployment shapes,
# each behind a mock-upstream that enforces the same limits, offered twice
# their capacity in an open loop, with `max_wait_s = 10`:
#   azure      tpm 30000 + rpm 120 in 10 s slices (rpm binds: 2 req/s)
#   anthropic  input 20000 + output 3000 tokens a minute (output binds)
#   vllm       max_in_flight 8, 400 ms answers (20 req/s)
# and a ramp against a TPM limit, to compare the forecast with the moment
# the limit was hit. Prints one table; every run is bounded in time.
#
#   benches/capacity.sh            # DUR=60 s per shape (a window's length)
#   SWITCHBOARD_BIN=path DUR=20 benches/capacity.sh
#
# The mocks run with --limit-grace-ms 1000: the gateway's windows count
# whole seconds (a count made in second s leaves at s+60), so against an
# exact sliding window it may send up to a second early (README, Capacity).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$(realpath "${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}")"
DUR="${DUR:-60}"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
command -v oha >/dev/null || { echo "needs oha (../shared/bench/setup.sh)" >&2; exit 1; }

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

BODY='{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"Say hello to the capacity benchmark."}]}'
echo "$BODY" > "$WORK/body.json"

# run NAME RATE MOCK_ARGS DEPLOYMENT_TOML
run() {
  local name=$1 rate=$2 mock_args=$3 dep=$4 port=18710 gw=18711
  "$BIN" mock-upstream --listen 127.0.0.1:$port --tokens 50 --limit-grace-ms 1000 $mock_args > "$WORK/$name-mock.log" 2>&1 & PIDS+=($!)
  local mock=$!
  cat > "$WORK/$name.toml" <<TOML
[server]
listen = "127.0.0.1:$gw"
max_wait_s = 10

[[models]]
name = "m"
max_queue = 1000

[[models.deployments]]
name = "$name"
model_id = "m"
$dep
TOML
  RUST_LOG=warn "$BIN" serve --config "$WORK/$name.toml" > "$WORK/$name-gw.log" 2>&1 & PIDS+=($!)
  local sb=$!
  wait_port $port; wait_port $gw
  python3 "$ROOT/benches/capacity_poll.py" "http://127.0.0.1:$gw/admin/state" "$WORK/$name-state.jsonl" $((DUR + 12)) & PIDS+=($!)
  local poll=$!
  # A count rather than a duration: every request is waited for and counted.
  oha -q "$rate" -n $((rate * DUR)) -c 512 --no-tui --output-format json -m POST -T application/json \
    -D "$WORK/body.json" "http://127.0.0.1:$gw/v1/chat/completions" > "$WORK/$name-oha.json" 2>/dev/null || true
  curl -s "http://127.0.0.1:$port/mock/stats" > "$WORK/$name-mock.json"
  wait $poll 2>/dev/null || true
  kill $sb $mock 2>/dev/null || true; wait $sb $mock 2>/dev/null || true
  python3 "$ROOT/benches/capacity_poll.py" --report "$name" "$rate" "$WORK/$name-oha.json" "$WORK/$name-mock.json" "$WORK/$name-state.jsonl"
}

echo "shape       offered  client 200  client 429  other  upstream 429  waited p50/max  queue max  forecast at 40/20/10 s before full"
run azure 4 "--rpm-limit 120 --rpm-slice-s 10 --tpm-limit 30000" \
  "api_base = \"http://127.0.0.1:18710/v1\"
api_key = \"sk-bench\"
tpm_limit = 30000
rpm_limit = 120
rpm_slice_s = 10"
run anthropic 2 "--provider anthropic --input-tpm-limit 20000 --output-tpm-limit 3000" \
  "provider = \"anthropic\"
api_base = \"http://127.0.0.1:18710\"
api_key = \"sk-ant-bench-0123456789\"
input_tpm_limit = 20000
output_tpm_limit = 3000"
run vllm 40 "--max-in-flight 8 --latency-ms 400" \
  "api_base = \"http://127.0.0.1:18710/v1\"
max_in_flight = 8"
# The ramp: 1 req/s more every 5 s against 15,000 TPM (a request reserves
# ~110 tokens and settles at ~60), the forecast read every half second.
ramp() {
  local port=18710 gw=18711 secs=$((DUR > 60 ? DUR : 60))
  "$BIN" mock-upstream --listen 127.0.0.1:$port --tokens 50 --limit-grace-ms 1000 --tpm-limit 15000 > "$WORK/ramp-mock.log" 2>&1 & PIDS+=($!)
  local mock=$!
  printf '[server]\nlisten = "127.0.0.1:%s"\nmax_wait_s = 10\n[[models]]\nname = "m"\n[[models.deployments]]\nname = "ramp"\nmodel_id = "m"\napi_base = "http://127.0.0.1:%s/v1"\ntpm_limit = 15000\n' $gw $port > "$WORK/ramp.toml"
  RUST_LOG=warn "$BIN" serve --config "$WORK/ramp.toml" > "$WORK/ramp-gw.log" 2>&1 & PIDS+=($!)
  local sb=$!
  wait_port $port; wait_port $gw
  python3 "$ROOT/benches/capacity_poll.py" "http://127.0.0.1:$gw/admin/state" "$WORK/ramp-state.jsonl" "$secs" & PIDS+=($!)
  local poll=$!
  local load; load=$(python3 "$ROOT/benches/capacity_poll.py" --ramp "http://127.0.0.1:$gw/v1/chat/completions" "$secs")
  wait $poll 2>/dev/null || true
  curl -s "http://127.0.0.1:$port/mock/stats" > "$WORK/ramp-mock.json"
  kill $sb $mock 2>/dev/null || true; wait $sb $mock 2>/dev/null || true
  echo "ramp (1 req/s more every 5 s, ${secs}s): $load; upstream 429: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("rate_limited"))' "$WORK/ramp-mock.json")"
  echo "  forecast before the window filled: $(python3 "$ROOT/benches/capacity_poll.py" --forecast "$WORK/ramp-state.jsonl")"
}
ramp
