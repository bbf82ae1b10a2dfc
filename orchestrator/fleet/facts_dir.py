"""The fleet's facts directory and planning every host from it on the controller.

``deploy fleet probe`` fills a directory with one file per host:

- ``<host>.json``         the host's facts, exactly ``deploy probe --json`` run on that host;
- ``<host>.config.yaml``  the Tailor config the role wrote from the inventory's vars (optional);
- ``_probe.json``         the probe run's outcome per host (state, reason), so hosts that could
                          not be probed (unreachable, no Python 3.10, ...) are still reported,
                          and the inventory it ran with: ``deploy fleet plan/render`` re-read
                          that inventory's variables, so a changed ``tailor_profile`` counts
                          without probing again.

Planning here is the single-host planner (the same select -> plan functions ``deploy plan
--facts`` runs), applied to each file in turn. Files are read one at a time and only small rows
are kept, so memory does not grow with the fleet.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import pipeline
from orchestrator.errors import DeployError, UsageError
from orchestrator.plan.planner import Plan
from orchestrator.plan.user_config import UserConfig
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import ProfileSet

PROBE_SUMMARY = "_probe.json"
CONFIG_SUFFIX = ".config.yaml"
_HOST_NAME = re.compile(r"^[A-Za-z0-9_.@:-]+$")


@dataclass(frozen=True)
class HostPlan:
    """One row of the fleet: a host and its plan, or why it has none."""

    host: str
    state: str
    """planned | no-fit | unreachable | failed | bad-facts"""
    reason: str = ""
    facts: HostFacts | None = None
    plan: Plan | None = None

    def row(self) -> dict[str, Any]:
        """The JSON row of ``deploy fleet plan --json``."""
        facts, plan = self.facts, self.plan
        row: dict[str, Any] = {"host": self.host, "state": self.state, "reason": self.reason}
        if facts is not None:
            row.update({
                "cpus": facts.cpu.effective_cpus,
                "memory_bytes": facts.memory.effective_total_bytes,
                "gpus": [g.name for g in facts.gpus],
                "architecture": facts.cpu.architecture,
                "jetson": facts.jetson.board_model if facts.jetson else None,
            })
        if plan is not None:
            row.update({
                "model": plan.model, "reductions": list(plan.model_fit.reductions) if plan.model_fit else [],
                "profile": plan.profile, "engine": plan.engine, "device": plan.device,
                "precision": plan.precision, "workers": plan.workers, "threads": plan.threads,
                "max_concurrency": plan.max_concurrency, "warnings": list(plan.warnings),
            })
        return row


def safe_host_name(host: str) -> str:
    if not _HOST_NAME.match(host) or host.startswith("."):
        raise UsageError(f"host name {host!r} cannot name a facts file",
                         "use inventory names made of letters, digits and . _ - @ :")
    return host


def write_host_facts(directory: Path, host: str, tailor: Mapping[str, Any], config_text: str | None) -> Path:
    """Store what the tailor_facts module returned for ``host``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{safe_host_name(host)}.json"
    _write_text(path, json.dumps(tailor["facts"], indent=2, sort_keys=True) + "\n")
    config_path = directory / f"{host}{CONFIG_SUFFIX}"
    if config_text:
        _write_text(config_path, config_text)
    else:
        config_path.unlink(missing_ok=True)
    return path


def write_probe_summary(directory: Path, outcomes: Mapping[str, Mapping[str, str]],
                        inventory: Path | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROBE_SUMMARY
    data: dict[str, Any] = {"hosts": dict(sorted(outcomes.items()))}
    if inventory is not None:
        data["inventory"] = str(inventory.resolve())
    _write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def recorded_inventory(directory: Path) -> Path | None:
    """The inventory the last ``deploy fleet probe`` into ``directory`` ran with (None if unknown)."""
    path = directory / PROBE_SUMMARY
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = data.get("inventory") if isinstance(data, dict) else None
    return Path(value) if isinstance(value, str) and value else None


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_probe_summary(directory: Path) -> dict[str, dict[str, str]]:
    path = directory / PROBE_SUMMARY
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        hosts = data["hosts"]
        return {str(k): {"state": str(v.get("state", "")), "reason": str(v.get("reason", ""))}
                for k, v in hosts.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UsageError(f"{path} is not a probe summary: {exc}",
                         "run `deploy fleet probe` again to rewrite it") from None


def facts_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise UsageError(f"facts directory {directory} does not exist",
                         "collect it with `deploy fleet probe -i INVENTORY --facts-dir DIR`")
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith(("_", ".")))


def plan_host(host: str, facts_path: Path, profiles: ProfileSet, environ: Mapping[str, str],
              config: UserConfig | None = None, settings: Mapping[str, str] | None = None) -> HostPlan:
    """``pipeline.plan_from`` for one host's facts file; every failure becomes the row's reason.

    ``profiles`` is loaded once for the whole fleet and handed to the pipeline; ``settings`` are
    command-line values for every host (``--model``), above each host's config file.
    """
    try:
        facts = pipeline.load_facts(facts_path)
    except DeployError as exc:
        return HostPlan(host, "bad-facts", exc.message)
    try:
        planned = pipeline.plan_from(pipeline.Inputs(facts=facts, config=config, profiles=profiles, environ=environ,
                                                     settings=dict(settings or {})))
    except DeployError as exc:
        from orchestrator.fleet.reasons import reason_from_text

        # The planner's hint speaks in `deploy` flags (--profile NAME); a fleet sets the same
        # through the inventory (tailor_profile), which the reason names too.
        why = reason_from_text(f"error: {exc.message}\nhint: {exc.hint}" if exc.hint else f"error: {exc.message}")
        return HostPlan(host, "no-fit", why.line(), facts)
    return HostPlan(host, "planned", "", facts, planned.plan)


def plan_fleet(directory: Path, profiles: ProfileSet, environ: Mapping[str, str] | None = None,
               configs: Mapping[str, Path] | None = None,
               settings: Mapping[str, str] | None = None) -> Iterator[HostPlan]:
    """Every host of the facts directory, in name order, then the hosts the probe could not reach.

    ``configs``: a host's Tailor config file to plan with instead of the one its probe recorded
    (the inventory's current variables, see ``deploy fleet plan``). ``settings``: command-line
    values for every host (``deploy fleet plan --model NAME``); a host's own ``model:`` (inventory
    ``tailor_model``) applies where none is given."""
    env: Mapping[str, str] = {} if environ is None else environ
    summary = read_probe_summary(directory)
    seen: set[str] = set()
    for path in facts_files(directory):
        host = path.stem
        seen.add(host)
        config_path = (configs or {}).get(host) or directory / f"{host}{CONFIG_SUFFIX}"
        try:
            config = pipeline.load_user_config(config_path) if config_path.is_file() else None
        except DeployError as exc:
            yield HostPlan(host, "bad-facts", exc.message)
            continue
        yield plan_host(host, path, profiles, env, config, settings)
    for host, outcome in summary.items():
        if host not in seen and outcome["state"] != "ok":
            yield HostPlan(host, outcome["state"], outcome["reason"])
