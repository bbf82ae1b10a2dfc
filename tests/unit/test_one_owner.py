"""One owner per decision: the port default, the container uid, the version and the bind-all
address appear as literals only in their owner (orchestrator/plan/decisions.py, the knob table,
orchestrator/__init__.py); every renderer and backend asks the owner."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from orchestrator import __version__
from orchestrator.plan import decisions
from runtime.settings import variable

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {ROOT / "orchestrator" / "plan" / "decisions.py", ROOT / "orchestrator" / "__init__.py"}
FORBIDDEN = {
    "the default port": re.compile(r"\b8000\b"),
    "the container uid": re.compile(r"\b10001\b"),
    "the version": re.compile(re.escape(__version__)),
    "the bind-all address": re.compile(r"0\.0\.0\.0"),
}


def code_strings_and_numbers(path: Path) -> list[tuple[int, str]]:
    """Every string and number constant in ``path`` except docstrings (prose may name values).

    A docstring here is any bare string statement: module/class/function docstrings and the
    attribute docstrings written under assignments.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prose = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return [(node.lineno, str(node.value)) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and id(node) not in prose
            and isinstance(node.value, (str, int)) and not isinstance(node.value, bool)]


def test_no_literal_outside_its_owner() -> None:
    offenders = []
    for path in sorted((ROOT / "orchestrator").rglob("*.py")):
        if path in OWNERS:
            continue
        for line, text in code_strings_and_numbers(path):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(text) and not text.startswith(("http", "GET ")):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {what} ({text!r})")
    for path in sorted((ROOT / "templates").rglob("*.j2")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for what, pattern in FORBIDDEN.items():
                if pattern.search(line) and not line.lstrip().startswith("#"):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {what}")
    assert offenders == []


def test_the_checker_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Docs may say 8000."""\nPORT = 8000\nUSER = "10001:10001"\n', encoding="utf-8")
    texts = [text for _line, text in code_strings_and_numbers(sample)]
    assert texts == ["8000", "10001:10001"]


def test_owners_agree_with_the_knob_table_and_the_version() -> None:
    assert decisions.default_port() == int(variable("TAILOR_PORT").default)
    assert decisions.container_user() == f"{decisions.CONTAINER_UID}:{decisions.CONTAINER_GID}"
    assert decisions.image_tag("cuda") == f"tailor-runtime:{__version__}-cuda"
    assert decisions.flavor_of_image(decisions.image_tag("l4t")) == "l4t"
    assert decisions.flavor_of_image("python:3.11") == "cpu"


@pytest.mark.parametrize(("in_container", "network", "public", "address"), [
    (True, "bridge", False, decisions.ALL_INTERFACES),   # reachable through the port published on loopback
    (True, "bridge", True, decisions.ALL_INTERFACES),
    (True, "host", False, decisions.LOOPBACK),           # host network: the bind IS the exposure
    (True, "host", True, decisions.ALL_INTERFACES),
    (False, "bridge", False, decisions.LOOPBACK),
    (False, "bridge", True, decisions.ALL_INTERFACES),
])
def test_bind_address_is_one_decision(in_container: bool, network: str, public: bool, address: str) -> None:
    assert decisions.bind_address(in_container=in_container, network=network, public=public)[0] == address


def calls_of(name: str) -> list[str]:
    """Files (relative) that call ``name``, outside its definition."""
    found = []
    for path in sorted((ROOT / "orchestrator").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name:
                found.append(str(path.relative_to(ROOT)))
    return found


def test_the_selection_owns_the_gpu_choice_and_the_completed_facts() -> None:
    """select/ chooses the GPUs and completes the facts once; plan/ receives both in the Selection
    (issue 19: ``gpus or choose_gpus(facts)`` stood in 7 places, ``complete_facts`` ran twice)."""
    assert set(calls_of("complete_facts")) == {"orchestrator/select/selection.py"}
    planning = [f for f in calls_of("choose_gpus") if f.startswith(("orchestrator/plan/", "orchestrator/render/"))]
    assert planning == []


def test_a_plan_uses_the_selections_facts_and_gpus() -> None:
    from orchestrator.plan.planner import make_plan, step_down
    from orchestrator.probe.facts import HostFacts
    from orchestrator.select.profiles import load_profiles
    from orchestrator.select.selection import select_profile

    host = HostFacts.from_json_file(ROOT / "tests" / "fixtures" / "facts" / "h100x8-2tb.json")
    # CUDA_VISIBLE_DEVICES given to the selection only: the plan follows the selection's choice.
    one = next(g.uuid for g in host.gpus if g.index == 3)
    selection = select_profile(host, load_profiles(), environ={"CUDA_VISIBLE_DEVICES": one})
    assert [g.uuid for g in selection.gpus.used] == [one] and len(host.gpus) == 8
    plan = make_plan(host, selection, environ={})
    assert plan.env["CUDA_VISIBLE_DEVICES"] == one
    smaller = step_down(plan, host, load_profiles())
    assert smaller is not None and smaller.workers <= plan.workers
