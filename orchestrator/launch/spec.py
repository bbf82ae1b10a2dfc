"""LaunchSpec: what a runner needs to start the runtime, made from a Plan.

``LaunchSpec.from_plan(plan)`` is the only way from a plan to a spec: the plan arrives typed
(from the pipeline, or read strictly from ``plan.json`` by ``Plan.from_json_file``), so nothing
is re-parsed here. A directory rendered without ``plan.json`` is read by
:mod:`orchestrator.launch.rendered`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from orchestrator.plan.container_spec import CONTAINER_USER
from orchestrator.plan.decisions import LOOPBACK
from orchestrator.plan.planner import Plan
from runtime.settings import SettingsError, variable

PLAN_FILE = "plan.json"
FACTS_FILE = "facts.json"
PORT_VARIABLE = "TAILOR_PORT"


@dataclass(frozen=True)
class LaunchSpec:
    profile: str
    image: str
    """Docker image tag, ``tailor-runtime:<version>-<flavor>``."""
    flavor: str
    """``cpu``, ``cuda`` or ``l4t``: which Dockerfile template builds the image."""
    env: tuple[tuple[str, str], ...]
    """The runtime's environment (TAILOR_* names), sorted by name, except its port: that is
    ``port``, held once and typed; :attr:`env_map` (the child's environment) writes it."""
    port: int
    memory_limit_bytes: int | None = None
    cpus: float | None = None
    shm_size_bytes: int | None = None
    gpu_count: int = 0
    cuda_build: str = ""
    """torch's CUDA build for the image (``cu126``...; see orchestrator/select/gpus.py), empty without CUDA."""
    gpu_device_ids: tuple[str, ...] = ()
    runtime: str | None = None
    """Container runtime, ``nvidia`` on Jetson; None for the daemon's default."""
    read_only_root: bool = True
    user: str = CONTAINER_USER
    network_mode: str = "bridge"
    base_image: str | None = None
    """Base image the plan chose (matching a Jetson's L4T release); None: the flavor's default."""
    pids_limit: int = 512
    """Most processes + threads the container may run (a fork bomb or thread leak stops there)."""
    plan: Plan | None = dataclasses.field(default=None, compare=False, repr=False)
    """The plan this spec came from, kept for step-down; None when launched from rendered files only."""

    def __post_init__(self) -> None:
        given = dict(self.env).get(PORT_VARIABLE)
        if given is None:
            return
        if given != str(self.port):
            raise ValueError(f"LaunchSpec: env {PORT_VARIABLE}={given} disagrees with port {self.port}")
        object.__setattr__(self, "env", tuple((k, v) for k, v in self.env if k != PORT_VARIABLE))

    @property
    def env_map(self) -> dict[str, str]:
        """The runtime's whole environment, the port included (the one place it becomes text)."""
        return dict(sorted({**dict(self.env), PORT_VARIABLE: str(self.port)}.items()))

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def setting(self, name: str, fallback: Any) -> Any:
        """Runtime variable ``name`` as the runtime will read it from this environment, typed by the
        knob table (``TAILOR_WORKERS`` -> int); ``fallback`` when absent or invalid (the runtime
        refuses an invalid value at start-up, with its own message)."""
        raw = self.env_map.get(name)
        if raw is None:
            return fallback
        try:
            return variable(name).parse(name, raw)
        except SettingsError:
            return fallback

    def with_port(self, port: int) -> LaunchSpec:
        return dataclasses.replace(self, port=port)

    def with_network_mode(self, mode: str) -> LaunchSpec:
        return dataclasses.replace(self, network_mode=mode)

    @classmethod
    def from_plan(cls, plan: Plan) -> LaunchSpec:
        """What a runner needs from ``plan``: no dict round trip, nothing re-validated."""
        c = plan.container
        return cls(
            profile=plan.profile, image=c.image, flavor=c.flavor, env=tuple(sorted(plan.env.items())),
            port=plan.port, memory_limit_bytes=c.memory_limit_bytes, cpus=c.cpus,
            shm_size_bytes=c.shm_size_bytes, gpu_count=c.gpu_count, gpu_device_ids=c.gpu_device_ids,
            runtime=c.runtime, read_only_root=c.read_only, user=c.user, network_mode=c.network_mode,
            base_image=c.base_image, pids_limit=c.pids_limit, cuda_build=c.cuda_build, plan=plan,
        )
