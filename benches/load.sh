#!/usr/bin/env bash
# Load benchmark on loopback with the shared harness (../shared/bench):
# the same oha load against the upstream directly, nginx as a plain reverse
# proxy, (optionally LiteLLM and Portkey) and switchboard, in one run.
#
#   benches/load.sh                       # direct, nginxproxy, switchboard
#   TARGETS="direct nginxproxy litellm portkey" benches/load.sh
#   STREAM=1 benches/load.sh              # the SSE upstream
#   SWITCHBOARD_BIN=path benches/load.sh  # a prebuilt binary instead of building release
#   WORKERS=2 benches/load.sh             # serving threads (default 1, as the harness's nginx
#                                         # proxy runs one worker process; unset = one per CPU)
#
# Needs the harness's tools once: ../shared/bench/setup.sh (nginx, oha; LiteLLM/Portkey if listed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
[ -x "$BENCH/peers.sh" ] || { echo "no harness at $BENCH (set BENCH_DIR)" >&2; exit 1; }

if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
fi
BIN="${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}"
# Results and installs go outside the (read-only) shared folder.
export BENCH_STATE="${BENCH_STATE:-$HOME/.cache/switchboard-bench}"
mkdir -p "$BENCH_STATE"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PORT="${SWITCHBOARD_PORT:-18400}"
WORKERS="${WORKERS-1}"
WORKERS_LINE=""
[ -n "$WORKERS" ] && WORKERS_LINE="workers = $WORKERS"

# The config is written when the harness starts switchboard, because only then
# is the upstream port (plain or SSE) known: BENCH_UPSTREAM_V1 is in its env.
cat > "$WORK/start.sh" <<SH
#!/usr/bin/env bash
cat > "$WORK/switchboard.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
$WORKERS_LINE

[[models]]
name = "bench-model"

[[models.deployments]]
name = "nginx"
api_base = "\$BENCH_UPSTREAM_V1"
api_key = "dummy"
model_id = "bench-model"
TOML
RUST_LOG=warn exec "$BIN" serve --config "$WORK/switchboard.toml"
SH
chmod +x "$WORK/start.sh"

export TARGETS="${TARGETS:-direct nginxproxy}"
export SWITCHBOARD_URL="http://127.0.0.1:$PORT"
export SWITCHBOARD_CMD="$WORK/start.sh"
export SWITCHBOARD_HEALTH="http://127.0.0.1:$PORT/health"
"$BENCH/peers.sh"
