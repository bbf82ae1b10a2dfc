"""The fleet's wheelhouse archive is built once per set of inputs.

Building Tailor's wheel takes about a minute on a small controller; an unchanged `deploy fleet
up` must not pay it again. Here the wheel build (pip) is replaced by a counter that writes
stand-in wheels; the key, the cache and the archive are the real ones. The real build runs in the
fleet tier (tests/fleet/test_fleet_ansible.py: the second `up` says the archive is up to date).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from orchestrator.fleet import wheelhouse as wh
from orchestrator.launch import image


@pytest.fixture
def sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "src"
    (root / "orchestrator").mkdir(parents=True)
    (root / "orchestrator" / "__init__.py").write_text("VERSION = 1\n")
    (root / "orchestrator" / "__pycache__").mkdir()
    (root / "orchestrator" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "pyproject.toml").write_text("[project]\nname = 'tailor-deploy'\n")
    monkeypatch.setattr(image, "project_root", lambda: root)
    return root


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    calls: list[Path] = []

    def fake_prepare(dest: Path, _flavor: object, *, python_version: str, wheelhouse: Path | None,
                     log: object = None) -> list[str]:
        calls.append(dest)
        dest.mkdir(parents=True, exist_ok=True)
        names = ["tailor_deploy-0.1.0-py3-none-any.whl", f"dep-1.0-cp{python_version.replace('.', '')}-none-any.whl"]
        for name in names:
            (dest / name).write_bytes(name.encode())
        return names

    monkeypatch.setattr(image, "prepare_wheelhouse", fake_prepare)
    return calls


def test_an_unchanged_wheelhouse_is_not_rebuilt_and_a_changed_input_rebuilds_it(
        tmp_path: Path, sources: Path, builds: list[Path]) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "numpy-2.0-cp311-none-any.whl").write_bytes(b"numpy")
    dest = tmp_path / "fleet" / "wheelhouse.tar"
    said: list[str] = []

    def build(python: str = "3.11") -> None:
        wh.build_archive(dest, wheelhouse=wheels, python_version=python, log=said.append)

    build()
    assert len(builds) == 1 and dest.is_file() and dest.with_name("wheelhouse.tar.key").is_file()
    mtime = dest.stat().st_mtime_ns
    build()
    assert len(builds) == 1 and "is up to date" in said[-1] and dest.stat().st_mtime_ns == mtime

    (sources / "orchestrator" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\1")  # not a source
    build()
    assert len(builds) == 1
    (sources / "orchestrator" / "__init__.py").write_text("VERSION = 2\n")  # a source changed
    build()
    assert len(builds) == 2
    build()
    assert len(builds) == 2

    (wheels / "scipy-1.0-cp311-none-any.whl").write_bytes(b"scipy")  # another wheel in --wheelhouse
    build()
    assert len(builds) == 3
    build("3.12")  # another Python on the hosts
    assert len(builds) == 4

    dest.write_bytes(b"damaged")  # an archive that is not what was built
    build("3.12")
    assert len(builds) == 5 and dest.read_bytes() != b"damaged"


def test_the_source_digest_covers_what_the_wheel_is_built_from(tmp_path: Path) -> None:
    root = tmp_path / "src"
    (root / "runtime").mkdir(parents=True)
    (root / "runtime" / "app.py").write_text("a = 1\n")
    (root / "templates").mkdir()
    (root / "templates" / "unit.j2").write_text("x")
    (root / "benchmarks").mkdir()
    (root / "benchmarks" / "bench.py").write_text("not in the wheel")
    first = wh.source_digest(root)
    (root / "benchmarks" / "bench.py").write_text("changed, still not in the wheel")
    (root / "runtime" / ".hidden").write_text("editor state")
    assert wh.source_digest(root) == first
    (root / "templates" / "unit.j2").write_text("y")
    assert wh.source_digest(root) != first
    os.rename(root / "runtime" / "app.py", root / "runtime" / "server.py")  # same bytes, other name
    assert wh.source_digest(root) != first
