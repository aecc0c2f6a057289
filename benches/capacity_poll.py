#!/usr/bin/env python3
"""Helpers of benches/capacity.sh (standard library only).

  capacity_poll.py URL OUT SECONDS          log /admin/state every 0.5 s
  capacity_poll.py --report NAME RATE OHA MOCK STATE
  capacity_poll.py --ramp URL SECONDS       open-loop load, 1 req/s more every 5 s
  capacity_poll.py --forecast STATE LIMIT   the forecast against the moment the window filled
"""
import json
import sys
import threading
import time
import urllib.request

BODY = json.dumps({"model": "m", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "Say hello to the capacity benchmark."}]}).encode()


def poll(url, out, seconds):
    start = time.monotonic()
    with open(out, "w") as f:
        while time.monotonic() - start < seconds:
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    state = json.load(r)
                m = state["models"][0]
                f.write(json.dumps({"t": time.monotonic() - start, "queue": m.get("queue"),
                                    "headroom": m.get("headroom"), "d": m["deployments"][0]}) + "\n")
                f.flush()
            except Exception:
                pass
            time.sleep(0.5)


def forecasts(rows, limit_key="tpm_limit", used_key="tpm_used"):
    """Predictions of the time to full at 40/20/10 s before the window filled."""
    hit = None
    for r in rows:
        d = r["d"]
        limit = d.get(limit_key)
        if (r.get("queue") or {}).get("length", 0) > 0 or (limit and d.get(used_key, 0) >= 0.97 * limit):
            hit = r["t"]
            break
    if hit is None:
        return "never full"
    out = []
    for before in (40, 20, 10):
        at = [r for r in rows if r["t"] <= hit - before]
        if not at:
            out.append(f"{before}s: -")
            continue
        f = at[-1]["d"].get("forecast_full_s")
        actual = hit - at[-1]["t"]
        out.append(f"{before}s: {'never' if f is None else f'{f:.0f}s'} (was {actual:.0f}s)")
    return "; ".join(out)


def report(name, rate, oha_path, mock_path, state_path):
    try:
        oha = json.load(open(oha_path))
        codes = oha.get("statusCodeDistribution", {})
        lat = oha.get("latencyPercentiles", {})
    except Exception:
        codes, lat = {}, {}
    mock = json.load(open(mock_path)) if mock_path != "-" else {}
    rows = [json.loads(line) for line in open(state_path) if line.strip()]
    ok, limited = codes.get("200", 0), codes.get("429", 0)
    other = sum(v for k, v in codes.items() if k not in ("200", "429"))
    up429 = mock.get("rate_limited", 0)
    by = {k: v for k, v in (mock.get("rate_limited_by") or {}).items() if v}
    qmax = max(((r.get("queue") or {}).get("length", 0) for r in rows), default=0)
    p50, p99 = lat.get("p50"), lat.get("p99")
    waited = f"{p50:.1f}/{p99:.1f}s" if p50 is not None else "-"
    print(f"{name:<11} {rate:>5}/s  {ok:>10}  {limited:>10}  {other:>5}  {up429:>5} {json.dumps(by) if by else '':<8}"
          f"  {waited:>14}  {qmax:>9}  {forecasts(rows)}")


def ramp(url, seconds):
    """1 req/s, one more every 5 s, each request on its own thread."""
    counts = {}
    lock = threading.Lock()

    def one():
        req = urllib.request.Request(url, data=BODY, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                code = r.status
                r.read()
        except urllib.error.HTTPError as e:
            code = e.code
        except Exception:
            code = 0
        with lock:
            counts[code] = counts.get(code, 0) + 1

    start = time.monotonic()
    threads = []
    sent = 0
    while (t := time.monotonic() - start) < seconds:
        rate = 1 + int(t // 5)
        due = int(sum(1 + int(s // 5) for s in range(int(t))) + (t % 1) * rate)
        while sent < due:
            th = threading.Thread(target=one, daemon=True)
            th.start()
            threads.append(th)
            sent += 1
        time.sleep(0.02)
    for th in threads:
        th.join(timeout=35)
    print(json.dumps({"sent": sent, "codes": counts}))


if __name__ == "__main__":
    a = sys.argv[1:]
    if a[0] == "--report":
        report(*a[1:6])
    elif a[0] == "--ramp":
        ramp(a[1], float(a[2]))
    elif a[0] == "--forecast":
        rows = [json.loads(line) for line in open(a[1]) if line.strip()]
        print(forecasts(rows))
    else:
        poll(a[0], a[1], float(a[2]))
