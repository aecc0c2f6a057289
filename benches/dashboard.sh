#!/usr/bin/env bash
# Gateway throughput and CPU, headless vs with the dashboard open (in tmux), same load.
set -u
# Usage: benches/dashboard.sh   (RUNS=3 DUR=10s; SWITCHBOARD_BIN=path to skip the build; needs oha and tmux)
# Closed loop, 32 connections, against a local mock-upstream; alternates headless and dashboard runs.
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2; fi
SB=$(realpath "${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}"); RUNS=${RUNS:-3}; DUR=${DUR:-10s}
cd "$WORK" || exit 1
$SB mock-upstream --listen 127.0.0.1:18600 > mock.log 2>&1 & MOCK=$!
printf '[server]\nlisten = "127.0.0.1:18601"\n[[models]]\nname = "bench-model"\n[[models.deployments]]\nname = "mock"\napi_base = "http://127.0.0.1:18600/v1"\nmodel_id = "bench-model"\n' > cfg.toml
body='{"model":"bench-model","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}'
echo "$body" > body.json
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
load() { oha -c 32 -z $DUR --no-tui --worker-threads 1 -m POST -T application/json -D body.json http://127.0.0.1:18601/v1/chat/completions 2>/dev/null | awk '/Requests\/sec/ {print $2}'; }
for i in $(seq $RUNS); do
  for mode in serve dashboard; do
    if [ $mode = serve ]; then RUST_LOG=warn $SB serve --config cfg.toml > serve.log 2>&1 & PID=$!
    else tmux -L benchdash new-session -d -x 120 -y 35 "$SB --config cfg.toml"; sleep 0.3; PID=$(pgrep -f "^$SB --config cfg.toml"); fi
    for t in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18601/health && break; sleep 0.1; done
    c0=$(cpu $PID); rps=$(load); c1=$(cpu $PID)
    echo "$mode run $i: $rps req/s, cpu $(( c1 - c0 )) ticks"
    if [ $mode = serve ]; then kill $PID; wait $PID 2>/dev/null; else tmux -L benchdash kill-server; sleep 0.5; fi
  done
done
kill $MOCK
rm -rf "$WORK"
