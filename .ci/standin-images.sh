#!/usr/bin/env bash
# Make sure the base images that the Dockerfile and docker-compose.yml name exist
# locally. When one is missing and cannot be pulled (a machine with no image
# registry), build a local stand-in under exactly that name:
#
#   debian:bookworm-slim   a debootstrap'd bookworm minbase root, trimmed like -slim
#   redis:7-bookworm       that root + Debian's redis-server/redis-tools, with an
#                          entrypoint that behaves like the official image's
#   rust:<ver>-bookworm    that root + gcc/libc6-dev + this machine's own Rust
#                          toolchain, laid out like the official image
#
# Nothing here is needed where the official images can be pulled; the Dockerfile
# and the compose file are the same either way. Idempotent: an image that already
# exists is left alone, and the debootstrap'd root is cached in $STANDIN_CACHE.
#
# Environment:
#   STANDIN_CACHE   cache directory (default /var/cache/flight-search-standins)
#   DEBIAN_MIRROR   Debian mirror (default: the host's apt mirror, else deb.debian.org)
#   PULL_TIMEOUT    seconds to try `docker pull` before building a stand-in (default 20)
#   STANDIN_FORCE=1 rebuild the stand-ins even if images of those names exist
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DOCKERFILE="$ROOT/Dockerfile"
COMPOSE_FILE="$ROOT/docker-compose.yml"
CACHE="${STANDIN_CACHE:-/var/cache/flight-search-standins}"
PULL_TIMEOUT="${PULL_TIMEOUT:-20}"
SUITE=bookworm

log() { printf '[standin] %s\n' "$*" >&2; }
die() { printf '[standin] error: %s\n' "$*" >&2; exit 1; }

# --- which images are needed ---------------------------------------------------
# Defaults of `ARG NAME=image` lines in the Dockerfile, and redis from compose.
arg_default() { sed -n "s/^ARG $1=\\(.*\\)$/\\1/p" "$DOCKERFILE" | head -n1 | tr -d '"'; }
RUST_IMAGE="$(arg_default RUST_IMAGE)"
RUNTIME_IMAGE="$(arg_default RUNTIME_IMAGE)"
REDIS_IMAGE="$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(redis:[^[:space:]]*\).*$/\1/p' "$COMPOSE_FILE" | head -n1 | tr -d '"')"
: "${RUST_IMAGE:?no ARG RUST_IMAGE=... in $DOCKERFILE}"
: "${RUNTIME_IMAGE:?no ARG RUNTIME_IMAGE=... in $DOCKERFILE}"
: "${REDIS_IMAGE:?no image: redis:... in $COMPOSE_FILE}"
DEBIAN_IMAGE="$RUNTIME_IMAGE"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

try_pull() {
    log "trying: docker pull $1 (timeout ${PULL_TIMEOUT}s)"
    timeout "$PULL_TIMEOUT" docker pull -q "$1" >/dev/null 2>&1
}

# needed IMAGE -> 0 when a stand-in must be built
needed() {
    if [[ "${STANDIN_FORCE:-0}" == 1 ]]; then return 0; fi
    if have_image "$1"; then log "$1: present"; return 1; fi
    if try_pull "$1"; then log "$1: pulled"; return 1; fi
    log "$1: missing and not pullable, building a stand-in"
    return 0
}

NEED_DEBIAN=0 NEED_REDIS=0 NEED_RUST=0
needed "$DEBIAN_IMAGE" && NEED_DEBIAN=1
needed "$REDIS_IMAGE" && NEED_REDIS=1
needed "$RUST_IMAGE" && NEED_RUST=1
if (( NEED_DEBIAN + NEED_REDIS + NEED_RUST == 0 )); then
    log "all base images present"
    exit 0
fi

[[ $EUID -eq 0 ]] || die "building stand-ins needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || {
    log "installing debootstrap"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
}

if [[ -z "${DEBIAN_MIRROR:-}" ]]; then
    DEBIAN_MIRROR="$(grep -rhoE '^(URIs:|deb)[[:space:]]+[^[:space:]]*://[^[:space:]]+/debian/?' \
        /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)"
    DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
fi
DEBIAN_MIRROR="${DEBIAN_MIRROR%/}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-${DEBIAN_MIRROR}-security}"

mkdir -p "$CACHE"
BASE_TAR="$CACHE/$SUITE-minbase.tar"
WORK="$(mktemp -d "$CACHE/work.XXXXXX")"
MOUNTED=()
cleanup() {
    local m
    for m in "${MOUNTED[@]}"; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# --- the bookworm root (cached) ------------------------------------------------
build_base_tar() {
    local dir="$WORK/base" t0=$SECONDS
    log "debootstrap --variant=minbase $SUITE from $DEBIAN_MIRROR (cached in $BASE_TAR)"
    debootstrap --variant=minbase "$SUITE" "$dir" "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # Same apt sources as the official image (deb822 format).
    rm -f "$dir/etc/apt/sources.list"
    cat >"$dir/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # Trim like debian:*-slim and clean apt caches like the official images.
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$dir/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$dir/etc/apt/apt.conf.d/docker-no-languages"
    find "$dir/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
    find "$dir/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
    rm -rf "$dir"/usr/share/{man,info,groff,lintian,linda}/* "$dir"/var/cache/apt/*.bin \
        "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/* \
        "$dir"/tmp/* "$dir"/root/.bash_history
    find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    : >"$dir/etc/resolv.conf"
    echo localhost >"$dir/etc/hostname"
    tar --numeric-owner --xattrs -C "$dir" -cf "$BASE_TAR.tmp" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$dir"
    log "debootstrap + trim took $((SECONDS - t0))s ($(du -h "$BASE_TAR" | cut -f1))"
}

# unpack the cached root into a fresh directory
fresh_root() {
    local dir="$WORK/$1"
    mkdir -p "$dir"
    tar --numeric-owner --xattrs -C "$dir" -xf "$BASE_TAR"
    echo "$dir"
}

# chroot_apt DIR PKG... : install Debian packages into DIR
chroot_apt() {
    local dir="$1"; shift
    cp /etc/resolv.conf "$dir/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod +x "$dir/usr/sbin/policy-rc.d"
    mount -t proc proc "$dir/proc" && MOUNTED+=("$dir/proc")
    mount --rbind /dev "$dir/dev" && mount --make-rslave "$dir/dev" && MOUNTED+=("$dir/dev")
    chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
        sh -c 'apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"' sh "$@" \
        >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; die "apt-get install $* failed"; }
    umount -l "$dir/dev"; umount -l "$dir/proc"
    MOUNTED=()
    rm -f "$dir/usr/sbin/policy-rc.d"
    rm -rf "$dir"/var/lib/apt/lists/* "$dir"/var/cache/apt/*.bin "$dir"/var/log/apt/* "$dir"/var/log/dpkg.log
    : >"$dir/etc/resolv.conf"
}

# import DIR IMAGE --change ... : docker import a root directory
import_root() {
    local dir="$1" image="$2"; shift 2
    tar --numeric-owner --xattrs -C "$dir" -c \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' . \
        | docker import "$@" - "$image" >/dev/null
    log "$image: stand-in built ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
}

if [[ ! -s "$BASE_TAR" ]]; then build_base_tar; else log "reusing cached root $BASE_TAR"; fi

DEB_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if (( NEED_DEBIAN )); then
    t0=$SECONDS
    docker import --change "ENV PATH=$DEB_PATH" --change 'CMD ["bash"]' "$BASE_TAR" "$DEBIAN_IMAGE" >/dev/null
    log "$DEBIAN_IMAGE: stand-in built in $((SECONDS - t0))s"
fi

if (( NEED_REDIS )); then
    t0=$SECONDS
    dir="$(fresh_root redis)"
    chroot_apt "$dir" redis-server redis-tools
    # Like the official image: work in /data as user redis, protected mode off
    # (the official build compiles that default in), `docker run IMAGE --opt`
    # means `redis-server --opt`.
    mkdir -p "$dir/data"
    chroot "$dir" chown redis:redis /data
    cat >"$dir/usr/local/bin/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = redis-server ]; then
    shift
    if [ "${1%.conf}" != "${1:-}" ]; then
        conf="$1"; shift
        set -- redis-server "$conf" --protected-mode no "$@"
    else
        set -- redis-server --protected-mode no "$@"
    fi
fi
exec "$@"
EOF
    chmod 755 "$dir/usr/local/bin/docker-entrypoint.sh"
    import_root "$dir" "$REDIS_IMAGE" \
        --change "ENV PATH=$DEB_PATH" \
        --change 'WORKDIR /data' \
        --change 'VOLUME /data' \
        --change 'EXPOSE 6379' \
        --change 'USER redis' \
        --change 'ENTRYPOINT ["docker-entrypoint.sh"]' \
        --change 'CMD ["redis-server"]'
    rm -rf "$dir"
    log "$REDIS_IMAGE: $((SECONDS - t0))s"
fi

if (( NEED_RUST )); then
    t0=$SECONDS
    command -v rustc >/dev/null || die "no host Rust toolchain (rustc) to copy into $RUST_IMAGE"
    sysroot="$(rustc --print sysroot)"
    rust_version="$(rustc --version | awk '{print $2}')"
    host_triple="$(rustc -vV | sed -n 's/^host: //p')"
    want="${RUST_IMAGE#rust:}"; want="${want%%-*}"
    case "$rust_version" in
        "$want"|"$want".*) ;;
        *) [[ "$want" =~ ^[0-9] ]] && log "warning: $RUST_IMAGE stand-in gets the host's rustc $rust_version" ;;
    esac
    dir="$(fresh_root rust)"
    # What the official image (buildpack-deps) provides that builds need.
    chroot_apt "$dir" ca-certificates gcc libc6-dev make pkg-config
    tc="$dir/usr/local/rustup/toolchains/$rust_version-$host_triple"
    mkdir -p "$tc" "$dir/usr/local/cargo/bin"
    # The toolchain without its HTML docs and rust-src.
    tar -C "$sysroot" -c --exclude=./share/doc --exclude=./lib/rustlib/src . | tar -C "$tc" -x
    for b in "$tc"/bin/*; do
        ln -s "../../rustup/toolchains/$rust_version-$host_triple/bin/$(basename "$b")" \
            "$dir/usr/local/cargo/bin/$(basename "$b")"
    done
    # Crates come from crates.io as usual. If this host reaches it through a
    # TLS-inspecting gateway or a proxy, the image gets the host's extra CA
    # certificates and the proxy setting (stand-in only).
    host_bundle="${CARGO_HTTP_CAINFO:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
    if [[ -f "$host_bundle" ]]; then
        extra="$(awk -v out="$dir/usr/local/share/ca-certificates" '
            FNR == 1 { file++ }
            /-----BEGIN CERTIFICATE-----/ { inc = 1; body = ""; pem = $0 "\n"; next }
            inc {
                pem = pem $0 "\n"
                if ($0 ~ /-----END CERTIFICATE-----/) {
                    inc = 0
                    if (file == 1) seen[body] = 1
                    else if (!(body in seen)) {
                        n++; fn = sprintf("%s/host-extra-%d.crt", out, n)
                        printf "%s", pem > fn; close(fn)
                    }
                } else body = body $0
            }
            END { print n + 0 }' "$dir/etc/ssl/certs/ca-certificates.crt" "$host_bundle")"
        if (( extra > 0 )); then
            chroot "$dir" update-ca-certificates >/dev/null 2>&1
            log "added $extra CA certificate(s) this host trusts beyond Debian's to $RUST_IMAGE"
        fi
    fi
    proxy="${HTTPS_PROXY:-${https_proxy:-${HTTP_PROXY:-${http_proxy:-}}}}"
    if [[ -n "$proxy" ]]; then
        printf '[http]\nproxy = "%s"\n' "$proxy" >"$dir/usr/local/cargo/config.toml"
        log "cargo inside $RUST_IMAGE uses proxy $proxy"
    fi
    if [[ -f "$HOME/.cargo/config.toml" ]]; then
        cat "$HOME/.cargo/config.toml" >>"$dir/usr/local/cargo/config.toml"
    fi
    chmod -R a+rwX "$dir/usr/local/cargo"
    import_root "$dir" "$RUST_IMAGE" \
        --change "ENV RUSTUP_HOME=/usr/local/rustup" \
        --change "ENV CARGO_HOME=/usr/local/cargo" \
        --change "ENV RUST_VERSION=$rust_version" \
        --change "ENV PATH=/usr/local/cargo/bin:$DEB_PATH" \
        --change 'CMD ["bash"]'
    rm -rf "$dir"
    log "$RUST_IMAGE: $((SECONDS - t0))s"
fi
