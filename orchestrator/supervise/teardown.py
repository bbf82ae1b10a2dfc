"""Stopping a recorded deployment, whether its supervisor is alive or gone.

`deploy down`: a live supervisor gets SIGTERM and stops the runtime itself (SIGTERM, grace,
SIGKILL, container and cgroup removed). A supervisor that is gone (killed, rebooted) left its
runtime behind: a process runtime is recognised by pid + start ticks after boot + instance id
(``orchestrator.launch.identity``: never by the wall clock) and its process group stopped, a container is removed by id, the memory cgroup removed, and the state
file marked STOPPED. With nothing recorded, or already stopped, it says "nothing to stop";
a record that says STOPPED while its runtime process still runs is not believed: the process
is stopped and the discrepancy said.

`deploy up`/`auto` call :func:`reclaim` first: a live supervisor refuses the launch (already
running); a stale one's runtime is stopped before starting anew, and what was done is said.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.errors import AlreadyRunningError, LaunchError, StateError
from orchestrator.launch.identity import runtime_recognition
from orchestrator.launch.memory_cgroup import remove_cgroup_dir
from orchestrator.launch.process_backend import stop_process_group
from orchestrator.polling import wait_while
from orchestrator.supervise.state import (
    STATE_FILE,
    DeploymentState,
    read_state,
    runtime_identity,
    stale_reason,
    supervisor_alive,
    write_state,
)

Say = Callable[[str], None]
_RUNTIME_GRACE_S = 30.0
_EXITING_S = 10.0
"""How long a supervisor that recorded STOPPED/FATAL gets to exit before `up` refuses."""


def stop_deployment(sd: Path, environ: Mapping[str, str], timeout_s: float, say: Say, warn: Say) -> DeploymentState | None:
    """Stop what ``sd/state.json`` records; the final state, or None when there was nothing to stop."""
    if not (sd / STATE_FILE).exists():
        return None
    state = read_state(sd)
    alive = supervisor_alive(state)
    if state.state in ("STOPPED", "FATAL") and not alive:
        left = runtime_recognition(runtime_identity(state)) if state.backend == "process" and state.runner_id \
            else None
        if left is not None and left.alive:
            # Believe the machine, not the record: its runtime still runs.
            warn(f"state.json says {state.state}, but {left.why}; stopping it")
            cleanup_runtime(state, environ, say, warn)
            final = dataclasses.replace(state, state="STOPPED", cgroup_path="", updated_at_s=time.time(),
                                        state_reason=f"stopped by `deploy down` (state.json said {state.state} "
                                                     "while its runtime still ran)")
            write_state(sd, final)
            return final
        # The supervisor cleaned up after itself; a cgroup can only be left by a crash in between.
        if state.cgroup_path:
            _remove_cgroup(state, say, warn)
        if state.state == "FATAL":
            write_state(sd, dataclasses.replace(state, state="STOPPED", updated_at_s=time.time(),
                                                state_reason=f"stopped by `deploy down` after: {state.state_reason}"))
        return None
    if alive:
        pid = state.supervisor_pid
        say(f"stopping the supervisor (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        if not wait_while(lambda: supervisor_alive(state), timeout_s, 0.2):
            warn(f"the supervisor did not stop within {timeout_s:.0f} s; killing it and its runtime")
            os.kill(pid, signal.SIGKILL)
            cleanup_runtime(read_state(sd), environ, say, warn)
    else:
        reason = stale_reason(state)
        if reason:
            warn(reason)
        cleanup_runtime(state, environ, say, warn)
    final = read_state(sd)
    if final.state != "STOPPED":
        final = dataclasses.replace(final, state="STOPPED", state_reason="stopped by `deploy down`",
                                    updated_at_s=time.time())
        write_state(sd, final)
    return final


def reclaim(sd: Path, environ: Mapping[str, str], say: Say, warn: Say) -> DeploymentState | None:
    """Before a launch from ``sd``: refuse when a live supervisor runs there; clean up after a dead one.

    A dead supervisor's Docker container may still serve: that record is returned untouched, so
    the launch can adopt the container (same plan, ready) or stop it with :func:`stop_stale`.
    Everything else a dead supervisor left (process group, cgroup) is stopped here. Returns None
    when nothing is left to decide.
    """
    try:
        state = read_state(sd)
    except StateError:
        return None
    if supervisor_alive(state) and state.state in ("STOPPED", "FATAL"):
        # Normally it is exiting right now; one that stays is not believed to be stopped.
        if not wait_while(lambda: supervisor_alive(state), _EXITING_S, 0.2):
            raise AlreadyRunningError(
                f"state.json in {sd} says {state.state}, but its supervisor (pid {state.supervisor_pid}) "
                f"still runs {_EXITING_S:.0f} s later",
                f"stop it with `deploy down --state-dir {sd}`, or pass another --state-dir")
        return None
    if supervisor_alive(state):
        raise AlreadyRunningError(
            f"a deployment is already {state.state} from {sd} (supervisor pid {state.supervisor_pid}, {state.url})",
            f"stop it with `deploy down --state-dir {sd}`, or pass another --state-dir")
    reason = stale_reason(state)
    if reason is None and state.backend == "process" and state.runner_id:
        left = runtime_recognition(runtime_identity(state))
        if left.alive:
            reason = f"state.json says {state.state}, but {left.why}"
    if reason is None and not state.cgroup_path:
        return None
    if reason is not None and state.backend == "docker" and state.runner_id:
        warn(reason)
        return state
    if reason is None:  # stopped cleanly, but its cgroup outlived it
        _remove_cgroup(state, say, warn)
        write_state(sd, dataclasses.replace(state, cgroup_path="", updated_at_s=time.time()))
        return None
    warn(f"{reason}; stopping what it left before starting anew")
    stop_stale(sd, state, environ, say, warn)
    return None


def stop_stale(sd: Path, state: DeploymentState, environ: Mapping[str, str], say: Say, warn: Say) -> None:
    """Stop the runtime a dead supervisor left (process group + cgroup, or container); mark the record STOPPED."""
    cleanup_runtime(state, environ, say, warn)
    write_state(sd, dataclasses.replace(state, state="STOPPED", cgroup_path="", updated_at_s=time.time(),
                                        state_reason="runtime of a dead supervisor stopped before a new launch"))


def cleanup_runtime(state: DeploymentState, environ: Mapping[str, str], say: Say, warn: Say) -> None:
    """Remove what a dead supervisor left behind: its runtime process group and cgroup, or its container."""
    if state.backend == "docker":
        if not state.runner_id:
            return
        from orchestrator.launch.docker_backend import connect, remove_container

        try:
            client = connect(environ)
        except LaunchError as exc:
            warn(f"cannot remove container {state.runner_id}: {exc.message}")
            return
        try:
            if remove_container(client, state.runner_id):
                say(f"removed container {state.runner_id}")
            else:
                say(f"container {state.runner_id} is already gone")
        finally:
            client.close()
        return
    if state.runner_id:
        say(stop_process_group(runtime_identity(state), _RUNTIME_GRACE_S))
    _remove_cgroup(state, say, warn)


def _remove_cgroup(state: DeploymentState, say: Say, warn: Say) -> None:
    try:
        done = remove_cgroup_dir(state.cgroup_path)
    except LaunchError as exc:
        warn(exc.message)
        return
    if done:
        say(done)
