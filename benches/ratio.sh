#!/usr/bin/env bash
# The regression guard against nginx (issue 23): RUNS alternating runs of the
# shared harness (../shared/bench/peers.sh through benches/load.sh), each run
# measuring direct, nginx as a reverse proxy and switchboard (`workers = 1`)
# one after the other in that order, then the medians and their spread:
#   closed loop at CONC (32) connections: req/s of the three per run, the ratio
#     switchboard / nginxproxy per run, its median and min–max; p99 of both
#     (median over runs);
#   open loop at each of RATES (200 req/s): the p50 each proxy adds over direct
#     (median and min–max over runs);
#   STREAM=1 (the SSE upstream, switchboard pointed at it): the same, plus time
#     to first byte (oha's firstBytePercentiles: from sending the request to the
#     first byte of the answer, which is the response head: the fixed SSE body
#     arrives in one piece right behind it, so TTFB and whole-answer latency
#     differ by a few µs here).
#
#   benches/ratio.sh                          # 5 runs, ~6 min (3 targets × (3 s + 10 s + 10 s) per run;
#                                             # up to ~10 min if 3 runs are discarded for a busy machine)
#   STREAM=1 benches/ratio.sh
#   SWITCHBOARD_BIN=/path/to/switchboard benches/ratio.sh   # skip the release build
#   RUNS=3 DURATION=6s WARMUP=2s RATES="200" benches/ratio.sh
#   WAIT_LOAD=1.0 WAIT_MAX=600 benches/ratio.sh  # first wait (at most WAIT_MAX s) for the 1-minute
#                                                # load average to fall below WAIT_LOAD
#   MAX_OTHERS=0.25 MAX_ATTEMPTS=8 benches/ratio.sh  # (the defaults) a run during which the rest of the
#                                                # machine kept more than MAX_OTHERS cores busy (user+system
#                                                # time of all processes not ours, /proc/stat) is discarded and
#                                                # repeated, at most MAX_ATTEMPTS runs in all; MAX_OTHERS= keeps all
#   benches/ratio.sh --summary DIR            # print the summary of an earlier run again
#
# Raw oha JSON per run: $OUT/run<i>/ (default OUT: $BENCH_STATE/ratio/<timestamp>[-stream]);
# $OUT/load.txt has the load average and the busiest processes before each run.
# Needs nginx and oha (../shared/bench/setup.sh; LiteLLM/Portkey are not needed).
# Loopback ports 18080/18081, 18090/18091, 18400.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

summary() { # dir
python3 - "$1" <<'PYEOF'
import json, os, sys, statistics as st
base = sys.argv[1]
runs = sorted((d for d in os.listdir(base) if d.startswith("run") and os.path.isdir(os.path.join(base, d))),
              key=lambda d: int(d[3:]))
meta = dict(l.rstrip("\n").split("=", 1) for l in open(os.path.join(base, "meta.txt"))) if os.path.exists(os.path.join(base, "meta.txt")) else {}
stream = meta.get("STREAM") == "1"
def load(run, t, kind):
    p = os.path.join(base, run, f"{t}.{kind}.json")
    if not os.path.exists(p): return None
    d = json.load(open(p))
    codes = {int(k): v for k, v in (d.get("statusCodeDistribution") or {}).items()}
    ok = sum(v for k, v in codes.items() if 200 <= k < 300)
    errs = sum(v for k, v in codes.items() if not 200 <= k < 300) + sum((d.get("errorDistribution") or {}).values())
    lp = d["latencyPercentiles"]; fb = d.get("firstBytePercentiles") or {}
    ms = lambda v: (v or 0) * 1e3
    return dict(rps=ok / d["summary"]["total"], p50=ms(lp["p50"]), p99=ms(lp["p99"]),
                fb50=ms(fb.get("p50")), fb99=ms(fb.get("p99")), err=errs)
def med(xs): return st.median(xs) if xs else float("nan")
def spread(xs, fmt): return f"{fmt.format(med(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})" if xs else "-"
T = ("direct", "nginxproxy", "switchboard")
conc = meta.get("CONC", "32"); rates = meta.get("RATES", "200").split()
print(f"# {base}")
print(f"# {meta.get('STREAM_LABEL', 'JSON')} upstream; {len(runs)} runs; closed loop {conc} connections {meta.get('DURATION', '')}; "
      f"open loop at {' and '.join(rates)} req/s; binary {meta.get('SWITCHBOARD_BIN', '?')}")
print(f"\n## closed loop, {conc} connections: req/s")
hdr = f"{'run':<5} {'direct':>8} {'nginxproxy':>10} {'switchboard':>11} {'sb/nginx':>8} {'p99 nginx':>9} {'p99 sb':>7} {'errors':>6} {'load':>5} {'others':>6} {'steal':>5}"
if stream: hdr += f" {'ttfb50 nx':>9} {'ttfb50 sb':>9}"
print(hdr)
loads, others, discarded, steals = {}, {}, [], {}
lp = os.path.join(base, "load.txt")
if os.path.exists(lp):
    for l in open(lp):
        parts = l.split()
        if l.startswith("run") and parts[1] == "load":
            loads[parts[0]] = parts[2]   # the last attempt's (the kept one)
        elif l.startswith("run") and parts[1] == "others":
            others[parts[0]] = parts[2]
        elif l.startswith("run") and parts[1] == "steal":
            steals[parts[0]] = parts[2]
        elif l.startswith("run") and parts[1] == "discarded":
            discarded.append(l.strip())
ratios, p99n, p99s, fbn, fbs = [], [], [], [], []
for r in runs:
    c = {t: load(r, t, "closed") for t in T}
    if not all(c.values()):
        print(f"{r:<5} incomplete: " + ", ".join(t for t in T if not c[t])); continue
    ratio = c["switchboard"]["rps"] / c["nginxproxy"]["rps"]
    ratios.append(ratio); p99n.append(c["nginxproxy"]["p99"]); p99s.append(c["switchboard"]["p99"])
    fbn.append(c["nginxproxy"]["fb50"]); fbs.append(c["switchboard"]["fb50"])
    line = (f"{r:<5} {c['direct']['rps']:8.0f} {c['nginxproxy']['rps']:10.0f} {c['switchboard']['rps']:11.0f} "
            f"{ratio:7.3f}x {c['nginxproxy']['p99']:9.2f} {c['switchboard']['p99']:7.2f} "
            f"{c['nginxproxy']['err'] + c['switchboard']['err']:6d} {loads.get(r, '?'):>5} {others.get(r, '?'):>6} {steals.get(r, '?'):>5}")
    if stream: line += f" {c['nginxproxy']['fb50']:9.3f} {c['switchboard']['fb50']:9.3f}"
    print(line)
print("(load: 1-minute load average before the run; others: cores the rest of the machine kept busy during the run;")
print("  steal: cores' worth of time the hypervisor gave to other guests during the run)")
for d in discarded: print("discarded: " + d)
print(f"\nratio switchboard / nginxproxy: median {spread(ratios, '{:.3f}x')} over {len(ratios)} runs")
print(f"p99 at {conc} connections (median over runs): switchboard {med(p99s):.2f} ms, nginxproxy {med(p99n):.2f} ms")
if stream:
    print(f"time to first byte p50 at {conc} connections (median over runs): switchboard {med(fbs):.3f} ms, nginxproxy {med(fbn):.3f} ms")
for rate in rates:
    kind = f"rate{rate}"
    print(f"\n## open loop at {rate} req/s: added over direct (ms)")
    h = f"{'run':<5} {'p50 direct':>10} {'+p50 nginx':>10} {'+p50 sb':>8} {'p99 nginx':>9} {'p99 sb':>7}"
    if stream: h += f" {'+ttfb50 nx':>10} {'+ttfb50 sb':>10}"
    print(h)
    an, asb, an_fb, asb_fb, q99n, q99s = [], [], [], [], [], []
    for r in runs:
        c = {t: load(r, t, kind) for t in T}
        if not all(c.values()):
            print(f"{r:<5} incomplete"); continue
        d = c["direct"]
        an.append(c["nginxproxy"]["p50"] - d["p50"]); asb.append(c["switchboard"]["p50"] - d["p50"])
        an_fb.append(c["nginxproxy"]["fb50"] - d["fb50"]); asb_fb.append(c["switchboard"]["fb50"] - d["fb50"])
        q99n.append(c["nginxproxy"]["p99"]); q99s.append(c["switchboard"]["p99"])
        line = f"{r:<5} {d['p50']:10.3f} {an[-1]:+10.3f} {asb[-1]:+8.3f} {q99n[-1]:9.3f} {q99s[-1]:7.3f}"
        if stream: line += f" {an_fb[-1]:+10.3f} {asb_fb[-1]:+10.3f}"
        print(line)
    print(f"added p50 at {rate} req/s: switchboard {spread(asb, '{:+.3f}')} ms, nginxproxy {spread(an, '{:+.3f}')} ms (median (min–max))")
    print(f"p99 at {rate} req/s (median): switchboard {med(q99s):.3f} ms, nginxproxy {med(q99n):.3f} ms")
    if stream:
        print(f"added time to first byte p50 at {rate} req/s: switchboard {spread(asb_fb, '{:+.3f}')} ms, nginxproxy {spread(an_fb, '{:+.3f}')} ms")
PYEOF
}

if [ "${1:-}" = "--summary" ]; then summary "$2"; exit; fi

RUNS="${RUNS:-5}"
MAX_OTHERS="${MAX_OTHERS-0.25}"        # discard a run if the rest of the machine kept more cores busy ("" keeps all)
MAX_ATTEMPTS="${MAX_ATTEMPTS:-$((RUNS + 3))}"
STREAM="${STREAM:-0}"
export DURATION="${DURATION:-10s}" WARMUP="${WARMUP:-3s}" RATES="${RATES:-200}" CONC="${CONC:-32}" STREAM
export BENCH_STATE="${BENCH_STATE:-$HOME/.cache/switchboard-bench}"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
  SWITCHBOARD_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/switchboard"
fi
SWITCHBOARD_BIN="$(realpath "$SWITCHBOARD_BIN")"
export SWITCHBOARD_BIN
suffix=""; [ "$STREAM" = 1 ] && suffix="-stream"
OUT="${OUT:-$BENCH_STATE/ratio/$(date +%Y%m%d-%H%M%S)$suffix}"
mkdir -p "$OUT"
label=JSON; [ "$STREAM" = 1 ] && label="SSE (STREAM=1)"
printf 'STREAM=%s\nSTREAM_LABEL=%s\nCONC=%s\nRATES=%s\nDURATION=%s\nWARMUP=%s\nSWITCHBOARD_BIN=%s\n' \
  "$STREAM" "$label" "$CONC" "$RATES" "$DURATION" "$WARMUP" "$SWITCHBOARD_BIN" > "$OUT/meta.txt"

load1() { cut -d' ' -f1 /proc/loadavg; }
if [ -n "${WAIT_LOAD:-}" ]; then
  deadline=$(( $(date +%s) + ${WAIT_MAX:-600} ))
  while awk -v l="$(load1)" -v m="$WAIT_LOAD" 'BEGIN{exit !(l >= m)}' && [ "$(date +%s)" -lt "$deadline" ]; do
    echo "load $(load1) >= $WAIT_LOAD: waiting" >&2; sleep 15
  done
fi
HZ="$(getconf CLK_TCK)"
cpu_now() { # busy jiffies of the machine, jiffies of our reaped children, ms
  echo "$(awk '/^cpu /{print $2+$3+$4}' /proc/stat) $(awk '{print $16+$17}' /proc/$$/stat) $(date +%s%3N) $(awk '/^cpu /{print $9}' /proc/stat)"
}
ports_free() { ! ss -Hltn | awk '{print $4}' | grep -qE ':(18080|18081|18090|18091|18400)$'; }
: > "$OUT/load.txt"
i=1; attempt=0
while [ "$i" -le "$RUNS" ] && [ "$attempt" -lt "$MAX_ATTEMPTS" ]; do
  attempt=$((attempt + 1))
  # another harness run (another session) may hold the ports: wait for them, bounded
  for _ in $(seq 1 60); do ports_free && break; sleep 5; done
  ports_free || { echo "ports 18080/18081/18090/18091/18400 still busy; giving up" >&2; exit 1; }
  { echo "run$i load $(load1) $(date -Is) $(cut -d' ' -f1-3 /proc/loadavg)"
    top -b -n 2 -d 1 -w 200 | awk '/^top -/{n++} n==2' | sed -n '8,13p' | sed 's/^/    /'; } >> "$OUT/load.txt"
  echo "run $i/$RUNS, attempt $attempt/$MAX_ATTEMPTS (load $(load1)) -> $OUT/run$i" >&2
  read -r b0 c0 t0 s0 < <(cpu_now)
  OUT="$OUT/run$i" TARGETS="direct nginxproxy" "$ROOT/benches/load.sh" > "$OUT/run$i.log" 2>&1 \
    || echo "run $i failed (see $OUT/run$i.log)" >&2
  read -r b1 c1 t1 s1 < <(cpu_now)
  # CPU the rest of the machine used during the run, in cores: all busy time
  # (user + nice + system, not softirq) minus what this script's reaped process tree used.
  others=$(awk -v b=$((b1 - b0)) -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v hz="$HZ" \
    'BEGIN{o=(b-c)/hz/(t/1000); printf "%.2f", (o<0?0:o)}')
  steal=$(awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN{printf "%.2f", s/hz/(t/1000)}')
  echo "run$i others $others cores" >> "$OUT/load.txt"
  echo "run$i steal $steal cores (time the hypervisor ran something else)" >> "$OUT/load.txt"
  if [ -n "$MAX_OTHERS" ] && awk -v o="$others" -v m="$MAX_OTHERS" 'BEGIN{exit !(o > m)}'; then
    echo "  run $i discarded: the rest of the machine kept $others cores busy (> MAX_OTHERS=$MAX_OTHERS)" >&2
    echo "run$i discarded (others $others cores): kept as discarded-$attempt" >> "$OUT/load.txt"
    mv "$OUT/run$i" "$OUT/discarded-$attempt"; mv "$OUT/run$i.log" "$OUT/discarded-$attempt.log"
    continue
  fi
  i=$((i + 1))
done
[ "$i" -gt "$RUNS" ] || echo "only $((i - 1)) of $RUNS runs kept after $MAX_ATTEMPTS attempts" >&2
echo "after: load $(cut -d' ' -f1-3 /proc/loadavg)" >> "$OUT/load.txt"
summary "$OUT" | tee "$OUT/summary.txt"
