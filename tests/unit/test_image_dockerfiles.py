"""Runtime image build inputs: Dockerfiles per flavor, dependency lists, wheelhouse errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.launch.image import (
    FLAVORS,
    dependency_requirements,
    prepare_wheelhouse,
    render_dockerfile,
)


@pytest.mark.parametrize("flavor", sorted(FLAVORS))
def test_dockerfiles_render_offline_install_nonroot_healthcheck(flavor: str) -> None:
    text = render_dockerfile(FLAVORS[flavor], "example/base:1", 8123)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines[0] == "FROM example/base:1"
    assert "--no-index --find-links /tmp/wheels" in text
    assert "USER 10001:10001" in lines and "EXPOSE 8123" in lines
    assert "python -m runtime.healthcheck" in text
    assert lines[-1] == 'CMD ["/opt/tailor/bin/python", "-m", "runtime"]'
    assert "{{" not in text and "{%" not in text


def test_dependency_requirements_follow_extras() -> None:
    runtime = dependency_requirements(("runtime",))
    assert any(r.startswith("onnxruntime") for r in runtime) and any(r.startswith("typer") for r in runtime)
    assert not any(r.startswith("torch") for r in runtime) and not any(r.startswith("pytest") for r in runtime)
    assert any(r.startswith("torch") for r in dependency_requirements(("runtime", "torch")))


def test_wheelhouse_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="is not a directory"):
        prepare_wheelhouse(tmp_path / "ctx", FLAVORS["cpu"], python_version="3.11", wheelhouse=tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"holds no \.whl files") as info:
        prepare_wheelhouse(tmp_path / "ctx", FLAVORS["cpu"], python_version="3.11", wheelhouse=tmp_path / "empty")
    assert "pip download" in info.value.hint
