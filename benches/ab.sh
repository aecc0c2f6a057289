#!/usr/bin/env bash
# Two switchboard builds against each other (paired A/B): both `workers = 1`
# behind the same harness nginx upstream, alternating closed-loop oha runs of
# N requests at 32 connections; per run the req/s and the gateway process's
# CPU per request (utime+stime from /proc, 10 ms ticks), then the medians of
# B/A over the pairs. CPU per request is the steadier figure on a shared
# 2-core box: throughput there moves by less than half of what the proxy
# saves, the rest of each request's CPU being oha's and the upstream's.
#
#   A=/path/old B=/path/new benches/ab.sh          # REPS=5 N=60000
#   STREAM=1 A=… B=… benches/ab.sh                 # the SSE upstream
#
# Needs nginx and oha (../shared/bench/setup.sh). Ports 18080/18081, 18410, 18411.
# Every oha run is bounded by -n and by `timeout`.
set -u
cd "$(dirname "$0")/.."
. benches/common.sh
: "${A:?A=old binary}" "${B:?B=new binary}"
W=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$W"' EXIT
if [ "${STREAM:-0}" = 1 ]; then UP=18081; BODY="$BENCH/request-stream.json"; else UP=18080; BODY="$BENCH/request.json"; fi
mkdir -p "$W/up"
"$NGINX" -p "$W/up/" -c "$BENCH/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 &
gateway_config "$W/a.toml" 127.0.0.1:18410 "http://127.0.0.1:$UP/v1" bench-model 1
gateway_config "$W/b.toml" 127.0.0.1:18411 "http://127.0.0.1:$UP/v1" bench-model 1
RUST_LOG=warn "$A" serve --config "$W/a.toml" >/dev/null 2>&1 & PA=$!
RUST_LOG=warn "$B" serve --config "$W/b.toml" >/dev/null 2>&1 & PB=$!
for p in 18410 18411; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
N=${N:-60000}
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
for _ in $(seq "${REPS:-5}"); do
  for t in "a:18410:$PA" "b:18411:$PB"; do
    IFS=: read -r n p pid <<< "$t"
    t0=$(ticks "$pid")
    r=$(timeout 120 "$OHA" --no-tui --worker-threads 1 -m POST -T application/json -D "$BODY" \
        -H 'Authorization: Bearer dummy' -c 32 -n "$N" --output-format json \
        "http://127.0.0.1:$p/v1/chat/completions" \
      | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
    t1=$(ticks "$pid")
    echo "$n $r $(( (t1 - t0) * 10000000 / N ))"
  done
done | python3 -c '
import sys, statistics as st
rs = {"a": [], "b": []}; cpu = {"a": [], "b": []}
for line in sys.stdin:
    n, r, c = line.split(); rs[n].append(int(r)); cpu[n].append(int(c) / 1000)
for k in "ab":
    print(f"{k}: req/s {rs[k]}  CPU us/request {cpu[k]}")
med = lambda x, y: round(st.median([b / a for a, b in zip(x, y)]), 3)
ra, rb, ca, cb = rs["a"], rs["b"], cpu["a"], cpu["b"]
print("B/A: req/s %sx, CPU per request %sx (medians %.1f and %.1f us)"
      % (med(ra, rb), med(ca, cb), st.median(ca), st.median(cb)))
'
