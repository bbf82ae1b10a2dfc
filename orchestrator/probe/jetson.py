"""NVIDIA Jetson boards: L4T release, device-tree model, SoC and JetPack version."""

from __future__ import annotations

import re

from orchestrator.probe.facts import JetsonFacts
from orchestrator.probe.rootfs import RootFs

# L4T (Jetson Linux) release → JetPack release. Source: NVIDIA's JetPack archive and
# Jetson Linux release notes. Keep this as data; add rows as NVIDIA ships releases.
L4T_TO_JETPACK: dict[str, str] = {
    "R32.4.3": "4.4",
    "R32.4.4": "4.4.1",
    "R32.5.0": "4.5",
    "R32.5.1": "4.5.1",
    "R32.6.1": "4.6",
    "R32.7.1": "4.6.1",
    "R32.7.2": "4.6.2",
    "R32.7.3": "4.6.3",
    "R32.7.4": "4.6.4",
    "R32.7.5": "4.6.5",
    "R32.7.6": "4.6.6",
    "R34.1.0": "5.0 DP",
    "R34.1.1": "5.0.1 DP",
    "R35.1.0": "5.0.2",
    "R35.2.1": "5.1",
    "R35.3.1": "5.1.1",
    "R35.4.1": "5.1.2",
    "R35.5.0": "5.1.3",
    "R35.6.0": "5.1.4",
    "R35.6.1": "5.1.5",
    "R36.2.0": "6.0 DP",
    "R36.3.0": "6.0",
    "R36.4.0": "6.1",
    "R36.4.3": "6.2",
    "R36.4.4": "6.2.1",
    "R38.2.0": "7.0",
}

SOCS = ("tegra264", "tegra234", "tegra194", "tegra186", "tegra210")
"""Thor, Orin, Xavier, TX2, Nano/TX1: matched against ``nvidia,<soc>`` in the compatible list."""

# Sample: "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: ..."
_RELEASE = re.compile(r"#\s*R(?P<major>\d+)\s*\(release\),\s*REVISION:\s*(?P<rev>\d+(?:\.\d+)*)")


def parse_tegra_release(text: str) -> str | None:
    """``R<major>.<minor>.<patch>`` from /etc/nv_tegra_release, or None if it does not match.

    Sample: ``# R35 (release), REVISION: 4.1, GCID: 33958178, ...`` → ``R35.4.1``;
    ``# R36 (release), REVISION: 3.0, ...`` → ``R36.3.0``.
    """
    match = _RELEASE.search(text)
    if match is None:
        return None
    parts = match.group("rev").split(".")
    while len(parts) < 2:
        parts.append("0")
    return f"R{match.group('major')}." + ".".join(parts)


def jetpack_for(l4t_release: str) -> str | None:
    """JetPack version for an L4T release (``R35.4.1`` → ``5.1.2``), None when unknown."""
    return L4T_TO_JETPACK.get(l4t_release)


def parse_device_tree_strings(raw: str) -> tuple[str, ...]:
    """A device-tree string list (NUL-separated, NUL-terminated), e.g. ``nvidia,p3767-0000\\0nvidia,tegra234\\0``."""
    return tuple(s.strip() for s in raw.split("\0") if s.strip())


def soc_from_compatible(compatible: tuple[str, ...]) -> str | None:
    for entry in compatible:
        vendor, _, name = entry.partition(",")
        if vendor == "nvidia" and name in SOCS:
            return name
    return None


def _device_tree(fs: RootFs, name: str) -> str | None:
    for base in ("/proc/device-tree", "/sys/firmware/devicetree/base"):
        text = fs.read_text(f"{base}/{name}")
        if text is not None:
            return text
    return None


def probe_jetson(fs: RootFs) -> JetsonFacts | None:
    """Jetson facts, or None when this is not a Jetson (no L4T release, no Tegra SoC)."""
    release_text = fs.read_text("/etc/nv_tegra_release")
    compatible_raw = _device_tree(fs, "compatible")
    compatible = parse_device_tree_strings(compatible_raw) if compatible_raw else ()
    soc = soc_from_compatible(compatible)
    if release_text is None and soc is None:
        return None
    release = parse_tegra_release(release_text) if release_text is not None else None
    if release_text is not None and release is None:
        if soc is None:
            fs.note("/etc/nv_tegra_release exists but does not match '# R<major> (release), REVISION: <x.y>', "
                    "and the device tree names no Tegra SoC; this is not treated as a Jetson.")
            return None
        fs.note("/etc/nv_tegra_release does not match '# R<major> (release), REVISION: <x.y>'; the L4T release is unknown.")
    elif release_text is None:
        fs.note("This looks like a Jetson (Tegra SoC in the device tree) but /etc/nv_tegra_release is missing; the L4T release is unknown.")
    jetpack = jetpack_for(release) if release else None
    if release and jetpack is None:
        fs.note(f"L4T {release} is not in Tailor's L4T-to-JetPack table; the JetPack version is unknown.")
    model_raw = _device_tree(fs, "model")
    model = parse_device_tree_strings(model_raw)[0] if model_raw and parse_device_tree_strings(model_raw) else ""
    if not model:
        fs.note("The device-tree model (/proc/device-tree/model) is missing; the Jetson board name is unknown.")
    return JetsonFacts(
        board_model=model or "unknown",
        compatible=compatible,
        soc=soc or "unknown",
        l4t_release=release or "unknown",
        jetpack_version=jetpack,
    )
