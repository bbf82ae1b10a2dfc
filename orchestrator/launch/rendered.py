"""A LaunchSpec from the files `deploy render --out DIR` writes (docker-compose.yml + .env).

Used by ``deploy up DIR`` when the directory has no ``plan.json``. The compose service says
how the container runs and ``.env`` holds the runtime's environment; without the plan and the
facts an OOM kill cannot be stepped down, so the supervisor reports it as fatal instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from orchestrator.envfile import parse_env_text
from orchestrator.errors import LaunchError, UsageError
from orchestrator.launch.spec import LaunchSpec
from orchestrator.plan.decisions import bind_address, container_user, default_port, flavor_of_image
from orchestrator.units import SIZE_EXAMPLES, parse_size

COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = ".env"
_PROFILE = re.compile(r"for profile ([A-Za-z0-9_.-]+)")


def _size(value: Any, where: str) -> int:
    """Compose sizes: ``268435456``, ``256m``, ``1.5g`` (binary units, see orchestrator.units)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    parsed = parse_size(str(value))
    if parsed is None:
        raise UsageError(f"{where}: {value!r} is not a size", f"use {SIZE_EXAMPLES}")
    return parsed


def spec_from_rendered_dir(directory: Path) -> LaunchSpec:
    compose_path = directory / COMPOSE_FILE
    env_path = directory / ENV_FILE
    if not compose_path.is_file() or not env_path.is_file():
        raise LaunchError(f"{directory} is not a rendered deployment: it has neither plan.json nor "
                          f"{COMPOSE_FILE} + {ENV_FILE}",
                          "render one with `deploy render --out DIR`, or use `deploy auto`")
    text = compose_path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"{compose_path}: not valid YAML ({exc})", "re-render with `deploy render --out DIR`") from exc
    services = doc.get("services") if isinstance(doc, dict) else None
    if not isinstance(services, dict) or len(services) != 1:
        raise UsageError(f"{compose_path}: expected exactly one service", "re-render with `deploy render --out DIR`")
    ((name, svc),) = services.items()
    where = f"{compose_path}: services.{name}"
    if not isinstance(svc, dict) or not isinstance(svc.get("image"), str):
        raise UsageError(f"{where}.image is missing", "re-render with `deploy render --out DIR`")
    env = parse_env_text(env_path.read_text(encoding="utf-8"), str(env_path), UsageError,
                         "re-render with `deploy render --out DIR`")
    network_mode = "host" if svc.get("network_mode") == "host" else "bridge"
    container_bind = bind_address(in_container=True, network="bridge")[0]
    if network_mode == "bridge" and env.get("TAILOR_HOST") == container_bind:
        # That is the bind inside the container's own namespace (published on loopback); the
        # docker backend sets it again, and the process backend must stay on loopback.
        env["TAILOR_HOST"] = bind_address(in_container=False)[0]
    image: str = svc["image"]
    flavor = flavor_of_image(image)
    port = int(env.get("TAILOR_PORT", str(default_port())))
    devices: list[str] = []
    reservations = ((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    for device in reservations.get("devices") or []:
        devices += [str(d) for d in device.get("device_ids") or []]
    if devices and "CUDA_VISIBLE_DEVICES" not in env:
        # The reservation (by UUID) picks the container's GPUs; a host process needs the same set.
        env["CUDA_VISIBLE_DEVICES"] = ",".join(devices)
    profile = _PROFILE.search(text.splitlines()[0] if text else "")
    return LaunchSpec(
        profile=profile.group(1) if profile else name,
        image=image,
        flavor=flavor,
        env=tuple(sorted(env.items())),
        port=port,
        memory_limit_bytes=_size(svc["mem_limit"], f"{where}.mem_limit") if "mem_limit" in svc else None,
        cpus=float(svc["cpus"]) if "cpus" in svc else None,
        shm_size_bytes=_size(svc["shm_size"], f"{where}.shm_size") if "shm_size" in svc else None,
        gpu_count=len(devices),
        gpu_device_ids=tuple(devices),
        runtime=svc.get("runtime"),
        read_only_root=bool(svc.get("read_only", True)),
        user=str(svc.get("user", container_user())),
        pids_limit=svc["pids_limit"] if isinstance(svc.get("pids_limit"), int) else LaunchSpec.pids_limit,
        network_mode=network_mode,
        plan=None,
    )
