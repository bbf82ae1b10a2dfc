"""`deploy down`: stop a recorded deployment, whether its supervisor is alive or gone.

A live supervisor gets SIGTERM and stops the runtime itself (SIGTERM, grace, SIGKILL, container
removed). A supervisor that is gone (killed, rebooted) left its runtime behind: that process
group is stopped here, or that container removed, and the state file is marked STOPPED.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from orchestrator.errors import LaunchError
from orchestrator.supervise.state import (
    DeploymentState,
    process_start_time,
    read_state,
    stale_reason,
    supervisor_alive,
    write_state,
)

Say = Callable[[str], None]


def stop_deployment(sd: Path, environ: Mapping[str, str], timeout_s: float, say: Say, warn: Say) -> DeploymentState | None:
    """Stop what ``sd/state.json`` records; returns the final state, or None when it was already stopped."""
    state = read_state(sd)
    if state.state == "STOPPED" and not supervisor_alive(state):
        return None
    if supervisor_alive(state):
        pid = state.supervisor_pid
        say(f"stopping the supervisor (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and supervisor_alive(state):
            time.sleep(0.2)
        if supervisor_alive(state):
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


def cleanup_runtime(state: DeploymentState, environ: Mapping[str, str], say: Say, warn: Say) -> None:
    """Remove what a dead supervisor left behind: its runtime process group or its container."""
    if not state.runner_id:
        return
    if state.backend == "docker":
        from orchestrator.launch.docker_backend import connect, remove_container

        try:
            client = connect(environ)
        except LaunchError as exc:
            warn(f"cannot remove container {state.runner_id}: {exc.message}")
            return
        if remove_container(client, state.runner_id):
            say(f"removed container {state.runner_id}")
        return
    pid = int(state.runner_id)
    started = process_start_time(pid)
    if started is None or (state.instance_started_at_s and abs(started - state.instance_started_at_s) > 5):
        return  # gone, or the pid now belongs to an unrelated process
    # The runtime runs in its own session, so its pid is its process group id.
    for sig, wait_s in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and process_start_time(pid) is not None:
            time.sleep(0.2)
        if process_start_time(pid) is None:
            say(f"stopped runtime process {pid} ({sig.name})")
            return
