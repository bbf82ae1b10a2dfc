"""`deploy status`: the supervisor's record next to the runtime's own account, and a verdict.

The verdict decides the exit code (``main()`` maps :class:`UnhealthyError` to 1): FATAL,
BACKOFF, a stale record (the supervisor is gone), or RUNNING while the runtime itself says it is
not ready (or another server answers on its port) are deployment errors. STARTING, STOPPING,
STOPPED and a RUNNING runtime that says it is ready are fine.

Where the record and the machine disagree, the machine wins and the report says so
(``discrepancy``): a record that says STOPPED or FATAL while its supervisor (same pid, same start
ticks after boot) still runs, or while its runtime still answers as its instance, is reported as
what runs. Processes are recognised by ``orchestrator.launch.identity``, never by the wall clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.launch.identity import (
    Recognition,
    boot_seconds,
    read_boot_id,
    runtime_recognition,
)
from orchestrator.supervise.http_client import RuntimeView, fetch_readiness
from orchestrator.supervise.state import (
    DeploymentState,
    deploy_cmd,
    read_state,
    runtime_identity,
    supervisor_recognition,
)

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
    state_now: str = ""
    """What runs, as far as the machine shows: the recorded state, or what contradicts it."""
    discrepancy: str = ""
    """Where state.json and the machine disagree, a sentence naming both; "" when they agree."""
    supervisor_alive: bool = False
    identity_note: str = ""
    """How an old state file (no start ticks) was judged, when a fallback decided; else ""."""

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

    def admission_line(self) -> str | None:
        """The runtime's calibrated speed and the input it can finish in time (from /readyz)."""
        admission = self.view.body.get("admission") if self.view is not None else None
        if not isinstance(admission, dict) or "seconds_per_char" not in admission:
            return None
        fits, limit = admission.get("effective_max_input_chars"), admission.get("max_input_chars")
        line = (f"{admission['seconds_per_char']} s/char per worker; about {fits} characters finish within "
                f"{admission.get('budget_s')} s")
        if isinstance(fits, int) and isinstance(limit, int) and fits < limit:
            line += (f" (TAILOR_MAX_INPUT_CHARS={limit} admits more: longer inputs get 413; raise "
                     "TAILOR_REQUEST_TIMEOUT_S or lower TAILOR_MAX_INPUT_CHARS)")
        return line
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
        shown = self.state_now or s.state
        reason = (s.state_reason.splitlines() or [""])[0]
        if shown != s.state:
            reason = f"state.json says {s.state} ({reason})"
        out = [
            f"state:        {shown}" + (" (STALE)" if self.stale else "") + f" - {reason}",
            f"profile:      {s.profile}",
            f"backend:      {s.backend} ({s.backend_reason})",
            f"url:          {s.url}",
            f"{what + ':':<14}{runner}",
            f"instance:     {s.instance_id or '-'}",
            f"supervisor:   pid {s.supervisor_pid}" + (" (gone)" if self.stale else ""),
            f"uptime:       {_duration(self.uptime_s) if self.uptime_s is not None else '-'}",
            f"restarts:     {s.restarts}",
            f"runtime:      {self.runtime_line()}",
            *([f"admission:    {admission}"] if (admission := self.admission_line()) else []),
            *self.processes_lines(),
            f"last health:  {s.last_health or '-'}",
            f"last exit:    {s.last_exit_reason or '-'}",
        ]
        out += [f"step-down:    {step}" for step in s.step_downs]
        if self.discrepancy:
            out.append(f"discrepancy:  {self.discrepancy}")
        if self.identity_note:
            out.append(f"identity:     {self.identity_note}")
        return out

    def to_dict(self) -> dict[str, Any]:
        data = self.state.to_dict()
        data.update({
            "state_dir": str(self.state_dir), "stale": self.stale is not None, "stale_reason": self.stale,
            "uptime_s": self.uptime_s, "healthy": self.healthy, "problem": self.problem or None,
            "process_alive": self.process_alive, "supervisor_alive": self.supervisor_alive,
            "recorded_state": self.state.state, "state": self.state_now or self.state.state,
            "discrepancy": self.discrepancy or None, "identity_note": self.identity_note or None,
            "runtime": None if self.view is None else {
                "reachable": self.view.reachable, "ready": self.view.ready, "instance": self.view.instance,
                "ours": self.view.ours(self.state.instance_id), "detail": self.view.detail,
                "readyz": dict(self.view.body)},
        })
        return data


def deployment_status(sd: Path) -> StatusReport:
    """Read the record, look at the machine (processes by identity, the runtime's /readyz), judge.

    StateError when nothing is recorded.
    """
    state = read_state(sd)
    supervisor = supervisor_recognition(state)
    runtime: Recognition | None = None
    if state.backend == "process" and state.runner_id:
        runtime = runtime_recognition(runtime_identity(state))
    active = state.state in _ACTIVE
    stale = None
    if active and not supervisor.alive:
        stale = (f"the state file says the supervisor (pid {state.supervisor_pid}) is {state.state}, "
                 f"but that process is gone ({supervisor.why}): it was killed or the machine rebooted")
    # A stopped record is checked against the machine too: its processes may still run.
    ask = active or supervisor.alive or (runtime is not None and runtime.alive)
    view = fetch_readiness(state.url, timeout_s=2.0) if ask or state.instance_id else None
    answers = view is not None and view.reachable and bool(state.instance_id) and view.ours(state.instance_id)
    problem, now, discrepancy = "", state.state, ""
    if not active:
        running = [what for what, yes in (
            (f"its supervisor (pid {state.supervisor_pid}) still runs", supervisor.alive),
            (f"its runtime process (pid {state.runner_id}) still runs", runtime is not None and runtime.alive),
            (f"its runtime still answers on {state.url} as instance {state.instance_id}"
             + (" (ready)" if view is not None and view.ready else " (not ready)"), answers)) if yes]
        if running:
            discrepancy = f"state.json says {state.state}, but " + " and ".join(running)
            if supervisor.alive and answers and view is not None and view.ready:
                now = "RUNNING"  # believe the machine: supervised and ready
            elif supervisor.alive:
                now = "STARTING" if answers or (runtime is not None and runtime.alive) else "STOPPING"
                if now == "STOPPING":
                    discrepancy += " (it may be exiting right now)"
                else:
                    problem = f"{discrepancy}; the runtime is not ready"
            else:
                now = "UNSUPERVISED"
                problem = f"{discrepancy}, with no supervisor: `{deploy_cmd('down', sd)}` stops it"
        elif view is not None and not (ask or answers):
            view = None  # nothing runs: do not show a stranger answering on the port as ours
    problem = problem or _verdict(state, now, stale, view, runtime)
    note = supervisor.fallback or (runtime.fallback if runtime is not None else "")
    return StatusReport(state_dir=sd, state=state, stale=stale, view=view,
                        process_alive=runtime.alive if runtime is not None else None, problem=problem,
                        uptime_s=_uptime(state) if now == "RUNNING" and stale is None else None,
                        state_now=now, discrepancy=discrepancy, supervisor_alive=supervisor.alive,
                        identity_note=note)


def _verdict(state: DeploymentState, now: str, stale: str | None, view: RuntimeView | None,
             runtime: Recognition | None) -> str:
    """Why the deployment (as it runs now) is a deployment error; "" when it is not."""
    first = (state.state_reason.splitlines() or [""])[0]
    if stale:
        return f"the deployment is STALE: {stale}"
    if now == "FATAL":
        return f"the runtime is FATAL: {first}"
    if now == "BACKOFF":
        return f"the runtime is in BACKOFF: {first}"
    if now == "RUNNING" and view is not None:
        if not view.reachable:
            return f"the supervisor says RUNNING but the runtime does not answer ({view.detail})"
        if not view.ours(state.instance_id):
            return (f"another server answers on {state.url} (instance {view.instance or 'unknown'}, "
                    f"expected {state.instance_id})")
        if not view.ready:
            return f"the runtime says it is not ready: {view.summary()}"
    if now == "RUNNING" and runtime is not None and not runtime.alive:
        return f"state.json says RUNNING, but {runtime.why}"
    return ""


def _uptime(state: DeploymentState) -> float | None:
    """Seconds since the current instance started: boot-relative where recorded (clock steps
    change nothing), else from the wall clock (state files of older versions)."""
    if state.instance_started_boot_s is not None and (not state.boot_id or state.boot_id == read_boot_id()):
        return max(0.0, boot_seconds() - state.instance_started_boot_s)
    if state.instance_started_at_s:
        return max(0.0, time.time() - state.instance_started_at_s)
    return None


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
