"""`deploy probe` end to end: the real console script in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli.app import main
from orchestrator.probe.facts import HostFacts
from orchestrator.probe.host import probe_host

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
DEPLOY = str(Path(sys.executable).with_name("deploy"))
ENV = {"PATH": os.environ.get("PATH", ""), "HOME": "/home/tester", "LANG": "C.UTF-8"}


def run_deploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DEPLOY, *args], capture_output=True, text=True, timeout=60, env=ENV)


@pytest.mark.parametrize("name", ["cgroup2-container-4cpu-8g", "jetson-orin-nx-r35", "garbage-proc"])
def test_json_round_trips_and_equals_the_direct_probe(name: str) -> None:
    result = run_deploy("probe", "--json", "--root", str(HOSTS / name))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # JSON mode: nothing on stderr, no timing
    from_cli = HostFacts.from_dict(json.loads(result.stdout))
    direct = probe_host(HOSTS / name, environ=ENV, check_docker=True)
    assert from_cli == direct
    assert result.stdout == direct.to_json()


def test_json_is_deterministic_for_a_tree() -> None:
    first = run_deploy("probe", "--json", "--no-docker", "--root", str(HOSTS / "cgroup1-container-2cpu-4g"))
    second = run_deploy("probe", "--json", "--no-docker", "--root", str(HOSTS / "cgroup1-container-2cpu-4g"))
    assert first.stdout == second.stdout
    assert json.loads(first.stdout)["cpu"]["effective_cpus"] == 2


def test_human_mode_table_and_timing() -> None:
    result = run_deploy("probe", "--no-docker", "--root", str(HOSTS / "jetson-nano-r32"))
    assert result.returncode == 0, result.stderr
    for words in ("CPU", "Memory", "GPUs", "Jetson", "Container", "tegra210", "R32.7.1", "4.6.1", "ARM Cortex-A57"):
        assert words in result.stdout, words
    assert result.stderr.startswith("probed in ") and result.stderr.strip().endswith(" ms")


def test_human_mode_in_process_shows_notes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--no-docker", "--root", str(HOSTS / "garbage-proc")]) == 0
    out = capsys.readouterr().out
    assert "Notes" in out and "/proc/meminfo" in out


def test_missing_root_is_a_clear_error() -> None:
    result = run_deploy("probe", "--root", "/nonexistent/tree")
    assert result.returncode == 2  # a bad flag value is a usage error
    assert "error: --root /nonexistent/tree is not a directory" in result.stderr
    assert "hint:" in result.stderr
    assert "Traceback" not in result.stderr


def test_live_probe_json_parses() -> None:
    # Its speed (1 s target) is measured by benchmarks/bench_probe.py, never timed in a unit test.
    result = run_deploy("probe", "--json")
    assert result.returncode == 0, result.stderr
    facts = HostFacts.from_dict(json.loads(result.stdout))
    assert facts.cpu.logical_cores == os.cpu_count()
    assert facts.container.models_dir_free_bytes is not None


LAZY_SCRIPT = """
import sys
from pathlib import Path
from orchestrator.probe.host import probe_host
probe_host(Path(sys.argv[1]), environ={}, check_docker=True)
print(" ".join(m for m in ("pynvml", "docker", "jinja2", "typer", "rich", "psutil", "yaml") if m in sys.modules))
"""


def test_probe_path_imports_nothing_heavy() -> None:
    result = subprocess.run([sys.executable, "-c", LAZY_SCRIPT, str(HOSTS / "cgroup2-container-4cpu-8g")],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == []  # a recorded tree never loads pynvml; nothing else heavy either


def test_recorder_copies_what_the_live_probe_read(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("record_host", HOSTS / "record.py")
    assert spec is not None and spec.loader is not None
    recorder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recorder)
    target = recorder.record(tmp_path / "here", "This machine, recorded by a test.")
    replay = probe_host(target, environ=ENV, check_docker=False)
    live = probe_host(environ=ENV, check_docker=False)
    assert replay.cpu == live.cpu
    assert replay.memory.total_bytes == live.memory.total_bytes
    assert replay.container.cgroup_version == live.container.cgroup_version
    assert replay.container.in_container == live.container.in_container
    assert replay.jetson == live.jetson
    assert (target / "proc/self/mountinfo").read_text().count(" - cgroup") >= 1


def test_human_table_lists_gpus() -> None:
    from rich.console import Console

    from orchestrator.cli.probe_cmd import facts_table

    from .test_probe_nvml import RTX3060, T4, FakeNvml

    facts = probe_host(HOSTS / "cgroup2-container-4cpu-8g", environ=ENV, nvml=FakeNvml([T4, RTX3060]), check_docker=False)
    console = Console(record=True, width=200)
    console.print(facts_table(facts))
    text = console.export_text()
    assert "#0 Tesla T4: 15.0 GiB" in text and "sm 7.5" in text
    assert "#1 NVIDIA GeForce RTX 3060: 12.0 GiB" in text and "CUDA 12.4" in text
    assert "use 4 CPU(s), decided by cgroup-quota" in text


def test_human_table_lists_mig_instances_under_their_card() -> None:
    from rich.console import Console

    from orchestrator.cli.probe_cmd import facts_table

    from .test_probe_nvml import A100_MIG, FakeCard, FakeNvml

    card = FakeCard(A100_MIG.name, A100_MIG.uuid, A100_MIG.total_bytes, A100_MIG.free_bytes, (8, 0), "enabled",
                    instances=[("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "MIG-5e0c2a4f-8d71-5b39-a6e2-c4f7d1b8e302",
                                19968 * 2**20, 19830 * 2**20)])
    facts = probe_host(HOSTS / "cgroup2-container-4cpu-8g", environ=ENV, nvml=FakeNvml([card]), check_docker=False)
    console = Console(record=True, width=200)
    console.print(facts_table(facts))
    text = console.export_text()
    assert "#0 NVIDIA A100-SXM4-40GB: 40.0 GiB" in text and "MIG enabled" in text
    assert "#0 MIG 3g.20gb MIG-5e0c2a4f-8d71-5b39-a6e2-c4f7d1b8e302: 19.5 GiB (19.4 GiB free)" in text
