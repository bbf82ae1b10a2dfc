"""The deployment state file: what `deploy status` and `deploy down` read.

One JSON file, ``<state dir>/state.json``, written by the supervisor on every transition.
Writes are atomic (a temp file in the same directory, fsync, ``os.replace``), so a reader
never sees half a file. Every recorded pid comes with its start time after boot
(``/proc/PID/stat`` field 22) and the boot id, so a pid reused by an unrelated process after a
crash is recognised as stale, and a stepped wall clock changes nothing
(``orchestrator.launch.identity``). Files written before those fields existed are still read;
their pids are judged by a fallback that says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import StateError
from orchestrator.files import write_json_atomic
from orchestrator.jsonfile import read_json
from orchestrator.launch.identity import Recognition, is_supervisor_command, recognise
from orchestrator.launch.runner import RuntimeIdentity
from orchestrator.model import Reader, check_version, from_jsonable, to_jsonable

STATE_FILE = "state.json"
SCHEMA_VERSION = 1
DEFAULT_STATE_DIR = ".tailor"


def deploy_cmd(command: str, sd: Path) -> str:
    """``deploy COMMAND`` as a hint to copy: with ``--state-dir`` unless ``sd`` is the default one,
    so the hint acts on the same deployment."""
    return f"deploy {command}" + ("" if sd == Path(DEFAULT_STATE_DIR) else f" --state-dir {sd}")


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
    """The supervisor's wall-clock start time (Unix seconds), for people; it moves with the clock,
    so identity uses ``supervisor_start_ticks`` (this only where an older file lacks them)."""
    runner_id: str = ""
    """Pid of the runtime process or id of its container."""
    instance_id: str = ""
    """The launch's identity (TAILOR_INSTANCE_ID), which the runtime returns on every response."""
    runtime_started_at_s: float | None = None
    """Wall-clock start time of the runtime process, written by older versions only (fallback)."""
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
    supervisor_start_ticks: int | None = None
    """The supervisor's ``/proc/PID/stat`` start time (clock ticks after boot): with ``boot_id``
    it tells the recorded supervisor from any other process, whatever the wall clock did."""
    runtime_start_ticks: int | None = None
    """The same for the process backend's runtime (None for a container)."""
    boot_id: str = ""
    """The boot the start ticks belong to (``/proc/sys/kernel/random/boot_id``)."""
    instance_started_boot_s: float | None = None
    """When the current instance was started, in seconds after boot (``CLOCK_BOOTTIME``): the
    uptime `deploy status` shows, unaffected by clock steps."""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = to_jsonable(self)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str) -> DeploymentState:
        """Strict reader (orchestrator.model): every field type-checked, errors name the file and field."""
        reader = Reader(StateError, source, "remove the state directory if no deployment is running, "
                                            "or pass the right --state-dir")
        check_version(data, "schema_version", SCHEMA_VERSION, reader, "state")
        state: DeploymentState = from_jsonable(cls, data, reader)
        return state


def write_state(directory: Path, state: DeploymentState) -> Path:
    """Atomically and durably replace ``directory/state.json`` (orchestrator.files)."""
    return write_json_atomic(directory / STATE_FILE, state.to_dict())


def read_state(directory: Path) -> DeploymentState:
    """The last recorded state; StateError when there is none or it is unreadable."""
    path = directory / STATE_FILE
    data = read_json(path, StateError,
                     missing=f"no deployment recorded in {directory} ({path} does not exist)",
                     hint="start one with `deploy auto --detach`, or pass --state-dir / TAILOR_STATE_DIR; "
                          f"remove {path} if it is damaged and no deployment runs")
    return DeploymentState.from_dict(data, str(path))


def runtime_identity(state: DeploymentState) -> RuntimeIdentity:
    """What recognises the recorded runtime: pid + start ticks + instance id, or the container id."""
    return RuntimeIdentity(ident=state.runner_id, instance_id=state.instance_id,
                           started_at_s=state.runtime_started_at_s, cgroup_path=state.cgroup_path,
                           start_ticks=state.runtime_start_ticks, boot_id=state.boot_id)


def recorded_runtime(directory: Path) -> RuntimeIdentity | None:
    """The process runtime ``directory/state.json`` records; None when none is (port-holder report)."""
    try:
        state = read_state(directory)
    except StateError:
        return None
    return runtime_identity(state) if state.backend == "process" and state.runner_id else None


def supervisor_recognition(state: DeploymentState) -> Recognition:
    """Whether the recorded supervisor still runs: its pid with the recorded start ticks (and boot).

    A state file without start ticks (an older Tailor) falls back to the command line, and says so.
    """
    return recognise(state.supervisor_pid, state.supervisor_start_ticks, state.boot_id,
                     legacy_started_at_s=state.supervisor_started_at_s, expected=is_supervisor_command,
                     what="supervisor")


def supervisor_alive(state: DeploymentState) -> bool:
    """True when the recorded supervisor is alive and is the same process (start ticks match)."""
    return supervisor_recognition(state).alive


def stale_reason(state: DeploymentState) -> str | None:
    """A sentence when the state file describes a supervisor that no longer exists, else None."""
    if state.state in ("STOPPED", "FATAL"):
        return None
    found = supervisor_recognition(state)
    if found.alive:
        return None
    return (f"the state file says the supervisor (pid {state.supervisor_pid}) is {state.state}, "
            f"but that process is gone ({found.why}): it was killed or the machine rebooted")
