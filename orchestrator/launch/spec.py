"""LaunchSpec: what a runner needs to start the runtime, taken from a plan.

The spec is read from the plan's JSON form (``Plan.to_dict()`` / ``plan.json`` in a rendered
directory), which is the plan's stable contract, so ``deploy up DIR`` can launch from files
rendered earlier or on another machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import LaunchError, UsageError
from orchestrator.jsonfile import read_json

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class LaunchSpec:
    profile: str
    image: str
    """Docker image tag, ``tailor-runtime:<version>-<flavor>``."""
    flavor: str
    """``cpu``, ``cuda`` or ``l4t``: which Dockerfile template builds the image."""
    env: tuple[tuple[str, str], ...]
    """The runtime's full environment (TAILOR_* names), sorted by name."""
    port: int
    memory_limit_bytes: int | None = None
    cpus: float | None = None
    shm_size_bytes: int | None = None
    gpu_count: int = 0
    gpu_device_ids: tuple[str, ...] = ()
    runtime: str | None = None
    """Container runtime, ``nvidia`` on Jetson; None for the daemon's default."""
    read_only_root: bool = True
    user: str = "10001:10001"
    network_mode: str = "bridge"
    base_image: str | None = None
    """Base image the plan chose (matching a Jetson's L4T release); None: the flavor's default."""
    plan: Mapping[str, Any] | None = dataclasses.field(default=None, compare=False, repr=False)
    """The plan this spec came from (JSON form), kept for step-down."""

    @property
    def env_map(self) -> dict[str, str]:
        return dict(self.env)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def with_port(self, port: int) -> LaunchSpec:
        env = dict(self.env)
        env["TAILOR_PORT"] = str(port)
        return dataclasses.replace(self, port=port, env=tuple(sorted(env.items())))

    def with_network_mode(self, mode: str) -> LaunchSpec:
        return dataclasses.replace(self, network_mode=mode)


def _get(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str,
         default: Any = dataclasses.MISSING) -> Any:
    if key not in data or data[key] is None:
        if default is not dataclasses.MISSING:
            return default
        raise UsageError(f"{source}: field {key} is missing",
                         "re-render with `deploy render --out DIR` (it writes plan.json)")
    value = data[key]
    if isinstance(value, bool) and kind is not bool:
        raise UsageError(f"{source}: field {key} has {value!r}, expected {getattr(kind, '__name__', kind)}",
                         "re-render with `deploy render --out DIR`")
    if not isinstance(value, kind):
        raise UsageError(f"{source}: field {key} has {value!r}, expected {getattr(kind, '__name__', kind)}",
                         "re-render with `deploy render --out DIR`")
    return value


def spec_from_plan_dict(plan: Mapping[str, Any], *, source: str = "plan") -> LaunchSpec:
    """Build a LaunchSpec from a plan's JSON form; missing or mistyped fields are UsageErrors."""
    if not isinstance(plan, Mapping):
        raise UsageError(f"{source}: expected a JSON object", "pass the output of `deploy plan --json`")
    container = _get(plan, "container", dict, source)
    csource = f"{source}: container"
    env_raw = _get(plan, "env", dict, source)
    env = {str(k): str(v) for k, v in env_raw.items()}
    port = _get(container, "port", int, csource, None)
    if port is None:
        port = int(env.get("TAILOR_PORT", "8000"))
    env["TAILOR_PORT"] = str(port)
    device_ids = _get(container, "gpu_device_ids", (list, tuple), csource, ())
    cpus = _get(container, "cpus", (int, float), csource, None)
    return LaunchSpec(
        profile=str(_get(plan, "profile", str, source)),
        image=_get(container, "image", str, csource),
        flavor=_get(container, "flavor", str, csource),
        env=tuple(sorted(env.items())),
        port=port,
        memory_limit_bytes=_get(container, "memory_limit_bytes", int, csource, None),
        cpus=None if cpus is None else float(cpus),
        shm_size_bytes=_get(container, "shm_size_bytes", int, csource, None),
        gpu_count=_get(container, "gpu_count", int, csource, 0),
        gpu_device_ids=tuple(str(d) for d in device_ids),
        runtime=_get(container, "runtime", str, csource, None),
        read_only_root=_get(container, "read_only", bool, csource, True),
        user=_get(container, "user", str, csource, "10001:10001"),
        network_mode=_get(container, "network_mode", str, csource, "bridge"),
        base_image=_get(container, "base_image", str, csource, None),
        plan=dict(plan),
    )


def load_plan_file(directory: Path) -> dict[str, Any]:
    """Read ``DIR/plan.json`` as written by ``deploy render`` / ``deploy auto``."""
    path = directory / PLAN_FILE
    data = read_json(path, LaunchError, invalid=UsageError,
                     missing=f"{path} does not exist: {directory} is not a rendered deployment",
                     hint="render one with `deploy render --out DIR`, or use `deploy auto`")
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object", "re-render with `deploy render --out DIR`")
    return data
