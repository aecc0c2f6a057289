#!/usr/bin/env bash
# Cluster mode against standalone, in one run on this machine, with Redis
# sharing its cores: the same two-deployment model (TPM limits, so that the
# window and the round robin do their work) in front of the harness's nginx
# upstream, once without [cluster] and once with one (a private
# redis-server). Alternating runs, medians:
#   1. closed-loop throughput at C=32: nginx as a proxy, standalone, cluster;
#   2. latency at a fixed 200 req/s: p50 and p99, standalone and cluster;
#   3. Redis CPU per request (its /proc ticks over the cluster's runs);
#   4. the events relay at a fixed 5,000 req/s (or what the box manages):
#      the instance's and Redis's CPU per request with nobody watching and
#      with a watcher on a second instance (so the first relays its events).
#
#   benches/cluster.sh                       # RUNS=3 DUR=10s
#   SWITCHBOARD_BIN=path benches/cluster.sh  # a prebuilt binary
#
# Needs nginx, oha and redis-server. Loopback ports 18080, 18090, 18410-18412, 18700.
set -euo pipefail
. "$(dirname "$0")/common.sh"
RUNS="${RUNS:-3}"; DUR="${DUR:-10s}"; C="${C:-32}"
HZ="$(getconf CLK_TCK)"
mkdir -p "$W/up" "$W/px"
"$NGINX" -p "$W/up/" -c "$BENCH/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 & PIDS+=($!)
"$NGINX" -p "$W/px/" -c "$BENCH/nginx-proxy.conf" -g 'daemon off;' >/dev/null 2>&1 & PX=$!; PIDS+=($PX)
redis-server --port 18700 --bind 127.0.0.1 --save '' --appendonly no >"$W/redis.log" 2>&1 & RD=$!; PIDS+=($RD)

config() { # file listen cluster?
  {
    printf '[server]\nlisten = "%s"\nworkers = 1\n\n' "$2"
    [ "$3" = yes ] && printf '[cluster]\nredis_url = "redis://127.0.0.1:18700"\nname = "bench"\n\n'
    printf '[[models]]\nname = "bench-model"\n'
    for d in east west; do
      printf '\n[[models.deployments]]\nname = "%s"\napi_base = "http://127.0.0.1:18080/v1"\n' "$d"
      printf 'api_key = "dummy"\nmodel_id = "bench-model"\ntpm_limit = 1000000000000\n'
    done
  } > "$1"
}
start() { # name listen cluster? -> pid in $STARTED
  config "$W/$1.toml" "$2" "$3"
  RUST_LOG=warn "$BIN" serve --config "$W/$1.toml" >"$W/$1.log" 2>&1 & STARTED=$!; PIDS+=($STARTED)
  for _ in $(seq 100); do curl -s -o /dev/null "http://$2/health" && return; sleep 0.1; done
  echo "$1 did not start: $(cat "$W/$1.log")" >&2; exit 1
}
start standalone 127.0.0.1:18410 no; SA=$STARTED
start cluster 127.0.0.1:18411 yes; CL=$STARTED
start watched 127.0.0.1:18412 yes
sleep 1

ticks() { # pid -> user+sys ticks over its threads
  local n=0 a b
  for t in /proc/"$1"/task/*/stat; do
    read -r a b < <(awk '{print $14, $15}' "$t"); n=$((n + a + b))
  done
  echo "$n"
}
oha_json() { "$OHA" --no-tui -m POST -T application/json -D "$BENCH/request.json" \
  -H 'Authorization: Bearer dummy' --output-format json "$@"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

declare -A RPS P50 P99
RCPU=""
for i in $(seq "$RUNS"); do
  for who in nginx standalone cluster; do
    case $who in nginx) url=http://127.0.0.1:18090;; standalone) url=http://127.0.0.1:18410;; cluster) url=http://127.0.0.1:18411;; esac
    oha_json -c "$C" -n 2000 "$url/v1/chat/completions" >/dev/null
    r0=$(ticks "$RD")
    out=$(oha_json -c "$C" -z "$DUR" "$url/v1/chat/completions")
    r1=$(ticks "$RD")
    rps=$(echo "$out" | field 'round(d["summary"]["requestsPerSec"])')
    RPS[$who]+="$rps "
    if [ "$who" = cluster ]; then
      n=$(echo "$out" | field 'sum(d["statusCodeDistribution"].values())')
      RCPU+="$(python3 -c "print(round(($r1-$r0)/$HZ/$n*1e6, 1))") "
    fi
    echo "run $i $who: $rps req/s" >&2
  done
  for who in standalone cluster; do
    url=http://127.0.0.1:18410; [ $who = cluster ] && url=http://127.0.0.1:18411
    out=$(oha_json -c 8 -q 200 -z "$DUR" "$url/v1/chat/completions")
    P50[$who]+="$(echo "$out" | field 'round(d["latencyPercentiles"]["p50"]*1000, 3)') "
    P99[$who]+="$(echo "$out" | field 'round(d["latencyPercentiles"]["p99"]*1000, 3)') "
  done
done

# The relay: 5,000 req/s to one instance, nobody watching, then a watcher
# on the other instance.
relay() { # label
  local g0 r0 g1 r1 out n
  g0=$(ticks "$CL"); r0=$(ticks "$RD")
  out=$(oha_json -c 32 -q 5000 -z "$DUR" http://127.0.0.1:18411/v1/chat/completions)
  g1=$(ticks "$CL"); r1=$(ticks "$RD")
  n=$(echo "$out" | field 'sum(d["statusCodeDistribution"].values())')
  python3 -c "
n=$n; d=float('$DUR'.rstrip('s'))
print(f'| events relay, {\"$1\":22} | {n/d:7.0f} req/s | instance {($g1-$g0)/$HZ/n*1e6:5.1f} µs/req | Redis {($r1-$r0)/$HZ/n*1e6:5.1f} µs/req |')"
}
RELAY=$(relay "nobody watching")
curl -sN http://127.0.0.1:18412/admin/events >/dev/null & WATCH=$!; PIDS+=($WATCH)
sleep 2.5   # the watcher's mark is renewed each second; the relay starts on the next check
RELAY+=$'\n'$(relay "a watcher elsewhere")
kill "$WATCH" 2>/dev/null || true

m() { echo "${1}" | median; }
python3 - <<PY
nginx, sa, cl = $(m "${RPS[nginx]}"), $(m "${RPS[standalone]}"), $(m "${RPS[cluster]}")
p50s, p50c = $(m "${P50[standalone]}"), $(m "${P50[cluster]}")
p99s, p99c = $(m "${P99[standalone]}"), $(m "${P99[cluster]}")
print(f"| medians of $RUNS runs of $DUR | standalone | cluster | |")
print(f"|---|---|---|---|")
print(f"| throughput at C=$C | {sa:.0f} req/s ({sa/nginx:.2f}x nginx {nginx:.0f}) | {cl:.0f} req/s | {cl/sa:.2f}x standalone |")
print(f"| p50 at 200 req/s | {p50s:.3f} ms | {p50c:.3f} ms | +{p50c-p50s:.3f} ms |")
print(f"| p99 at 200 req/s | {p99s:.3f} ms | {p99c:.3f} ms | +{p99c-p99s:.3f} ms |")
print(f"| Redis CPU per request | | $(m "$RCPU") µs | |")
PY
echo "$RELAY"
