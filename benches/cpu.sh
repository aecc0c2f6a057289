#!/usr/bin/env bash
# CPU per request: the same oha load (N requests, C connections) through nginx
# as a reverse proxy and through switchboard, both in front of the harness's
# nginx upstream; each proxy's user and system CPU is read from
# /proc/PID/task/*/stat (and its children's, for nginx's workers) before and
# after. Unlike req/s this hardly depends on what else the machine is doing.
#
#   benches/cpu.sh                        # workers = 1 and 2, 150,000 requests each
#   N=50000 WORKERS="1" benches/cpu.sh
#   SWITCHBOARD_BIN=path benches/cpu.sh   # a prebuilt binary instead of building release
#
# Needs nginx and oha (../shared/bench/setup.sh). Loopback ports 18080, 18090, 18400.
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-150000}"; C="${C:-32}"; WORKERS="${WORKERS:-1 2}"
HZ="$(getconf CLK_TCK)"
mkdir -p "$W/up" "$W/px"
"$NGINX" -p "$W/up/" -c "$BENCH/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
"$NGINX" -p "$W/px/" -c "$BENCH/nginx-proxy.conf" -g 'daemon off;' >/dev/null 2>&1 & PX=$!; PIDS+=($PX)
sleep 1

ticks() { # pid -> "user sys" summed over its threads and its children's
  local u=0 s=0 a b
  for p in "$1" $(pgrep -P "$1" || true); do
    for t in /proc/"$p"/task/*/stat; do
      read -r a b < <(awk '{print $14, $15}' "$t"); u=$((u + a)); s=$((s + b))
    done
  done
  echo "$u $s"
}
load() { "$OHA" --no-tui -m POST -T application/json -D "$BENCH/request.json" \
  -H 'Authorization: Bearer dummy' -c "$C" "$@"; }
measure() { # name url pid
  load -n 5000 "$2" >/dev/null
  local u0 s0 u1 s1 rps
  read -r u0 s0 < <(ticks "$3")
  rps=$(load -n "$N" --output-format json "$2" | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
  read -r u1 s1 < <(ticks "$3")
  python3 -c "
u=($u1-$u0)/$HZ/$N*1e6; s=($s1-$s0)/$HZ/$N*1e6
print(f'{\"$1\":24} {$rps:>7} req/s  user {u:5.1f} µs  sys {s:5.1f} µs  total {u+s:5.1f} µs per request')"
}
measure nginxproxy http://127.0.0.1:18090/v1/chat/completions "$PX"
for w in $WORKERS; do
  gateway_config "$W/sb.toml" 127.0.0.1:18400 http://127.0.0.1:18080/v1 bench-model "$w"
  RUST_LOG=warn "$BIN" serve --config "$W/sb.toml" >"$W/sb.log" 2>&1 & SB=$!
  for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18400/health && break; sleep 0.1; done
  measure "switchboard workers=$w" http://127.0.0.1:18400/v1/chat/completions "$SB"
  kill "$SB"; wait "$SB" 2>/dev/null || true
done
