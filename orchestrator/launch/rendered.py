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

from orchestrator.errors import LaunchError, UsageError
from orchestrator.launch.spec import LaunchSpec

COMPOSE_FILE = "docker-compose.yml"
ENV_FILE = ".env"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_PROFILE = re.compile(r"for profile ([A-Za-z0-9_.-]+)")
_ENV_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


def parse_size_bytes(value: Any, where: str) -> int:
    """Compose sizes: ``268435456``, ``256m``, ``1.5g``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if match is None:
        raise UsageError(f"{where}: {value!r} is not a size", "use bytes or a number with k, m or g")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line.strip())
        if match is None:
            raise UsageError(f"{path}:{number}: not a NAME=value line", "re-render with `deploy render --out DIR`")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[match.group(1)] = value
    return env


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
    env = parse_env_file(env_path)
    network_mode = "host" if svc.get("network_mode") == "host" else "bridge"
    if network_mode == "bridge" and env.get("TAILOR_HOST") == "0.0.0.0":
        # 0.0.0.0 is the bind inside the container's own namespace (published on 127.0.0.1);
        # the docker backend sets it again, and the process backend must stay on loopback.
        env["TAILOR_HOST"] = "127.0.0.1"
    image: str = svc["image"]
    flavor = image.rsplit("-", 1)[-1] if "-" in image.rsplit(":", 1)[-1] else "cpu"
    port = int(env.get("TAILOR_PORT", "8000"))
    devices: list[str] = []
    reservations = ((svc.get("deploy") or {}).get("resources") or {}).get("reservations") or {}
    for device in reservations.get("devices") or []:
        devices += [str(d) for d in device.get("device_ids") or []]
    profile = _PROFILE.search(text.splitlines()[0] if text else "")
    return LaunchSpec(
        profile=profile.group(1) if profile else name,
        image=image,
        flavor=flavor,
        env=tuple(sorted(env.items())),
        port=port,
        memory_limit_bytes=parse_size_bytes(svc["mem_limit"], f"{where}.mem_limit") if "mem_limit" in svc else None,
        cpus=float(svc["cpus"]) if "cpus" in svc else None,
        shm_size_bytes=parse_size_bytes(svc["shm_size"], f"{where}.shm_size") if "shm_size" in svc else None,
        gpu_count=len(devices),
        gpu_device_ids=tuple(devices),
        runtime=svc.get("runtime"),
        read_only_root=bool(svc.get("read_only", True)),
        user=str(svc.get("user", "10001:10001")),
        network_mode=network_mode,
        plan=None,
    )
