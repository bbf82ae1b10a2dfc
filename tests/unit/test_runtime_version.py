"""The runtime reports the version of the distribution it is installed as (pyproject.toml's
``[project]``), and a plain placeholder when it runs from a tree that was never installed."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import pytest

import runtime
from runtime import DISTRIBUTION, UNKNOWN_VERSION, installed_version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - CI runs 3.11+
    tomllib = pytest.importorskip("tomli")

PROJECT = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]


def test_the_distribution_is_the_one_pyproject_names() -> None:
    assert PROJECT["name"] == DISTRIBUTION


def test_the_version_is_the_installed_distributions() -> None:
    assert installed_version() == metadata.version(PROJECT["name"]) == runtime.__version__
    assert runtime.__version__ != UNKNOWN_VERSION  # the test environment has it installed


def test_a_tree_never_installed_reports_the_placeholder(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", missing)
    assert installed_version() == UNKNOWN_VERSION == "0+unknown"
