#!/usr/bin/env bash
# The provider's memory under hostile supplier answers: SEARCHES concurrent
# searches (default 20) against six mock-suppliers airlines that each answer
# with a valid body of just under 4 MiB (fault `oversized`). Queues the searches
# straight into Redis (no main-service needed), waits for every terminal event,
# and prints provider-service's RSS before, at its peak (VmHWM) and after.
#
# Needs redis-server, redis-cli, curl and the release binaries
# (cargo build --release -p provider-service -p mock-suppliers).
#
#   SEARCHES   concurrent searches (default 20)
#   SETTLE     seconds to wait after the burst before reading idle RSS (default 5)
#   PROVIDER_ENV  extra provider settings, e.g. "MAX_OFFERS_PER_ANSWER=100"
#   PROFILE    which build's binaries (default release; debug works, slower)
set -euo pipefail
cd "$(dirname "$0")/.."

searches=${SEARCHES:-20}
settle=${SETTLE:-5}
bin=${CARGO_TARGET_DIR:-target}/${PROFILE:-release}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
rss_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
wait_for() { # command, what
  for _ in $(seq 1 200); do eval "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "hostile-answers: $2 did not come up" >&2; exit 1
}

redis_port=$(free_port); mock_port=$(free_port); admin_port=$(free_port)
redis-server --port "$redis_port" --save '' --appendonly no --dir "$work" >"$work/redis.log" &
pids+=($!)
wait_for "redis-cli -p $redis_port ping" redis-server

behaviour='{'
urls=''
for code in GA JT QZ ID QG SJ; do
  behaviour+="\"$code\":{\"fault\":\"oversized\"},"
  lower=$(echo "$code" | tr 'A-Z' 'a-z')
  urls+="$code=http://127.0.0.1:$mock_port/$lower,"
done
behaviour="${behaviour%,}}"
HTTP_ADDR=127.0.0.1:$mock_port MOCK_LATENCY_MS=0 MOCK_BEHAVIOUR=$behaviour RUST_LOG=warn \
  "$bin/mock-suppliers" >"$work/mock.log" 2>&1 &
pids+=($!)
wait_for "curl -sf http://127.0.0.1:$mock_port/healthz" mock-suppliers

# The answer cache off, so every search reads its own six answers.
env REDIS_URL="redis://127.0.0.1:$redis_port" METRICS_ADDR="127.0.0.1:$admin_port" \
  SUPPLIER_URLS="${urls%,}" SUPPLIER_CACHE_TTL_SECS=0 SUPPLIER_TIMEOUT_MS=20000 \
  SUPPLIER_DEADLINE_MS=30000 RUST_LOG=error ${PROVIDER_ENV:-} \
  "$bin/provider-service" >"$work/provider.log" 2>&1 &
provider=$!
pids+=($provider)
wait_for "curl -sf http://127.0.0.1:$admin_port/readyz" provider-service

queue() { # search id, day of month
  redis-cli -p "$redis_port" XADD flight.search.requested '*' search_id "$1" from CGK to DPS \
    date "2026-12-$(printf %02d "$2")" passengers 1 >/dev/null
}
finished() { # search ids...
  local done=0
  for id in "$@"; do
    redis-cli -p "$redis_port" HEXISTS "{flight.search.results:$id}:state" terminal | grep -q 1 && done=$((done + 1))
  done
  echo "$done"
}

# One search first, so pools, buffers and lazily built state exist before the
# idle figure is read.
warm=$(cat /proc/sys/kernel/random/uuid)
queue "$warm" 1
until [ "$(finished "$warm")" = 1 ]; do sleep 0.1; done
sleep "$settle"
before=$(rss_kb "$provider" VmRSS)

ids=()
for i in $(seq 1 "$searches"); do ids+=("$(cat /proc/sys/kernel/random/uuid)"); done
started=$(date +%s.%N)
for i in "${!ids[@]}"; do queue "${ids[$i]}" $((i % 28 + 1)) & done
wait_jobs=$(jobs -p | tail -n "$searches"); wait $wait_jobs 2>/dev/null || true
until [ "$(finished "${ids[@]}")" = "$searches" ]; do sleep 0.1; done
elapsed=$(echo "$(date +%s.%N) - $started" | bc)
peak=$(rss_kb "$provider" VmHWM)
sleep "$settle"
after=$(rss_kb "$provider" VmRSS)

metrics=$(curl -sf "http://127.0.0.1:$admin_port/metrics")
truncated=$(echo "$metrics" | awk '/^flight_search_provider_supplier_offers_truncated_total/ { s += $2 } END { print s + 0 }')
outcomes=$(echo "$metrics" | awk -F'outcome="' '/^flight_search_provider_supplier_outcomes_total\{/ { split($2, o, "\""); split($0, v, " "); n[o[1]] += v[2] } END { for (k in n) printf "%s=%d ", k, n[k] }')
printf 'searches=%s answers=%s body<=4MiB elapsed=%.1fs\n' "$searches" $((searches * 6)) "$elapsed"
printf 'provider RSS: idle before %d KiB, peak %d KiB, idle %ss after %d KiB (%.2fx before)\n' \
  "$before" "$peak" "$settle" "$after" "$(echo "$after / $before" | bc -l)"
printf 'offers cut by the bounds: %s; supplier calls by outcome: %s\n' "$truncated" "$outcomes"
