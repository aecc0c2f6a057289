#!/usr/bin/env bash
# What an attached dashboard costs: (1) closed-loop throughput of `switchboard
# serve` with no watcher against `serve` with one `switchboard attach` open in
# tmux, alternating, in one run; (2) the attached dashboard's own CPU while the
# gateway serves an open-loop 2,000 req/s.
# Usage: benches/attach.sh   (RUNS=3 DUR=10s RATE=2000 RATE_DUR=20s; SWITCHBOARD_BIN=path to skip the build;
#                             needs oha and tmux)
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2; fi
SB=$(realpath "${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}")
RUNS=${RUNS:-3}; DUR=${DUR:-10s}; RATE=${RATE:-2000}; RATE_DUR=${RATE_DUR:-20s}
TICK=$(getconf CLK_TCK)
cd "$WORK" || exit 1
cleanup() { tmux -L benchattach kill-server 2>/dev/null; kill "${GW:-}" "${MOCK:-}" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
$SB mock-upstream --listen 127.0.0.1:18610 > mock.log 2>&1 & MOCK=$!
printf '[server]\nlisten = "127.0.0.1:18611"\nadmin_key = "env:BENCH_ADMIN"\n[[models]]\nname = "bench-model"\n[[models.deployments]]\nname = "mock"\napi_base = "http://127.0.0.1:18610/v1"\nmodel_id = "bench-model"\n' > cfg.toml
echo '{"model":"bench-model","max_tokens":16,"messages":[{"role":"user","content":"Say hello."}]}' > body.json
export BENCH_ADMIN=bench-admin-key-0123456789
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
oha_() { oha "$@" --no-tui --worker-threads 1 -m POST -T application/json -D body.json http://127.0.0.1:18611/v1/chat/completions 2>/dev/null; }
start_gateway() {
  RUST_LOG=warn $SB serve --config cfg.toml > serve.log 2>&1 & GW=$!
  for _ in $(seq 50); do curl -s -o /dev/null 127.0.0.1:18611/health && break; sleep 0.1; done
}
attach() {
  tmux -L benchattach new-session -d -x 120 -y 35 "SWITCHBOARD_LOG_DIR=$WORK $SB attach http://127.0.0.1:18611 --admin-key env:BENCH_ADMIN"
  for _ in $(seq 50); do ATT=$(pgrep -n -f "^$SB attach") && break; sleep 0.1; done
  sleep 1 # attached and drawing
}

echo "== closed loop, 32 connections, $DUR each, alternating"
for i in $(seq "$RUNS"); do
  for mode in alone attached; do
    start_gateway
    [ $mode = attached ] && attach
    c0=$(cpu $GW); rps=$(oha_ -c 32 -z "$DUR" | awk '/Requests\/sec/ {print $2}'); c1=$(cpu $GW)
    echo "$mode run $i: $rps req/s, gateway cpu $(( c1 - c0 )) ticks"
    tmux -L benchattach kill-server 2>/dev/null; kill $GW; wait $GW 2>/dev/null
  done
done

echo "== open loop at $RATE req/s for $RATE_DUR, the attached dashboard's own CPU"
start_gateway
attach
a0=$(cpu "$ATT"); t0=$(date +%s.%N)
out=$(oha_ -q "$RATE" -z "$RATE_DUR")
a1=$(cpu "$ATT"); t1=$(date +%s.%N)
echo "$out" | awk '/Requests\/sec/ {print "served: " $2 " req/s"}'
awk -v a=$(( a1 - a0 )) -v hz="$TICK" -v t0="$t0" -v t1="$t1" \
  'BEGIN { printf "attach: %.2f s of CPU in %.1f s = %.1f%% of a core\n", a / hz, t1 - t0, 100 * a / hz / (t1 - t0) }'
echo "attach RSS: $(awk '/VmRSS/ {print $2 " " $3}' /proc/$ATT/status)"
