"""Pure parsers of the probe, each on real captured text."""

from __future__ import annotations

import pytest

from orchestrator.probe.cgroup import (
    parse_cpu_max,
    parse_memory_stat,
    parse_mountinfo_cgroups,
    parse_proc_self_cgroup,
)
from orchestrator.probe.container import container_kind_from_text
from orchestrator.probe.cpu import isa_flags, parse_allowed_cpus, parse_cpuinfo
from orchestrator.probe.cpulist import parse_cpu_list
from orchestrator.probe.jetson import (
    L4T_TO_JETPACK,
    jetpack_for,
    parse_device_tree_strings,
    parse_tegra_release,
    soc_from_compatible,
)
from orchestrator.probe.memory import parse_meminfo
from orchestrator.probe.nvml import cuda_version_text


@pytest.mark.parametrize(("text", "expected"), [
    ("0-1\n", {0, 1}),                      # /sys/devices/system/cpu/online on a 2-vCPU VM
    ("0-3,8-11,15", {0, 1, 2, 3, 8, 9, 10, 11, 15}),
    ("5", {5}),
    ("\n", set()),                          # cgroup v2 cpuset.cpus left empty (inherit)
])
def test_cpu_list(text: str, expected: set[int]) -> None:
    assert parse_cpu_list(text) == frozenset(expected)


@pytest.mark.parametrize("text", ["0-x", "0-", "3-1", "a,b", "0-999999999"])
def test_cpu_list_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_list(text)


def xeon_processor(processor: int, core: int) -> str:
    """One processor's block of a Xeon's /proc/cpuinfo (package 0)."""
    return (f"processor\t: {processor}\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"
            f"physical id\t: 0\ncore id\t\t: {core}\n"
            "flags\t\t: fpu sse2 lm fma avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8 avx_vnni\n")


# Processor 2 is core 0's hyperthread sibling, and its block has no vendor or model lines.
X86_CPUINFO = "\n".join([
    xeon_processor(0, core=0),
    xeon_processor(1, core=1),
    "processor\t: 2\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu sse2 lm\n",
])

ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 62.50
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd42
CPU revision\t: 1

processor\t: 1
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd42
"""


def test_cpuinfo_x86() -> None:
    info = parse_cpuinfo(X86_CPUINFO)
    assert info.processors == 3
    assert info.model_name == "Intel(R) Xeon(R) Processor"
    assert info.physical_cores == 2  # (0,0) appears twice: a hyperthread sibling
    assert info.architecture == "x86_64"
    assert "amx_tile" in info.flags


def test_cpuinfo_arm_names_the_core_from_the_part_table() -> None:
    info = parse_cpuinfo(ARM_CPUINFO)
    assert info.processors == 2
    assert info.model_name == "ARM Cortex-A78AE"
    assert info.physical_cores is None  # Arm cpuinfo has no core ids; sysfs topology decides
    assert info.architecture == "aarch64"


def test_cpuinfo_raspberry_pi_model_line() -> None:
    text = "processor\t: 0\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3\nCPU architecture: 7\nModel\t\t: Raspberry Pi 3 Model B Rev 1.2\n"
    info = parse_cpuinfo(text)
    assert info.architecture == "armv7l"
    assert info.model_name == "Raspberry Pi 3 Model B Rev 1.2"
    assert isa_flags(info.flags) == ("neon",)


def test_isa_flags_maps_and_sorts() -> None:
    assert isa_flags(frozenset({"amx_tile", "amx_bf16", "avx512_bf16", "fma", "sse2", "avx2"})) == (
        "amx", "avx2", "avx512_bf16", "fma")
    assert isa_flags(frozenset({"fp", "asimd", "asimddp", "evtstrm"})) == ("asimd", "asimddp", "neon")


def test_allowed_cpus_from_status() -> None:
    status = "Name:\tpython3\nCpus_allowed:\t0000000f\nCpus_allowed_list:\t0-3\nMems_allowed_list:\t0\n"
    assert parse_allowed_cpus(status) == frozenset({0, 1, 2, 3})
    assert parse_allowed_cpus("Name:\tpython3\n") is None


def test_meminfo_bytes_and_bad_lines() -> None:
    text = ("MemTotal:       24684096 kB\nMemAvailable:   24175884 kB\nHugePages_Total:       0\n"
            "MemFree:  lots kB\nSwapTotal:  12 MB\n")
    values, bad = parse_meminfo(text)
    assert values["MemTotal"] == 24684096 * 1024
    assert values["MemAvailable"] == 24175884 * 1024
    assert values["HugePages_Total"] == 0
    assert "MemFree" not in values and "SwapTotal" not in values
    assert bad == ["MemFree:  lots kB", "SwapTotal:  12 MB"]


def test_proc_self_cgroup_v1_and_v2_lines() -> None:
    text = "4:memory:/process_api/849b\n3:cpu,cpuacct:/docker/ab12\n9:name=systemd:/\n0::/\nnonsense\n"
    entries, bad = parse_proc_self_cgroup(text)
    assert [(e.hierarchy_id, e.controllers, e.path) for e in entries] == [
        (4, ("memory",), "/process_api/849b"),
        (3, ("cpu", "cpuacct"), "/docker/ab12"),
        (9, ("name=systemd",), "/"),
        (0, (), "/"),
    ]
    assert bad == ["nonsense"]


def test_mountinfo_cgroup_mounts() -> None:
    text = (
        "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard\n"
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
        "1420 1417 0:33 /docker/9b7e /sys/fs/cgroup/cpu,cpuacct ro,nosuid master:16 - cgroup cgroup rw,cpu,cpuacct\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
        "617 616 0:30 / /sys/fs/cgroup ro,nosuid - cgroup2 cgroup ro,nsdelegate,memory_recursiveprot\n"
        "99 1 0:40 / /mnt/with\\040space rw - cgroup2 cgroup2 rw\n"
    )
    mounts = parse_mountinfo_cgroups(text)
    assert [(m.mount_root, m.mount_point, m.fs_type, m.controllers) for m in mounts] == [
        ("/", "/sys/fs/cgroup/cpu", "cgroup", ("cpu",)),
        ("/docker/9b7e", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", ("cpu", "cpuacct")),
        ("/", "/sys/fs/cgroup/systemd", "cgroup", ()),
        ("/", "/sys/fs/cgroup", "cgroup2", ()),
        ("/", "/mnt/with space", "cgroup2", ()),
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("400000 100000\n", 4.0),   # docker run --cpus=4
    ("150000 100000\n", 1.5),
    ("max 100000\n", None),     # no limit
])
def test_cpu_max(text: str, expected: float | None) -> None:
    assert parse_cpu_max(text) == expected


@pytest.mark.parametrize("text", ["four CPUs please", "400000", "400000 0", "-1 100000"])
def test_cpu_max_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_cpu_max(text)


def test_memory_stat() -> None:
    stats = parse_memory_stat("anon 1073741824\ninactive_file 402653184\ntotal_inactive_file 191410176\nbroken line\n")
    assert stats == {"anon": 1073741824, "inactive_file": 402653184, "total_inactive_file": 191410176}


@pytest.mark.parametrize(("text", "expected"), [
    ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n", "R35.4.1"),
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, DATE: Sat Feb 19 17:05:08 UTC 2022\n", "R32.7.1"),
    ("# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic, EABI: aarch64, DATE: Mon May  6 17:34:21 UTC 2024\n", "R36.3.0"),
    ("# R35 (release), REVISION: 1, GCID: 1\n", "R35.1.0"),
    ("not a release line", None),
])
def test_tegra_release(text: str, expected: str | None) -> None:
    assert parse_tegra_release(text) == expected


@pytest.mark.parametrize(("release", "jetpack"), [
    ("R32.7.1", "4.6.1"), ("R35.1.0", "5.0.2"), ("R35.2.1", "5.1"), ("R35.3.1", "5.1.1"),
    ("R35.4.1", "5.1.2"), ("R35.5.0", "5.1.3"), ("R36.2.0", "6.0 DP"), ("R36.3.0", "6.0"),
    ("R36.4.0", "6.1"), ("R36.4.3", "6.2"), ("R99.0.0", None),
])
def test_jetpack_table(release: str, jetpack: str | None) -> None:
    assert jetpack_for(release) == jetpack


def test_jetpack_table_keys_are_full_releases() -> None:
    for key in L4T_TO_JETPACK:
        assert parse_tegra_release(f"# R{key[1:].split('.')[0]} (release), REVISION: {key.split('.', 1)[1]}, GCID: 1") == key


def test_device_tree_strings_and_soc() -> None:
    compatible = parse_device_tree_strings("nvidia,p3509-0000+p3767-0001\0nvidia,p3767-0001\0nvidia,tegra234\0")
    assert compatible == ("nvidia,p3509-0000+p3767-0001", "nvidia,p3767-0001", "nvidia,tegra234")
    assert soc_from_compatible(compatible) == "tegra234"
    assert soc_from_compatible(("nvidia,jetson-nano", "nvidia,tegra210")) == "tegra210"
    assert soc_from_compatible(("raspberrypi,4-model-b", "brcm,bcm2711")) is None


@pytest.mark.parametrize(("text", "kind"), [
    ("0::/kubepods/besteffort/pod1f2e3d4c/3a4b5c6d\n", "kubernetes"), ("12:memory:/docker/3f2a9c1b7e44\n", "docker"),
    ("0::/machine.slice/libpod-5e6f7a8b.scope\n", "podman"),
    ("612 541 0:157 / / rw - overlay overlay rw,lowerdir=/var/lib/docker/overlay2/l/7ZQ3", "docker"),
    ("0::/init.scope\n", None),
])
def test_container_kind_from_text(text: str, kind: str | None) -> None:
    assert container_kind_from_text(text) == kind


@pytest.mark.parametrize(("encoded", "text"), [(12040, "12.4"), (11080, "11.8"), (12000, "12.0"), (13010, "13.1")])
def test_cuda_version_text(encoded: int, text: str) -> None:
    assert cuda_version_text(encoded) == text
