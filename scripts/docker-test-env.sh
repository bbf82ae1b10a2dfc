# shellcheck shell=bash
# Test environment for the docker tier: a private Docker daemon and a registry-free base image.
#
# Source this file, then call the functions:
#
#     source scripts/docker-test-env.sh
#     tailor_docker_start          # installs what is missing, starts dockerd, imports the base image
#     pytest -m docker tests/docker
#     tailor_docker_stop           # kills that dockerd by its pid, waits for it, unmounts what it
#                                  # left under $TAILOR_DOCKER_DIR and removes that directory when
#                                  # it was made here (or TAILOR_DOCKER_CLEAN=1)
#
# It never touches /var/run/docker.sock: the daemon gets its own data root, exec root, pid file
# and socket under $TAILOR_DOCKER_DIR (default: a fresh temp dir). It exports DOCKER_HOST and
# TAILOR_TEST_BASE_IMAGE. The base image is built with debootstrap (Debian bookworm minbase with
# python3 + venv) and imported with `docker import`, so no registry is needed; its tarball is
# cached under ~/.cache/tailor-ci/ so re-runs skip debootstrap. Installing packages and running
# dockerd need root.

TAILOR_BASE_IMAGE_TAG="${TAILOR_BASE_IMAGE_TAG:-tailor-test-base:bookworm}"
TAILOR_CI_CACHE="${TAILOR_CI_CACHE:-$HOME/.cache/tailor-ci}"
TAILOR_DEBIAN_MIRROR="${TAILOR_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

_tailor_log() { printf 'docker-test-env: %s\n' "$*" >&2; }

_tailor_install_missing() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    if [ "${#missing[@]}" -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        _tailor_log "missing ${missing[*]} and not root: install them with apt-get"
        return 1
    fi
    _tailor_log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

_tailor_base_tarball() {
    # Prints the path of the cached rootfs tarball, building it with debootstrap when absent.
    local tarball="$TAILOR_CI_CACHE/bookworm-minbase-python3.tar"
    if [ -s "$tarball" ]; then
        printf '%s\n' "$tarball"
        return 0
    fi
    mkdir -p "$TAILOR_CI_CACHE" || return 1
    local rootfs
    rootfs="$(mktemp -d "$TAILOR_CI_CACHE/rootfs.XXXXXX")" || return 1
    _tailor_log "debootstrap bookworm into $rootfs (about a minute)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$TAILOR_DEBIAN_MIRROR" >"$TAILOR_CI_CACHE/debootstrap.log" 2>&1; then
        _tailor_log "debootstrap failed; see $TAILOR_CI_CACHE/debootstrap.log"
        rm -rf "$rootfs"
        return 1
    fi
    # Apt lists and caches are not needed in the image.
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    tar -C "$rootfs" -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    local rc=$?
    rm -rf "$rootfs"
    [ "$rc" -eq 0 ] && printf '%s\n' "$tarball"
}

tailor_docker_start() {
    _tailor_install_missing || return 1
    if [ -n "${TAILOR_DOCKER_PID:-}" ] && kill -0 "$TAILOR_DOCKER_PID" 2>/dev/null; then
        _tailor_log "dockerd already running (pid $TAILOR_DOCKER_PID)"
        return 0
    fi
    if [ -z "${TAILOR_DOCKER_DIR:-}" ]; then
        TAILOR_DOCKER_DIR="$(mktemp -d /tmp/tailor-docker.XXXXXX)"
        # Made here, so tailor_docker_stop removes it again (images, layers: hundreds of MB).
        TAILOR_DOCKER_DIR_OWNED=1
        export TAILOR_DOCKER_DIR_OWNED
    fi
    mkdir -p "$TAILOR_DOCKER_DIR/data" "$TAILOR_DOCKER_DIR/exec"
    local sock="$TAILOR_DOCKER_DIR/docker.sock"
    local pidfile="$TAILOR_DOCKER_DIR/dockerd.pid"
    dockerd --bridge=none --iptables=false --ip-masq=false \
        --data-root "$TAILOR_DOCKER_DIR/data" \
        --exec-root "$TAILOR_DOCKER_DIR/exec" \
        --pidfile "$pidfile" \
        --host "unix://$sock" \
        >"$TAILOR_DOCKER_DIR/dockerd.log" 2>&1 &
    TAILOR_DOCKER_PID=$!
    export TAILOR_DOCKER_DIR TAILOR_DOCKER_PID
    export DOCKER_HOST="unix://$sock"
    local i
    # Under `set -e` in the caller, every probe below must be allowed to fail.
    for i in $(seq 1 60); do
        if docker version >/dev/null 2>&1; then
            break
        fi
        if ! kill -0 "$TAILOR_DOCKER_PID" 2>/dev/null; then
            _tailor_log "dockerd exited; last lines of $TAILOR_DOCKER_DIR/dockerd.log:"
            tail -n 20 "$TAILOR_DOCKER_DIR/dockerd.log" >&2
            unset TAILOR_DOCKER_PID DOCKER_HOST
            return 1
        fi
        sleep 0.5
    done
    if ! docker version >/dev/null 2>&1; then
        _tailor_log "dockerd did not answer within 30 s; see $TAILOR_DOCKER_DIR/dockerd.log"
        tailor_docker_stop
        return 1
    fi
    _tailor_log "dockerd pid $TAILOR_DOCKER_PID answering at $DOCKER_HOST"
    if ! docker image inspect "$TAILOR_BASE_IMAGE_TAG" >/dev/null 2>&1; then
        local tarball
        tarball="$(_tailor_base_tarball)" || { tailor_docker_stop; return 1; }
        _tailor_log "importing $tarball as $TAILOR_BASE_IMAGE_TAG"
        docker import "$tarball" "$TAILOR_BASE_IMAGE_TAG" >/dev/null || { tailor_docker_stop; return 1; }
    fi
    export TAILOR_TEST_BASE_IMAGE="$TAILOR_BASE_IMAGE_TAG"
}

_tailor_unmount_under() {
    # Mounts dockerd leaves under its directories when it dies uncleanly (nsfs network
    # namespaces under exec/netns, overlay layers under data/): deepest first.
    local dir=$1 target
    command -v findmnt >/dev/null 2>&1 || return 0
    findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r | while read -r target; do
        umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null ||
            _tailor_log "cannot unmount $target"
    done
}

tailor_docker_stop() {
    _tailor_docker_stop_daemon
    local dir=${TAILOR_DOCKER_DIR:-}
    if [ -n "$dir" ] && [ -d "$dir" ]; then
        _tailor_unmount_under "$dir"
        if [ "${TAILOR_DOCKER_DIR_OWNED:-0}" = 1 ] || [ "${TAILOR_DOCKER_CLEAN:-0}" = 1 ]; then
            rm -rf "$dir" && _tailor_log "removed $dir"
            unset TAILOR_DOCKER_DIR TAILOR_DOCKER_DIR_OWNED
        fi
    fi
}

_tailor_docker_stop_daemon() {
    if [ -z "${TAILOR_DOCKER_PID:-}" ]; then
        return 0
    fi
    if kill -0 "$TAILOR_DOCKER_PID" 2>/dev/null; then
        # Containers left behind by a failed test would keep mounts busy; remove them first.
        local ids
        ids="$(docker ps -aq 2>/dev/null || true)"
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086
            docker rm -f $ids >/dev/null 2>&1 || true
        fi
        kill -TERM "$TAILOR_DOCKER_PID" 2>/dev/null || true
        local i
        for i in $(seq 1 40); do
            kill -0 "$TAILOR_DOCKER_PID" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$TAILOR_DOCKER_PID" 2>/dev/null; then
            _tailor_log "dockerd (pid $TAILOR_DOCKER_PID) ignored SIGTERM for 20 s; sending SIGKILL"
            kill -KILL "$TAILOR_DOCKER_PID" 2>/dev/null || true
        fi
        wait "$TAILOR_DOCKER_PID" 2>/dev/null || true
    fi
    _tailor_log "dockerd pid $TAILOR_DOCKER_PID stopped"
    unset TAILOR_DOCKER_PID DOCKER_HOST TAILOR_TEST_BASE_IMAGE
}
