#!/usr/bin/env bash
# End-to-end test of the compose stack, in one command:
#   1. base images (stand-ins built when no registry is reachable)
#   2. build and start redis + main-service + provider-service + mock-suppliers,
#      wait until healthy
#   3. run the end-to-end suite against it (FLIGHT_SEARCH_URL, REDIS_URL), and
#      check that the providers reached every airline on mock-suppliers over HTTP
#   4. scale provider-service to 3 replicas, wait, run the suite again
#   5. tear that stack down; build and start docker-compose.cluster.yml (a Redis
#      Cluster of six nodes, two main-service replicas behind nginx, three
#      providers), run the suite through nginx (FLIGHT_SEARCH_URL) with the
#      replicas' and the nodes' container addresses (FLIGHT_SEARCH_INSTANCES,
#      REDIS_CLUSTER_NODES: routable from a Linux host), and check that more
#      than one replica accepted searches and every master wrote result events
#   6. always: save the logs, tear down (containers, network, volumes, images)
#
# Environment:
#   E2E_CMD               the suite command (default below)
#   HTTP_PORT             host port for main-service, and for nginx in the
#                         cluster stack (default: a free one on 127.0.0.1 each)
#   COMPOSE_TEST_PROJECT  compose project name (default flight-search-test;
#                         the cluster stack's is the same with -cluster)
#   PROVIDER_REPLICAS     replicas for the second run (default 3)
#   HEALTH_TIMEOUT        seconds to wait for healthy containers (default 240)
#   TEST_MOCK_LATENCY_MS  supplier latency in the test stack (default 20-150)
set -euo pipefail

# The workspace's feature set, as scripts/test.sh builds it: after that
# script (as in CI) the suite starts without compiling anything again.
E2E_CMD="${E2E_CMD:-cargo nextest run --workspace -E 'binary(e2e)' --no-fail-fast}"
PROJECT="${COMPOSE_TEST_PROJECT:-flight-search-test}"
CLUSTER_PROJECT="$PROJECT-cluster"
REPLICAS="${PROVIDER_REPLICAS:-3}"
HEALTH_TIMEOUT="${HEALTH_TIMEOUT:-240}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOG_DIR="$ROOT/artifacts/compose-test"
mkdir -p "$LOG_DIR"

log() { printf '[compose-test] %s\n' "$*" >&2; }
die() { printf '[compose-test] error: %s\n' "$*" >&2; exit 1; }

if docker compose version >/dev/null 2>&1; then
    COMPOSE_BIN=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    COMPOSE_BIN=(docker-compose)
else
    die "neither 'docker compose' nor 'docker-compose' is installed"
fi
docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"
compose() {
    "${COMPOSE_BIN[@]}" -p "$PROJECT" -f docker-compose.yml -f scripts/compose.test.yml "$@"
}
# Compose v1 refuses the cluster file's top-level `name:` (it predates it);
# the project is named with -p either way.
COMPOSE_V1=0
[[ "$("${COMPOSE_BIN[@]}" version --short 2>/dev/null)" == 1.* ]] && COMPOSE_V1=1
cluster_compose() {
    if (( COMPOSE_V1 )); then
        sed '/^name:/d' docker-compose.cluster.yml \
            | "${COMPOSE_BIN[@]}" -p "$CLUSTER_PROJECT" --project-directory "$ROOT" -f - "$@"
    else
        "${COMPOSE_BIN[@]}" -p "$CLUSTER_PROJECT" -f docker-compose.cluster.yml "$@"
    fi
}

# --- timings -------------------------------------------------------------------
TIMINGS=()
T_START=$SECONDS
phase_start=$SECONDS
phase() { # phase NAME: ends the current phase under NAME
    TIMINGS+=("$(printf '%-34s %4ds' "$1" $((SECONDS - phase_start)))")
    phase_start=$SECONDS
}

# --- teardown, always -------------------------------------------------------------
# save_logs COMPOSE_FN PREFIX: a running project's state and logs into
# $LOG_DIR/PREFIXps.txt and $LOG_DIR/PREFIXstack.log
save_logs() {
    local project="$1" prefix="$2"
    [[ -n "$("$project" ps -q 2>/dev/null)" ]] || return 0
    "$project" ps >"$LOG_DIR/${prefix}ps.txt" 2>&1
    "$project" logs --no-color --timestamps >"$LOG_DIR/${prefix}stack.log" 2>&1
}
# remove COMPOSE_FN [ARGS]: the project's containers, network and volumes
remove() {
    local project="$1"; shift
    "$project" down -v --remove-orphans "$@" >>"$LOG_DIR/down.log" 2>&1 \
        || { log "$project down failed:"; cat "$LOG_DIR/down.log" >&2; }
}

RESULT=1
teardown() {
    local rc=$?
    set +e
    if [[ $rc -eq 0 && $RESULT -ne 0 ]]; then rc=1; fi
    phase_start=$SECONDS
    log "saving logs to ${LOG_DIR#"$ROOT"/}/ and tearing down projects $PROJECT and $CLUSTER_PROJECT"
    save_logs compose ""
    save_logs cluster_compose "cluster-"
    remove compose --rmi local
    remove cluster_compose --rmi local
    # The classic builder also leaves the other service's final stage behind,
    # untagged; the build cache of the builder stages stays.
    docker image prune -f --filter label=org.opencontainers.image.title=flight-search \
        >>"$LOG_DIR/down.log" 2>&1
    phase "teardown"
    TIMINGS+=("$(printf '%-34s %4ds' total $((SECONDS - T_START)))")
    log "timings:"
    printf '    %s\n' "${TIMINGS[@]}" >&2
    if [[ $rc -eq 0 ]]; then log "PASSED"; else log "FAILED (exit $rc)"; fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# --- 1. base images ----------------------------------------------------------------
"$ROOT/.ci/standin-images.sh"
phase "base images"

# Leftovers of an interrupted earlier run of the same projects.
compose down -v --remove-orphans >/dev/null 2>&1 || true
cluster_compose down -v --remove-orphans >/dev/null 2>&1 || true
: >"$LOG_DIR/down.log"

# --- 2. build and start -------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
FIXED_HTTP_PORT="${HTTP_PORT:-}"
HTTP_PORT="${FIXED_HTTP_PORT:-127.0.0.1:$(free_port)}"
export HTTP_PORT
log "building images (${COMPOSE_BIN[*]} build)"
compose build >"$LOG_DIR/build.log" 2>&1 || { tail -n 60 "$LOG_DIR/build.log" >&2; die "image build failed"; }
phase "image build"

# wait_healthy COMPOSE_FN N_PROVIDERS: every container of the project running
# and healthy, or (a one-shot container, restart policy "no") exited with 0
wait_healthy() {
    local project="$1" want_providers="$2" deadline=$((SECONDS + HEALTH_TIMEOUT)) ids id state bad n
    while :; do
        ids="$("$project" ps -q 2>/dev/null)"
        bad="" n=0
        for id in $ids; do
            state="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}} {{.State.ExitCode}} {{.HostConfig.RestartPolicy.Name}}' "$id" 2>/dev/null)" || continue
            case "$state" in
                *" running healthy "*) ;;
                *" running none "*) ;;
                *" exited none 0 no") ;;
                *" exited "*|*" dead "*|*" restarting "*)
                    log "container not running: $state"; "$project" logs --no-color --tail=40 >&2; return 1 ;;
                *) bad+=" ${state%% *}" ;;
            esac
            [[ "$state" == *provider-service* ]] && n=$((n + 1))
        done
        if [[ -n "$ids" && -z "$bad" && $n -ge $want_providers ]]; then return 0; fi
        if (( SECONDS >= deadline )); then
            log "not healthy after ${HEALTH_TIMEOUT}s:$bad"
            "$project" ps >&2; "$project" logs --no-color --tail=60 >&2
            return 1
        fi
        sleep 1
    done
}

# container_ips COMPOSE_FN SERVICE: the address of each of the service's
# containers on the project's network, one per line
container_ips() {
    local id
    for id in $("$1" ps -q "$2"); do
        docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{"\n"}}{{end}}' "$id" | head -n1
    done
}

# every_airline_called URL: mock-suppliers at URL was called for each airline
every_airline_called() {
    local state
    state="$(curl -fsS "$1/admin/suppliers")" || { log "mock-suppliers $1/admin/suppliers does not answer"; return 1; }
    if python3 -c 'import json,sys; s=json.load(sys.stdin)["suppliers"]; sys.exit(0 if all(a["calls"] > 0 for a in s.values()) else 1)' \
        <<<"$state"; then
        log "every airline on mock-suppliers was called over HTTP"
    else
        log "an airline on mock-suppliers was never called: $state"
        return 1
    fi
}

log "starting the stack"
compose up -d --no-build >"$LOG_DIR/up.log" 2>&1 || { cat "$LOG_DIR/up.log" >&2; die "compose up failed"; }
wait_healthy compose 1 || die "stack did not become healthy"
phase "start + healthy (1 provider)"

main_port="$(compose port main-service 8080 | tail -n1)"
redis_port="$(compose port redis 6379 | tail -n1)"
[[ -n "$main_port" && -n "$redis_port" ]] || die "could not read published ports"
export FLIGHT_SEARCH_URL="http://127.0.0.1:${main_port##*:}"
export REDIS_URL="redis://127.0.0.1:${redis_port##*:}"
log "FLIGHT_SEARCH_URL=$FLIGHT_SEARCH_URL REDIS_URL=$REDIS_URL"

deadline=$((SECONDS + 60))
until curl -fsS -o /dev/null "$FLIGHT_SEARCH_URL/healthz"; do
    (( SECONDS < deadline )) || die "$FLIGHT_SEARCH_URL/healthz does not answer 200"
    sleep 1
done

# --- 3./4. the suite, with 1 and with N providers ------------------------------------
FAILED=()
run_suite() { # run_suite LABEL
    log "suite ($1): $E2E_CMD"
    if bash -c "$E2E_CMD"; then
        log "suite ($1): passed"
    else
        log "suite ($1): FAILED"
        FAILED+=("$1")
    fi
}

run_suite "1 provider"
phase "suite, 1 provider"

# The searches went through the airline APIs over HTTP, not a simulation.
mock_port="$(compose port mock-suppliers 8090 | tail -n1)"
every_airline_called "http://127.0.0.1:${mock_port##*:}" || FAILED+=("supplier calls")

log "scaling provider-service to $REPLICAS"
compose up -d --no-build --scale provider-service="$REPLICAS" >>"$LOG_DIR/up.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/up.log" >&2; die "scaling failed"; }
wait_healthy compose "$REPLICAS" || die "scaled stack did not become healthy"
phase "scale + healthy ($REPLICAS providers)"

run_suite "$REPLICAS providers"
phase "suite, $REPLICAS providers"

# --- 5. the cluster stack behind nginx -----------------------------------------------
# Its images stay until the end: the cluster stack's are built from the same cache.
log "tearing down $PROJECT"
save_logs compose ""
remove compose
phase "teardown (single Redis)"

HTTP_PORT="${FIXED_HTTP_PORT:-127.0.0.1:$(free_port)}"
log "building the cluster stack's images"
MOCK_LATENCY_MS="${TEST_MOCK_LATENCY_MS:-20-150}" cluster_compose build >>"$LOG_DIR/build.log" 2>&1 \
    || { tail -n 60 "$LOG_DIR/build.log" >&2; die "cluster image build failed"; }
phase "image build (cluster)"
log "starting the cluster stack"
MOCK_LATENCY_MS="${TEST_MOCK_LATENCY_MS:-20-150}" cluster_compose up -d --no-build >>"$LOG_DIR/up.log" 2>&1 \
    || { tail -n 40 "$LOG_DIR/up.log" >&2; die "cluster compose up failed"; }
wait_healthy cluster_compose 3 || die "cluster stack did not become healthy"
phase "start + healthy (cluster)"

nginx_port="$(cluster_compose port nginx 80 | tail -n1)"
mapfile -t main_ips < <(container_ips cluster_compose main-service)
redis_seeds=()
for n in 1 2 3 4 5 6; do
    redis_seeds+=("redis://$(container_ips cluster_compose "redis-$n"):6379")
done
mock_ip="$(container_ips cluster_compose mock-suppliers)"
(( ${#main_ips[@]} >= 2 )) || die "expected 2 or more main-service replicas, found ${#main_ips[@]}"
export FLIGHT_SEARCH_URL="http://127.0.0.1:${nginx_port##*:}"
FLIGHT_SEARCH_INSTANCES="$(printf 'http://%s:8080,' "${main_ips[@]}")"
export FLIGHT_SEARCH_INSTANCES="${FLIGHT_SEARCH_INSTANCES%,}"
REDIS_CLUSTER_NODES="$(IFS=,; echo "${redis_seeds[*]}")"
export REDIS_CLUSTER_NODES
unset REDIS_URL
log "FLIGHT_SEARCH_URL=$FLIGHT_SEARCH_URL FLIGHT_SEARCH_INSTANCES=$FLIGHT_SEARCH_INSTANCES"
log "REDIS_CLUSTER_NODES=$REDIS_CLUSTER_NODES"
# The suite talks to the replicas and every cluster node directly.
curl -fsS -o /dev/null --max-time 5 "http://${main_ips[0]}:8080/healthz" \
    || die "container addresses are not reachable from this host (the suite needs them; see docker-compose.cluster.yml)"
curl -fsS -o /dev/null "$FLIGHT_SEARCH_URL/readyz" || die "$FLIGHT_SEARCH_URL/readyz does not answer 200 through nginx"

run_suite "cluster, behind nginx"
phase "suite, cluster behind nginx"

every_airline_called "http://$mock_ip:8090" || FAILED+=("supplier calls (cluster)")

# More than one replica accepted searches through nginx.
serving=0
for ip in "${main_ips[@]}"; do
    submitted="$(curl -fsS "http://$ip:8080/metrics" \
        | sed -n 's/^flight_search_searches_submitted_total \([0-9.e+]*\)$/\1/p')"
    log "main-service at $ip accepted ${submitted:-no} searches"
    [[ -n "$submitted" ]] && python3 -c "import sys; sys.exit(0 if float('$submitted') > 0 else 1)" \
        && serving=$((serving + 1))
done
if (( serving >= 2 )); then
    log "$serving main-service replicas accepted searches through nginx"
else
    log "only $serving main-service replica accepted searches through nginx"
    FAILED+=("replicas behind nginx")
fi
cluster_compose logs --no-color nginx 2>/dev/null | grep -o 'upstream=[^ ]*' | sort | uniq -c \
    | sed 's/^/[compose-test] nginx requests per /' >&2 || true

# Every master wrote result events (XADD, inside the append script) and holds keys.
redis_container="$(cluster_compose ps -q redis-1)"
masters="$(docker exec "$redis_container" redis-cli cluster nodes \
    | awk '$3 ~ /master/ && $3 !~ /fail/ && NF > 8 {split($2, a, "@"); print a[1]}')"
reached=0
for master in $masters; do
    host="${master%:*}" port="${master##*:}"
    xadds="$(docker exec "$redis_container" redis-cli -h "$host" -p "$port" info commandstats \
        | sed -n 's/^cmdstat_xadd:calls=\([0-9]*\),.*/\1/p' | tr -d '\r')"
    keys="$(docker exec "$redis_container" redis-cli -h "$host" -p "$port" dbsize | tr -d '\r')"
    log "master $master: ${xadds:-0} XADDs, ${keys:-0} keys"
    (( ${xadds:-0} > 0 && ${keys:-0} > 0 )) && reached=$((reached + 1))
done
if (( reached == 3 )); then
    log "the searches reached all three masters"
else
    log "the searches reached $reached of the masters ($(wc -w <<<"$masters") serving slots), not all three"
    FAILED+=("cluster masters")
fi
phase "checks (cluster)"

if (( ${#FAILED[@]} )); then
    log "failed runs: ${FAILED[*]}"
    exit 1
fi
RESULT=0
