"""CPU facts: architecture, model, core counts, ISA flags, NUMA, affinity and cgroup limits."""

from __future__ import annotations

import platform
from dataclasses import dataclass

from orchestrator.probe.cgroup import CgroupLimits
from orchestrator.probe.cpulist import parse_cpu_list
from orchestrator.probe.facts import CpuFacts
from orchestrator.probe.rootfs import RootFs, split_lines

# x86 /proc/cpuinfo ``flags`` and Arm ``Features`` words that matter for inference kernels,
# mapped to the name we report. Several words can map to one name (amx_tile, amx_bf16 → amx).
ISA_FLAG_NAMES: dict[str, tuple[str, ...]] = {
    "avx": ("avx",),
    "avx2": ("avx2",),
    "fma": ("fma",),
    "f16c": ("f16c",),
    "avx512f": ("avx512f",),
    "avx512_bf16": ("avx512_bf16",),
    "avx512_fp16": ("avx512_fp16",),
    "avx512_vnni": ("avx512_vnni",),
    "avx_vnni": ("avx_vnni",),
    "amx_tile": ("amx",),
    "amx_bf16": ("amx",),
    "amx_int8": ("amx",),
    "asimd": ("asimd", "neon"),
    "neon": ("neon",),
    "asimdhp": ("asimdhp",),
    "asimddp": ("asimddp",),
    "fphp": ("fphp",),
    "sve": ("sve",),
    "sve2": ("sve2",),
    "bf16": ("bf16",),
    "i8mm": ("i8mm",),
}

# (implementer, part) from Arm /proc/cpuinfo → core name. Source: Arm and NVIDIA TRMs.
ARM_CPU_PARTS: dict[tuple[str, str], str] = {
    ("0x41", "0xd03"): "ARM Cortex-A53",
    ("0x41", "0xd04"): "ARM Cortex-A35",
    ("0x41", "0xd05"): "ARM Cortex-A55",
    ("0x41", "0xd07"): "ARM Cortex-A57",
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd09"): "ARM Cortex-A73",
    ("0x41", "0xd0a"): "ARM Cortex-A75",
    ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1",
    ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd41"): "ARM Cortex-A78",
    ("0x41", "0xd42"): "ARM Cortex-A78AE",
    ("0x41", "0xd49"): "ARM Neoverse-N2",
    ("0x41", "0xd4f"): "ARM Neoverse-V2",
    ("0x4e", "0x004"): "NVIDIA Carmel",
}


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says."""

    processors: int
    model_name: str
    physical_cores: int | None
    """Distinct (physical id, core id) pairs; None when cpuinfo has no topology (Arm)."""
    flags: frozenset[str]
    architecture: str | None
    """Inferred from the text: ``lm`` flag → x86_64, ``CPU architecture: 8`` → aarch64."""


def parse_cpuinfo(text: str) -> CpuInfo:
    """Parse /proc/cpuinfo (x86 or Arm).

    x86 samples: ``model name\t: Intel(R) Xeon(R) Processor``, ``physical id\t: 0``,
    ``core id\t\t: 0``, ``flags\t\t: fpu vme ... avx2 ... amx_tile``.
    Arm samples: ``Features\t: fp asimd evtstrm aes``, ``CPU implementer\t: 0x41``,
    ``CPU architecture: 8``, ``CPU part\t: 0xd42``.
    """
    processors = 0
    model = ""
    hardware_model = ""
    implementer = part = ""
    cpu_arch = ""
    flags: set[str] = set()
    cores: set[tuple[str, str]] = set()
    physical_id = ""
    has_core_ids = False
    for raw_key, raw_value in split_lines(text, ":"):
        key, value = raw_key.strip(), raw_value.strip()
        if key == "processor":
            processors += 1
        elif key == "model name" and not model:
            model = value
        elif key == "Model" and not hardware_model:
            hardware_model = value
        elif key in ("flags", "Features"):
            flags.update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            has_core_ids = True
            cores.add((physical_id, value))
        elif key == "CPU implementer" and not implementer:
            implementer = value.lower()
        elif key == "CPU part" and not part:
            part = value.lower()
        elif key == "CPU architecture" and not cpu_arch:
            cpu_arch = value
    if not model and implementer:
        model = ARM_CPU_PARTS.get((implementer, part), f"Arm CPU implementer {implementer} part {part}")
    if not model:
        model = hardware_model
    architecture: str | None = None
    if "lm" in flags:
        architecture = "x86_64"
    elif "vendor_id" in text and flags:
        architecture = "i686"
    elif cpu_arch == "8" or cpu_arch.lower() == "aarch64":
        architecture = "aarch64"
    elif cpu_arch.startswith("7"):
        architecture = "armv7l"
    return CpuInfo(processors, model, len(cores) if has_core_ids else None, frozenset(flags), architecture)


def isa_flags(flags: frozenset[str]) -> tuple[str, ...]:
    """Inference-relevant ISA names, sorted. ``amx_tile`` → ``amx``; ``asimd`` → ``asimd``, ``neon``."""
    names: set[str] = set()
    for flag in flags:
        names.update(ISA_FLAG_NAMES.get(flag, ()))
    return tuple(sorted(names))


def parse_allowed_cpus(status_text: str) -> frozenset[int] | None:
    """CPUs from /proc/self/status. Sample line: ``Cpus_allowed_list:\t0-3``."""
    for key, value in split_lines(status_text, ":"):
        if key == "Cpus_allowed_list":
            return parse_cpu_list(value)
    return None


def _cpu_list_file(fs: RootFs, host_path: str) -> frozenset[int] | None:
    return fs.parse(host_path, parse_cpu_list) or None


def _architecture(fs: RootFs, info: CpuInfo | None) -> str:
    text = fs.read_text("/proc/sys/kernel/arch")  # Linux 6.1+: the same string as uname -m
    if text and text.strip():
        return text.strip()
    if info is not None and info.architecture:
        return info.architecture
    if fs.is_live:
        return platform.machine() or "unknown"
    fs.note("The CPU architecture could not be told from /proc/sys/kernel/arch or /proc/cpuinfo; it is reported as 'unknown'.")
    return "unknown"


def _sysfs_physical_cores(fs: RootFs, online: frozenset[int]) -> int | None:
    pairs: set[tuple[str, str]] = set()
    for cpu in sorted(online):
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology"
        package = fs.read_text(f"{base}/physical_package_id")
        core = fs.read_text(f"{base}/core_id")
        if package is None or core is None:
            return None
        pairs.add((package.strip(), core.strip()))
    return len(pairs) or None


def probe_cpu(fs: RootFs, limits: CgroupLimits) -> CpuFacts:
    """CPU facts from /proc/cpuinfo, /sys/devices/system/{cpu,node}, /proc/self/status and cgroups."""
    info: CpuInfo | None = None
    text = fs.read_text("/proc/cpuinfo")
    if text is not None:
        info = parse_cpuinfo(text)
        if info.processors == 0:
            fs.note("/proc/cpuinfo lists no 'processor' entries; CPU model and flags are unknown.")
            info = None
    else:
        fs.note("/proc/cpuinfo is missing; CPU model and flags are unknown.")

    online = _cpu_list_file(fs, "/sys/devices/system/cpu/online")
    if online is not None:
        logical = len(online)
    elif info is not None:
        logical = info.processors
    else:
        fs.note("Neither /sys/devices/system/cpu/online nor /proc/cpuinfo gave a CPU count; assuming 1 CPU.")
        logical = 1

    physical = info.physical_cores if info is not None else None
    if physical is None and online is not None:
        physical = _sysfs_physical_cores(fs, online)
    if physical is None or physical > logical:
        physical = logical

    nodes = _cpu_list_file(fs, "/sys/devices/system/node/online")
    numa = len(nodes) if nodes else 1

    allowed = logical
    status = fs.read_text("/proc/self/status")
    if status is not None:
        try:
            cpus = parse_allowed_cpus(status)
        except ValueError as exc:
            fs.note(f"/proc/self/status has a garbled Cpus_allowed_list ({exc}); affinity was ignored.")
            cpus = None
        if cpus:
            allowed = len(cpus)

    candidates: list[tuple[str, int]] = [("host", logical), ("cpuset", limits.cpuset_cpus or logical),
                                         ("affinity", allowed)]
    if limits.quota_cpus is not None:
        candidates.append(("cgroup-quota", max(1, int(limits.quota_cpus))))
    source, effective = candidates[0]
    for name, value in candidates[1:]:
        if value < effective:
            source, effective = name, value

    return CpuFacts(
        architecture=_architecture(fs, info),
        model_name=info.model_name if info is not None else "unknown",
        logical_cores=logical,
        physical_cores=physical,
        isa_flags=isa_flags(info.flags) if info is not None else (),
        numa_nodes=numa,
        allowed_cpus=allowed,
        cgroup_quota_cpus=limits.quota_cpus,
        cpuset_cpus=limits.cpuset_cpus,
        effective_cpus=effective,
        effective_cpus_source=source,
    )
