#!/usr/bin/env bash
# One command from a fresh clone to a running, tuned speech server and a synthesized file:
#
#   1. creates .venv (if missing) and upgrades pip in it,
#   2. installs Tailor with its runtime (onnxruntime, the en_US-joe-medium voice, Kokoro-82M) into .venv,
#   3. runs `deploy auto --detach` on this machine, which probes, plans, renders into .tailor/,
#      starts the runtime under a background supervisor and writes tailor-hello.wav.
#
#   bash scripts/quickstart.sh [extra `deploy auto` flags, e.g. --port 8080]
#
# Every step prints what it runs and how long it took; while a step runs, a line every 10 s says
# it is still working. A failing step stops the script with exit code 1 and prints the failing
# command's last 40 lines of output (the full log is kept in .tailor/quickstart.log).
#
# What it leaves running: one supervisor process and the runtime it supervises (a child process,
# or a container when a Docker daemon answers), serving http://127.0.0.1:8000 (or --port).
# Stop both with `.venv/bin/deploy down`.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
mkdir -p .tailor
log=.tailor/quickstart.log
: >"$log"
t_start=$(date +%s)
step_no=0
steps=3

elapsed() { echo $(($(date +%s) - $1)); }

# shorten TEXT N: the first N characters of TEXT, never half of a multibyte one (pip's progress
# bars are box-drawing characters; `cut -c` cuts bytes).
shorten() { "$py" -c 'import sys; print(sys.argv[1][:int(sys.argv[2])])' "$1" "$2"; }

# state_dir ARGS...: where `deploy auto` keeps its logs: --state-dir, else $TAILOR_STATE_DIR, else .tailor.
state_dir() {
    local dir=${TAILOR_STATE_DIR:-.tailor}
    while [ $# -gt 0 ]; do
        case $1 in
            --state-dir) dir=${2:-$dir}; shift ;;
            --state-dir=*) dir=${1#--state-dir=} ;;
        esac
        shift
    done
    echo "$dir"
}

# step DESCRIPTION COMMAND...: run COMMAND with its output in $log, a heartbeat every 10 s,
# and on failure the command line, its exit code and the tail of its output on stderr.
step() {
    local what=$1
    shift
    step_no=$((step_no + 1))
    printf '[%d/%d] %s\n      $ %s\n' "$step_no" "$steps" "$what" "$*"
    local t0 mark pid rc
    t0=$(date +%s)
    mark=$(wc -l <"$log")
    printf '\n### %s\n' "$*" >>"$log"
    "$@" >>"$log" 2>&1 &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$pid" 2>/dev/null || break
            sleep 1
        done
        if kill -0 "$pid" 2>/dev/null; then
            printf '      ... %s s, %s\n' "$(elapsed "$t0")" "$(shorten "$(tail -n 1 "$log")" 100)"
        fi
    done
    rc=0
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        {
            printf '\nquickstart: step %d/%d failed after %s s (exit code %d): %s\n' \
                "$step_no" "$steps" "$(elapsed "$t0")" "$rc" "$*"
            printf -- '--- last lines of its output (full log: %s) ---\n' "$log"
            tail -n +"$((mark + 1))" "$log" | tail -n 40
        } >&2
        exit 1
    fi
    printf '      done in %s s\n' "$(elapsed "$t0")"
}

if [ ! -x .venv/bin/python ]; then
    step "create the virtual environment .venv with $("$py" --version 2>&1)" "$py" -m venv .venv
else
    step "reuse .venv, upgrade pip" .venv/bin/python -m pip install --upgrade pip
fi
step "install Tailor and its runtime into .venv (about a minute on first run)" \
    .venv/bin/python -m pip install -c ci/constraints.txt -e ".[runtime,kokoro]"

step_no=$((step_no + 1))
printf '[%d/%d] deploy auto: probe, plan, render into .tailor/, start and wait until ready\n      $ %s\n' \
    "$step_no" "$steps" ".venv/bin/deploy auto --detach --synthesize-to tailor-hello.wav $*"
sd=$(state_dir "$@")
runtime_log="$sd/runtime.log"
# runtime.log keeps every run's lines: remember where this run's begin.
before=0
[ -f "$runtime_log" ] && before=$(wc -l <"$runtime_log")
rc=0
.venv/bin/deploy auto --detach --synthesize-to tailor-hello.wav "$@" || rc=$?
if [ "$rc" -ne 0 ]; then
    {
        printf '\nquickstart: `deploy auto` failed with exit code %d after %s s (its message is above).\n' \
            "$rc" "$(elapsed "$t_start")"
        now=0
        [ -f "$runtime_log" ] && now=$(wc -l <"$runtime_log")
        if [ "$now" -gt "$before" ]; then
            printf -- '--- this run'"'"'s runtime log: %s from line %d (`tail -n +%d %s`) ---\n' \
                "$runtime_log" "$((before + 1))" "$((before + 1))" "$runtime_log"
            tail -n +"$((before + 1))" "$runtime_log" | tail -n 40
        else
            printf 'this run wrote nothing to %s (no runtime process started, or the Docker backend: `.venv/bin/deploy logs --state-dir %s`)\n' \
                "$runtime_log" "$sd"
        fi
        printf 'the supervisor log: %s/supervisor.log\n' "$sd"
    } >&2
    exit 1
fi
where=""
[ "$sd" != .tailor ] && where=" --state-dir $sd"
cat <<EOF

quickstart: done in $(elapsed "$t_start") s. Left running in the background: the supervisor and the runtime.
  deploy is at .venv/bin/deploy (or run \`source .venv/bin/activate\` and then just \`deploy\`)
  .venv/bin/deploy status$where      # what runs, its health, restarts
  .venv/bin/deploy logs -f$where     # the runtime's log
  .venv/bin/deploy down$where        # stop it
EOF
