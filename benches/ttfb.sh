#!/usr/bin/env bash
# Time to first byte, one new connection per request (curl), alternating
# direct / nginx as a proxy / switchboard against the harness's nginx upstream.
#
#   benches/ttfb.sh                       # streaming (the SSE upstream), 300 requests each
#   JSON=1 N=500 benches/ttfb.sh          # non-streaming
#   BLOCKS=1 benches/ttfb.sh              # each target's requests in one block, not alternating
#   SWITCHBOARD_BIN=path benches/ttfb.sh  # a prebuilt binary instead of building release
#
# TTFB here is curl's time_starttransfer - time_pretransfer: from the request
# being sent to the first byte of the answer. Needs nginx (../shared/bench/setup.sh).
# Every loop is bounded by N; only loopback ports 18080/18081, 18090/18091, 18400.
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-300}"
if [ -n "${JSON:-}" ]; then UP=18080; PX=18090; BODY="$BENCH/request.json"; else UP=18081; PX=18091; BODY="$BENCH/request-stream.json"; fi
mkdir -p "$W/up" "$W/px"
"$NGINX" -p "$W/up/" -c "$BENCH/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
"$NGINX" -p "$W/px/" -c "$BENCH/nginx-proxy.conf" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
gateway_config "$W/sb.toml" 127.0.0.1:18400 "http://127.0.0.1:$UP/v1" bench-model "${WORKERS:-1}"
RUST_LOG=warn "$BIN" serve --config "$W/sb.toml" >"$W/sb.log" 2>&1 & PIDS+=($!)
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18400/health && break; sleep 0.1; done

names=(direct nginxproxy switchboard)
urls=("http://127.0.0.1:$UP" "http://127.0.0.1:$PX" "http://127.0.0.1:18400")
one() { # target index
  curl -s -o /dev/null --max-time 5 -w '%{time_pretransfer} %{time_starttransfer}\n' \
    -H 'content-type: application/json' -H 'Authorization: Bearer dummy' \
    --data "@$BODY" "${urls[$1]}/v1/chat/completions" >> "$W/${names[$1]}.txt"
}
if [ -n "${BLOCKS:-}" ]; then
  # All of one target's requests, then the next's: each proxy stays warm.
  for k in 0 1 2; do for _ in $(seq "$N"); do one "$k"; done; done
else
  # Alternating: each proxy has sat idle while the others were asked.
  for _ in $(seq "$N"); do for k in 0 1 2; do one "$k"; done; done
fi
python3 - "$W" <<'PY'
import sys
w = sys.argv[1]
def q(v, p): return v[min(len(v) - 1, int(p * len(v)))]
base = None
for name in ("direct", "nginxproxy", "switchboard"):
    rows = [list(map(float, l.split())) for l in open(f"{w}/{name}.txt")]
    t = sorted((b - a) * 1e3 for a, b in rows)
    p50 = q(t, .5)
    base = p50 if base is None else base
    added = "" if name == "direct" else f"  added p50 {p50 - base:+.3f} ms"
    print(f"{name:12} n={len(t)}  ttfb p50 {p50:.3f} ms  p90 {q(t, .9):.3f} ms{added}")
PY
