#!/usr/bin/env bash
# How soon a recovered tier-1 deployment gets its traffic back, with the
# default routing settings (3 failures cool it down 5 s, doubling to 300 s;
# probes every 10 s). Steady traffic (about 20 req/s, one client) goes to a
# model with `primary` (priority 1) and `backup` (priority 2), both
# mock-upstreams. The primary fails every request (500) for OUTAGE seconds,
# then answers again; reported: the seconds from its recovery to the first
# request it serves, and its cooldown at that moment's start.
#
#   benches/recovery.sh            # OUTAGE=60; ~80 s
#   SWITCHBOARD_BIN=path benches/recovery.sh
#
# Loopback ports 18630-18632.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SB="${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}"
OUTAGE="${OUTAGE:-60}"
W="$(mktemp -d)"
PIDS=()
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$W"' EXIT
"$SB" mock-upstream --listen 127.0.0.1:18630 >"$W/primary.log" 2>&1 & PIDS+=($!)
"$SB" mock-upstream --listen 127.0.0.1:18631 >"$W/backup.log" 2>&1 & PIDS+=($!)
cat >"$W/sb.toml" <<EOF
[server]
listen = "127.0.0.1:18632"

[[models]]
name = "m"

[[models.deployments]]
name = "primary"
api_base = "http://127.0.0.1:18630/v1"
model_id = "m"
priority = 1

[[models.deployments]]
name = "backup"
api_base = "http://127.0.0.1:18631/v1"
model_id = "m"
priority = 2
EOF
RUST_LOG=warn "$SB" serve --config "$W/sb.toml" 2>"$W/serve.log" & PIDS+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:18632/health >/dev/null && break; sleep 0.1; done

mode() { curl -sf -X PUT http://127.0.0.1:18630/mock/mode -H 'content-type: application/json' -d "$1" >/dev/null; }
served_by() {
  curl -s -o /dev/null -D - -X POST http://127.0.0.1:18632/v1/chat/completions \
    -H 'content-type: application/json' \
    -d '{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}' |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-switchboard-deployment" {print $2}'
}
now() { date +%s.%N; }

mode '{"mode":"fail","status":500}'
end=$(echo "$(now) + $OUTAGE" | bc)
while [ "$(echo "$(now) < $end" | bc)" = 1 ]; do served_by >/dev/null; sleep 0.05; done
cooldown=$(curl -s http://127.0.0.1:18632/admin/state | python3 -c 'import json,sys; d=[x for x in json.load(sys.stdin)["models"][0]["deployments"] if x["name"]=="primary"][0]; print(d["state"], d["cooldown_remaining_s"])')
mode '{"mode":"normal"}'
back=$(now)
# Bounded: 60 s at most.
for _ in $(seq 1200); do
  if [ "$(served_by)" = primary ]; then
    printf 'primary failing for %ss, then recovered; at recovery it was %s s of cooldown left\n' "$OUTAGE" "$cooldown"
    printf 'traffic back on the primary %.1f s after it recovered\n' "$(echo "$(now) - $back" | bc)"
    exit 0
  fi
  sleep 0.05
done
echo "the primary had no traffic back within 60 s" >&2
exit 1
