#!/usr/bin/env bash
# Supplier transport benchmark: loadgen `throughput` with the six airline APIs
# of mock-suppliers called over HTTPS with HTTP/2, over HTTPS with HTTP/1.1
# only (MOCK_HTTPS_HTTP2=false) and over plain HTTP, alternating in one run so
# the shared machine's noise falls on all three alike. Prints one line per run
# (searches/s, provider CPU-seconds per search from /proc/<pid>/stat) and the
# median of each configuration.
#
# Usage: scripts/supplier-transport-bench.sh [ROUNDS] [SEARCHES]   (defaults 3, 2000)
# Needs: cargo build --release -p main-service -p provider-service -p mock-suppliers -p loadgen
# Uses ports 6397, 18097-18099, 18443-18444, 19197 on 127.0.0.1.
set -euo pipefail

ROUNDS=${1:-3}
SEARCHES=${2:-2000}
BIN=${BIN:-target/release}
WORK=$(mktemp -d)
TICKS=$(getconf CLK_TCK)
PIDS=()

cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    redis-cli -p 6397 shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Waits until `url` answers 200, at most 10 s.
await_url() {
    for _ in $(seq 100); do
        curl -sf -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

# utime + stime of `pid`, in clock ticks (fields 14 and 15 of /proc/<pid>/stat,
# counted after the command name, which may hold spaces).
cpu_ticks() {
    sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# A private CA and a certificate for 127.0.0.1 that it signs.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=bench-ca -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
    -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 1 -extfile "$WORK/san.ext" -out "$WORK/server.pem" 2>/dev/null

# A suppliers file for the six airlines at `base` (scheme://host:port),
# trusting the private CA for https.
suppliers_file() {
    local base=$1 out=$2 ca=""
    [[ $base == https:* ]] && ca="ca_file = \"$WORK/ca.pem\""
    : >"$out"
    for airline in GA:flights JT:offers QZ:offers ID:flights QG:flights SJ:offers; do
        local code=${airline%%:*} style=${airline##*:}
        local lower
        lower=$(tr 'A-Z' 'a-z' <<<"$code")
        printf '[[supplier]]\ncode = "%s"\nstyle = "%s"\nbase_url = "%s/%s"\nairlines = ["%s"]\ncache_ttl_secs = 0\n%s\n\n' \
            "$code" "$style" "$base" "$lower" "$code" "$ca" >>"$out"
    done
}
suppliers_file https://127.0.0.1:18443 "$WORK/h2.toml"
suppliers_file https://127.0.0.1:18444 "$WORK/h1.toml"
suppliers_file http://127.0.0.1:18098 "$WORK/http.toml"

redis-server --port 6397 --save '' --appendonly no --daemonize yes --maxclients 100000 >/dev/null
REDIS_URL=redis://127.0.0.1:6397 HTTP_ADDR=127.0.0.1:18097 SEARCH_TIMEOUT_SECS=600 RUST_LOG=warn \
    "$BIN/main-service" >"$WORK/main.log" 2>&1 &
PIDS+=($!)
TLS="MOCK_TLS_CERT_FILE=$WORK/server.pem MOCK_TLS_KEY_FILE=$WORK/server.key"
env $TLS HTTP_ADDR=127.0.0.1:18098 MOCK_HTTPS_ADDR=127.0.0.1:18443 MOCK_HTTPS_HTTP2=true \
    MOCK_LATENCY_MS=0 RUST_LOG=warn "$BIN/mock-suppliers" >"$WORK/mock-h2.log" 2>&1 &
MOCK_H2=$!
PIDS+=($!)
env $TLS HTTP_ADDR=127.0.0.1:18099 MOCK_HTTPS_ADDR=127.0.0.1:18444 MOCK_HTTPS_HTTP2=false \
    MOCK_LATENCY_MS=0 RUST_LOG=warn "$BIN/mock-suppliers" >"$WORK/mock-h1.log" 2>&1 &
MOCK_H1=$!
PIDS+=($!)
await_url http://127.0.0.1:18097/readyz
await_url http://127.0.0.1:18098/healthz
await_url http://127.0.0.1:18099/healthz

# One run: a fresh provider reading the suppliers file of `config`, loadgen,
# then the provider's and the serving mock's CPU over the run.
run() {
    local config=$1 mock=$MOCK_H2
    [[ $config == h1 ]] && mock=$MOCK_H1
    REDIS_URL=redis://127.0.0.1:6397 METRICS_ADDR=127.0.0.1:19197 RUST_LOG=warn \
        SUPPLIERS_FILE="$WORK/$config.toml" "$BIN/provider-service" >"$WORK/provider.log" 2>&1 &
    local provider=$!
    PIDS+=("$provider")
    await_url http://127.0.0.1:19197/readyz
    local before after mock_before mock_after
    before=$(cpu_ticks "$provider")
    mock_before=$(cpu_ticks "$mock")
    "$BIN/loadgen" throughput --url http://127.0.0.1:18097 --redis redis://127.0.0.1:6397 \
        --searches "$SEARCHES" --concurrency 200 >"$WORK/report.json" 2>"$WORK/loadgen.log"
    after=$(cpu_ticks "$provider")
    mock_after=$(cpu_ticks "$mock")
    kill "$provider"
    wait "$provider" || true
    python3 - "$config" "$WORK/report.json" "$((after - before))" "$TICKS" "$SEARCHES" "$WORK/all.jsonl" \
        "$((mock_after - mock_before))" <<'EOF'
import json, sys
config, report, ticks, hz, searches, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
mock = int(sys.argv[7]) / hz / searches
line = [l for l in open(report) if l.startswith("{")][-1]
r = json.loads(line)
rate = r["completed_per_sec"]
cpu = ticks / hz / searches
print(f"{config:5} searches/s {rate:8.1f}  provider CPU-s/search {cpu:.6f}  mock {mock:.6f}  "
      f"lost {r['events_lost']}  errors {sum(r['errors'].values())}  load {r['load_average']}", flush=True)
with open(out, "a") as f:
    f.write(json.dumps({"config": config, "rate": rate, "cpu": cpu, "mock": mock}) + "\n")
EOF
}

for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for config in h2 h1 http; do run "$config"; done
done

python3 - "$WORK/all.jsonl" <<'EOF'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for config in ("h2", "h1", "http"):
    mine = [r for r in runs if r["config"] == config]
    med[config] = tuple(statistics.median(r[k] for r in mine) for k in ("rate", "cpu", "mock"))
    print(f"median {config:5} searches/s {med[config][0]:8.1f}  provider ms CPU/search "
          f"{med[config][1] * 1000:.3f}  mock {med[config][2] * 1000:.3f}")
for config in ("h2", "h1"):
    print(f"{config} / http: searches/s x{med[config][0] / med['http'][0]:.2f}, "
          f"provider CPU/search x{med[config][1] / med['http'][1]:.2f}")
EOF

# Every search reached the suppliers: the mocks' calls (six per search) and,
# for the HTTP/2 one, how many of them came over HTTP/2.
for mock in 18098:h2+http 18099:h1; do
    curl -s "http://127.0.0.1:${mock%%:*}/admin/suppliers" | python3 -c '
import json, sys
s = json.load(sys.stdin)
calls = sum(a["calls"] for a in s["suppliers"].values())
h2, conns = s["http2_calls"], s["connections"]
print(f"mock {sys.argv[1]}: {calls} calls, {h2} over HTTP/2, {conns} connections")
' "${mock##*:}"
done
