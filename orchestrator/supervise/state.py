"""The deployment state file: what `deploy status` and `deploy down` read.

One JSON file, ``<state dir>/state.json``, written by the supervisor on every transition.
Writes are atomic (a temp file in the same directory, fsync, ``os.replace``), so a reader
never sees half a file. The supervisor's pid comes with its process start time, so a pid
reused by an unrelated process after a crash is recognised as stale.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import StateError
from orchestrator.jsonfile import read_json
from orchestrator.launch.process_backend import process_start_time
from orchestrator.launch.runner import RuntimeIdentity

STATE_FILE = "state.json"
SCHEMA_VERSION = 1
DEFAULT_STATE_DIR = ".tailor"


def state_dir_from(option: str | None, environ: Mapping[str, str]) -> Path:
    """``--state-dir`` if given, else ``$TAILOR_STATE_DIR``, else ``./.tailor``."""
    if option:
        return Path(option)
    return Path(environ.get("TAILOR_STATE_DIR") or DEFAULT_STATE_DIR)


@dataclass(frozen=True)
class Transition:
    at_s: float
    """Wall-clock time (Unix seconds)."""
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True)
class DeploymentState:
    profile: str
    backend: str
    backend_reason: str
    url: str
    state: str
    """Supervisor state: STARTING, RUNNING, BACKOFF, FATAL, STOPPING, STOPPED."""
    state_reason: str
    supervisor_pid: int
    supervisor_started_at_s: float
    """The supervisor process's start time (psutil create_time), to tell a reused pid apart."""
    runner_id: str = ""
    """Pid of the runtime process or id of its container."""
    instance_id: str = ""
    """The launch's identity (TAILOR_INSTANCE_ID), which the runtime returns on every response."""
    runtime_started_at_s: float | None = None
    """The runtime process's start time (psutil create_time), to tell a reused pid apart."""
    cgroup_path: str = ""
    """The runtime's per-instance memory cgroup (process backend as root); removed by `deploy down`."""
    instance_started_at_s: float | None = None
    restarts: int = 0
    step_downs: tuple[str, ...] = ()
    last_health: str = ""
    last_health_at_s: float | None = None
    last_exit_reason: str = ""
    log_path: str = ""
    rendered_dir: str = ""
    last_log_lines: tuple[str, ...] = ()
    transitions: tuple[Transition, ...] = ()
    updated_at_s: float = 0.0
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["step_downs"] = list(self.step_downs)
        data["last_log_lines"] = list(self.last_log_lines)
        data["transitions"] = [dataclasses.asdict(t) for t in self.transitions]
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DeploymentState:
        hint = "remove the state directory if no deployment is running, or pass the right --state-dir"
        if not isinstance(data, dict):
            raise StateError(f"{source}: expected a JSON object", hint)
        if data.get("schema_version") != SCHEMA_VERSION:
            raise StateError(f"{source}: schema_version {data.get('schema_version')!r} is not {SCHEMA_VERSION}", hint)
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        try:
            values["step_downs"] = tuple(values.get("step_downs", ()))
            values["last_log_lines"] = tuple(values.get("last_log_lines", ()))
            values["transitions"] = tuple(Transition(**t) for t in values.get("transitions", ()))
            return cls(**values)
        except TypeError as exc:
            raise StateError(f"{source}: {exc}", hint) from exc


def write_state(directory: Path, state: DeploymentState) -> Path:
    """Atomically replace ``directory/state.json``."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    fd, tmp = tempfile.mkstemp(prefix=".state.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state.to_dict(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_state(directory: Path) -> DeploymentState:
    """The last recorded state; StateError when there is none or it is unreadable."""
    path = directory / STATE_FILE
    data = read_json(path, StateError,
                     missing=f"no deployment recorded in {directory} ({path} does not exist)",
                     hint="start one with `deploy auto --detach`, or pass --state-dir / TAILOR_STATE_DIR; "
                          f"remove {path} if it is damaged and no deployment runs")
    return DeploymentState.from_dict(data, str(path))


def runtime_identity(state: DeploymentState) -> RuntimeIdentity:
    """What recognises the recorded runtime: pid + start time + instance id, or the container id."""
    return RuntimeIdentity(ident=state.runner_id, instance_id=state.instance_id,
                           started_at_s=state.runtime_started_at_s, cgroup_path=state.cgroup_path)


def supervisor_alive(state: DeploymentState) -> bool:
    """True when the recorded supervisor pid is alive and is the same process (start time matches)."""
    started = process_start_time(state.supervisor_pid)
    if started is None:
        return False
    return abs(started - state.supervisor_started_at_s) < 1.0


def stale_reason(state: DeploymentState) -> str | None:
    """A sentence when the state file describes a supervisor that no longer exists, else None."""
    if state.state in ("STOPPED", "FATAL"):
        return None
    if supervisor_alive(state):
        return None
    return (f"the state file says the supervisor (pid {state.supervisor_pid}) is {state.state}, "
            "but that process is gone: it was killed or the machine rebooted")
