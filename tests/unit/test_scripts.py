"""The shell scripts a first-time user and CI run: visible steps, loud failures, clean exits.

The quickstart runs in a copy of its directory layout whose ``.venv`` holds small executables
standing in for the interpreter and ``deploy`` (a real install takes minutes); what is tested is
the script's own behaviour: step lines, elapsed times, the failing command's output on stderr.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _exe(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body + "\n", encoding="utf-8")
    path.chmod(0o755)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "quickstart.sh", tmp_path / "scripts" / "quickstart.sh")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    return tmp_path


def _quickstart(clone: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(clone / "scripts" / "quickstart.sh"), *args], capture_output=True,
                          text=True, timeout=60, check=False, env={**os.environ, "PYTHON": "python3"})


def test_quickstart_fails_loudly_with_the_failing_commands_output(clone: Path) -> None:
    # pip upgrade works, the install fails the way pip does: a message on stderr, exit code 1.
    _exe(clone / ".venv" / "bin" / "python",
         'case "$*" in *-e*) echo "Collecting onnxruntime"; '
         'echo "ERROR: No matching distribution found for onnxruntime>=1.17" >&2; exit 1;; esac; echo ok')
    _exe(clone / ".venv" / "bin" / "deploy", "echo deploy must not run; exit 3")
    res = _quickstart(clone)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "[1/3] reuse .venv, upgrade pip" in res.stdout
    assert "[2/3] install Tailor and its runtime" in res.stdout
    assert "done in" in res.stdout  # the first step finished and said how long it took
    assert "step 2/3 failed after" in res.stderr and "(exit code 1)" in res.stderr
    assert "No matching distribution found for onnxruntime" in res.stderr
    assert "deploy must not run" not in res.stdout + res.stderr
    assert "No matching distribution" in (clone / ".tailor" / "quickstart.log").read_text()


def test_quickstart_reports_a_failing_deploy_and_where_its_logs_are(clone: Path) -> None:
    _exe(clone / ".venv" / "bin" / "python", "echo installed")
    _exe(clone / ".venv" / "bin" / "deploy", 'echo "error: port 8000 is used by pid 1" >&2; exit 1')
    res = _quickstart(clone, "--port", "8000")
    assert res.returncode == 1
    assert "[3/3] deploy auto" in res.stdout and "--port 8000" in res.stdout
    assert "port 8000 is used by pid 1" in res.stderr
    assert "`deploy auto` failed with exit code 1" in res.stderr and ".tailor/runtime.log" in res.stderr


def test_quickstart_success_says_what_it_left_running(clone: Path) -> None:
    _exe(clone / ".venv" / "bin" / "python", "echo installed")
    _exe(clone / ".venv" / "bin" / "deploy", 'echo "ready:    http://127.0.0.1:8000"; echo "args: $*"')
    res = _quickstart(clone)
    assert res.returncode == 0, res.stderr
    assert "args: auto --detach --synthesize-to tailor-hello.wav" in res.stdout
    assert "Left running in the background: the supervisor and the runtime" in res.stdout
    assert ".venv/bin/deploy down" in res.stdout and "source .venv/bin/activate" in res.stdout


def test_quickstart_hides_nothing() -> None:
    text = (REPO / "scripts" / "quickstart.sh").read_text()
    assert "|| true" not in text and " -q " not in text


def _without_engine(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the engine that scripts/test.sh started for this very suite: a
    tailor_docker_stop under test must never stop (and empty) the suite's own dockerd."""
    engine_vars = {"TAILOR_DOCKER_PID", "TAILOR_DOCKER_DIR", "TAILOR_DOCKER_DIR_OWNED", "TAILOR_DOCKER_CLEAN",
                   "DOCKER_HOST", "TAILOR_TEST_BASE_IMAGE"}
    return {k: v for k, v in environ.items() if k not in engine_vars}


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("findmnt") is None, reason="mounting needs root")
def test_docker_env_stop_unmounts_and_removes_its_own_directory(tmp_path: Path) -> None:
    engine = tmp_path / "tailor-docker.test"
    (engine / "exec" / "netns").mkdir(parents=True)
    mnt = engine / "exec" / "netns" / "m"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], check=True)
    try:
        res = subprocess.run(
            ["bash", "-c", f"source {REPO / 'scripts' / 'docker-test-env.sh'}; tailor_docker_stop"],
            capture_output=True, text=True, timeout=60, check=False,
            env={**_without_engine(os.environ), "TAILOR_DOCKER_DIR": str(engine), "TAILOR_DOCKER_DIR_OWNED": "1"},
        )
        assert res.returncode == 0, res.stderr
        assert not engine.exists(), res.stderr
        mounts = Path("/proc/self/mounts").read_text()
        assert str(mnt) not in mounts
    finally:
        if str(mnt) in Path("/proc/self/mounts").read_text():
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_docker_env_stop_keeps_a_directory_it_did_not_make(tmp_path: Path) -> None:
    engine = tmp_path / "mine"
    engine.mkdir()
    res = subprocess.run(["bash", "-c", f"source {REPO / 'scripts' / 'docker-test-env.sh'}; tailor_docker_stop"],
                         capture_output=True, text=True, timeout=60, check=False,
                         env={**_without_engine(os.environ), "TAILOR_DOCKER_DIR": str(engine), "TAILOR_DOCKER_DIR_OWNED": "0"})
    assert res.returncode == 0, res.stderr
    assert engine.is_dir()


def test_quickstart_progress_never_cuts_a_multibyte_character(clone: Path) -> None:
    # pip's progress bar is box-drawing characters (3 bytes each); the heartbeat shows 100 characters.
    _exe(clone / ".venv" / "bin" / "python",
         'case "$*" in *--upgrade*) printf "%099d\\342\\224\\201\\342\\224\\201\\342\\224\\201 7.1 MB\\n" 0; sleep 11;; '
         'esac; echo ok')
    _exe(clone / ".venv" / "bin" / "deploy", 'echo "ready"')
    res = subprocess.run(["bash", str(clone / "scripts" / "quickstart.sh")], capture_output=True, timeout=60,
                         check=False, env={**os.environ, "PYTHON": "python3", "LC_ALL": "C"})
    out = res.stdout.decode("utf-8")  # strict: a cut character would raise here
    beat = next(line for line in out.splitlines() if line.startswith("      ... "))
    assert beat.endswith("0" * 99 + "\u2501")


def test_quickstart_points_at_this_runs_runtime_log(clone: Path) -> None:
    _exe(clone / ".venv" / "bin" / "python", "echo installed")
    for state, args in ((clone / ".tailor", ()), (clone / "elsewhere", ("--state-dir", str(clone / "elsewhere")))):
        state.mkdir(exist_ok=True)
        (state / "runtime.log").write_text("old run: Traceback of yesterday\nold run: exit 3\n", encoding="utf-8")
        _exe(clone / ".venv" / "bin" / "deploy",
             f'echo "this run: model loaded" >> {state}/runtime.log; echo "error: FATAL" >&2; exit 1')
        res = _quickstart(clone, *args)
        assert res.returncode == 1
        assert f"this run's runtime log: {state if args else '.tailor'}/runtime.log from line 3" in res.stderr
        assert "this run: model loaded" in res.stderr and "old run" not in res.stderr
    # a run that started no runtime says so instead of showing an older run's lines
    _exe(clone / ".venv" / "bin" / "deploy", 'echo "error: port 8000 is in use" >&2; exit 1')
    res = _quickstart(clone)
    assert "this run wrote nothing to .tailor/runtime.log" in res.stderr and "old run" not in res.stderr


def test_quickstart_hints_keep_the_state_dir_it_was_given(clone: Path) -> None:
    _exe(clone / ".venv" / "bin" / "python", "echo installed")
    _exe(clone / ".venv" / "bin" / "deploy", 'echo "ready"')
    res = _quickstart(clone, "--state-dir", "/srv/tts")
    assert res.returncode == 0, res.stderr
    assert ".venv/bin/deploy status --state-dir /srv/tts" in res.stdout
    assert ".venv/bin/deploy down --state-dir /srv/tts" in res.stdout


def test_the_test_cache_is_documented_with_what_it_holds_and_how_to_remove_it() -> None:
    import re

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    used = set()
    for source in [REPO / "scripts" / "docker-test-env.sh", *REPO.glob("tests/**/*.py")]:
        used |= set(re.findall(r"(\w[\w.-]*-minbase-python3\.tar|wheelhouse-cp\d+)", source.read_text(encoding="utf-8")))
    assert used, "no cache entries found: the scan is broken"
    for entry in sorted(used):
        assert f"`{entry}" in readme, entry
    assert "~/.cache/tailor-ci" in readme and "$TAILOR_CI_CACHE" in readme
    assert "rm -rf\n~/.cache/tailor-ci" in readme or "rm -rf ~/.cache/tailor-ci" in readme
