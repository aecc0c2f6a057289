#!/usr/bin/env bash
# Memory per idle streaming connection: N clients each open a streaming chat
# completion through the gateway to a mock upstream that then goes quiet (one
# chunk a minute), and hold it. Prints the gateway's RSS before and with the
# N streams open, and the difference per stream. Bounded: the clients give up
# after HOLD seconds and everything is stopped on exit.
#
#   benches/idle_streams.sh                 # N=10000
#   N=2000 SWITCHBOARD_BIN=target/release/switchboard benches/idle_streams.sh
set -euo pipefail
. "$(dirname "$0")/common.sh"
N="${N:-10000}"
HOLD="${HOLD:-20}"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); GW=$(free_port)
"$BIN" mock-upstream --listen "127.0.0.1:$UP" --chunk-delay-ms 60000 --tokens 4 >/dev/null 2>&1 & PIDS+=($!)
gateway_config "$W/sb.toml" "127.0.0.1:$GW" "http://127.0.0.1:$UP/v1" m
RUST_LOG=warn "$BIN" serve --config "$W/sb.toml" 2>"$W/gw.log" & GWPID=$!; PIDS+=($GWPID)
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$GW/health" >/dev/null && break; sleep 0.05; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$GWPID/status"; }
# Warm: one stream through, so pools and buffers exist before the baseline.
curl -s -m 2 "http://127.0.0.1:$GW/v1/chat/completions" -H 'content-type: application/json' \
  -d '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}' >/dev/null || true
BASE=$(rss)
python3 - "$GW" "$N" "$HOLD" "$GWPID" "$BASE" <<'PY'
import asyncio, sys, time
port, n, hold, pid, base = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], int(sys.argv[5])
body = b'{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}'
req = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body)) + body
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
async def one(started, conns):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(req); await w.drain()
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head[:40])
    await r.read(1)  # the first event: the stream is committed and idle now
    conns.append(w); started.append(1)
async def main():
    started, conns, sem = [], [], asyncio.Semaphore(256)
    async def guarded():
        async with sem:
            await one(started, conns)
    t = time.time()
    results = await asyncio.gather(*(guarded() for _ in range(n)), return_exceptions=True)
    errors = [e for e in results if isinstance(e, Exception)]
    await asyncio.sleep(2)
    held = rss()
    print(f"streams open: {len(started)} of {n} ({len(errors)} failed) in {time.time()-t:.1f}s")
    for kind in sorted({repr(e)[:120] for e in errors})[:5]:
        print(f"  failed: {kind}")
    print(f"gateway RSS: {base/1024:.1f} MiB before, {held/1024:.1f} MiB with the streams open")
    if started:
        print(f"per idle stream: {(held-base)/len(started):.1f} KiB (client and upstream connection, relay state)")
    await asyncio.sleep(max(0.0, hold - (time.time() - t)))
    for w in conns:
        w.close()
asyncio.run(main())
PY
for wait in 2 10; do
  sleep "$wait"
  echo "gateway after the clients left (+${wait}s): RSS $(( $(rss) / 1024 )) MiB, open fds $(ls /proc/$GWPID/fd | wc -l)"
done
