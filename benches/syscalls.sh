#!/usr/bin/env bash
# Where a proxied request's time goes, switchboard (`workers = 1`) against
# nginx as a reverse proxy (../shared/bench/nginx-proxy.conf, one worker),
# both in front of the harness's nginx upstream, under the same closed-loop
# load (oha, one thread, C connections). One run each, per request:
#   - CPU (perf stat task-clock; user/sys split from /proc/PID/task/*/stat),
#     context switches (voluntary = went to sleep and was woken, involuntary =
#     preempted; /proc/PID/task/*/status), cpu-migrations, wake-ups the proxy
#     issued to other tasks (sched:sched_wakeup counted in its context), and
#     syscalls (raw_syscalls:sys_enter): all untraced, NPERF requests in a
#     closed loop and NRATE in an open loop at RATE req/s, the two proxies
#     alternating REPS times (medians: CPU figures move ±20% between sittings);
#   - the same CPU for the upstream nginx and for oha during that run (what the
#     proxy makes its neighbours on these two cores spend);
#   - syscalls by name (strace -c -f -p PID, N requests; strace slows the
#     process, so the mix can shift a little: compare its total with perf's);
#   - bytes read and written on the client and upstream sockets (strace -yy on
#     the I/O calls, NB requests, return values summed per side) and
#     /proc/PID/io rchar+wchar (counts read/write/readv/writev, not recvfrom/sendto);
#   - instructions (callgrind, NCG requests at 8 connections, minus an idle run;
#     nginx runs in one process for it: `master_process off; daemon off;`).
#
#   benches/syscalls.sh                        # JSON upstream
#   STREAM=1 benches/syscalls.sh               # the SSE upstream
#   SWITCHBOARD_BIN=/path/to/switchboard benches/syscalls.sh   # skip the release build
#   N=20000 NB=3000 NPERF=100000 NCG=3000 C=32 RATE=200 NRATE=2000 REPS=3 CALLGRIND=0 benches/syscalls.sh
#
# Needs nginx, oha, perf, strace, valgrind. Loopback ports 18080/18081,
# 18090/18091, 18400. Every oha run is bounded by -n and by `timeout`.
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-20000}"; NB="${NB:-3000}"; NPERF="${NPERF:-100000}"; NCG="${NCG:-3000}"; C="${C:-32}"
RATE="${RATE:-200}"; NRATE="${NRATE:-2000}"; REPS="${REPS:-3}"
CALLGRIND="${CALLGRIND:-1}"; STREAM="${STREAM:-0}"
if [ "$STREAM" = 1 ]; then UP=18081; PX=18091; BODY="$BENCH/request-stream.json"
else UP=18080; PX=18090; BODY="$BENCH/request.json"; fi
HZ="$(getconf CLK_TCK)"
suffix=""; [ "$STREAM" = 1 ] && suffix="-stream"
OUT="${OUT:-${BENCH_STATE:-$HOME/.cache/switchboard-bench}/syscalls/$(date +%Y%m%d-%H%M%S)$suffix}"
mkdir -p "$OUT" "$W/up" "$W/px"
for p in 18080 18081 18090 18091 18400; do
  ss -Hltn "sport = :$p" | grep -q . && { echo "port $p busy" >&2; exit 1; }
done

"$NGINX" -p "$W/up/" -c "$BENCH/nginx.conf" -g 'daemon off;' >/dev/null 2>&1 & UPM=$!; PIDS+=($UPM)
"$NGINX" -p "$W/px/" -c "$BENCH/nginx-proxy.conf" -g 'daemon off;' >/dev/null 2>&1 & PXM=$!; PIDS+=($PXM)
gateway_config "$W/sb.toml" 127.0.0.1:18400 "http://127.0.0.1:$UP/v1" bench-model 1
RUST_LOG=warn "$BIN" serve --config "$W/sb.toml" >"$W/sb.log" 2>&1 & SB=$!; PIDS+=($SB)
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:18400/health && break; sleep 0.1; done
sleep 0.5
UPW="$(pgrep -P "$UPM" | tr '\n' ',' | sed 's/,$//')"   # the upstream's worker
PXW="$(pgrep -P "$PXM" | tr '\n' ',' | sed 's/,$//')"   # the proxy's worker (the master sleeps)

oha_n() { # n url [json-out [oha args...]]: bounded by count and time
  local n="$1" url="$2" out="${3:-/dev/null}"; shift 2; [ $# -gt 0 ] && shift
  timeout 300 "$OHA" --no-tui --worker-threads 1 -m POST -T application/json -D "$BODY" \
    -H 'Authorization: Bearer dummy' -c "$C" -n "$n" "$@" --output-format json -o "$out" "$url" >/dev/null
}
ticks() { # comma-separated pids -> "user sys vol invol rchar wchar" summed over their threads
  local u=0 s=0 v=0 iv=0 rc=0 wc=0 a b t p
  for p in ${1//,/ }; do
    for t in /proc/"$p"/task/*; do
      read -r a b < <(awk '{print $14, $15}' "$t/stat"); u=$((u + a)); s=$((s + b))
      a=$(awk '/^voluntary_ctxt_switches/{print $2}' "$t/status"); v=$((v + a))
      a=$(awk '/^nonvoluntary_ctxt_switches/{print $2}' "$t/status"); iv=$((iv + a))
    done
    a=$(awk '/^rchar/{print $2}' "/proc/$p/io"); rc=$((rc + a))
    a=$(awk '/^wchar/{print $2}' "/proc/$p/io"); wc=$((wc + a))
  done
  echo "$u $s $v $iv $rc $wc"
}
EVENTS=task-clock,context-switches,cpu-migrations,raw_syscalls:sys_enter,sched:sched_wakeup
untraced() { # name url pids phase rep: perf stat on the proxy and the upstream, oha under perf stat too
  local name="$1" url="$2" pids="$3" ph="$4" f="$OUT/$1.$4.$5" sp pu n extra
  if [ "$ph" = closed ]; then n="$NPERF"; extra=(); else n="$NRATE"; extra=(-q "$RATE" --latency-correction); fi
  echo "$(ticks "$pids")" > "$f.ticks0"
  perf stat -x, -o "$f.perf" -e "$EVENTS" -p "$pids" & sp=$!
  perf stat -x, -o "$f.up.perf" -e task-clock,context-switches -p "$UPW" & pu=$!
  sleep 0.5
  perf stat -x, -o "$f.oha.perf" -e task-clock,context-switches -- \
    timeout 300 "$OHA" --no-tui --worker-threads 1 -m POST -T application/json -D "$BODY" \
      -H 'Authorization: Bearer dummy' -c "$C" -n "$n" "${extra[@]}" \
      --output-format json -o "$f.perf.json" "$url" >/dev/null
  kill -INT "$sp" "$pu"; wait "$sp" "$pu" 2>/dev/null || true
  echo "$(ticks "$pids")" > "$f.ticks1"
}
traced() { # name url pids: syscalls by name (closed loop and open loop), bytes per socket side
  local name="$1" url="$2" pids="$3" sp
  echo "== $name: strace (pids $pids)" >&2
  strace -c -f -o "$OUT/$name.closed.strace-c" -p "$pids" 2>/dev/null & sp=$!
  sleep 1
  oha_n "$N" "$url" "$OUT/$name.closed.strace.json"
  kill -INT "$sp"; wait "$sp" 2>/dev/null || true
  strace -c -f -o "$OUT/$name.rate.strace-c" -p "$pids" 2>/dev/null & sp=$!
  sleep 1
  oha_n "$NRATE" "$url" "$OUT/$name.rate.strace.json" -q "$RATE" --latency-correction
  kill -INT "$sp"; wait "$sp" 2>/dev/null || true
  strace -f -yy -s 0 -e trace=read,write,recvfrom,sendto,readv,writev,recvmsg,sendmsg,sendfile,splice \
    -o "$OUT/$name.strace-io" -p "$pids" 2>/dev/null & sp=$!
  sleep 1
  oha_n "$NB" "$url" "$OUT/$name.io.json"
  kill -INT "$sp"; wait "$sp" 2>/dev/null || true
}
NAMES=(nginxproxy switchboard)
URLS=("http://127.0.0.1:$PX/v1/chat/completions" "http://127.0.0.1:18400/v1/chat/completions")
PIDLIST=("$PXW" "$SB")
for k in 0 1; do oha_n 5000 "${URLS[$k]}"; done               # warm (connections, pools)
# the untraced measures alternate between the two proxies, REPS times (medians reported)
for rep in $(seq 1 "$REPS"); do
  for ph in closed rate; do
    for k in 0 1; do
      echo "== ${NAMES[$k]}: perf, $ph, rep $rep/$REPS" >&2
      untraced "${NAMES[$k]}" "${URLS[$k]}" "${PIDLIST[$k]}" "$ph" "$rep"
    done
  done
done
for k in 0 1; do traced "${NAMES[$k]}" "${URLS[$k]}" "${PIDLIST[$k]}"; done
kill "$PXM" "$SB"; wait "$PXM" "$SB" 2>/dev/null || true

# 4. instructions per request, each proxy alone under callgrind (same upstream, same load)
cg_total() { # name n -> instructions of the whole run
  local name="$1" n="$2" vg
  rm -f "$W/cg.out"
  case "$name" in
    nginxproxy) valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$NGINX" -p "$W/px/" \
                  -c "$BENCH/nginx-proxy.conf" -g 'daemon off; master_process off;' >/dev/null 2>&1 & vg=$!
                url="http://127.0.0.1:$PX/v1/chat/completions"; port=$PX ;;
    switchboard) RUST_LOG=warn valgrind --tool=callgrind --callgrind-out-file="$W/cg.out" "$BIN" serve \
                  --config "$W/sb.toml" >/dev/null 2>&1 & vg=$!
                url="http://127.0.0.1:18400/v1/chat/completions"; port=18400 ;;
  esac
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  if [ "$n" -gt 0 ]; then C=8 oha_n "$n" "$url"; fi
  kill -TERM "$vg"; wait "$vg" 2>/dev/null || true
  [ "$n" -gt 0 ] && cp "$W/cg.out" "$OUT/$name.callgrind.out"   # for callgrind_annotate
  awk '/^summary:/ {print $2}' "$W/cg.out"
}
: > "$OUT/callgrind"
if [ "$CALLGRIND" = 1 ]; then
  for name in nginxproxy switchboard; do
    echo "== callgrind $name" >&2
    idle=$(cg_total "$name" 0); busy=$(cg_total "$name" "$NCG")
    echo "$name $idle $busy $NCG" >> "$OUT/callgrind"
  done
fi

python3 - "$OUT" "$HZ" "$UP" "$STREAM" "$N" "$NB" "$NPERF" "$C" "$RATE" "$NRATE" "$REPS" <<'PYEOF'
import json, os, re, statistics, sys
out, hz, up, stream, n_s, n_b, n_p, conc, rate, n_r, reps = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], *map(int, sys.argv[5:12])
T = ("nginxproxy", "switchboard")
def ok(path):
    d = json.load(open(path))
    return sum(v for k, v in (d.get("statusCodeDistribution") or {}).items() if 200 <= int(k) < 300), d
def perf(path):
    r = {}
    for l in open(path):
        f = l.strip().split(",")
        if len(f) >= 3 and f[0] and not l.startswith("#"):
            try: r[f[2]] = float(f[0])
            except ValueError: pass
    return r
def strace_c(path):
    r = {}
    for l in open(path):
        f = l.split()
        if not f or not f[-1].replace("_", "").isalnum() or f[-1] in ("total", "syscall"): continue
        nums = f[:-1]
        try: nums = [float(x) for x in nums]
        except ValueError: continue
        if len(nums) == 5: r[f[-1]] = (int(nums[3]), int(nums[4]))
        elif len(nums) == 4: r[f[-1]] = (int(nums[3]), 0)
    return r
IO_RE = re.compile(r"^(\d+)\s+(?:<\.\.\. (\w+) resumed>|(\w+)\((\d+)(<TCP:\[[^\]]*\]>|<[^>]*>)?)")
RET_RE = re.compile(r"\)\s+=\s+(-?\d+)")
def strace_io(path):
    side = {}   # (side, dir) -> bytes
    calls = {}
    pending = {}
    for l in open(path):
        m = IO_RE.match(l)
        if not m: continue
        pid = m.group(1)
        if m.group(2):   # resumed
            name, fdinfo = pending.pop(pid, (m.group(2), ""))
        else:
            name, fdinfo = m.group(3), m.group(5) or ""
            if "<unfinished" in l:
                pending[pid] = (name, fdinfo); continue
        r = RET_RE.findall(l)
        if not r: continue
        ret = int(r[-1])
        t = re.search(r"TCP:\[[^\]]*->[\d.]+:(\d+)\]", fdinfo)
        if t: s = "upstream" if t.group(1) == up else "client"
        elif "TCP" in fdinfo: s = "client"
        else: s = "other"
        d = "read" if name in ("read", "recvfrom", "readv", "recvmsg") else "write"
        calls[(s, d)] = calls.get((s, d), 0) + 1
        if ret > 0: side[(s, d)] = side.get((s, d), 0) + ret
    return side, calls
def phase(t, ph):
    reps = [phase_rep(t, ph, r) for r in range(1, 100) if os.path.exists(os.path.join(out, f"{t}.{ph}.{r}.perf"))]
    if not reps: return None
    x = {k: statistics.median(r[k] for r in reps) for k in reps[0]}
    x["cpu_all"] = [r["cpu"] for r in reps]
    x["tot_all"] = [r["cpu"] + r["up_cpu"] + r["oha_cpu"] for r in reps]
    x["rps_all"] = [r["rps"] for r in reps]
    ns, _ = ok(os.path.join(out, f"{t}.{ph}.strace.json"))
    x["sc"] = {k: (c / ns, e / ns) for k, (c, e) in strace_c(os.path.join(out, f"{t}.{ph}.strace-c")).items()}
    return x
def phase_rep(t, ph, rep):
    f = lambda suffix: os.path.join(out, f"{t}.{ph}.{rep}.{suffix}")
    x = {}
    np_, pj = ok(f("perf.json"))
    x["rps"] = np_ / pj["summary"]["total"]
    x["p50"] = (pj["latencyPercentiles"]["p50"] or 0) * 1e3
    p = perf(f("perf")); pu = perf(f("up.perf")); po = perf(f("oha.perf"))
    x["cpu"] = p.get("task-clock", 0) * 1e3 / np_                     # msec -> µs
    x["cs"] = p.get("context-switches", 0) / np_
    x["mig"] = p.get("cpu-migrations", 0) / np_
    x["sys_perf"] = p.get("raw_syscalls:sys_enter", 0) / np_
    x["wake"] = p.get("sched:sched_wakeup", 0) / np_
    x["up_cpu"] = pu.get("task-clock", 0) * 1e3 / np_
    x["oha_cpu"] = po.get("task-clock", 0) * 1e3 / np_
    a = list(map(int, open(f("ticks0")).read().split()))
    b = list(map(int, open(f("ticks1")).read().split()))
    dl = [bb - aa for aa, bb in zip(a, b)]
    x["user"] = dl[0] / hz / np_ * 1e6; x["sys"] = dl[1] / hz / np_ * 1e6
    x["vol"] = dl[2] / np_; x["invol"] = dl[3] / np_; x["rwchar"] = (dl[4] + dl[5]) / np_
    return x
R = {}
for t in T:
    x = phase(t, "closed")
    if x is None: continue
    x["rate"] = phase(t, "rate")
    io = os.path.join(out, f"{t}.strace-io")
    if os.path.exists(io):
        nb, _ = ok(os.path.join(out, f"{t}.io.json"))
        by, ca = strace_io(io)
        x["bytes"] = {k: v / nb for k, v in by.items()}; x["iocalls"] = {k: v / nb for k, v in ca.items()}
    R[t] = x
cg = {}
if os.path.exists(os.path.join(out, "callgrind")):
    for l in open(os.path.join(out, "callgrind")):
        f = l.split()
        if len(f) == 4 and f[1].isdigit() and f[2].isdigit(): cg[f[0]] = (int(f[2]) - int(f[1])) / int(f[3])
L = []
def row(label, key, fmt="{:12.2f}", get=None, src=None):
    src = src or (lambda t: R.get(t))
    vals = []
    for t in T:
        x = src(t)
        try: vals.append((get or (lambda x: x[key]))(x) if x else None)
        except KeyError: vals.append(None)
    cells = [fmt.format(v) if v is not None else f"{'-':>12}" for v in vals]
    ratio = f"{vals[1] / vals[0]:7.2f}x" if all(v is not None for v in vals) and vals[0] else ""
    L.append(f"{label:46} {cells[0]} {cells[1]} {ratio:>8}")
def block(src):
    row("CPU µs (task-clock)", "cpu", src=src)
    row("  user µs (/proc stat, 10 ms ticks)", "user", src=src); row("  sys µs (/proc stat)", "sys", src=src)
    row("context switches (perf)", "cs", "{:12.3f}", src=src)
    row("  voluntary (slept, woken)", "vol", "{:12.3f}", src=src); row("  involuntary (preempted)", "invol", "{:12.3f}", src=src)
    row("cpu-migrations", "mig", "{:12.4f}", src=src)
    row("wake-ups issued to other tasks", "wake", "{:12.3f}", src=src)
    row("syscalls (perf raw_syscalls, untraced)", "sys_perf", src=src)
    row("syscalls (strace -c)", None, get=lambda x: sum(c for c, e in x["sc"].values()), src=src)
    xs = [src(t) for t in T if src(t)]
    names = sorted({k for x in xs for k in x["sc"]}, key=lambda k: -max(x["sc"].get(k, (0, 0))[0] for x in xs))
    for k in names:
        if max(x["sc"].get(k, (0, 0))[0] for x in xs) < 0.005: continue
        row(f"  {k}", None, get=lambda x, k=k: x["sc"].get(k, (0, 0))[0], src=src)
        if any(x["sc"].get(k, (0, 0))[1] for x in xs):
            row(f"    of which failed (EAGAIN etc.)", None, "{:12.3f}", get=lambda x, k=k: x["sc"].get(k, (0, 0))[1], src=src)
    row("upstream nginx CPU µs (same run)", "up_cpu", src=src)
    row("oha CPU µs (same run)", "oha_cpu", src=src)
    row("all three, CPU µs", None, get=lambda x: statistics.median(x["tot_all"]), src=src)
    xs = [src(t) for t in T]
    if all(xs):
        L.append(f"{'  (each rep: proxy CPU µs; all three)':46} " + "  ".join(
            f"{t}: " + ", ".join(f"{a:.1f}; {b:.1f}" for a, b in zip(x["cpu_all"], x["tot_all"])) for t, x in zip(T, xs)))
L.append(f"per request, {'SSE' if stream == '1' else 'JSON'} upstream; closed loop {conc} connections "
         f"(untraced: {n_p} requests, medians of {reps} alternating reps; strace -c {n_s}; bytes {n_b})")
L.append(f"{'':46} {'nginxproxy':>12} {'switchboard':>12} {'sb/nginx':>8}")
row("req/s (untraced runs, median)", "rps", "{:12.0f}")
block(lambda t: R.get(t))
for s_ in ("client", "upstream"):
    for d in ("read", "write"):
        row(f"bytes {d} on {s_} sockets", None, "{:12.0f}", get=lambda x, s_=s_, d=d: x["bytes"].get((s_, d), 0))
        row(f"  {d} calls on {s_} sockets", None, "{:12.3f}", get=lambda x, s_=s_, d=d: x["iocalls"].get((s_, d), 0))
row("I/O calls on other fds (eventfd wake-ups)", None, "{:12.3f}", get=lambda x: sum(v for (s_, d), v in x["iocalls"].items() if s_ == "other"))
row("bytes read+written, all sockets", None, "{:12.0f}", get=lambda x: sum(v for (s_, d), v in x["bytes"].items() if s_ != "other"))
row("/proc io rchar+wchar (no recvfrom/sendto)", "rwchar", "{:12.0f}")
if cg:
    L.append(f"{'instructions (callgrind, 8 connections)':46} {cg.get('nginxproxy', 0):12,.0f} {cg.get('switchboard', 0):12,.0f} "
             + (f"{cg['switchboard'] / cg['nginxproxy']:7.2f}x" if cg.get('nginxproxy') and cg.get('switchboard') else ""))
if any(R[t].get("rate") for t in R):
    L.append(f"\nper request, open loop at {rate} req/s ({n_r} requests per measure, latency-corrected, medians of {reps} reps)")
    L.append(f"{'':46} {'nginxproxy':>12} {'switchboard':>12} {'sb/nginx':>8}")
    rs = lambda t: R.get(t, {}).get("rate")
    row("p50 ms (untraced run)", "p50", "{:12.3f}", src=rs)
    block(rs)
txt = "\n".join(L)
print(txt)
open(os.path.join(out, "table.txt"), "w").write(txt + "\n")
PYEOF
echo "raw files: $OUT" >&2
