"""Run one of the tailor.fleet playbooks with ansible-runner and fold its events into per-host outcomes.

Tailor writes no SSH and no scheduling: ansible-playbook (through ansible-runner) connects to the
hosts, runs them in parallel, batches them (``serial``) and stops a rollout (``max_fail_percentage``).
This module only starts it, turns its event stream into progress lines, and keeps what each host
reported: the ``tailor_facts`` module's result, the role's ``tailor_status`` fact, and the reason
a host failed or could not be reached.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import DeployError, UsageError
from orchestrator.fleet.reasons import Reason, reason_from_result

COLLECTION_NAMESPACE = "tailor"
COLLECTION_NAME = "fleet"
PLAYBOOKS = ("probe", "up", "status", "down", "config")
FINAL_TASKS = {
    "probe": "Probe and plan with the host's Tailor",
    "up": "Tailor's report for this host",
    "status": "Tailor's report for this host",
    "down": "Tailor's report for this host",
    "config": "The host's Tailor config, templated on the controller",
}
"""The task that finishes a host's run of each playbook (its progress line says ``done``)."""
FACTS_ACTION = "tailor.fleet.tailor_facts"

Progress = Callable[[str], None]


class FleetError(DeployError):
    """The fleet run could not start or Ansible failed as a whole (not one host)."""


@dataclass
class HostOutcome:
    """What one host reported during a playbook run."""

    host: str
    state: str = "ok"
    """ok | failed | unreachable | skipped (never reached by the run, e.g. a stopped rollout)."""
    reason: str = ""
    """Why the host failed or was unreachable, one line: task, cause, hint, inventory fix."""
    why: Reason | None = None
    """The same reason in its parts (None when the host did not fail)."""
    changed: int = 0
    tailor: dict[str, Any] | None = None
    """``ansible_facts.tailor`` from the tailor_facts module (facts, profile, plan, plan_error)."""
    status: dict[str, Any] | None = None
    """The role's ``tailor_status`` fact: the host's whole ``deploy status --json`` (whatever its
    exit code) plus what the role checked from inside the host (``/readyz``, installed or not)."""
    config: dict[str, Any] | None = None
    """The role's ``tailor_config`` fact (config action): the host's Tailor config from the inventory."""
    rollout: dict[str, Any] | None = None
    """The role's ``tailor_rollout`` fact, set when a new deployment failed and was rolled back."""
    log: list[dict[str, Any]] = field(default_factory=list)
    """Every failed task (rescued ones too) and every command that exited non-zero, in full, for
    the host's log file (see orchestrator.fleet.report)."""

@dataclass
class RunResult:
    playbook: str
    rc: int
    hosts: dict[str, HostOutcome] = field(default_factory=dict)
    """Every host of the inventory (after --limit), in inventory order."""

    summary: str = ""
    """The progress counter at the end of the run (``[2 done, 1 failed, 0 unreachable]``)."""

    def failed(self) -> list[HostOutcome]:
        return [h for h in self.hosts.values() if h.state != "ok"]


def collection_root() -> Path:
    """The directory to put on ANSIBLE_COLLECTIONS_PATH (holds ``ansible_collections/tailor/fleet``).

    A source checkout has it at ``fleet/ansible``; the wheel carries it in ``orchestrator/_data/ansible``.
    """
    here = Path(__file__).resolve()
    for candidate in (here.parents[2] / "fleet" / "ansible", here.parents[1] / "_data" / "ansible"):
        if (candidate / "ansible_collections" / COLLECTION_NAMESPACE / COLLECTION_NAME / "galaxy.yml").is_file():
            return candidate
    raise FleetError("the tailor.fleet Ansible collection is missing from this installation",
                     "reinstall tailor-deploy; the collection ships in the repository under fleet/ansible")


def role_path() -> Path:
    """The tailor.fleet.tailor role's directory."""
    return collection_root() / "ansible_collections" / COLLECTION_NAMESPACE / COLLECTION_NAME / "roles" / "tailor"


def playbook_path(name: str) -> Path:
    if name not in PLAYBOOKS:
        raise UsageError(f"unknown fleet playbook {name!r}", "one of " + ", ".join(PLAYBOOKS))
    return collection_root() / "ansible_collections" / COLLECTION_NAMESPACE / COLLECTION_NAME / "playbooks" / f"{name}.yml"


def _ansible_playbook_binary() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise FleetError("ansible-playbook is not installed",
                         "install the fleet extra: pip install 'tailor-deploy[fleet]'")
    return found


def check_inventory(inventory: Path) -> Path:
    if not inventory.exists():
        raise UsageError(f"inventory {inventory} does not exist",
                         "pass an Ansible inventory file or directory with -i (see README: Fleets)")
    return inventory.resolve()


class _Events:
    """Folds ansible-runner events into HostOutcomes and progress lines."""

    def __init__(self, progress: Progress, final_task: str) -> None:
        self.hosts: dict[str, HostOutcome] = {}
        self.progress = progress
        self.final_task = final_task
        self.done: set[str] = set()
        self.failing: set[str] = set()
        """Hosts whose latest task failed (a rescue that runs on clears it; stats decide at the end)."""
        self.reached = False
        """Whether any task ran on any host (else a failure is Ansible's own, not a host's)."""

    def _host(self, name: str) -> HostOutcome:
        if name not in self.hosts:
            self.hosts[name] = HostOutcome(name)
        return self.hosts[name]

    def summary(self) -> str:
        """``[2 done, 1 failed, 0 unreachable]``: hosts finished well, failed, not reached."""
        failed = sum(1 for h in self.hosts.values() if h.state == "failed" or h.host in self.failing)
        unreachable = sum(1 for h in self.hosts.values() if h.state == "unreachable")
        done = sum(1 for name in self.done if self._host(name).state == "ok" and name not in self.failing)
        return f"[{done} done, {failed} failed, {unreachable} unreachable]"

    def _record(self, name: str, kind: str, task: str, res: Mapping[str, Any]) -> None:
        self._host(name).log.append(log_record(kind, task, res))

    def __call__(self, event: Mapping[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        name = data.get("host") or ""
        res = data.get("res") or {}
        task = data.get("task") or ""
        if kind.startswith("runner_on_") and name:
            self.reached = True
        if kind in ("runner_on_ok", "runner_on_skipped") and name:
            self.failing.discard(name)  # a failure before this one was rescued
        if kind == "runner_on_ok" and name:
            host = self._host(name)
            if isinstance(res.get("rc"), int) and res["rc"] != 0:
                self._record(name, "exited non-zero (tolerated)", task, res)
            if res.get("changed"):
                host.changed += 1
            facts = res.get("ansible_facts") or {}
            if data.get("task_action") == FACTS_ACTION and isinstance(facts.get("tailor"), dict):
                host.tailor = facts["tailor"]
            if isinstance(facts.get("tailor_status"), dict):
                host.status = facts["tailor_status"]
            if isinstance(facts.get("tailor_config"), dict):
                host.config = facts["tailor_config"]
            if isinstance(facts.get("tailor_rollout"), dict):
                host.rollout = facts["tailor_rollout"]
            if task == self.final_task and name not in self.done:
                self.done.add(name)
                self.progress(f"{self.summary()} {name}: done")
        elif kind == "runner_on_failed" and name and not data.get("ignore_errors"):
            # A failure inside a block may be rescued (the role's rollback); the final verdict
            # comes from playbook_on_stats, this keeps the latest reason.
            host = self._host(name)
            host.why = reason_from_result(task, res)
            host.reason = host.why.line()
            self._record(name, "failed", task, res)
            self.failing.add(name)
            self.progress(f"{self.summary()} {name}: task failed: {host.reason}")
        elif kind == "runner_on_failed" and name:
            self._record(name, "failed (ignored, the role carries on)", task, res)
        elif kind == "runner_on_unreachable" and name:
            host = self._host(name)
            host.state = "unreachable"
            host.why = reason_from_result(task, res)
            host.reason = host.why.line()
            self._record(name, "unreachable", task, res)
            self.failing.discard(name)
            self.done.add(name)
            self.progress(f"{self.summary()} {name}: UNREACHABLE: {host.reason}")
        elif kind == "playbook_on_task_start" and task:
            self.progress(f"{self.summary()} task: {task}")
        elif kind == "playbook_on_stats":
            for key in ("ok", "changed", "failures", "dark", "skipped", "processed"):
                for hname in (data.get(key) or {}):
                    self._host(hname)
            for hname in data.get("failures") or {}:
                host = self._host(hname)
                if host.state == "ok":
                    host.state = "failed"
                    self.done.add(hname)
            for hname in data.get("dark") or {}:
                self._host(hname).state = "unreachable"
                self.done.add(hname)
            self.failing.clear()
        return False  # nothing needs the events kept on disk


_LOG_KEYS = ("msg", "cmd", "rc", "stdout", "stderr", "status", "url", "module_stdout", "module_stderr")


def log_record(kind: str, task: str, res: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a task result worth keeping in a host's log (full text, nothing cut)."""
    record: dict[str, Any] = {"kind": kind, "task": task}
    for key in _LOG_KEYS:
        value = res.get(key)
        if value not in (None, "", [], {}):
            record[key] = value
    failed_items = [r for r in res.get("results") or () if isinstance(r, Mapping) and r.get("failed")]
    if failed_items:
        record["failed_item"] = {k: failed_items[0][k] for k in _LOG_KEYS if k in failed_items[0]}
    return record


def run_playbook(name: str, inventory: Path, *, extravars: Mapping[str, Any] | None = None,
                 limit: str | None = None, progress: Progress = lambda _m: None,
                 environ: Mapping[str, str] | None = None, check: bool = False) -> RunResult:
    """Run ``tailor.fleet.<name>`` against ``inventory`` and return every host's outcome.

    A failed or unreachable host is an outcome, not an exception; only an Ansible that cannot run
    at all (bad inventory, missing ansible-playbook) raises FleetError.
    """
    try:
        import ansible_runner
    except ImportError as exc:
        raise FleetError("ansible-runner is not installed",
                         "install the fleet extra: pip install 'tailor-deploy[fleet]'") from exc
    inventory = check_inventory(inventory)
    binary = _ansible_playbook_binary()
    env = dict(environ if environ is not None else os.environ)
    envvars = {
        "ANSIBLE_COLLECTIONS_PATH": str(collection_root()),
        "ANSIBLE_HOST_KEY_CHECKING": env.get("ANSIBLE_HOST_KEY_CHECKING", "False"),
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "1",
        # One exec per task instead of put-file + exec + cleanup (connections that support it).
        "ANSIBLE_PIPELINING": env.get("ANSIBLE_PIPELINING", "True"),
        "PATH": f"{Path(binary).parent}{os.pathsep}{env.get('PATH', '')}",
    }
    if "DOCKER_HOST" in env:
        envvars["DOCKER_HOST"] = env["DOCKER_HOST"]
    events = _Events(progress, FINAL_TASKS[name])
    for host_name in inventory_hosts(inventory, limit):
        events.hosts[host_name] = HostOutcome(host_name)
    cmdline = "--check" if check else None
    with tempfile.TemporaryDirectory(prefix="tailor-fleet-") as private:
        runner = ansible_runner.run(
            private_data_dir=private, playbook=str(playbook_path(name)), inventory=str(inventory),
            extravars=dict(extravars or {}), envvars=envvars, limit=limit,
            event_handler=events, quiet=True, suppress_env_files=True, cmdline=cmdline,
        )
        rc = int(runner.rc if runner.rc is not None else 1)
        stdout_tail = _tail(runner) if not events.reached and rc != 0 else ""
    if not events.reached and rc != 0:
        raise FleetError(f"ansible-playbook {name} failed before reaching any host (exit {rc}):\n{stdout_tail}",
                         "check the inventory (ansible-inventory -i INVENTORY --list) and --limit")
    for host in events.hosts.values():
        if host.state == "ok" and host.reason and host.host not in events.done:
            host.reason = ""  # failed inside a block and was rescued
        if host.state == "ok" and host.host not in events.done:
            host.state = "skipped"
            host.reason = "not run: the rollout stopped before this host's batch (max_fail_percentage)"
        if host.state == "ok":
            host.why = None
    summary = events.summary()
    progress(f"{summary} finished: ansible-playbook {name} exited {rc}")
    return RunResult(name, rc, events.hosts, summary)


def _tail(runner: Any, lines: int = 15) -> str:
    """The last lines ansible-playbook printed (ansible-runner keeps them in its artifacts)."""
    try:
        handle = runner.stdout  # opens the artifact file: close it here
    except (OSError, AttributeError, ValueError):
        return ""
    try:
        text = handle.read()
    except (OSError, ValueError):
        return ""
    finally:
        handle.close()
    return "\n".join(str(text).strip().splitlines()[-lines:])


def inventory_hosts(inventory: Path, limit: str | None = None) -> Sequence[str]:
    """Host names in the inventory (after ``limit``), read with ansible-inventory."""
    import json
    import subprocess

    inventory = check_inventory(inventory)
    binary = Path(_ansible_playbook_binary()).with_name("ansible-inventory")
    argv = [str(binary), "-i", str(inventory), "--list"]
    if limit:
        argv += ["--limit", limit]
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise UsageError(f"ansible-inventory could not read {inventory}: {proc.stderr.strip()[-400:]}",
                         "fix the inventory; `ansible-inventory -i INVENTORY --list` shows what Ansible reads")
    data = json.loads(proc.stdout)
    return _hosts_in_order(data)


def _hosts_in_order(data: Mapping[str, Any]) -> list[str]:
    """Hosts of an ``ansible-inventory --list`` document, groups in order, each host once."""
    seen: dict[str, None] = {}

    def walk(group: str) -> None:
        node = data.get(group) or {}
        for host in node.get("hosts") or ():
            seen.setdefault(host, None)
        for child in node.get("children") or ():
            walk(child)

    walk("all")
    for host in (data.get("_meta") or {}).get("hostvars") or {}:
        seen.setdefault(host, None)
    return list(seen)
