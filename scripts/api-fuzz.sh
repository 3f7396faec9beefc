#!/usr/bin/env bash
# Checks the API documents with their own tooling, then fuzzes main-service with
# schemathesis against openapi.yaml: a local stack of
# redis-server and both service binaries on free loopback ports, every check,
# stateful POST -> stream links included, a bounded number of examples.
#
# Needs redis-server, python3 with venv, and the debug binaries
# (cargo build --workspace --bins). The tools come from PyPI, pinned in
# scripts/api-fuzz/requirements.txt, into a virtual environment under target/.
#
#   API_FUZZ_EXAMPLES  examples per operation and phase (default 100, about a minute; 1000 for a long run)
#   API_FUZZ_SEED      schemathesis seed (default fixed, so CI runs repeat; "random" for a new one)
#   API_FUZZ_VENV      where the virtual environment lives (default target/api-fuzz-venv)
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${API_FUZZ_EXAMPLES:-100}
seed=${API_FUZZ_SEED:-20261201}
venv=${API_FUZZ_VENV:-target/api-fuzz-venv}
bin=${CARGO_TARGET_DIR:-target}/debug
requirements=scripts/api-fuzz/requirements.txt

scripts/python-venv.sh "$venv" "$requirements"
python="$venv/bin/python"

"$python" scripts/api-fuzz/validate_documents.py openapi.yaml asyncapi.yaml

for binary in main-service provider-service; do
  [ -x "$bin/$binary" ] || { echo "api-fuzz: $bin/$binary missing; run cargo build --workspace --bins" >&2; exit 1; }
done

free_port() {
  "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
redis_port=$(free_port)
http_port=$(free_port)
admin_port=$(free_port)
work=$(mktemp -d)
pids=()
stop_stack() {
  local status=$?
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ "$status" -ne 0 ]; then
    for log in "$work"/*.log; do echo "--- last lines of $(basename "$log")"; tail -n 20 "$log"; done
  fi
  rm -rf "$work"
}
trap stop_stack EXIT

redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
  >"$work/redis.log" 2>&1 &
pids+=($!)
export REDIS_URL="redis://127.0.0.1:$redis_port"
# Short supplier latency keeps each stream short; a timeout well below the
# request timeout ends any stream that would otherwise wait.
HTTP_ADDR="127.0.0.1:$http_port" SEARCH_TIMEOUT_SECS=10 RESULTS_TTL_SECS=120 \
  "$bin/main-service" >"$work/main-service.log" 2>&1 &
pids+=($!)
METRICS_ADDR="127.0.0.1:$admin_port" MOCK_LATENCY_MS=0-30 \
  "$bin/provider-service" >"$work/provider-service.log" 2>&1 &
pids+=($!)

base="http://127.0.0.1:$http_port"
"$python" - "$base/readyz" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=2) as response:
            if response.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit(f"api-fuzz: {sys.argv[1]} not ready within 30 s")
    time.sleep(0.1)
PY

seed_args=(--seed "$seed")
[ "$seed" = random ] && seed_args=()
# The file rather than the served copy: loaded from a URL, schemathesis leaves
# that URL's own operation out. The e2e suite proves the two are the same bytes.
echo "api-fuzz: schemathesis against $base, $examples examples per operation"
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=scripts/api-fuzz "$venv/bin/schemathesis" \
  --config-file scripts/api-fuzz/schemathesis.toml run openapi.yaml \
  --url "$base" \
  --checks all \
  --max-examples "$examples" \
  "${seed_args[@]}" \
  --request-timeout 30 \
  --generation-database none \
  --no-color
