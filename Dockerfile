# One Dockerfile for every service image. The build stages are shared, so the
# dependency layer and the workspace compile happen once for both images; the
# image for each service is its own final stage:
#
#   docker build --target main-service     -t flight-search/main-service .
#   docker build --target provider-service -t flight-search/provider-service .
#   docker build --target mock-suppliers   -t flight-search/mock-suppliers .
#
# Works with BuildKit and with the classic builder (no RUN --mount, no heredocs).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---- planner: reduce the workspace to manifests + stub sources -----------------
# Its output changes only when a manifest, the lock file or the set of targets
# changes, so the dependency layer below stays cached across source edits.
# Every target of every member (lib, bin, test, bench, example, build script)
# gets a stub at its real path, so all manifests load as they are; fixed mtimes
# make the skeleton byte-identical from one build to the next.
FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
RUN set -eu; \
    mkdir -p /skeleton; \
    find . -path ./target -prune -o \
        \( -name Cargo.toml -o -name Cargo.lock -o -name rust-toolchain -o -name rust-toolchain.toml \
           -o -path './.cargo/config.toml' -o -path './.cargo/config' \) -type f -print \
        > /tmp/manifests; \
    while read -r f; do mkdir -p "/skeleton/$(dirname "$f")"; cp "$f" "/skeleton/$f"; done < /tmp/manifests; \
    cargo metadata --no-deps --offline --format-version 1 > /tmp/metadata.json; \
    grep -o '"src_path":"[^"]*"' /tmp/metadata.json | sed 's/^"src_path":"\/src\///; s/"$//' | sort -u > /tmp/targets; \
    test -s /tmp/targets; \
    while read -r f; do \
        mkdir -p "/skeleton/$(dirname "$f")"; \
        printf '#![allow(missing_docs, dead_code)]\nfn main() {}\n' > "/skeleton/$f"; \
    done < /tmp/targets; \
    find /skeleton -exec touch -h -d @0 {} +

# ---- builder ---------------------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
WORKDIR /app
ENV CARGO_TERM_COLOR=never \
    CARGO_INCREMENTAL=0
# Dependencies only (cached until a manifest or Cargo.lock changes).
COPY --from=planner /skeleton/ ./
RUN cargo build --release --locked -p main-service -p provider-service -p mock-suppliers
# The real sources. Fresh mtimes so cargo rebuilds the stubbed workspace crates.
COPY . .
RUN find . -path ./target -prune -o -name '*.rs' -exec touch {} + \
    && cargo build --release --locked -p main-service -p provider-service -p mock-suppliers \
    && mkdir -p /out \
    && cp target/release/main-service target/release/provider-service \
        target/release/mock-suppliers /out/

# ---- runtime base: no compilers, no package manager caches, non-root ----------
FROM ${RUNTIME_IMAGE} AS runtime
# ca-certificates: the system roots that rediss:// checks a server against
# when REDIS_CA_FILE is not set (managed Redis services).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
    && mkdir /partner-pki && chown 10001:10001 /partner-pki
# /partner-pki: the compose stack's demo partner CA and credentials, made by
# mock-suppliers at its first start; a new named volume mounted here takes
# this directory's owner, so the non-root services can write and read it.
USER 10001:10001
WORKDIR /
# Marks this project's runtime images (scripts/compose-test.sh cleans up by it).
LABEL org.opencontainers.image.title="flight-search"

# ---- provider-service ----------------------------------------------------------
FROM runtime AS provider-service
COPY --from=builder /out/provider-service /usr/local/bin/provider-service
EXPOSE 9091
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/provider-service", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/provider-service"]

# ---- mock-suppliers: the airline APIs the providers call in compose -----------
FROM runtime AS mock-suppliers
COPY --from=builder /out/mock-suppliers /usr/local/bin/mock-suppliers
EXPOSE 8090
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/mock-suppliers", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/mock-suppliers"]

# ---- main-service (last, so a plain `docker build .` gives the API) ------------
FROM runtime AS main-service
COPY --from=builder /out/main-service /usr/local/bin/main-service
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/main-service", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/main-service"]
