#!/usr/bin/env bash
# Every suite, as docs/testing.md describes: one build of everything the
# suites run (the service binaries they start and the suites themselves), the
# whole workspace against a single redis-server, the end-to-end and fault suites again against a local Redis Cluster (the cases
# that need only one node or a long flood left out), the API fuzzing, then the
# deployment files (Prometheus rules and their tests, Kubernetes manifests).
# Every step runs even when an earlier one failed, so one run shows every
# failure; the script then exits non-zero, naming the steps that failed. Only
# a failed build stops it at once (nothing after it could run).
set -uo pipefail
cd "$(dirname "$0")/.."

# --all-targets, not --bins: the suites' dev-dependencies turn on features of
# shared crates (tokio's test-util, hyper-util's client), and a --bins build
# without them would compile those crates, and all above them, a second time
# when nextest builds the suites.
cargo build --workspace --all-targets || exit 1

failed=()
step() { # step NAME COMMAND...: runs the command, remembering NAME if it fails
    local name="$1"; shift
    "$@" || failed+=("$name")
}
step "workspace suites" cargo nextest run --workspace --no-fail-fast
# --workspace with a filter, not -p test-support: the same features as the step
# above, so nothing is compiled again.
step "cluster suites" env FLIGHT_SEARCH_REDIS=cluster cargo nextest run --workspace --no-fail-fast \
  -E '(binary(e2e) | binary(faults)) and not test(on_a_cluster) and not test(a_thousand) and not test(500_searches)'
step "API fuzzing" scripts/api-fuzz.sh
step "deployment files" scripts/check-deploy.sh

if [ ${#failed[@]} -gt 0 ]; then
  printf 'scripts/test.sh: failed: %s\n' "${failed[*]}" >&2
  exit 1
fi
