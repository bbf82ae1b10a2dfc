"""Is a Docker daemon reachable, and does it have the nvidia runtime? Standard library only.

Speaks HTTP/1.0 over the daemon's socket (``GET /_ping``, ``GET /info``) with a short timeout,
so the probe stays fast and needs no docker SDK.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_S = 0.3
DEFAULT_SOCKET = "/var/run/docker.sock"


@dataclass(frozen=True)
class DockerStatus:
    reachable: bool
    reason: str
    nvidia_runtime: bool


def _http_get(sock: socket.socket, path: str) -> tuple[int, bytes]:
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: docker\r\nUser-Agent: tailor-probe\r\n\r\n".encode("ascii"))
    chunks: list[bytes] = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise ValueError(f"not an HTTP response: {status_line[:60]!r}")
    return int(parts[1]), body


def _request(address: str | tuple[str, int], path: str) -> tuple[int, bytes]:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT_S)
        sock.connect(address)
        return _http_get(sock, path)


def _address(root: Path, environ: Mapping[str, str]) -> tuple[str | tuple[str, int] | None, str]:
    """The daemon address from DOCKER_HOST (or the default socket under root), and its description."""
    host = environ.get("DOCKER_HOST", "").strip()
    if not host:
        return str(root / DEFAULT_SOCKET.lstrip("/")), DEFAULT_SOCKET
    if host.startswith("unix://"):
        path = host[len("unix://"):]
        return str(root / path.lstrip("/")), path
    if host.startswith("tcp://"):
        if environ.get("DOCKER_TLS_VERIFY", "") not in ("", "0"):
            return None, f"DOCKER_HOST={host} uses TLS, which the probe does not check"
        hostport = host[len("tcp://"):].rstrip("/")
        name, _, port = hostport.rpartition(":")
        if not port.isdigit() or not name:
            return None, f"DOCKER_HOST={host} is not tcp://HOST:PORT"
        return (name, int(port)), host
    return None, f"DOCKER_HOST={host} is not a unix:// or tcp:// address the probe can check"


def check_docker(root: Path, environ: Mapping[str, str]) -> DockerStatus:
    """Ping the daemon and read its runtimes. Never raises."""
    address, where = _address(root, environ)
    if address is None:
        return DockerStatus(False, where, False)
    if isinstance(address, str) and not Path(address).exists():
        return DockerStatus(False, f"no Docker socket at {where}", False)
    try:
        status, body = _request(address, "/_ping")
        if status != 200 or body.strip() != b"OK":
            return DockerStatus(False, f"the daemon at {where} answered /_ping with HTTP {status}", False)
        status, body = _request(address, "/info")
    except PermissionError:
        return DockerStatus(False, f"permission denied on {where} (add the user to the docker group)", False)
    except (OSError, ValueError) as exc:
        return DockerStatus(False, f"no answer from the daemon at {where} ({exc})", False)
    if status != 200:
        return DockerStatus(True, f"reachable at {where}, but /info answered HTTP {status}", False)
    try:
        info = json.loads(body)
    except ValueError:
        return DockerStatus(True, f"reachable at {where}, but /info is not JSON", False)
    runtimes = info.get("Runtimes") if isinstance(info, dict) else None
    nvidia = isinstance(runtimes, dict) and "nvidia" in runtimes
    version = info.get("ServerVersion", "?") if isinstance(info, dict) else "?"
    return DockerStatus(True, f"reachable at {where} (Docker {version})", nvidia)
