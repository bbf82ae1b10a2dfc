"""Docker reachability over a real socket, against a small daemon stand-in serving /_ping and /info."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from orchestrator.probe.docker_ping import check_docker
from orchestrator.probe.host import probe_host

HOSTS = Path(__file__).resolve().parents[1] / "fixtures" / "hosts"
INFO_WITH_NVIDIA = {"ServerVersion": "24.0.7", "Runtimes": {"io.containerd.runc.v2": {"path": "runc"},
                                                            "nvidia": {"path": "nvidia-container-runtime"}, "runc": {"path": "runc"}}}
INFO_PLAIN = {"ServerVersion": "20.10.24", "Runtimes": {"runc": {"path": "runc"}}}


def _handler(routes: dict[str, tuple[int, bytes]], mode: str) -> type[socketserver.BaseRequestHandler]:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            request = self.rfile.readline().decode("latin-1")
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            if mode == "silent":
                time.sleep(1.0)
                return
            if mode == "garbage":
                self.wfile.write(b"SSH-2.0-OpenSSH_9.6\r\n")
                return
            path = request.split()[1] if len(request.split()) > 1 else "/"
            status, body = routes.get(path, (404, b'{"message":"page not found"}'))
            self.wfile.write(f"HTTP/1.0 {status} X\r\nContent-Type: application/json\r\n"
                             f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

    return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def daemon(address: str | None, info: dict[str, object] | None = None, mode: str = "ok",
           ping: tuple[int, bytes] = (200, b"OK")) -> Iterator[socketserver.BaseServer]:
    routes = {"/_ping": ping, "/info": (200, json.dumps(info or INFO_PLAIN).encode())}
    server: socketserver.BaseServer
    if address is None:
        server = _TcpServer(("127.0.0.1", 0), _handler(routes, mode))
    else:
        Path(address).parent.mkdir(parents=True, exist_ok=True)
        server = _UnixServer(address, _handler(routes, mode))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_default_socket_with_nvidia_runtime(tmp_path: Path) -> None:
    with daemon(str(tmp_path / "var/run/docker.sock"), INFO_WITH_NVIDIA):
        status = check_docker(tmp_path, {})
    assert status.reachable and status.nvidia_runtime
    assert status.reason == "reachable at /var/run/docker.sock (Docker 24.0.7)"


def test_docker_host_unix_path_without_nvidia(tmp_path: Path) -> None:
    with daemon(str(tmp_path / "run/user/1000/docker.sock"), INFO_PLAIN):
        status = check_docker(tmp_path, {"DOCKER_HOST": "unix:///run/user/1000/docker.sock"})
    assert status.reachable and not status.nvidia_runtime
    assert "/run/user/1000/docker.sock" in status.reason


def test_tcp_docker_host_on_loopback(tmp_path: Path) -> None:
    with daemon(None, INFO_WITH_NVIDIA) as server:
        port = server.server_address[1]  # type: ignore[attr-defined]
        status = check_docker(tmp_path, {"DOCKER_HOST": f"tcp://127.0.0.1:{port}"})
    assert status.reachable and status.nvidia_runtime


def test_no_socket(tmp_path: Path) -> None:
    status = check_docker(tmp_path, {})
    assert not status.reachable
    assert status.reason == "no Docker socket at /var/run/docker.sock"


def test_stale_socket_nobody_listening(tmp_path: Path) -> None:
    path = tmp_path / "var/run/docker.sock"
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening, then closed: a daemon that died
    status = check_docker(tmp_path, {})
    assert not status.reachable and "no answer" in status.reason


def test_not_http_on_the_socket(tmp_path: Path) -> None:
    with daemon(str(tmp_path / "var/run/docker.sock"), mode="garbage"):
        status = check_docker(tmp_path, {})
    assert not status.reachable and "not an HTTP response" in status.reason


def test_silent_daemon_times_out_quickly(tmp_path: Path) -> None:
    with daemon(str(tmp_path / "var/run/docker.sock"), mode="silent"):
        started = time.monotonic()
        status = check_docker(tmp_path, {})
        elapsed = time.monotonic() - started
    assert not status.reachable and "timed out" in status.reason
    assert elapsed < 0.8


def test_ping_error_status(tmp_path: Path) -> None:
    with daemon(str(tmp_path / "var/run/docker.sock"), ping=(500, b"boom")):
        status = check_docker(tmp_path, {})
    assert not status.reachable and "HTTP 500" in status.reason


@pytest.mark.parametrize(("environ", "words"), [
    ({"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1"}, "uses TLS"),
    ({"DOCKER_HOST": "ssh://me@host"}, "not a unix:// or tcp://"),
    ({"DOCKER_HOST": "tcp://nohostport"}, "not tcp://HOST:PORT"),
])
def test_docker_hosts_the_probe_does_not_check(tmp_path: Path, environ: dict[str, str], words: str) -> None:
    status = check_docker(tmp_path, environ)
    assert not status.reachable and words in status.reason


def test_probe_host_fills_container_facts(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "host"
    shutil.copytree(HOSTS / "host-16core-affinity-4", root)
    with daemon(str(root / "var/run/docker.sock"), INFO_WITH_NVIDIA):
        facts = probe_host(root, environ={}, check_docker=True)
    assert facts.container.docker_reachable and facts.container.nvidia_runtime
    skipped = probe_host(root, environ={}, check_docker=False)
    assert (skipped.container.docker_reachable, skipped.container.docker_reason) == (False, "not checked (--no-docker)")
