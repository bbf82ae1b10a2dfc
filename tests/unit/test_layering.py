"""The stage folders keep their order: a lower stage never imports a higher one.

ruff enforces this through the nested ``ruff.toml`` files (banned-api per stage folder); this
test checks the imports themselves, so a missing or loosened ruff.toml cannot hide a violation,
and checks that every nested ruff.toml still carries the project-wide bans (ruff replaces,
rather than merges, the banned-api table of the file it extends).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - CI runs 3.11+
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "orchestrator"

# Lowest first. "common" is the top-level shared modules (errors, units, jsonfile, ...).
ORDER = ["common", "probe", "select", "plan", "render", "launch", "pipeline", "fleet", "supervise", "tune", "cli"]
STAGE_FOLDERS = ["probe", "select", "plan", "render", "launch", "fleet", "supervise", "tune"]


def layer_of_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "orchestrator":
        return None
    if len(parts) == 1:
        return "common"
    if parts[1] in ORDER:
        return parts[1]
    if parts[1] == "__main__":
        return "cli"
    return "common"


def layer_of_file(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    return layer_of_module(".".join(relative.parts)) or "common"


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_no_module_imports_a_higher_stage() -> None:
    violations = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = ORDER.index(layer_of_file(path))
        for line, module in imported_modules(path):
            layer = layer_of_module(module)
            if layer is not None and ORDER.index(layer) > own:
                violations.append(f"{path.relative_to(ROOT)}:{line} imports {module} ({layer})")
    assert violations == []


def test_the_checker_sees_an_upward_import() -> None:
    # The check above must be able to fail: a plan module importing the renderer is caught.
    assert ORDER.index(layer_of_module("orchestrator.render.renderer") or "") > ORDER.index(
        layer_of_file(PACKAGE / "plan" / "planner.py")
    )
    assert layer_of_module("orchestrator.errors") == "common"
    assert layer_of_module("yaml") is None


@pytest.mark.parametrize("stage", STAGE_FOLDERS)
def test_each_stage_folder_bans_every_higher_stage_in_ruff(stage: str) -> None:
    config = tomllib.loads((PACKAGE / stage / "ruff.toml").read_text(encoding="utf-8"))
    banned = set(config["lint"]["flake8-tidy-imports"]["banned-api"])
    higher = {f"orchestrator.{name}" for name in ORDER[ORDER.index(stage) + 1 :]}
    assert higher <= banned
    lower = {f"orchestrator.{name}" for name in ORDER[: ORDER.index(stage) + 1]}
    assert not (lower & banned)


@pytest.mark.parametrize("folder", ["", *STAGE_FOLDERS])
def test_nested_ruff_configs_keep_the_project_wide_bans(folder: str) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wanted = project["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    nested = tomllib.loads((PACKAGE / folder / "ruff.toml").read_text(encoding="utf-8"))
    banned = nested["lint"]["flake8-tidy-imports"]["banned-api"]
    for name, entry in wanted.items():
        assert banned.get(name) == entry, f"orchestrator/{folder}/ruff.toml lost the ban on {name}"


def test_the_orchestrators_error_floor_imports_nothing_of_the_runtime() -> None:
    """orchestrator/errors.py is the floor every stage imports: it stands on its own (issue 19)."""
    tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m.split(".")[0] == "runtime"]
    from orchestrator.errors import UsageError
    assert str(UsageError("bad --port", "use 1-65535")) == "bad --port\nhint: use 1-65535"
