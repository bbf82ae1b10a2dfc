"""NVML through a fake reader (no GPU here) and the real reader on this machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pynvml
import pytest

from orchestrator.probe.facts import GpuFacts, HostFacts
from orchestrator.probe.host import JETSON_NVML_REASON, probe_host
from orchestrator.probe.nvml import PynvmlReader, mig_profile_from_name, read_gpus

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
MIB = 2**20


@dataclass
class FakeCard:
    name: str
    uuid: str
    total_bytes: int
    free_bytes: int
    capability: tuple[int, int]
    mig: str | None = None
    broken: BaseException | None = None
    instances: list[tuple[str, str, int, int]] = field(default_factory=list)
    """MIG instances as NVML describes them: (name, uuid, total, free)."""
    instances_error: BaseException | None = None


@dataclass
class FakeNvml:
    """Answers like NVML for the given cards; raises the given error where asked."""

    cards: list[FakeCard]
    driver: str = "550.54.15"
    cuda: int = 12040
    init_error: BaseException | None = None
    count_error: BaseException | None = None
    calls: list[str] = field(default_factory=list)

    def init(self) -> None:
        self.calls.append("init")
        if self.init_error is not None:
            raise self.init_error

    def shutdown(self) -> None:
        self.calls.append("shutdown")

    def device_count(self) -> int:
        if self.count_error is not None:
            raise self.count_error
        return len(self.cards)

    def driver_version(self) -> str:
        return self.driver

    def cuda_driver_version(self) -> int:
        return self.cuda

    def _card(self, index: int) -> FakeCard:
        card = self.cards[index]
        if card.broken is not None:
            raise card.broken
        return card

    def name(self, index: int) -> str:
        return self._card(index).name

    def uuid(self, index: int) -> str:
        return self._card(index).uuid

    def memory_bytes(self, index: int) -> tuple[int, int]:
        card = self._card(index)
        return card.total_bytes, card.free_bytes

    def compute_capability(self, index: int) -> tuple[int, int]:
        return self._card(index).capability

    def mig_mode(self, index: int) -> str | None:
        return self._card(index).mig

    def mig_instances(self, index: int) -> list[tuple[str, str, int, int]]:
        self.calls.append(f"mig_instances({index})")
        card = self._card(index)
        if card.instances_error is not None:
            raise card.instances_error
        return card.instances


T4 = FakeCard("Tesla T4", "GPU-5f1e2a3b-7c4d-4e8f-9a0b-1c2d3e4f5a6b", 15360 * MIB, 14930 * MIB, (7, 5))
RTX3060 = FakeCard("NVIDIA GeForce RTX 3060", "GPU-0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d", 12288 * MIB, 11802 * MIB, (8, 6))
A100_MIG = FakeCard("NVIDIA A100-SXM4-40GB", "GPU-aa11bb22-cc33-dd44-ee55-ff6677889900", 40960 * MIB, 40326 * MIB, (8, 0), "enabled")


def test_t4_and_rtx3060() -> None:
    fake = FakeNvml([T4, RTX3060])
    gpus, status, notes = read_gpus(fake)
    assert status.available and status.reason == "ok"
    assert notes == []
    assert [(g.index, g.name, g.compute_capability, g.cuda_version) for g in gpus] == [
        (0, "Tesla T4", "7.5", "12.4"), (1, "NVIDIA GeForce RTX 3060", "8.6", "12.4")]
    assert gpus[0].memory_total_bytes == 15360 * MIB
    assert gpus[1].compute_capability_tuple == (8, 6)
    assert gpus[0].mig_mode is None and gpus[0].driver_version == "550.54.15"
    assert fake.calls == ["init", "shutdown"]


def test_mig_mode_is_reported() -> None:
    gpus, _, notes = read_gpus(FakeNvml([A100_MIG]))
    assert gpus[0].mig_mode == "enabled"
    assert notes == ["MIG is enabled on GPU 0 (NVIDIA A100-SXM4-40GB) but it has no MIG instances: "
                     "create some with `nvidia-smi mig -cgi PROFILE -C`."]


def test_mig_instances_are_devices_with_their_own_memory() -> None:
    card = FakeCard(A100_MIG.name, A100_MIG.uuid, A100_MIG.total_bytes, A100_MIG.free_bytes, (8, 0), "enabled",
                    instances=[("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "MIG-1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b",
                                19968 * MIB, 19700 * MIB),
                               ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "MIG-a0b1c2d3-e4f5-5a6b-9c8d-7e6f5a4b3c2d",
                                4864 * MIB, 4800 * MIB)])
    fake = FakeNvml([T4, card])
    gpus, _, notes = read_gpus(fake)
    assert notes == []
    assert [(g.uuid[:4], g.index, g.mig_parent_index, g.mig_profile) for g in gpus] == [
        ("GPU-", 0, None, None), ("GPU-", 1, None, None), ("MIG-", 1, 1, "3g.20gb"), ("MIG-", 1, 1, "1g.5gb")]
    instance = gpus[2]
    assert instance.memory_total_bytes == 19968 * MIB and instance.memory_free_bytes == 19700 * MIB
    assert instance.compute_capability == "8.0" and instance.mig_mode is None
    assert instance.label == "GPU 1 MIG 3g.20gb (MIG-1f2e3d4c-5b6a-5978-8a9b-0c1d2e3f4a5b)"
    assert "mig_instances(0)" not in fake.calls  # only asked where MIG is enabled
    assert HostFacts.from_dict(HostFacts.from_dict(_facts_with(gpus)).to_dict()).gpus == gpus


def test_mig_listing_failure_is_a_note() -> None:
    card = FakeCard(A100_MIG.name, A100_MIG.uuid, A100_MIG.total_bytes, A100_MIG.free_bytes, (8, 0), "enabled",
                    instances_error=pynvml.NVMLError_NoPermission())
    gpus, status, notes = read_gpus(FakeNvml([card]))
    assert status.available and [g.uuid for g in gpus] == [A100_MIG.uuid]
    assert "could not list the MIG instances of GPU 0" in notes[0] and "denied" in notes[0]


@pytest.mark.parametrize(("name", "profile"), [
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", "1g.5gb"), ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "1g.10gb+me"),
    ("NVIDIA A30 MIG 2g.12gb", "2g.12gb"), ("Tesla T4", None),
])
def test_mig_profile_from_name(name: str, profile: str | None) -> None:
    assert mig_profile_from_name(name) == profile


def _facts_with(gpus: tuple[GpuFacts, ...]) -> dict[str, object]:
    facts = probe_host(HOSTS / "cgroup2-container-4cpu-8g", environ={}, nvml=FakeNvml([T4]), check_docker=False)
    data = facts.to_dict()
    data["gpus"] = [g.__dict__.copy() for g in gpus]
    return data


@pytest.mark.parametrize(("error", "words"), [
    (pynvml.NVMLError_LibraryNotFound(), "libnvidia-ml.so.1"),
    (pynvml.NVMLError_DriverNotLoaded(), "kernel driver is not loaded"),
    (pynvml.NVMLError_NoPermission(), "denied"),
    (pynvml.NVMLError_Unknown(), "NVML failed: NVMLError_Unknown"),
    (ModuleNotFoundError("No module named 'pynvml'"), "not installed"),
])
def test_init_failures_become_a_status(error: BaseException, words: str) -> None:
    fake = FakeNvml([T4], init_error=error)
    gpus, status, notes = read_gpus(fake)
    assert gpus == () and notes == []
    assert status.available is False
    assert words in status.reason
    assert "shutdown" not in fake.calls  # never initialised


def test_failure_after_init_still_shuts_down() -> None:
    fake = FakeNvml([T4], count_error=pynvml.NVMLError_Unknown())
    gpus, status, _ = read_gpus(fake)
    assert (gpus, status.available) == ((), False)
    assert fake.calls == ["init", "shutdown"]


def test_one_lost_gpu_is_a_note_and_the_rest_are_reported() -> None:
    lost = FakeCard("Tesla T4", "GPU-lost", 0, 0, (7, 5), broken=pynvml.NVMLError_GpuIsLost())
    gpus, status, notes = read_gpus(FakeNvml([lost, RTX3060]))
    assert status.available
    assert [g.index for g in gpus] == [1]
    assert notes == ["NVML could not describe GPU 0 (a GPU fell off the bus (NVML reports it lost)); it was left out."]


def test_probe_host_with_fake_nvml_on_a_recorded_tree() -> None:
    facts = probe_host(HOSTS / "cgroup2-container-4cpu-8g", environ={}, nvml=FakeNvml([T4]), check_docker=False)
    assert facts.nvml.available
    assert [g.name for g in facts.gpus] == ["Tesla T4"]
    assert HostFacts.from_dict(facts.to_dict()) == facts


def test_recorded_tree_does_not_ask_the_real_nvml() -> None:
    facts = probe_host(HOSTS / "cgroup1-container-2cpu-4g", environ={}, check_docker=False)
    assert facts.nvml.available is False
    assert facts.nvml.reason.startswith("not asked")


def test_jetson_without_nvml_is_expected_not_an_error() -> None:
    facts = probe_host(HOSTS / "jetson-orin-nx-r35", environ={},
                       nvml=FakeNvml([], init_error=pynvml.NVMLError_LibraryNotFound()), check_docker=False)
    assert facts.nvml.reason == JETSON_NVML_REASON
    assert not any("NVML" in n for n in facts.notes)


def test_real_reader_on_this_machine() -> None:
    gpus, status, _ = read_gpus(PynvmlReader())
    if Path("/proc/driver/nvidia/version").exists():
        assert status.available and gpus
    else:
        assert status.available is False
        assert gpus == ()
        assert "libnvidia-ml.so.1" in status.reason or "driver" in status.reason


@pytest.mark.gpu
def test_real_gpu_is_described() -> None:
    gpus, status, notes = read_gpus(PynvmlReader())
    assert status.available and notes == []
    for gpu in gpus:
        assert gpu.memory_total_bytes > gpu.memory_free_bytes > 0
        assert gpu.uuid.startswith(("GPU-", "MIG-"))
        assert gpu.compute_capability_tuple >= (3, 0)
        assert gpu.cuda_version.count(".") == 1
