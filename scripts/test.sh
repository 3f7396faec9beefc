#!/usr/bin/env bash
# Every suite, as README.md's "Tests" section describes: the binaries the
# suites start, the whole workspace against a single redis-server, the
# end-to-end and fault suites again against a local Redis Cluster (the cases
# that need only one node or a long flood left out), the API fuzzing, then the
# deployment files (Prometheus rules and their tests, Kubernetes manifests).
# Stops at the first step that fails, with its exit status.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins
cargo nextest run --workspace
FLIGHT_SEARCH_REDIS=cluster cargo nextest run -p tests --test e2e --test faults \
  -E 'not test(on_a_cluster) and not test(a_thousand) and not test(500_searches)'
scripts/api-fuzz.sh
scripts/check-deploy.sh
