"""`deploy status`: the supervisor's record next to the runtime's own account, and a verdict.

The verdict decides the exit code (``main()`` maps :class:`UnhealthyError` to 1): FATAL,
BACKOFF, a stale record (the supervisor is gone), or RUNNING while the runtime itself says it is
not ready (or another server answers on its port) are deployment errors. STARTING, STOPPING,
STOPPED and a RUNNING runtime that says it is ready are fine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.launch.process_backend import is_same_process
from orchestrator.supervise.http_client import RuntimeView, fetch_readiness
from orchestrator.supervise.state import DeploymentState, read_state, runtime_identity, stale_reason

_ACTIVE = ("STARTING", "RUNNING", "BACKOFF", "STOPPING")


@dataclass(frozen=True)
class StatusReport:
    state_dir: Path
    state: DeploymentState
    stale: str | None
    """Why the record is stale (its supervisor is gone), None when it is not."""
    view: RuntimeView | None
    """The runtime's /readyz, None when nothing should be running."""
    process_alive: bool | None
    """Process backend: whether the recorded runtime process (pid + start time + instance) runs."""
    problem: str
    """Why this is a deployment error (exit 1); "" when it is not."""
    uptime_s: float | None

    @property
    def healthy(self) -> bool:
        return not self.problem

    def runtime_line(self) -> str:
        if self.view is None:
            return "-"
        if self.view.reachable and not self.view.ours(self.state.instance_id):
            return (f"another server answers on {self.state.url} (instance {self.view.instance or 'unknown'}, "
                    f"expected {self.state.instance_id})")
        return self.view.summary()

    def processes_lines(self) -> list[str]:
        """With several server processes (TAILOR_PROCESSES): how many are ready, and each one."""
        group = self.view.body.get("processes") if self.view is not None else None
        if not isinstance(group, dict) or not isinstance(group.get("members"), list):
            return []
        members = [m for m in group["members"] if isinstance(m, dict)]
        each = ", ".join(f"{m.get('index')}: pid {m.get('pid') or '-'} {'ready' if m.get('ready') else m.get('state')}"
                         + (f" ({m['restarts']} restarts)" if m.get("restarts") else "") for m in members)
        return [f"processes:    {group.get('ready')}/{group.get('count')} ready ({each})"]

    def lines(self) -> list[str]:
        s = self.state
        what = "pid" if s.backend == "process" else "container"
        runner = s.runner_id or "-"
        if s.backend == "process" and self.process_alive is False and s.runner_id:
            runner += " (gone)"
        out = [
            f"state:        {s.state}" + (" (STALE)" if self.stale else "") + f" - {s.state_reason.splitlines()[0]}",
            f"profile:      {s.profile}",
            f"backend:      {s.backend} ({s.backend_reason})",
            f"url:          {s.url}",
            f"{what + ':':<14}{runner}",
            f"instance:     {s.instance_id or '-'}",
            f"supervisor:   pid {s.supervisor_pid}" + (" (gone)" if self.stale else ""),
            f"uptime:       {_duration(self.uptime_s) if self.uptime_s is not None else '-'}",
            f"restarts:     {s.restarts}",
            f"runtime:      {self.runtime_line()}",
            *self.processes_lines(),
            f"last health:  {s.last_health or '-'}",
            f"last exit:    {s.last_exit_reason or '-'}",
        ]
        out += [f"step-down:    {step}" for step in s.step_downs]
        return out

    def to_dict(self) -> dict[str, Any]:
        data = self.state.to_dict()
        data.update({
            "state_dir": str(self.state_dir), "stale": self.stale is not None, "stale_reason": self.stale,
            "uptime_s": self.uptime_s, "healthy": self.healthy, "problem": self.problem or None,
            "process_alive": self.process_alive,
            "runtime": None if self.view is None else {
                "reachable": self.view.reachable, "ready": self.view.ready, "instance": self.view.instance,
                "ours": self.view.ours(self.state.instance_id), "detail": self.view.detail,
                "readyz": dict(self.view.body)},
        })
        return data


def deployment_status(sd: Path) -> StatusReport:
    """Read the record, ask the runtime, judge. StateError when nothing is recorded."""
    state = read_state(sd)
    stale = stale_reason(state)
    view = fetch_readiness(state.url, timeout_s=2.0) if state.state in _ACTIVE else None
    alive = is_same_process(runtime_identity(state)) if state.backend == "process" and state.runner_id else None
    problem = ""
    if stale:
        problem = f"the deployment is STALE: {stale}"
    elif state.state == "FATAL":
        problem = f"the runtime is FATAL: {state.state_reason.splitlines()[0]}"
    elif state.state == "BACKOFF":
        problem = f"the runtime is in BACKOFF: {state.state_reason.splitlines()[0]}"
    elif state.state == "RUNNING" and view is not None:
        if not view.reachable:
            problem = f"the supervisor says RUNNING but the runtime does not answer ({view.detail})"
        elif not view.ours(state.instance_id):
            problem = (f"another server answers on {state.url} (instance {view.instance or 'unknown'}, "
                       f"expected {state.instance_id})")
        elif not view.ready:
            problem = f"the runtime says it is not ready: {view.summary()}"
    uptime = (time.time() - state.instance_started_at_s
              if state.instance_started_at_s and state.state == "RUNNING" and stale is None else None)
    return StatusReport(state_dir=sd, state=state, stale=stale, view=view, process_alive=alive, problem=problem,
                        uptime_s=uptime)


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
