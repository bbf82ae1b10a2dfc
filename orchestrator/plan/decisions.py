"""One owner per decision: how the runtime is run, decided here once for every consumer.

Compose, Kubernetes, the systemd unit, the Dockerfiles and the Docker backend all call these
pure functions, so the user id, the image tag, the bind address, the security options and
the health check cannot drift between them. The port's default comes from the knob table
(``TAILOR_PORT`` in runtime/settings.py); a plan records the chosen port once, in its typed ``port`` field.
"""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator import __version__
from runtime.settings import variable

CONTAINER_UID = 10001
CONTAINER_GID = 10001
"""The unprivileged user the runtime runs as in every image (no login, no home)."""

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


def default_port() -> int:
    """The runtime's port when nobody chose one (the knob table's TAILOR_PORT default)."""
    return int(variable("TAILOR_PORT").default)


def container_user() -> str:
    """``uid:gid`` for Docker, compose and the Dockerfiles' USER line."""
    return f"{CONTAINER_UID}:{CONTAINER_GID}"


def image_tag(flavor: str, cuda_build: str = "") -> str:
    """``tailor-runtime:<version>-<flavor>`` (``-<cuda build>`` for a CUDA image, which holds one torch
    build: ``tailor-runtime:0.1.0-cuda-cu126``): the image a plan runs, built by ``deploy auto``."""
    return f"tailor-runtime:{__version__}-{flavor}" + (f"-{cuda_build}" if cuda_build else "")


def flavor_of_image(image: str) -> str:
    """The flavor back from a tag made by :func:`image_tag` (``cpu`` for a foreign tag)."""
    parts = image.rsplit(":", 1)[-1].split("-")
    return parts[1] if len(parts) > 1 else "cpu"


def bind_address(*, in_container: bool, network: str = "bridge", public: bool = False) -> tuple[str, str]:
    """(address for TAILOR_HOST, why).

    Inside a container on a bridge network the server must listen on every interface of its own
    namespace to be reachable through the published port; exposure is then decided by where
    the port is published (loopback unless ``public``). A host process, or a container on the
    host network, binds loopback unless ``public``.
    """
    if in_container and network == "bridge":
        return ALL_INTERFACES, ("bind all interfaces inside the container; exposure is decided by "
                                "the published port")
    if public:
        return ALL_INTERFACES, "--public binds every interface"
    if in_container:
        return LOOPBACK, "host networking without --public binds loopback only"
    return LOOPBACK, "loopback only (pass --public to listen on every interface)"


def publish_address(public: bool) -> str:
    """Host address a bridge container's port is published on."""
    return ALL_INTERFACES if public else LOOPBACK


@dataclass(frozen=True)
class Security:
    """The container's hardening, the same for Docker, compose and Kubernetes."""

    read_only_root: bool = True
    no_new_privileges: bool = True
    cap_drop: tuple[str, ...] = ("ALL",)
    tmpfs_path: str = "/tmp"
    tmpfs_size_mib: int = 256
    """A writable /tmp on a read-only root (voices unpack nothing there; soundfile may)."""


SECURITY = Security()


def healthcheck_command(port: int, python: str = "python3") -> tuple[str, ...]:
    """The container health check: the runtime's own probe of its /readyz on ``port``."""
    return ("CMD", python, "-m", "runtime.healthcheck", "--port", str(port))


IMAGE_PYTHON = "/opt/tailor/bin/python"
"""The runtime image's interpreter (templates/docker/: the venv at /opt/tailor)."""

HEALTHCHECK_INTERVAL_S = 10
HEALTHCHECK_TIMEOUT_S = 5
HEALTHCHECK_RETRIES = 3


def healthcheck_start_period_s(preload: bool) -> int:
    """Grace before failed checks count: warm-up with preload takes longer."""
    return 120 if preload else 30
