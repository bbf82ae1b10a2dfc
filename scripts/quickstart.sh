#!/usr/bin/env bash
# One command from a fresh clone to a running, tuned speech server and a synthesized file:
# installs Tailor with its runtime into .venv, then runs `deploy auto` on this machine's
# embedded default (the en_US-joe-medium voice), detached, and writes tailor-hello.wav.
#
#   bash scripts/quickstart.sh [extra `deploy auto` flags]
# Stop it again with: .venv/bin/deploy down
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -m pip install -q -c ci/constraints.txt -e ".[runtime]" 2>&1 \
    | grep -v '^WARNING: Location' || true
exec .venv/bin/deploy auto --detach --synthesize-to tailor-hello.wav "$@"
