"""The quality gate, run in a child process (``python -m runtime.tools.quality``).

The gate needs onnxruntime, numpy, scipy, pesq and pystoi; none of that belongs in the
orchestrator's process (ruff's banned-api keeps onnxruntime in runtime/), so `deploy tune` runs
it the way it runs the runtime: under the same interpreter, and reads its JSON.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.errors import DeployError, UsageError

GATE_PACKAGES = ("pesq", "pystoi", "scipy")


def missing_packages(names: Sequence[str] = GATE_PACKAGES) -> list[str]:
    return [name for name in names if importlib.util.find_spec(name) is None]


def run_gate(variants: Sequence[str], environ: Mapping[str, str], timeout_s: float) -> list[dict[str, Any]]:
    """Make and judge each variant; one dict per variant (see runtime.tools.quality.gate_variants)."""
    if not variants:
        return []
    missing = missing_packages()
    if missing:
        raise UsageError(f"the quality gate needs {', '.join(GATE_PACKAGES)}; not installed: {', '.join(missing)}",
                         "install the tune extra (`pip install 'tailor-deploy[tune]'`; from a clone: "
                         "`.venv/bin/pip install -e '.[tune]'`), or pass --variants none to tune without model variants")
    argv = [sys.executable, "-m", "runtime.tools.quality", "--json", *variants]
    try:
        done = subprocess.run(argv, env=dict(environ), capture_output=True, text=True, timeout=max(1.0, timeout_s),
                              check=False)
    except subprocess.TimeoutExpired:
        raise DeployError(f"the quality gate did not finish within {timeout_s:.0f} s",
                          "give `deploy tune` a larger --budget, or fewer --variants") from None
    if done.returncode != 0:
        tail = "\n  ".join(done.stderr.strip().splitlines()[-8:])
        raise DeployError(f"the quality gate failed (exit {done.returncode}):\n  {tail}",
                          "run `python -m runtime.tools.quality VARIANT` to see the whole error")
    try:
        results = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise DeployError(f"the quality gate printed no JSON result ({exc})",
                          "run `python -m runtime.tools.quality --json VARIANT` by hand") from None
    if not isinstance(results, list):
        raise DeployError("the quality gate's JSON result is not a list", "this is a bug in tailor")
    return results
