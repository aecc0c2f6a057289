#!/usr/bin/env bash
# Soak and chaos test, run on demand (not in CI): the release gateway in front
# of four mock upstreams, streaming and non-streaming load from oha for a fixed
# time, while a chaos loop switches the mocks' fault modes and toggles
# deployments through the admin API. Samples the gateway's RSS and open fds
# every second and ends with a report (also in $SOAK_OUT/report.txt).
#
# Exits non-zero when a request was lost (client timeout or connection
# error), the RSS grew more than RSS_GROWTH_MIB, fds did not come back to the
# baseline, a 200 stream stopped without [DONE] or an error event, a request's
# status does not follow from its attempts (routing events) or outlived
# request_timeout_s, a deployment is left disabled or stuck, the token counts
# of the chaos-free phase at the end disagree, or the gateway panicked/died.
#
#   benches/soak.sh                       # 300 s of load, ~8 min in all
#   DURATION=60 benches/soak.sh           # shorter
#   SWITCHBOARD_BIN=path benches/soak.sh  # a prebuilt binary instead of building release
#   CHAOS=0 DURATION=60 benches/soak.sh   # a baseline without faults or toggles
#
# Knobs (env, default): DURATION (s, 300); RATE / STREAM_RATE (requests/s caps
# of the non-streaming / streaming oha, 100 / 30); CONC / STREAM_CONC
# (connections, 32 / 16); CLIENT_TIMEOUT (s, 20; the gateway's own
# request_timeout_s is 10); RSS_GROWTH_MIB (20); FD_SLACK (10); FD_WAIT_MAX (s
# of idle allowed for the upstream pool to close its idle connections, 200);
# CHAOS (1); CHAOS_INTERVAL (s, 2); CHAOS_MAX_BROKEN (mocks faulty at once, 3
# of 4); SOAK_OUT (folder for logs and results, kept; default a new
# /tmp/switchboard-soak.XXXXXX); RUST_LOG (warn); OHA (path of oha).
#
# Every loop here is bounded by a count and by a deadline; a trap stops every
# process this script started, also on Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

DURATION="${DURATION:-300}"
RATE="${RATE:-100}"
STREAM_RATE="${STREAM_RATE:-30}"
CONC="${CONC:-32}"
STREAM_CONC="${STREAM_CONC:-16}"
CLIENT_TIMEOUT="${CLIENT_TIMEOUT:-20}"
RSS_GROWTH_MIB="${RSS_GROWTH_MIB:-20}"
FD_SLACK="${FD_SLACK:-10}"
CHAOS_INTERVAL="${CHAOS_INTERVAL:-2}"
CHAOS="${CHAOS:-1}"
FD_WAIT_MAX="${FD_WAIT_MAX:-200}"
CHAOS_MAX_BROKEN="${CHAOS_MAX_BROKEN:-3}"
OHA="${OHA:-$(command -v oha || echo "$HOME/.cargo/bin/oha")}"
MODEL="soak-model"
ADMIN_KEY="soak-admin-key"
# The gateway's timeouts and routing policy: small, so hangs and cooldowns
# resolve within the run.
FIRST_BYTE_TIMEOUT=2
REQUEST_TIMEOUT=10
MAX_COOLDOWN=8

[ -x "$OHA" ] || { echo "oha not found (set OHA, or: cargo install oha)" >&2; exit 1; }
for v in DURATION CHAOS_INTERVAL FD_WAIT_MAX; do
  case "${!v}" in ''|*[!0-9]*) echo "$v must be whole seconds" >&2; exit 1;; esac
done
[ "$CHAOS_INTERVAL" -ge 1 ] || { echo "CHAOS_INTERVAL must be at least 1 s" >&2; exit 1; }
[ "$DURATION" -ge 20 ] || { echo "DURATION must be at least 20 s" >&2; exit 1; }

if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
fi
OUT="${SOAK_OUT:-$(mktemp -d /tmp/switchboard-soak.XXXXXX)}"
mkdir -p "$OUT"
# A copy, so that a rebuild during the run does not swap the binary under test.
cp "${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}" "$OUT/switchboard"
BIN="$OUT/switchboard"
echo "soak: results and logs in $OUT" >&2

PIDS=()
cleanup() {
  local pid i
  touch "$OUT/stop" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "soak: interrupted" >&2; exit 130' INT TERM

# Five free loopback ports: four mocks and the gateway.
read -r -a PORTS <<<"$(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(5)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
for s in socks:
    s.close()
PY
)"
GPORT="${PORTS[4]}"
GW="http://127.0.0.1:$GPORT"
AUTH="Authorization: Bearer $ADMIN_KEY"

# The deployments, one mock each:
#   d1  gateway tpm_limit 120000, fast
#   d2  gateway tpm_limit 40000, but the mock itself allows only 20000: it answers
#       429 with Retry-After on its own (the "provider's limit is lower than
#       configured" case)
#   d3  no tpm_limit (weighs as the largest limit, never skipped for TPM), 2 % 500s
#   d4  gateway tpm_limit 20000, slow: the gateway's own TPM skipping
DEPS=(d1 d2 d3 d4)
MOCK_ARGS=(
  "--latency-ms 20 --tokens 16 --chunk-delay-ms 5"
  "--latency-ms 40 --tokens 24 --chunk-delay-ms 10 --tpm-limit 20000"
  "--latency-ms 10 --tokens 16 --chunk-delay-ms 5 --fail-rate 0.02 --seed 7"
  "--latency-ms 80 --tokens 32 --chunk-delay-ms 20"
)
TPM_LINES=("tpm_limit = 120000" "tpm_limit = 40000" "" "tpm_limit = 20000")

MOCKS=()
for i in 0 1 2 3; do
  # shellcheck disable=SC2086 # the options are words
  "$BIN" mock-upstream --listen "127.0.0.1:${PORTS[$i]}" ${MOCK_ARGS[$i]} \
    >"$OUT/mock-${DEPS[$i]}.log" 2>&1 &
  PIDS+=($!)
  MOCKS+=("http://127.0.0.1:${PORTS[$i]}")
done

CONFIG="$OUT/switchboard.toml"
{
  cat <<TOML
[server]
listen = "127.0.0.1:$GPORT"
admin_key = "$ADMIN_KEY"
request_timeout_s = $REQUEST_TIMEOUT
first_byte_timeout_s = $FIRST_BYTE_TIMEOUT

[routing]
failure_threshold = 3
cooldown_s = 1
max_cooldown_s = $MAX_COOLDOWN
rate_limit_cooldown_s = 2

[[models]]
name = "$MODEL"
TOML
  for i in 0 1 2 3; do
    cat <<TOML

[[models.deployments]]
name = "${DEPS[$i]}"
api_base = "${MOCKS[$i]}/v1"
api_key = "dummy"
model_id = "mock-${DEPS[$i]}"
${TPM_LINES[$i]}
TOML
  done
} >"$CONFIG"

RUST_LOG="${RUST_LOG:-warn}" "$BIN" serve --config "$CONFIG" >"$OUT/gateway.stdout" 2>"$OUT/gateway.stderr" &
GPID=$!
PIDS+=("$GPID")

wait_up() { # URL: up to 10 s
  local i
  for i in $(seq 100); do
    curl -fsS --max-time 1 "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "soak: $1 did not come up" >&2
  return 1
}
for m in "${MOCKS[@]}"; do wait_up "$m/health"; done
wait_up "$GW/health"

# Request bodies, one per line (oha -Z picks among them): with and without
# max_tokens (without: the gateway reserves 256 completion tokens up front),
# streams with and without the client asking for usage.
cat >"$OUT/bodies.jsonl" <<JSON
{"model":"$MODEL","max_tokens":16,"messages":[{"role":"user","content":"hello"}]}
{"model":"$MODEL","max_tokens":8,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the plot of a long novel about a whale and a captain in one line."}]}
{"model":"$MODEL","messages":[{"role":"user","content":"no max_tokens here"}]}
JSON
cat >"$OUT/stream-bodies.jsonl" <<JSON
{"model":"$MODEL","stream":true,"max_tokens":16,"messages":[{"role":"user","content":"stream me"}]}
{"model":"$MODEL","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"stream me with usage"}]}
{"model":"$MODEL","stream":true,"max_tokens":24,"messages":[{"role":"user","content":"another stream, a little longer prompt than the others"}]}
JSON

# Warm-up: a few requests through every deployment, then the idle fd baseline.
for i in $(seq 8); do
  curl -sS --max-time 15 -o /dev/null "$GW/v1/chat/completions" -H 'content-type: application/json' \
    -d "{\"model\":\"$MODEL\",\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"warm\"}]}" || true
done
sleep 1
fd_count() { find "/proc/$GPID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$GPID/status" 2>/dev/null || echo 0; }
FD_START="$(fd_count)"
RSS_IDLE_START="$(rss_kib)"

# Every routing event (one per request, with its attempts), for the checks
# in the report; bounded by --max-time, stopped after the clean phase.
curl -sN --max-time $((DURATION + CLIENT_TIMEOUT + 120)) -H "$AUTH" "$GW/admin/events" \
  >"$OUT/events.sse" 2>/dev/null &
EVENTS_PID=$!
PIDS+=("$EVENTS_PID")

T0="$(date +%s)"
LOAD_END=$((T0 + DURATION))
echo "soak: load for ${DURATION}s (gateway $GW, pid $GPID)" >&2

# Sampler: one line a second, "seconds rss_kib fds", until the stop file or
# the deadline (load + the longest wait for fds afterwards).
(
  n=0
  max=$((DURATION + CLIENT_TIMEOUT + FD_WAIT_MAX + 120))
  while [ "$n" -lt "$max" ] && [ ! -e "$OUT/stop" ] && kill -0 "$GPID" 2>/dev/null; do
    echo "$(($(date +%s) - T0)) $(rss_kib) $(fd_count)"
    n=$((n + 1))
    sleep 1
  done
) >"$OUT/samples.txt" &
SAMPLER=$!
PIDS+=("$SAMPLER")

# Load: -w waits for requests in flight at the deadline (none is aborted),
# -t bounds each request, -q bounds the count (rate x duration).
"$OHA" -z "${DURATION}s" -q "$RATE" -c "$CONC" -w -t "${CLIENT_TIMEOUT}s" --no-tui \
  --output-format json -m POST -T application/json -Z "$OUT/bodies.jsonl" \
  "$GW/v1/chat/completions" >"$OUT/oha-plain.json" 2>"$OUT/oha-plain.stderr" &
OHA1=$!
PIDS+=("$OHA1")
"$OHA" -z "${DURATION}s" -q "$STREAM_RATE" -c "$STREAM_CONC" -w -t "${CLIENT_TIMEOUT}s" --no-tui \
  --output-format json -m POST -T application/json -Z "$OUT/stream-bodies.jsonl" \
  "$GW/v1/chat/completions" >"$OUT/oha-stream.json" 2>"$OUT/oha-stream.stderr" &
OHA2=$!
PIDS+=("$OHA2")

# Prober: one request at a time, alternating stream / non-stream, checking
# what oha cannot: a 200 stream must end with [DONE] or an SSE error event
# (never just stop), a 200 non-stream must be a whole JSON completion.
# Lines: "kind http_code curl_exit verdict".
(
  n=0
  while [ "$n" -lt $((DURATION * 4)) ] && [ "$(date +%s)" -lt "$LOAD_END" ] && [ ! -e "$OUT/stop" ]; do
    n=$((n + 1))
    body="$OUT/probe.body"
    if [ $((n % 2)) = 0 ]; then kind=stream; s=true; else kind=plain; s=false; fi
    code=$(curl -sS --max-time "$CLIENT_TIMEOUT" -o "$body" -w '%{http_code}' "$GW/v1/chat/completions" \
      -H 'content-type: application/json' \
      -d "{\"model\":\"$MODEL\",\"stream\":$s,\"max_tokens\":12,\"messages\":[{\"role\":\"user\",\"content\":\"probe $n\"}]}" \
      2>/dev/null) && rc=0 || rc=$?
    verdict=other
    if [ "$rc" != 0 ]; then
      verdict=curl_error
    elif [ "$code" = 200 ] && [ "$kind" = stream ]; then
      if tail -c 64 "$body" | grep -q 'data: \[DONE\]'; then verdict=done
      elif grep -q '^data: {"error"' "$body"; then verdict=error_event
      else verdict=CUT_WITHOUT_ERROR; fi
    elif [ "$code" = 200 ]; then
      if python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["choices"]' "$body" 2>/dev/null
      then verdict=json; else verdict=BROKEN_JSON; fi
    else
      verdict=status
    fi
    echo "$kind $code $rc $verdict"
    sleep 0.3
  done
) >"$OUT/probes.txt" &
PROBER=$!
PIDS+=("$PROBER")

# Chaos: every CHAOS_INTERVAL s pick a random mock; if it is faulty, heal it,
# else break it (at most CHAOS_MAX_BROKEN broken at once). Every 5th tick toggle a
# deployment (re-enable the disabled one, or disable one at random); every
# 30th tick disable all of them for one tick (the 503 "none enabled" path).
(
  FAULTS=(
    '{"mode":"fail","status":503}'
    '{"mode":"fail","status":500}'
    '{"mode":"fail","status":429,"retry_after_s":1}'
    '{"mode":"fail","status":429}'
    '{"mode":"fail","status":401}'
    '{"mode":"hang"}'
    '{"mode":"hang_after_headers"}'
    '{"mode":"garbage"}'
    '{"mode":"reset_before_headers"}'
    '{"mode":"reset_mid_stream","after_chunks":3}'
    '{"mode":"truncated_stream","after_chunks":3}'
  )
  RANDOM=42
  broken=(0 0 0 0)
  disabled=-1
  all_off=0
  mode() { curl -sS --max-time 3 -o /dev/null -w '%{http_code}' -X PUT "${MOCKS[$1]}/mock/mode" -d "$2" 2>/dev/null || echo ERR; }
  enable() {
    curl -sS --max-time 3 -o /dev/null -w '%{http_code}' -X PUT -H "$AUTH" \
      "$GW/admin/models/$MODEL/deployments/${DEPS[$1]}/enabled" -d "$2" 2>/dev/null || echo ERR
  }
  tick=0
  while [ "$CHAOS" = 1 ] && [ "$tick" -lt $((DURATION / CHAOS_INTERVAL + 1)) ] && [ "$(date +%s)" -lt $((LOAD_END - 3)) ] && [ ! -e "$OUT/stop" ]; do
    tick=$((tick + 1))
    t=$(($(date +%s) - T0))
    i=$((RANDOM % 4))
    nbroken=$((broken[0] + broken[1] + broken[2] + broken[3]))
    if [ "${broken[$i]}" = 1 ] || [ "$nbroken" -ge "$CHAOS_MAX_BROKEN" ]; then
      [ "${broken[$i]}" = 1 ] || for j in 0 1 2 3; do [ "${broken[$j]}" = 1 ] && { i=$j; break; }; done
      echo "$t mock ${DEPS[$i]} normal $(mode "$i" '{"mode":"normal"}')"
      broken[i]=0
    else
      f="${FAULTS[$((RANDOM % ${#FAULTS[@]}))]}"
      echo "$t mock ${DEPS[$i]} $f $(mode "$i" "$f")"
      broken[i]=1
    fi
    if [ "$all_off" = 1 ]; then
      for j in 0 1 2 3; do echo "$t enable ${DEPS[$j]} true $(enable "$j" true)"; done
      all_off=0
    elif [ $((tick % 30)) = 0 ]; then
      for j in 0 1 2 3; do echo "$t enable ${DEPS[$j]} false $(enable "$j" false)"; done
      all_off=1
      disabled=-1
    elif [ $((tick % 5)) = 0 ]; then
      if [ "$disabled" -ge 0 ]; then
        echo "$t enable ${DEPS[$disabled]} true $(enable "$disabled" true)"
        disabled=-1
      else
        disabled=$((RANDOM % 4))
        echo "$t enable ${DEPS[$disabled]} false $(enable "$disabled" false)"
      fi
    fi
    for _ in $(seq "$CHAOS_INTERVAL"); do
      [ "$(date +%s)" -lt "$LOAD_END" ] && sleep 1
    done
  done
  echo "$(($(date +%s) - T0)) chaos over"
) >"$OUT/chaos.log" 2>&1 &
CHAOS_PID=$!
PIDS+=("$CHAOS_PID")

# Wait for the load, bounded: oha ends at DURATION plus at most one client timeout.
OVERRAN=0
for _ in $(seq $((DURATION + CLIENT_TIMEOUT + 60))); do
  kill -0 "$OHA1" 2>/dev/null || kill -0 "$OHA2" 2>/dev/null || break
  sleep 1
done
for p in "$OHA1" "$OHA2"; do
  if kill -0 "$p" 2>/dev/null; then OVERRAN=1; kill -TERM "$p" 2>/dev/null || true; fi
done
wait "$OHA1" "$OHA2" "$PROBER" "$CHAOS_PID" 2>/dev/null || true
T_LOAD_END=$(($(date +%s) - T0))
echo "soak: load over at ${T_LOAD_END}s; healing the mocks, re-enabling the deployments" >&2

# Heal: every mock normal, every deployment enabled.
for i in 0 1 2 3; do
  curl -sS --max-time 3 -o /dev/null -X PUT "${MOCKS[$i]}/mock/mode" -d '{"mode":"normal"}' || true
  curl -sS --max-time 3 -o /dev/null -X PUT -H "$AUTH" \
    "$GW/admin/models/$MODEL/deployments/${DEPS[$i]}/enabled" -d true || true
done

# Idle past the longest failure cooldown, then a clean phase: the token
# counts of both sides must move by exactly the same amounts, every request
# must succeed, and every deployment that is not rate limited must take part
# (one stuck in "probing" would take none).
sleep $((MAX_COOLDOWN + 2))
curl -sS --max-time 5 -H "$AUTH" "$GW/metrics" >"$OUT/metrics-before-clean.txt"
curl -sS --max-time 5 -H "$AUTH" "$GW/admin/state" >"$OUT/state-before-clean.json"
for i in 0 1 2 3; do curl -sS --max-time 5 "${MOCKS[$i]}/mock/stats" >"$OUT/mock-${DEPS[$i]}-before-clean.json"; done
: >"$OUT/clean.txt"
for n in $(seq 40); do
  if [ $((n % 2)) = 0 ]; then s=true; else s=false; fi
  code=$(curl -sS --max-time "$CLIENT_TIMEOUT" -o "$OUT/clean.body" -w '%{http_code}' "$GW/v1/chat/completions" \
    -H 'content-type: application/json' \
    -d "{\"model\":\"$MODEL\",\"stream\":$s,\"max_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":\"clean $n\"}]}" \
    2>/dev/null) && rc=0 || rc=$?
  ok=bad
  if [ "$rc" = 0 ] && [ "$code" = 200 ]; then
    if [ "$s" = true ]; then tail -c 64 "$OUT/clean.body" | grep -q 'data: \[DONE\]' && ok=ok
    else grep -q '"choices"' "$OUT/clean.body" && ok=ok; fi
  fi
  echo "$s $code $rc $ok" >>"$OUT/clean.txt"
done
sleep 1
kill -TERM "$EVENTS_PID" 2>/dev/null || true
curl -sS --max-time 5 -H "$AUTH" "$GW/metrics" >"$OUT/metrics.txt"
curl -sS --max-time 5 -H "$AUTH" "$GW/admin/state" >"$OUT/state.json"
for i in 0 1 2 3; do curl -sS --max-time 5 "${MOCKS[$i]}/mock/stats" >"$OUT/mock-${DEPS[$i]}.json"; done

# fds at the end. The gateway's pool (reqwest/hyper) keeps idle upstream
# connections for 90 s, and its reaper runs every 90 s, so an idle connection
# can live up to ~180 s after its last use: when the count is still above the
# baseline, wait (bounded by FD_WAIT_MAX) for them to go.
sleep 5
FD_END_5S="$(fd_count)"
FD_END="$FD_END_5S"
IDLE=5
: >"$OUT/fds-idle.txt"
while [ "$IDLE" -lt "$FD_WAIT_MAX" ]; do
  echo "$IDLE $FD_END" >>"$OUT/fds-idle.txt"
  [ "$FD_END" -le $((FD_START + FD_SLACK)) ] && break
  sleep 5
  IDLE=$((IDLE + 5))
  FD_END="$(fd_count)"
done
RSS_END="$(rss_kib)"
ls -l "/proc/$GPID/fd" >"$OUT/fds-end.txt" 2>/dev/null || true
# The gateway's TCP sockets at the end, with their peers (for a leak's report).
ss -tanp 2>/dev/null | grep "pid=$GPID," >"$OUT/sockets-end.txt" || true
touch "$OUT/stop"
wait "$SAMPLER" 2>/dev/null || true
GATEWAY_ALIVE=1
kill -0 "$GPID" 2>/dev/null || GATEWAY_ALIVE=0

export OUT DURATION T_LOAD_END FD_START FD_END FD_END_5S IDLE RSS_IDLE_START RSS_END \
  RSS_GROWTH_MIB FD_SLACK OVERRAN GATEWAY_ALIVE CLIENT_TIMEOUT GPORT REQUEST_TIMEOUT
# The report. Exit status 1 when a check failed.
python3 - <<'PY' | tee "$OUT/report.txt"
import glob, json, os, re, sys

out = os.environ["OUT"]
env = lambda k: os.environ[k]
fail = []

def load(path):
    with open(os.path.join(out, path)) as f:
        return json.load(f)

# -- requests, as the clients saw them
status, errors, total = {}, {}, 0
for name in ("oha-plain.json", "oha-stream.json"):
    try:
        d = load(name)
    except Exception as e:  # oha died: nothing to read
        fail.append(f"{name}: unreadable ({e})")
        continue
    for k, v in d.get("statusCodeDistribution", {}).items():
        status[int(k)] = status.get(int(k), 0) + v
        total += v
    for k, v in d.get("errorDistribution", {}).items():
        errors[k] = errors.get(k, 0) + v
        total += v
buckets = {"2xx": 0, "429": 0, "502": 0, "503": 0, "504": 0, "other": 0}
other = {}
for code, n in status.items():
    key = "2xx" if 200 <= code < 300 else str(code) if str(code) in buckets else "other"
    buckets[key] += n
    if key == "other":
        other[code] = n
timeouts = sum(v for k, v in errors.items() if "timeout" in k.lower())
conn_errors = sum(errors.values()) - timeouts
lost = timeouts + conn_errors
print("=" * 64)
print(f"switchboard soak: {env('DURATION')} s of load (ended at {env('T_LOAD_END')} s)")
print(f"requests sent (oha, plain + stream): {total}")
print("  by status: " + "  ".join(f"{k}={v}" for k, v in buckets.items())
      + (f"  (other: {other})" if other else ""))
print(f"  client timeouts (> {env('CLIENT_TIMEOUT')} s): {timeouts}   connection errors: {conn_errors}")
for k, v in sorted(errors.items(), key=lambda kv: -kv[1]):
    print(f"    {v:6d}  {k}")
print(f"  LOST (timeouts + connection errors): {lost}")
if lost:
    fail.append(f"{lost} request(s) lost")
if env("OVERRAN") == "1":
    fail.append("oha did not finish in time (a request outlived its client timeout?)")
if buckets["other"]:
    print(f"  note: 'other' statuses {other}")

# -- the gateway's own count, for comparison
def metric_lines(path):
    rows = []
    with open(os.path.join(out, path)) as f:
        for line in f:
            m = re.match(r'^(\w+)(?:\{(.*)\})?\s+(\S+)$', line.strip())
            if m and not line.startswith("#"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
                rows.append((m.group(1), labels, float(m.group(3))))
    return rows

metrics = metric_lines("metrics.txt")
gw_status = {}
for name, labels, v in metrics:
    if name == "switchboard_requests_total":
        gw_status[labels.get("status")] = gw_status.get(labels.get("status"), 0) + int(v)
probes = [l.split() for l in open(os.path.join(out, "probes.txt")) if l.strip()]
clean = [l.split() for l in open(os.path.join(out, "clean.txt")) if l.strip()]
expected = sum(status.values()) + len(probes) + len(clean) + 8
print(f"gateway switchboard_requests_total: {sum(gw_status.values())} (expected {expected}: oha's answered "
      f"+ {len(probes)} probes + {len(clean)} clean + 8 warm-up)  "
      + " ".join(f"{k}={v}" for k, v in sorted(gw_status.items())))

# -- the gateway's routing events: every request's status must follow from
# its attempts (contract: 503 only when nothing was tried; 504 only when every
# attempt timed out; 429 when nothing was tried or every attempt got 429; 502
# after attempts), and none may outlive request_timeout_s.
events, lagged, violations = [], 0, {}
for line in open(os.path.join(out, "events.sse"), errors="replace"):
    if not line.startswith("data:"):
        continue
    try:
        e = json.loads(line[5:])
    except ValueError:
        continue
    if e.get("type") == "lagged":
        lagged += e.get("missed", 0)
    elif e.get("type") == "request":
        events.append(e)
limit_ms = float(env("REQUEST_TIMEOUT")) * 1000 + 1000
by_outcome, slowest = {}, 0.0
for e in events:
    st, att = e["status"], e["attempts"]
    kinds = [a["outcome"]["kind"] for a in att]
    by_outcome[(st, e["outcome"])] = by_outcome.get((st, e["outcome"]), 0) + 1
    slowest = max(slowest, e["latency_ms"])
    bad = None
    if st == 503 and att:
        bad = "503 after attempts"
    elif st == 504 and not (att and all(k == "timeout" for k in kinds)):
        bad = "504 though not every attempt timed out"
    elif st == 429 and att and not all(a["outcome"].get("status") == 429 for a in att):
        bad = "429 though an attempt failed otherwise"
    elif st == 502 and not att:
        bad = "502 without attempts"
    elif 200 <= st < 300 and not (att and kinds[-1] == "ok"):
        bad = "2xx whose last attempt is not ok"
    elif e["latency_ms"] > limit_ms:
        bad = f"longer than request_timeout_s ({e['latency_ms']:.0f} ms)"
    if bad:
        violations.setdefault(bad, []).append(e)
print(f"routing events: {len(events)} requests seen (lagged/missed: {lagged}), slowest {slowest / 1000:.2f} s")
print("  by status/outcome: " + "  ".join(f"{s}/{o}={n}" for (s, o), n in sorted(by_outcome.items())))
for why, es in violations.items():
    print(f"  VIOLATION {why}: {len(es)}; e.g. {json.dumps(es[0])[:400]}")
    fail.append(f"{len(es)} event(s): {why}")

# -- the prober: stream endings
verdicts = {}
for p in probes:
    verdicts[(p[0], p[3])] = verdicts.get((p[0], p[3]), 0) + 1
print("probes (one at a time during the load): "
      + "  ".join(f"{k}/{v}={n}" for (k, v), n in sorted(verdicts.items())))
bad = sum(n for (k, v), n in verdicts.items() if v in ("CUT_WITHOUT_ERROR", "BROKEN_JSON", "curl_error"))
if bad:
    fail.append(f"{bad} probe(s) got a cut stream without an error event, a broken 200 body, or no answer")

# -- memory and fds
samples = []
for line in open(os.path.join(out, "samples.txt")):
    parts = line.split()
    if len(parts) == 3 and parts[1] != "0":
        samples.append(tuple(int(x) for x in parts))
t_end = int(env("T_LOAD_END"))
load_s = [s for s in samples if 10 <= s[0] <= t_end]
mib = lambda kib: kib / 1024
if load_s:
    rss_start = load_s[0][1]
    rss_max = max(s[1] for s in samples)
    rss_end = int(env("RSS_END"))
    xs = [s[0] for s in load_s]
    ys = [s[1] for s in load_s]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs) or 1
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den  # KiB/s
    second_half = [s for s in load_s if s[0] >= (10 + t_end) / 2]
    print(f"RSS: idle before load {mib(int(env('RSS_IDLE_START'))):.1f} MiB, at 10 s {mib(rss_start):.1f} MiB, "
          f"max {mib(rss_max):.1f} MiB, end (idle) {mib(rss_end):.1f} MiB; "
          f"slope under load {slope * 60 / 1024:+.2f} MiB/min"
          + (f" (second half: {mib(second_half[0][1]):.1f} -> {mib(second_half[-1][1]):.1f} MiB)" if second_half else ""))
    if rss_end > rss_start + int(env("RSS_GROWTH_MIB")) * 1024:
        fail.append(f"RSS grew by {mib(rss_end - rss_start):.1f} MiB (> {env('RSS_GROWTH_MIB')} MiB)")
    fd_max = max(s[2] for s in samples)
else:
    fail.append("no RSS samples")
    fd_max = 0
fd_start, fd_end = int(env("FD_START")), int(env("FD_END"))
print(f"fds: idle before load {fd_start}, max under load {fd_max}, "
      f"after 5 s idle {env('FD_END_5S')}, at the end ({env('IDLE')} s idle) {fd_end}")
if fd_end > fd_start + int(env("FD_SLACK")):
    fail.append(f"fds {fd_start} -> {fd_end} (> +{env('FD_SLACK')}); see fds-end.txt, sockets-end.txt")
    socks = {}
    for line in open(os.path.join(out, "sockets-end.txt")):
        f = line.split()
        if len(f) >= 5:
            peer_port = f[4].rsplit(":", 1)[-1]
            local_port = f[3].rsplit(":", 1)[-1]
            key = (f[0], "from client" if local_port == env("GPORT") else f"to :{peer_port}")
            socks[key] = socks.get(key, 0) + 1
    print("  gateway TCP sockets at the end: " + ", ".join(f"{n} {st} {k}" for (st, k), n in sorted(socks.items())))

# -- tokens. The gateway counts, per request, the tokens of the attempt that
# answered: the usage the upstream reported, else an estimate. The mocks count
# the tokens of every request they admit, when they admit it, before sending
# the body. So the mocks count more, legitimately, for attempts that a fault
# mode spoiled after admission (garbage, hang_after_headers, reset_mid_stream,
# truncated_stream): the gateway failed those over (or, for a stream cut after
# its first byte, counted its prompt estimate plus one token per chunk seen
# instead of the real usage). A mock's 429s and --fail-rate 500s are not
# admitted and counted by neither side. Over a chaos-free stretch the two
# must agree exactly: that is the clean-phase check.
def gw_tokens(rows):
    t = {}
    for name, labels, v in rows:
        if name == "switchboard_tokens_total":
            key = (labels.get("deployment"), labels.get("kind"))
            t[key] = t.get(key, 0) + int(v)
    return t

def mock_tokens(suffix):
    t = {}
    for path in sorted(glob.glob(os.path.join(out, f"mock-d?{suffix}.json"))):
        dep = re.search(r"mock-(d\d)", path).group(1)
        s = json.load(open(path))
        t[(dep, "prompt")] = s["prompt_tokens"]
        t[(dep, "completion")] = s["completion_tokens"]
        t[(dep, "requests")] = s["requests"]
    return t

gw_end, mock_end = gw_tokens(metrics), mock_tokens("")
print("tokens (whole run):    gateway  /  mocks   (diff vs mocks)")
for kind in ("prompt", "completion"):
    g = sum(v for (d, k), v in gw_end.items() if k == kind)
    m = sum(v for (d, k), v in mock_end.items() if k == kind)
    pct = (g - m) * 100 / m if m else 0.0
    per = "  ".join(f"{d}:{gw_end.get((d, kind), 0)}/{mock_end.get((d, kind), 0)}"
                    for d in ("d1", "d2", "d3", "d4"))
    print(f"  {kind:10s} {g:9d} / {m:9d}   ({pct:+.2f} %)   [{per}]")

gw_before = gw_tokens(metric_lines("metrics-before-clean.txt"))
mock_before = mock_tokens("-before-clean")
clean_ok = sum(1 for c in clean if c[3] == "ok")
mismatch = []
for kind in ("prompt", "completion"):
    g = sum(v for (d, k), v in gw_end.items() if k == kind) - sum(v for (d, k), v in gw_before.items() if k == kind)
    m = sum(v for (d, k), v in mock_end.items() if k == kind) - sum(v for (d, k), v in mock_before.items() if k == kind)
    if g != m:
        mismatch.append(f"{kind} gateway +{g} vs mocks +{m}")
    print(f"  clean phase {kind}: gateway +{g}, mocks +{m}")
print(f"clean phase (no chaos, 40 requests, half streams): {clean_ok}/40 ok")
if clean_ok != 40:
    fail.append(f"clean phase: {40 - clean_ok} request(s) failed")
if mismatch:
    fail.append("clean phase token counts differ: " + "; ".join(mismatch))

# -- deployment states
state = load("state.json")
before = {d["name"]: d for m in load("state-before-clean.json")["models"] for d in m["deployments"]}
print("deployments at the end (clean-phase requests, state):")
for m in state["models"]:
    for d in m["deployments"]:
        took = d["requests"] - before.get(d["name"], {}).get("requests", 0)
        note = ""
        if not d["enabled"] or d["state"] == "disabled":
            note = "  <- left disabled"
            fail.append(f"{d['name']} left disabled")
        elif d["state"] == "cooling_down" and not (d.get("cooldown_cause") == "rate_limited" and d["cooldown_remaining_s"] <= 60):
            note = "  <- stuck cooling down"
            fail.append(f"{d['name']} cooling down ({d.get('cooldown_cause')}, {d['cooldown_remaining_s']:.0f} s) after a clean phase")
        elif took == 0 and d["state"] == "healthy" and (
                d["tpm_limit"] is None or d["tpm_used"] + 300 < d["tpm_limit"]):
            # (a deployment at its TPM limit is skipped, rightly)
            note = "  <- healthy but took no request (stuck probing?)"
            fail.append(f"{d['name']} took no clean-phase request")
        print(f"  {d['name']}: state={d['state']} cause={d.get('cooldown_cause')} "
              f"remaining={d['cooldown_remaining_s']:.1f}s failures={d.get('consecutive_failures')} "
              f"tpm_used={d['tpm_used']} requests={d['requests']} (+{took}) failed={d['failures']}{note}")

# -- gateway health
if env("GATEWAY_ALIVE") != "1":
    fail.append("the gateway died")
stderr = open(os.path.join(out, "gateway.stderr"), errors="replace").read()
panics = [l for l in stderr.splitlines() if "panick" in l.lower()]
print(f"gateway stderr: {len(stderr.splitlines())} lines, {len(panics)} panic line(s)"
      + (f"; first: {panics[0][:200]}" if panics else ""))
if panics:
    fail.append("the gateway panicked (gateway.stderr)")
chaos = [l for l in open(os.path.join(out, "chaos.log")) if l.strip()]
print(f"chaos actions: {sum(1 for l in chaos if ' mock ' in l)} mode switches, "
      f"{sum(1 for l in chaos if ' enable ' in l)} toggles "
      f"({sum(1 for l in chaos if l.split()[-1] not in ('204', '200', 'over'))} not acknowledged)")
print("-" * 64)
if fail:
    print("FAIL: " + "; ".join(fail))
    sys.exit(1)
print("PASS")
PY
