"""Which pip commands fill the image's wheelhouse, in each install situation.

pip itself is replaced by a recorder: the commands are what is under test, and the real
download/build paths run for real in the Docker tier (tests/docker)."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator import __version__
from orchestrator.launch import image
from orchestrator.launch.image import FLAVORS, prepare_wheelhouse


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), 0, "", "")


def test_installed_from_a_wheel_downloads_its_own_wheel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "project_root", lambda: None)
    run = Recorder()
    prepare_wheelhouse(tmp_path / "ctx", FLAVORS["cpu"], python_version="3.11", wheelhouse=None, run=run)
    own = [c for c in run.calls if f"tailor-deploy=={__version__}" in c]
    assert len(own) == 1 and "download" in own[0] and "--no-deps" in own[0]


def test_source_checkout_builds_without_isolation_only_when_hatchling_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "checkout"
    monkeypatch.setattr(image, "project_root", lambda: checkout)  # a source checkout, wherever the tests run
    for present in (True, False):
        run = Recorder()
        prepare_wheelhouse(tmp_path / f"ctx-{present}", FLAVORS["cpu"], python_version="3.11",
                           wheelhouse=None, run=run, has_build_backend=lambda present=present: present)
        (build,) = [c for c in run.calls if "wheel" in c[:4]]
        assert build[-1] == str(checkout) and "--no-deps" in build  # the checkout's own wheel, built
        assert ("--no-build-isolation" in build) is present
        assert not any("download" in c and any(a.startswith("tailor-deploy==") for a in c) for c in run.calls)


def test_cuda_image_downloads_torch_from_the_planned_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(image, "project_root", lambda: None)
    run = Recorder()
    prepare_wheelhouse(tmp_path / "ctx", FLAVORS["cuda"], python_version="3.10", wheelhouse=None, run=run,
                       cuda_build="cu126")
    (deps,) = [c for c in run.calls if any(r.startswith("torch") for r in c)]
    assert deps[deps.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cu126"
    # The CPU onnx fallback needs plain onnxruntime: it is among the downloads, and nothing else is.
    assert any(r.startswith("onnxruntime") for r in deps) and not any(r.startswith("onnxruntime-gpu") for r in deps)
    cpu_run = Recorder()
    prepare_wheelhouse(tmp_path / "cpu", FLAVORS["cpu"], python_version="3.11", wheelhouse=None, run=cpu_run,
                       cuda_build="cu126")
    assert not any("--extra-index-url" in c for c in cpu_run.calls)
