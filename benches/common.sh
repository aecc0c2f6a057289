# Shared by the bench scripts (sourced, after `set -euo pipefail`): where
# things are, the release binary, a scratch folder W that is removed on exit
# with every process listed in PIDS, and a one-model gateway config.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="${BENCH_DIR:-$ROOT/../shared/bench}"
if [ -z "${SWITCHBOARD_BIN:-}" ]; then
  cargo build --release --manifest-path "$ROOT/Cargo.toml" >&2
fi
BIN="${SWITCHBOARD_BIN:-$ROOT/target/release/switchboard}"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
OHA="$(command -v oha || echo "${CARGO_HOME:-$HOME/.cargo}/bin/oha")"
W="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

# gateway_config FILE LISTEN UPSTREAM_V1 MODEL [WORKERS]: one model with one
# deployment at UPSTREAM_V1, the deployment's model ID the same as MODEL.
gateway_config() {
  {
    printf '[server]\nlisten = "%s"\n' "$2"
    [ -n "${5:-}" ] && printf 'workers = %s\n' "$5"
    printf '\n[[models]]\nname = "%s"\n\n[[models.deployments]]\nname = "upstream"\n' "$4"
    printf 'api_base = "%s"\napi_key = "dummy"\nmodel_id = "%s"\n' "$3" "$4"
  } > "$1"
}
