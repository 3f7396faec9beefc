#!/usr/bin/env bash
# End-to-end test of the compose stack, in one command:
#   1. base images (stand-ins built when no registry is reachable)
#   2. build and start redis + main-service + provider-service + mock-suppliers,
#      wait until healthy
#   3. run the end-to-end suite against it (FLIGHT_SEARCH_URL, REDIS_URL), and
#      check that the providers reached every airline on mock-suppliers over HTTP
#   4. scale provider-service to 3 replicas, wait, run the suite again
#   5. always: save the logs, tear down (containers, network, volumes, images)
#
# Environment:
#   E2E_CMD               the suite command (default below)
#   HTTP_PORT             host port for main-service (default: a free one on 127.0.0.1)
#   COMPOSE_TEST_PROJECT  compose project name (default flight-search-test)
#   PROVIDER_REPLICAS     replicas for the second run (default 3)
#   HEALTH_TIMEOUT        seconds to wait for healthy containers (default 240)
#   TEST_MOCK_LATENCY_MS  supplier latency in the test stack (default 20-150)
set -euo pipefail

E2E_CMD="${E2E_CMD:-cargo nextest run -p tests --test e2e --no-fail-fast}"
PROJECT="${COMPOSE_TEST_PROJECT:-flight-search-test}"
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

# --- timings -------------------------------------------------------------------
TIMINGS=()
T_START=$SECONDS
phase_start=$SECONDS
phase() { # phase NAME: ends the current phase under NAME
    TIMINGS+=("$(printf '%-34s %4ds' "$1" $((SECONDS - phase_start)))")
    phase_start=$SECONDS
}

# --- teardown, always -------------------------------------------------------------
RESULT=1
teardown() {
    local rc=$?
    set +e
    if [[ $rc -eq 0 && $RESULT -ne 0 ]]; then rc=1; fi
    phase_start=$SECONDS
    log "saving logs to ${LOG_DIR#"$ROOT"/}/ and tearing down project $PROJECT"
    compose ps >"$LOG_DIR/ps.txt" 2>&1
    compose logs --no-color --timestamps >"$LOG_DIR/stack.log" 2>&1
    compose down -v --remove-orphans --rmi local >"$LOG_DIR/down.log" 2>&1 \
        || { log "compose down failed:"; cat "$LOG_DIR/down.log" >&2; }
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

# Leftovers of an interrupted earlier run of the same project.
compose down -v --remove-orphans >/dev/null 2>&1 || true

# --- 2. build and start -------------------------------------------------------------
if [[ -z "${HTTP_PORT:-}" ]]; then
    HTTP_PORT="127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
fi
export HTTP_PORT
log "building images (${COMPOSE_BIN[*]} build)"
compose build >"$LOG_DIR/build.log" 2>&1 || { tail -n 60 "$LOG_DIR/build.log" >&2; die "image build failed"; }
phase "image build"

# wait_healthy N_PROVIDERS: every container of the project running and healthy
wait_healthy() {
    local want_providers="$1" deadline=$((SECONDS + HEALTH_TIMEOUT)) ids id state bad n
    while :; do
        ids="$(compose ps -q 2>/dev/null)"
        bad="" n=0
        for id in $ids; do
            state="$(docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$id" 2>/dev/null)" || continue
            case "$state" in
                *" running healthy") ;;
                *" running none") ;;
                *" exited "*|*" dead "*|*" restarting "*)
                    log "container not running: $state"; compose logs --no-color --tail=40 >&2; return 1 ;;
                *) bad+=" ${state%% *}" ;;
            esac
            [[ "$state" == *provider-service* ]] && n=$((n + 1))
        done
        if [[ -n "$ids" && -z "$bad" && $n -ge $want_providers ]]; then return 0; fi
        if (( SECONDS >= deadline )); then
            log "not healthy after ${HEALTH_TIMEOUT}s:$bad"
            compose ps >&2; compose logs --no-color --tail=60 >&2
            return 1
        fi
        sleep 1
    done
}

log "starting the stack"
compose up -d --no-build >"$LOG_DIR/up.log" 2>&1 || { cat "$LOG_DIR/up.log" >&2; die "compose up failed"; }
wait_healthy 1 || die "stack did not become healthy"
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
suppliers_state="$(curl -fsS "http://127.0.0.1:${mock_port##*:}/admin/suppliers")" \
    || die "mock-suppliers /admin/suppliers does not answer"
if python3 -c 'import json,sys; s=json.load(sys.stdin)["suppliers"]; sys.exit(0 if all(a["calls"] > 0 for a in s.values()) else 1)' \
    <<<"$suppliers_state"; then
    log "every airline on mock-suppliers was called over HTTP"
else
    log "an airline on mock-suppliers was never called: $suppliers_state"
    FAILED+=("supplier calls")
fi

log "scaling provider-service to $REPLICAS"
compose up -d --no-build --scale provider-service="$REPLICAS" >>"$LOG_DIR/up.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/up.log" >&2; die "scaling failed"; }
wait_healthy "$REPLICAS" || die "scaled stack did not become healthy"
phase "scale + healthy ($REPLICAS providers)"

run_suite "$REPLICAS providers"
phase "suite, $REPLICAS providers"

if (( ${#FAILED[@]} )); then
    log "failed runs: ${FAILED[*]}"
    exit 1
fi
RESULT=0
