"""Judge every host of a fleet run as strictly as the host's own ``deploy status`` does, and say why.

The role hands back each host's whole ``deploy status --json`` (whatever its exit code) and its
own ``/readyz`` as seen from inside the host. Here those are judged against what the command
wanted (``up`` and ``status``: RUNNING and ready; ``down``: nothing of ours answering), the
record and the live runtime are compared (a contradiction such as "STOPPED but ready yes" is
named, reality first), and every host that is not as wanted gets one line that names the cause,
the hint and the inventory variable that fixes it. What a line cannot hold (whole outputs, the
supervisor's last log lines) goes to a per-host log file on the controller, which the line names.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.fleet.ansible_run import HostOutcome, RunResult
from orchestrator.fleet.facts_dir import safe_host_name
from orchestrator.fleet.reasons import (
    Reason,
    inventory_fix,
    one_line,
    parse_cli_output,
    reason_from_text,
)

WANT_READY = ("up", "status")
"""Playbooks after which every host should be RUNNING and ready."""
WANT_STOPPED = ("down",)
"""Playbooks after which no runtime of ours should answer on any host."""
_QUIET = ("STOPPED", "FATAL", "ABSENT")
_ACTIVE = ("STARTING", "RUNNING", "BACKOFF", "STOPPING")
"""Recorded states in which nothing of this deployment should answer."""
CELL = 40
"""Longest cause in a table cell (characters); the whole line is printed under the table and logged."""
LINE = 360
"""About the longest rollback line (characters): Reason.short cuts the cause to 140 and the detail
or hint to 80, and keeps the fix whole; the log file has everything."""


@dataclass(frozen=True)
class HostReport:
    """One host after a fleet run: Ansible's outcome, the host's own status, and the verdict."""

    host: str
    outcome: str
    """ok | unhealthy (the run went through but the host is not as wanted) | failed | unreachable | skipped"""
    reason: str
    """Why the host is not ok, one line ("" when ok)."""
    why: Reason | None
    status: Mapping[str, Any]
    """The host's ``deploy status --json`` plus the role's own checks (empty when none)."""
    contradictions: tuple[str, ...] = ()
    rollback: tuple[str, ...] = ()
    """For a failed rollout: what failed, what was restored, whether the restore is ready."""
    changed: int = 0
    note: str = ""
    """A remark on an ok host (``nothing installed``)."""
    log: str = ""
    """The host's log file, when one was written."""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def ready(self) -> bool | None:
        return _ready(self.status) if self.status else None

    def lines(self) -> list[str]:
        """What is printed under the table for this host: the reason, then rollback and log lines."""
        out = []
        if self.reason and not self.rollback:  # a rollback's lines say the same, one part each
            out.append(f"{self.host}: {self.outcome}: {self.reason}")
        out += [f"{self.host}: {line}" for line in self.rollback]
        out += [f"{self.host}: contradiction: {c}" for c in self.contradictions if c not in self.reason]
        if self.log:
            out.append(f"{self.host}: full log: {self.log}")
        return out

    def summary(self) -> str:
        """A few words: ``failed, rolled back (ready)``, ``unhealthy: FATAL``, ``unreachable``."""
        if self.rollback:
            restored = [line for line in self.rollback if line.startswith("restore ready:")]
            if not restored:
                return f"{self.outcome}, nothing to roll back to"
            return f"{self.outcome}, rolled back ({'ready' if restored[0] == 'restore ready: yes' else 'NOT ready'})"
        state = str(self.status.get("state") or "") + (" (STALE)" if self.status.get("stale") else "")
        return f"{self.outcome}: {state}" if state and self.outcome == "unhealthy" else self.outcome

    def cell(self) -> str:
        """The table's last column: the cause (short), or the changes / note of an ok host."""
        if self.ok:
            return self.note or f"{self.changed} changed"
        text = self.why.cause if self.why is not None and self.why.cause else self.reason
        return one_line(text, CELL)

    def row(self) -> dict[str, Any]:
        st = self.status
        return {
            "host": self.host, "outcome": self.outcome, "reason": self.reason,
            "why": self.why.to_dict() if self.why is not None else None,
            "state": st.get("state"), "ready": self.ready, "stale": st.get("stale"),
            "state_reason": _first_line(st.get("state_reason")), "problem": st.get("problem"),
            "profile": st.get("profile"), "backend": st.get("backend"), "url": st.get("url"),
            "restarts": st.get("restarts"), "last_exit": st.get("last_exit_reason") or None,
            "last_health": st.get("last_health"), "installed": st.get("installed"),
            "contradictions": list(self.contradictions), "rollback": list(self.rollback),
            "changed": self.changed, "note": self.note, "log": self.log or None,
            "host_status": dict(st), **self.extra,
        }


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _ours(st: Mapping[str, Any]) -> bool:
    """Whether what answers /readyz is this deployment's runtime (same instance), as RuntimeView.ours."""
    expected = str(st.get("instance_id") or "")
    return not expected or str(st.get("readyz_instance") or "") == expected


def _ready(st: Mapping[str, Any]) -> bool:
    return st.get("readyz_status") == 200 and _ours(st)


def host_discrepancy(st: Mapping[str, Any]) -> str:
    """Where the host's own ``deploy status`` found state.json and the machine disagreeing (it then
    reports what runs as ``state`` and the record as ``recorded_state``); "" when it found none."""
    said = str(st.get("discrepancy") or "")
    recorded = str(st.get("recorded_state") or "")
    if not said and recorded and st.get("state") and recorded != st.get("state"):
        said = f"state.json says {recorded}, the host shows {st.get('state')}"
    return said


def contradictions(st: Mapping[str, Any]) -> list[str]:
    """Where the host's record (state.json, through ``deploy status``) and the live host disagree:
    the host's own finding first, then what /readyz from inside the host contradicts."""
    if not st:
        return []
    own = host_discrepancy(st)
    return ([own] if own else []) + _readyz_contradictions(st)


def _readyz_contradictions(st: Mapping[str, Any]) -> list[str]:
    state = str(st.get("state") or "ABSENT")
    code = st.get("readyz_status")
    port = st.get("port") or "?"
    instance = str(st.get("readyz_instance") or "")
    expected = str(st.get("instance_id") or "")
    pid = st.get("runner_id") or "?"
    found: list[str] = []
    if state in _QUIET and code == 200:
        if expected and instance == expected:
            who = f"the recorded runtime (instance {instance}) still answers /readyz 200 on port {port}"
        elif instance:
            who = f"another Tailor runtime (instance {instance}) answers /readyz 200 on port {port}"
        else:
            who = f"a server answers /readyz 200 on port {port}"
        found.append(f"{state} but ready yes: {who}")
    if st.get("stale") and code == 200 and expected and instance == expected:
        found.append(f"STALE but ready yes: {st.get('stale_reason') or 'its supervisor is gone'}; "
                     f"yet the recorded runtime (instance {instance}) answers /readyz 200")
    if state == "RUNNING" and not st.get("stale"):
        if code == 200 and not _ours(st):
            found.append(f"RUNNING but another server answers on port {port} "
                         f"(instance {instance or 'unknown'}, expected {expected})")
        elif code == 503:
            found.append(f"RUNNING but not ready: /readyz answered 503 on port {port}")
        elif code != 200:
            found.append(f"RUNNING but not ready: nothing answers /readyz on port {port}")
        if st.get("backend") == "process" and st.get("process_alive") is False and code != 200:
            found.append(f"RUNNING but the runtime process (pid {pid}) is gone")
    if state in _QUIET and st.get("backend") == "process" and st.get("process_alive") is True:
        found.append(f"{state} but the runtime process (pid {pid}) still runs")
    return found


def status_reason(st: Mapping[str, Any], declared: Sequence[str] | None = None) -> Reason:
    """Why a host's deployment is not ready, from its status: its own verdict (``problem``) or its
    state, with the runtime's own error from the supervisor's last log lines as the detail."""
    state = str(st.get("state") or "ABSENT")
    cause = str(st.get("problem") or "")
    if state == "ABSENT":  # no record: `deploy status` said why on stderr (kept as the state reason)
        said = parse_cli_output(str(st.get("state_reason") or ""))[0] or "no deployment recorded on this host"
        return Reason(cause=one_line(said), hint="`deploy fleet up` deploys it")
    if not cause:
        reason = _first_line(st.get("state_reason"))
        cause = f"{state}: {reason}" if reason else state
    text = f"error: {cause}\n" + "\n".join(f"  {line}" for line in st.get("last_log_lines") or ())
    return reason_from_text(text, declared=declared)


def judge(host: HostOutcome, playbook: str, declared: Sequence[str] | None = None) -> HostReport:
    """The verdict on one host after ``playbook`` (see the module docstring)."""
    st: Mapping[str, Any] = host.status or {}
    rollback: tuple[str, ...] = ()
    if host.rollout is not None:
        rollback = rollout_lines(host.rollout, declared)
        if not st and isinstance(host.rollout.get("restored_status"), Mapping) and host.rollout["restored_status"]:
            st = {**host.rollout["restored_status"], "ready": bool(host.rollout.get("restore_ready")),
                  "readyz_status": 200 if _truthy(host.rollout.get("restore_ready")) else -1,
                  "readyz_instance": host.rollout["restored_status"].get("instance_id") or ""}
    found = tuple(contradictions(st))
    if host.state != "ok":
        why = host.why
        reason = host.reason
        if host.rollout is not None:
            why = rollout_failure(host.rollout, declared)
            reason = "; ".join(part for part in (why.line(), _rollback_summary(host.rollout)) if part)
        return HostReport(host.host, host.state, reason, why, st, found, rollback, host.changed)
    installed = st.get("installed", True) is not False
    if playbook in WANT_READY:
        if not installed:
            why = Reason(cause="Tailor is not installed on this host",
                         hint="`deploy fleet up` installs it (from the wheelhouse) and launches it")
            return HostReport(host.host, "unhealthy", why.line(), why, st, found, rollback, host.changed)
        # The host's own discrepancy note does not fail a host that runs and is ready by every
        # other account (it believed what runs); what /readyz contradicts does.
        blocking = _readyz_contradictions(st)
        healthy = (st.get("state") == "RUNNING" and not st.get("stale") and _ready(st) and not blocking
                   and not st.get("problem"))
        if not healthy:
            why = status_reason(st, declared)
            if blocking and not st.get("problem"):
                why = Reason(cause=blocking[0], hint=why.hint, fix=why.fix, detail=why.detail)
            return HostReport(host.host, "unhealthy", why.line(), why, st, found, rollback, host.changed)
        return HostReport(host.host, "ok", "", None, st, found, rollback, host.changed)
    if playbook in WANT_STOPPED:
        if not installed:
            return HostReport(host.host, "ok", "", None, st, found, rollback, host.changed, note="nothing installed")
        still = [c for c in found if "still" in c or c.startswith("STALE but ready")]
        if not still and st.get("state") in _ACTIVE:  # the host's status believes what runs
            still = [f"the host's own status says {st.get('state')}"
                     + (f" ({host_discrepancy(st)})" if host_discrepancy(st) else "")]
        instance = str(st.get("readyz_instance") or "")
        if not still and st.get("readyz_status") in (200, 503) and instance:
            # A Tailor runtime on the fleet's port after `down`, whichever instance it says it is
            # (a supervisor the record lost track of starts new ones).
            still = [f"a Tailor runtime (instance {instance}) answers /readyz {st.get('readyz_status')} "
                     f"on port {st.get('port') or '?'} while the host's record says {st.get('state') or 'ABSENT'}"]
        if still:
            why = Reason(cause=f"still running after `deploy down`: {still[0]}",
                         hint="run `deploy fleet down` again; if it persists, stop the process on the host")
            return HostReport(host.host, "unhealthy", why.line(), why, st, found, rollback, host.changed)
        return HostReport(host.host, "ok", "", None, st, found, rollback, host.changed)
    return HostReport(host.host, "ok", "", None, st, found, rollback, host.changed)


def _truthy(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "yes", "1")


def rollout_failure(rollout: Mapping[str, Any], declared: Sequence[str] | None = None) -> Reason:
    """What made the new deployment fail: the launch's own error line, else (a launch killed by
    its timeout, a readiness check that gave up) what its supervisor said then."""
    task = str(rollout.get("failed_task") or "")
    stderr = str(rollout.get("failed_stderr") or "")
    cause, detail, hint = parse_cli_output(stderr) if "error:" in stderr.lower() else ("", "", "")
    failed_status = rollout.get("failed_status")
    if isinstance(failed_status, Mapping) and failed_status:
        from_status = status_reason(failed_status, declared)
        if not cause:
            msg = _first_line(rollout.get("failed_msg")).rstrip(".")
            cause = f"{msg}; its supervisor said: {from_status.cause}" if msg else from_status.cause
        detail = detail or from_status.detail
        hint = hint or from_status.hint
    if not cause:
        cause = _first_line(rollout.get("failed_msg")) or "failed"
    if detail and detail in cause:
        detail = ""
    return Reason(cause=one_line(cause), task=task, detail=one_line(detail), hint=one_line(hint),
                  fix=inventory_fix(" ".join((cause, detail, hint)), declared))


def _rollback_summary(rollout: Mapping[str, Any]) -> str:
    if not _truthy(rollout.get("restored")):
        return "there was no previous deployment to roll back to"
    state = "which is ready" if _truthy(rollout.get("restore_ready")) else "which is NOT ready"
    return f"rolled back to the previous deployment, {state}"


def rollout_lines(rollout: Mapping[str, Any], declared: Sequence[str] | None = None) -> tuple[str, ...]:
    """One short line each: what failed, what was restored, whether the restore is ready."""
    failure = rollout_failure(rollout, declared)
    lines = [f"failed: {failure.short()}"]
    if not _truthy(rollout.get("restored")):
        lines.append("restored: nothing (there was no previous deployment); the failed one was stopped")
        return tuple(lines)
    restored = rollout.get("restored_status") if isinstance(rollout.get("restored_status"), Mapping) else {}
    what = f"restored: the previous deployment ({rollout.get('restored_dir') or 'deployments/current'}"
    if restored and restored.get("profile"):
        what += f", profile {restored['profile']}"
    what += f"); the failed one is kept in {rollout.get('failed_dir') or 'deployments/failed'}"
    lines.append(what)
    if _truthy(rollout.get("restore_ready")):
        lines.append("restore ready: yes")
    else:
        stderr = str(rollout.get("relaunch_stderr") or "")
        if "error:" in stderr.lower():
            why = reason_from_text(stderr, declared=declared)
        elif restored:
            why = status_reason(restored, declared)
        else:
            why = Reason(cause=_first_line(rollout.get("relaunch_msg")) or "its /readyz does not answer 200")
        lines.append(f"restore ready: NO: {why.short()}")
    return tuple(lines)


def judge_run(result: RunResult, declared: Sequence[str] | None = None) -> list[HostReport]:
    return [judge(h, result.playbook, declared) for h in result.hosts.values()]


def log_path(fleet_dir: Path, host: str, playbook: str) -> Path:
    return fleet_dir / "logs" / f"{safe_host_name(host)}.{playbook}.log"


def write_logs(result: RunResult, reports: Sequence[HostReport], fleet_dir: Path) -> list[HostReport]:
    """Write ``<fleet dir>/logs/<host>.<playbook>.log`` for every host that is not ok (and remove
    an older one of a host that is ok now); returns the reports with their log file named."""
    out = []
    for report in reports:
        path = log_path(fleet_dir, report.host, result.playbook)
        if report.ok:
            path.unlink(missing_ok=True)
            out.append(report)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_log_text(result, report), encoding="utf-8")
        out.append(HostReport(report.host, report.outcome, report.reason, report.why, report.status,
                              report.contradictions, report.rollback, report.changed, report.note, str(path),
                              report.extra))
    return out


def _log_text(result: RunResult, report: HostReport) -> str:
    host = result.hosts.get(report.host)
    parts = [f"# deploy fleet {result.playbook}: host {report.host}, {report.outcome}",
             f"# written {time.strftime('%Y-%m-%d %H:%M:%S %z')} (ansible-playbook exited {result.rc})", ""]
    parts += report.lines() or [f"{report.host}: {report.outcome}"]
    for record in host.log if host is not None else ():
        parts += ["", f"== task {record.get('task') or '?'}: {record.get('kind')}"]
        for key in ("cmd", "rc", "status", "url", "msg"):
            if key in record:
                value = record[key]
                parts.append(f"{key}: {' '.join(map(str, value)) if isinstance(value, list) else value}")
        for key in ("stdout", "stderr", "module_stdout", "module_stderr"):
            if key in record:
                parts += [f"--- {key}", str(record[key]).rstrip()]
        if "failed_item" in record:
            parts += ["--- failed loop item", json.dumps(record["failed_item"], indent=2, default=str)]
    if host is not None and host.rollout is not None:
        parts += ["", "== the rollback (the role's tailor_rollout)", json.dumps(host.rollout, indent=2, default=str)]
    if report.status:
        st = report.status
        parts += ["", "== the host's status (deploy status --json and /readyz from inside the host)"]
        if st.get("state_reason"):
            parts += ["--- state reason", str(st["state_reason"]).rstrip()]
        parts += ["--- full status", json.dumps(dict(st), indent=2, sort_keys=True, default=str)]
    return "\n".join(parts) + "\n"
