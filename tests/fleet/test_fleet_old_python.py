"""A fleet host whose Python is too old for Tailor, through real Ansible.

The host is a real Debian bullseye (minbase + python3: CPython 3.9), built like the bookworm base
(debootstrap, then ``docker import``; its tarball is cached beside the bookworm one). `deploy
fleet probe` must report it failed, by name, with the reason and the fix, install nothing on it,
and `deploy fleet plan` must list it with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.docker.conftest import _unavailable
from tests.fleet.conftest import connection_vars, deploy_fleet, rows_by_host

pytestmark = [pytest.mark.docker, pytest.mark.fleet, pytest.mark.slow]

CACHE = Path(os.environ.get("TAILOR_CI_CACHE", Path.home() / ".cache" / "tailor-ci"))
TAG = "tailor-test-base:bullseye"
HOST = "old-py"


def _bullseye_tarball() -> Path:
    tarball = CACHE / "bullseye-minbase-python3.tar"
    if tarball.is_file() and tarball.stat().st_size > 0:
        return tarball
    if os.geteuid() != 0 or shutil.which("debootstrap") is None:
        _unavailable("building the bullseye host image needs root and debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-bullseye.", dir=CACHE))
    try:
        mirror = os.environ.get("TAILOR_DEBIAN_MIRROR", "http://deb.debian.org/debian")
        proc = subprocess.run(["debootstrap", "--variant=minbase", "--include=python3", "bullseye", str(rootfs),
                               mirror], capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode != 0:
            _unavailable(f"debootstrap bullseye failed: {(proc.stdout + proc.stderr).strip()[-500:]}")
        for cache in (rootfs / "var/cache/apt/archives", rootfs / "var/lib/apt/lists"):
            for item in cache.glob("*"):
                if item.is_file():
                    item.unlink()
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300)
        partial.rename(tarball)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


@pytest.fixture(scope="module")
def old_python_host(docker_client, tmp_path_factory) -> Iterator[tuple[Path, Path, docker.models.containers.Container]]:
    try:
        docker_client.images.get(TAG)
    except docker.errors.ImageNotFound:
        tarball = _bullseye_tarball()
        subprocess.run(["docker", "import", str(tarball), TAG], check=True, capture_output=True, timeout=300)
    name = f"tailor-{HOST}-{uuid.uuid4().hex[:6]}"
    host = docker_client.containers.run(TAG, ["sleep", "infinity"], name=name, detach=True, init=True,
                                        network_mode="none", labels={"io.tailor.fleet-test": name})
    root = tmp_path_factory.mktemp("fleet-old-python")
    inventory = root / "hosts.ini"
    inventory.write_text("\n".join(["[tts]", f"{HOST} ansible_host={name}", "", *connection_vars()]) + "\n")
    try:
        yield inventory, root / "fleet-dir", host
    finally:
        host.remove(force=True)


def test_a_host_with_python_3_9_is_reported_with_the_fix_and_left_alone(old_python_host, wheelhouse: Path) -> None:
    inventory, fleet_dir, host = old_python_host
    code, version = host.exec_run(["python3", "-c", "import sys; print(sys.version_info[:2])"])
    assert code == 0 and version.decode().strip() == "(3, 9)"

    rc, data, err = deploy_fleet("probe", "-i", str(inventory), "--fleet-dir", str(fleet_dir),
                                 "--wheelhouse", str(wheelhouse), "--json")
    assert rc == 1, err
    assert f"{HOST} (" in err  # named in the progress lines
    row = rows_by_host(data)[HOST]
    assert row["state"] == "failed", row
    assert "no Python 3.10" in row["reason"] and "is 3.9" in row["reason"], row
    assert "ansible_python_interpreter" in row["reason"], row
    code, _ = host.exec_run(["test", "-e", "/opt/tailor"])
    assert code != 0, "Tailor was installed on a host that cannot run it"

    rc, data, err = deploy_fleet("plan", "--fleet-dir", str(fleet_dir), "--json")
    planned = rows_by_host(data)[HOST]
    assert planned["state"] == "failed" and "no Python 3.10" in planned["reason"], (rc, planned, err)


def test_down_on_a_host_where_nothing_was_installed_succeeds_and_says_so(old_python_host) -> None:
    inventory, fleet_dir, host = old_python_host
    code, _ = host.exec_run(["test", "-e", "/opt/tailor"])
    assert code != 0  # the probe above installed nothing; down has nothing to stop

    rc, data, err = deploy_fleet("down", "-i", str(inventory), "--fleet-dir", str(fleet_dir), "--json")
    row = rows_by_host(data)[HOST]
    assert rc == 0, err
    assert row["outcome"] == "ok" and row["installed"] is False and row["note"] == "nothing installed", row
