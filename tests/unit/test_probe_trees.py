"""Whole-tree probes over the recorded hosts in tests/fixtures/hosts/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from orchestrator.errors import ProbeError
from orchestrator.probe.facts import HostFacts
from orchestrator.probe.host import probe_host

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
GIB = 2**30
ENV = {"HOME": "/home/tester"}


def probe(name: str, environ: dict[str, str] | None = None) -> HostFacts:
    return probe_host(HOSTS / name, environ=ENV if environ is None else environ, check_docker=False)


def test_every_fixture_has_a_readme_and_round_trips() -> None:
    names = sorted(p.name for p in HOSTS.iterdir() if p.is_dir())
    assert {"cgroup2-container-4cpu-8g", "cgroup1-container-2cpu-4g", "host-16core-affinity-4",
            "jetson-orin-nx-r35", "jetson-nano-r32", "garbage-proc", "this-ci-vm"} <= set(names)
    for name in names:
        assert (HOSTS / name / "README.txt").read_text().strip(), name
        facts = probe(name)
        assert HostFacts.from_dict(facts.to_dict()) == facts


def test_cgroup2_container_limits_cpu_and_memory() -> None:
    facts = probe("cgroup2-container-4cpu-8g")
    cpu, mem, box = facts.cpu, facts.memory, facts.container
    assert (cpu.logical_cores, cpu.physical_cores, cpu.allowed_cpus) == (32, 16, 32)
    assert cpu.cgroup_quota_cpus == 4.0
    assert cpu.cpuset_cpus == 32
    assert (cpu.effective_cpus, cpu.effective_cpus_source) == (4, "cgroup-quota")
    assert cpu.isa_flags == ("avx", "avx2", "avx512_vnni", "avx512f", "f16c", "fma")
    assert mem.total_bytes == 65842000 * 1024
    assert mem.cgroup_limit_bytes == 8 * GIB
    assert mem.cgroup_usage_bytes == 1610612736 - 402653184  # memory.current - inactive_file
    assert (mem.effective_total_bytes, mem.effective_source) == (8 * GIB, "cgroup")
    assert mem.effective_available_bytes == 8 * GIB - (1610612736 - 402653184)
    assert (box.in_container, box.container_kind, box.cgroup_version) == (True, "docker", 2)
    assert facts.hostname == "3f2a9c1b7e44"
    assert facts.jetson is None


def test_cgroup1_container_limits_cpu_and_memory() -> None:
    facts = probe("cgroup1-container-2cpu-4g")
    cpu, mem, box = facts.cpu, facts.memory, facts.container
    assert (cpu.logical_cores, cpu.physical_cores) == (8, 4)
    assert cpu.cgroup_quota_cpus == 2.0
    assert (cpu.effective_cpus, cpu.effective_cpus_source) == (2, "cgroup-quota")
    assert cpu.model_name == "AMD EPYC 7B12"
    assert mem.cgroup_limit_bytes == 4 * GIB
    assert mem.cgroup_usage_bytes == 943718400 - 209715200  # usage - total_inactive_file
    assert (mem.effective_total_bytes, mem.effective_source) == (4 * GIB, "cgroup")
    assert (box.in_container, box.container_kind, box.cgroup_version) == (True, "docker", 1)


def test_host_with_affinity_is_decided_by_affinity() -> None:
    facts = probe("host-16core-affinity-4")
    cpu, mem, box = facts.cpu, facts.memory, facts.container
    assert (cpu.logical_cores, cpu.physical_cores, cpu.allowed_cpus) == (16, 8, 4)
    assert cpu.cgroup_quota_cpus is None  # cpu.max is "max 100000" all the way up
    assert cpu.cpuset_cpus == 16
    assert (cpu.effective_cpus, cpu.effective_cpus_source) == (4, "affinity")
    assert mem.cgroup_limit_bytes is None
    assert mem.cgroup_usage_bytes == 2147483648 - 536870912  # nested session scope, not the root
    assert (mem.effective_total_bytes, mem.effective_source) == (mem.total_bytes, "host")
    assert mem.swap_total_bytes == 2097148 * 1024
    assert (box.in_container, box.container_kind, box.cgroup_version) == (False, None, 2)


def test_jetson_orin_nx() -> None:
    facts = probe("jetson-orin-nx-r35")
    jetson = facts.jetson
    assert jetson is not None
    assert jetson.soc == "tegra234"
    assert jetson.l4t_release == "R35.4.1"
    assert jetson.jetpack_version == "5.1.2"
    assert jetson.board_model == "NVIDIA Orin NX Developer Kit"
    assert jetson.compatible[-1] == "nvidia,tegra234"
    assert jetson.unified_memory is True
    assert facts.cpu.architecture == "aarch64"  # from "CPU architecture: 8": kernel 5.10 has no /proc/sys/kernel/arch
    assert facts.cpu.model_name == "ARM Cortex-A78AE"
    assert (facts.cpu.logical_cores, facts.cpu.physical_cores, facts.cpu.effective_cpus) == (6, 6, 6)
    assert "neon" in facts.cpu.isa_flags and "asimddp" in facts.cpu.isa_flags
    assert 7 * GIB < facts.memory.effective_total_bytes < 8 * GIB
    assert facts.memory.cgroup_limit_bytes is None  # v1 "unlimited" 9223372036854771712 is no limit
    assert facts.container.cgroup_version == 1
    assert facts.gpus == ()


def test_jetson_nano_reads_the_sysfs_device_tree() -> None:
    facts = probe("jetson-nano-r32")
    jetson = facts.jetson
    assert jetson is not None
    assert (jetson.soc, jetson.l4t_release, jetson.jetpack_version) == ("tegra210", "R32.7.1", "4.6.1")
    assert jetson.board_model == "NVIDIA Jetson Nano Developer Kit"
    assert facts.cpu.model_name == "ARM Cortex-A57"
    assert facts.cpu.effective_cpus == 4
    assert 3 * GIB < facts.memory.total_bytes < 4 * GIB
    assert not any("device-tree" in n or "nv_tegra_release" in n or "JetPack" in n for n in facts.notes)


def test_garbage_proc_gives_valid_facts_with_notes() -> None:
    facts = probe("garbage-proc")
    text = "\n".join(facts.notes)
    for path in ("/proc/cpuinfo", "/proc/meminfo", "/sys/devices/system/cpu/online", "Cpus_allowed_list",
                 "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/memory.max", "/etc/nv_tegra_release", "/etc/hostname"):
        assert path in text, path
    assert all(len(n.split()) >= 5 and n.endswith(".") for n in facts.notes)  # sentences, not codes
    assert facts.cpu.effective_cpus == 1
    assert facts.cpu.architecture == "unknown"
    assert facts.memory.total_bytes == 0
    assert facts.memory.cgroup_limit_bytes is None
    assert facts.cpu.cgroup_quota_cpus is None
    assert facts.jetson is None  # a garbled release file alone does not make a Jetson
    assert HostFacts.from_dict(facts.to_dict()) == facts


def test_this_ci_vm_recording() -> None:
    facts = probe("this-ci-vm")
    assert facts.cpu.architecture == "x86_64"
    assert facts.cpu.model_name == "Intel(R) Xeon(R) Processor"
    assert (facts.cpu.logical_cores, facts.cpu.effective_cpus, facts.cpu.effective_cpus_source) == (2, 2, "host")
    assert "amx" in facts.cpu.isa_flags and "avx512_bf16" in facts.cpu.isa_flags
    assert facts.container.cgroup_version == 1  # hybrid: v1 controllers plus an empty cgroup2 at /sys/fs/cgroup/unified
    assert (facts.container.in_container, facts.container.container_kind) == (True, "docker")
    assert facts.memory.cgroup_limit_bytes is None
    assert facts.memory.cgroup_usage_bytes is not None  # from the nested /process_api/<id> memory cgroup
    assert 20 * GIB < facts.memory.total_bytes < 30 * GIB
    assert facts.hostname == "vm"


def test_live_probe_matches_this_machine() -> None:
    facts = probe_host(check_docker=False)
    assert facts.cpu.logical_cores == os.cpu_count()
    assert facts.cpu.allowed_cpus == len(os.sched_getaffinity(0))
    assert 1 <= facts.cpu.effective_cpus <= facts.cpu.logical_cores
    assert facts.memory.total_bytes == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert facts.container.models_dir_free_bytes is not None
    assert HostFacts.from_dict(facts.to_dict()) == facts


def copy_tree(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(HOSTS / name, target)
    return target


def probe_changed(name: str, tmp_path: Path, files: dict[str, str | None]) -> HostFacts:
    """Probe a copy of recorded host ``name`` in which each of ``files`` (a path under its root)
    is written with the given text, or removed where it is None."""
    root = copy_tree(name, tmp_path)
    for path, text in files.items():
        if text is None:
            (root / path).unlink()
        else:
            (root / path).write_text(text)
    return probe_host(root, environ=ENV, check_docker=False)


def test_nested_v2_cgroup_parent_limit_binds(tmp_path: Path) -> None:
    facts = probe_changed("host-16core-affinity-4", tmp_path, {
        "sys/fs/cgroup/user.slice/memory.max": "4294967296\n",
        "sys/fs/cgroup/user.slice/memory.current": "1073741824\n",
        "sys/fs/cgroup/user.slice/user-1000.slice/cpu.max": "150000 100000\n",
    })
    assert facts.memory.cgroup_limit_bytes == 4 * GIB
    assert facts.memory.cgroup_usage_bytes == GIB  # usage of the level that sets the limit
    assert facts.memory.effective_available_bytes == 3 * GIB
    assert facts.cpu.cgroup_quota_cpus == 1.5
    assert (facts.cpu.effective_cpus, facts.cpu.effective_cpus_source) == (1, "cgroup-quota")  # rounded down


def test_sub_cpu_quota_rounds_up_to_one(tmp_path: Path) -> None:
    facts = probe_changed("cgroup2-container-4cpu-8g", tmp_path, {"sys/fs/cgroup/cpu.max": "50000 100000\n"})
    assert facts.cpu.cgroup_quota_cpus == 0.5
    assert facts.cpu.effective_cpus == 1


def test_cpuset_limit_wins_over_quota(tmp_path: Path) -> None:
    facts = probe_changed("cgroup2-container-4cpu-8g", tmp_path, {"sys/fs/cgroup/cpuset.cpus.effective": "0-2\n"})
    assert (facts.cpu.cpuset_cpus, facts.cpu.effective_cpus, facts.cpu.effective_cpus_source) == (3, 3, "cpuset")


def test_host_view_of_a_namespaced_path_falls_back_to_the_mount(tmp_path: Path) -> None:
    # /proc/self/cgroup shows the host path (/docker/<id>) but the container mounts its own cgroup at /sys/fs/cgroup.
    facts = probe_changed("cgroup2-container-4cpu-8g", tmp_path,
                          {"proc/self/cgroup": "0::/system.slice/docker-3f2a9c1b7e44.scope\n"})
    assert facts.cpu.cgroup_quota_cpus == 4.0
    assert facts.memory.cgroup_limit_bytes == 8 * GIB


def test_without_mountinfo_the_default_layout_is_used(tmp_path: Path) -> None:
    facts = probe_changed("cgroup2-container-4cpu-8g", tmp_path, {"proc/self/mountinfo": None})
    assert facts.cpu.effective_cpus == 4
    assert facts.memory.cgroup_limit_bytes == 8 * GIB


def test_directory_where_a_file_is_expected_is_a_note(tmp_path: Path) -> None:
    root = copy_tree("cgroup2-container-4cpu-8g", tmp_path)
    (root / "proc/meminfo").unlink()
    (root / "proc/meminfo").mkdir()
    facts = probe_host(root, environ=ENV, check_docker=False)
    assert "Could not read /proc/meminfo: it is a directory, expected a file." in facts.notes
    assert facts.memory.total_bytes == 0
    assert facts.memory.effective_total_bytes == 8 * GIB  # the cgroup limit still bounds it
    assert facts.cpu.effective_cpus == 4


UNREADABLE_SCRIPT = """
import json, os, sys
from pathlib import Path
from orchestrator.probe.host import probe_host
if os.geteuid() == 0:  # root reads anything: become nobody once the imports are done
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
facts = probe_host(Path(sys.argv[1]), environ={"HOME": "/nonexistent"}, check_docker=False)
print(json.dumps({"notes": list(facts.notes), "effective_cpus": facts.cpu.effective_cpus}))
"""


def test_unreadable_file_is_a_note_not_a_crash() -> None:
    """A file the probe may not read (chmod 000). Root ignores permissions, so as root the
    child process drops to user nobody (65534) before probing."""
    with tempfile.TemporaryDirectory(prefix="tailor-probe-") as tmp:
        _check_unreadable(Path(tmp))


def _check_unreadable(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)  # pytest's tmp_path is private (0700); nobody must reach this one
    root = copy_tree("cgroup2-container-4cpu-8g", tmp_path)
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    (root / "proc/cpuinfo").chmod(0o000)
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(  # the child is waited for (run), never left behind
        [sys.executable, "-c", UNREADABLE_SCRIPT, str(root)],
        capture_output=True, text=True, timeout=60, cwd=repo,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(repo)},
    )
    assert result.returncode == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert "Could not read /proc/cpuinfo: permission denied." in data["notes"]
    assert data["effective_cpus"] == 4


def test_missing_root_raises_probe_error(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="not a directory") as info:
        probe_host(tmp_path / "nope", environ=ENV, check_docker=False)
    assert "--root" in info.value.hint


def test_empty_root_is_still_valid_facts(tmp_path: Path) -> None:
    facts = probe_host(tmp_path, environ=ENV, check_docker=False)
    assert facts.cpu.effective_cpus == 1
    assert facts.container.cgroup_version is None
    assert any("/proc/cpuinfo is missing" in n for n in facts.notes)
    assert HostFacts.from_dict(facts.to_dict()) == facts


@pytest.mark.parametrize(("setup", "environ", "kind"), [
    ("run/.containerenv", {}, "podman"),
    (None, {"KUBERNETES_SERVICE_HOST": "10.96.0.1"}, "kubernetes"),
    (None, {"container": "lxc"}, "lxc"),
])
def test_container_kinds(tmp_path: Path, setup: str | None, environ: dict[str, str], kind: str) -> None:
    root = copy_tree("host-16core-affinity-4", tmp_path)
    if setup:
        (root / setup).parent.mkdir(parents=True, exist_ok=True)
        (root / setup).write_text("")
    facts = probe_host(root, environ={**ENV, **environ}, check_docker=False)
    assert (facts.container.in_container, facts.container.container_kind) == (True, kind)


def test_pid1_cgroup_names_kubernetes(tmp_path: Path) -> None:
    facts = probe_changed("host-16core-affinity-4", tmp_path, {"proc/1/cgroup": "0::/kubepods/burstable/pod5c1d/0a9b8c7d\n"})
    assert (facts.container.in_container, facts.container.container_kind) == (True, "kubernetes")


def test_allocator_libraries_under_root(tmp_path: Path) -> None:
    root = copy_tree("host-16core-affinity-4", tmp_path)
    lib = root / "usr/lib/x86_64-linux-gnu"
    lib.mkdir(parents=True)
    (lib / "libjemalloc.so.2").write_bytes(b"\x7fELF")
    (lib / "libtcmalloc_minimal.so.4").write_bytes(b"\x7fELF")
    facts = probe_host(root, environ=ENV, check_docker=False)
    assert facts.allocator_libraries == (
        "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")


GARBAGE = [b"", b"\x00\xff\xfe garbage", b"-1", b"max max max", b"9" * 400 + b" 1", b"0-99999999", b"\n\n\n",
           b"a:b:c:d", b"9" * 400]


@pytest.mark.parametrize("name", ["cgroup2-container-4cpu-8g", "cgroup1-container-2cpu-4g", "jetson-orin-nx-r35"])
def test_any_file_replaced_by_garbage_never_raises(tmp_path: Path, name: str) -> None:
    root = copy_tree(name, tmp_path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "README.txt")
    for index, path in enumerate(files):
        original = path.read_bytes()
        for junk in [*GARBAGE[index % 3::3], GARBAGE[4], GARBAGE[8]]:
            path.write_bytes(junk)
            facts = probe_host(root, environ=ENV, check_docker=False)
            assert facts.cpu.effective_cpus >= 1, path
            assert HostFacts.from_dict(facts.to_dict()) == facts, path
        path.write_bytes(original)


def test_arm_physical_cores_come_from_sysfs_topology(tmp_path: Path) -> None:
    # Pretend cpu5 is an SMT sibling of cpu4 (same package and core id): 5 physical cores.
    facts = probe_changed("jetson-orin-nx-r35", tmp_path, {"sys/devices/system/cpu/cpu5/topology/core_id": "0\n"})
    assert (facts.cpu.logical_cores, facts.cpu.physical_cores) == (6, 5)
