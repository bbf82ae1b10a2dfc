"""Suite-wide tiers: GPU and Jetson tests skip cleanly where that hardware is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() or Path("/proc/driver/nvidia/version").exists()


def _is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").exists()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    no_gpu = pytest.mark.skip(reason="no NVIDIA GPU on this machine (gpu tier)")
    no_jetson = pytest.mark.skip(reason="not a Jetson board (jetson tier)")
    gpu = _has_nvidia_gpu() or os.environ.get("TAILOR_FORCE_GPU_TESTS") == "1"
    jetson = _is_jetson()
    for item in items:
        if "gpu" in item.keywords and not gpu:
            item.add_marker(no_gpu)
        if "jetson" in item.keywords and not jetson:
            item.add_marker(no_jetson)
