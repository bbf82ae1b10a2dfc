"""The one pipeline every command runs: facts -> profiles -> selection -> plan -> files -> launch spec.

The plan is made for a (model, machine) pair: the model family comes from ``--model`` (a
``settings`` value ``model``), ``TAILOR_MODEL`` in the environment or ``model:`` in the config
file, with the same precedence as every other value, and defaults to ``piper``.

``deploy plan``, ``profiles``, ``render``, ``auto``, ``up``, ``fleet`` and ``tune`` all call
:func:`plan_from` with the same :class:`Inputs`, so a value given to one command means the
same thing in every other, and its precedence is applied in exactly one place
(:func:`orchestrator.plan.planner.make_plan`):

    flag / --set (``cli``) > environment (``env``) > config file (``config``, or the file's
    label such as ``tuned``) > profile > built-in default, or ``derived`` with the reason.

Example::

    from orchestrator import pipeline

    inputs = pipeline.Inputs(facts=Path("host.json"), config=Path("tailor.yaml"),
                             profile_dirs=(Path("mine"),), settings={"TAILOR_WORKERS": "1"})
    planned = pipeline.plan_from(inputs)          # Planned: facts, profiles, selection, plan
    files = pipeline.render_files(planned.plan)    # {"docker-compose.yml": "...", ...}
    pipeline.write_deployment(Path("out"), planned)  # plan.json + facts.json + rendered files
    spec = planned.spec                            # LaunchSpec.from_plan(planned.plan)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator.errors import UsageError
from orchestrator.files import write_json_atomic
from orchestrator.launch.spec import FACTS_FILE, PLAN_FILE, LaunchSpec
from orchestrator.plan.model_fit import model_request
from orchestrator.plan.planner import Plan, make_plan
from orchestrator.plan.steps import Choices
from orchestrator.plan.user_config import UserConfig, load_config
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import (
    DEFAULT_PYTHON,
    FORMATS,
    RenderOptions,
    render,
    write_rendered,
)
from orchestrator.select.profiles import ProfileSet, load_profiles
from orchestrator.select.selection import (
    Judged,
    ModelRequest,
    Selection,
    choose_profile,
    default_model,
    judge_profiles,
)

CONFIG_LABEL = "config"


@dataclass(frozen=True)
class Inputs:
    """Everything a user can give any command, before anything is read."""

    facts: HostFacts | Path | None = None
    """HostFacts in hand, a facts file (``deploy probe --json > FILE``), or None: probe this machine."""
    profile: str | None = None
    """Force this profile (``--profile``); else the config file's ``profile:``, else the best fit."""
    profile_dirs: tuple[Path, ...] = ()
    """Extra profile directories (``--profiles``); a same-named profile replaces a built-in."""
    config: Path | UserConfig | None = None
    """The user config file (``--config``), or one already parsed."""
    config_label: str = CONFIG_LABEL
    """Source label recorded for the config file's values (``tuned`` for a file `deploy tune` wrote)."""
    settings: Mapping[str, str] = field(default_factory=dict)
    """Command-line values (``--set`` and flags such as ``--port``), by knob (``workers``) or
    variable name (``TAILOR_WORKERS``); recorded with source ``cli``."""
    environ: Mapping[str, str] | None = None
    """The user's environment; None: ``os.environ``."""
    probe_root: Path | None = None
    """Probe a recorded tree instead of ``/`` (only when ``facts`` is None)."""
    profiles: ProfileSet | None = None
    """Profiles already loaded (``load_profiles(dirs)``), for callers that plan many hosts with one
    set (``deploy fleet``); when given, ``profile_dirs`` must be empty."""


@dataclass(frozen=True)
class Selected:
    """The first half of the pipeline: what ``deploy profiles`` shows."""

    facts: HostFacts
    profiles: ProfileSet
    config: UserConfig | None
    forced: str | None
    """The profile the user named (flag or config file), if any."""
    notes: tuple[str, ...]
    """Informational sentences (a profile directory replaced a built-in...)."""
    environ: Mapping[str, str] = field(default_factory=dict)
    """The user's environment (the GPU choice follows its ``CUDA_VISIBLE_DEVICES``)."""
    model: ModelRequest = field(default_factory=default_model)
    """The model family (``--model``, ``TAILOR_MODEL``, ``model:``) and what the user pinned about it."""
    user: Choices | None = None
    """The user's values by precedence, parsed once (the plan uses them as they are)."""

    def judge(self) -> Judged:
        """Every profile judged (facts completed, GPUs chosen once): what ``deploy profiles`` shows."""
        return judge_profiles(self.facts, self.profiles, self.environ, self.model)

    def select(self, judged: Judged | None = None) -> Selection:
        """The chosen profile, from ``judged`` when the caller already judged the profiles."""
        return choose_profile(judged if judged is not None else self.judge(), self.forced)


@dataclass(frozen=True)
class Planned:
    """The whole pipeline's result, up to the launch spec."""

    inputs: Inputs
    facts: HostFacts
    profiles: ProfileSet
    selection: Selection
    config: UserConfig | None
    plan: Plan
    notes: tuple[str, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.plan.warnings

    @property
    def spec(self) -> LaunchSpec:
        return LaunchSpec.from_plan(self.plan)


def load_facts(source: HostFacts | Path | None, environ: Mapping[str, str] | None = None,
               probe_root: Path | None = None) -> HostFacts:
    """HostFacts from what the user gave: the facts themselves, a facts file, or a probe."""
    if isinstance(source, HostFacts):
        return source
    if source is not None:
        return HostFacts.from_json_file(source)
    from orchestrator.probe.host import probe_host  # heavy; only load it when probing

    env = os.environ if environ is None else environ
    return probe_host(probe_root, environ=env) if probe_root is not None else probe_host(environ=env)


def load_user_config(config: Path | UserConfig | None, label: str = CONFIG_LABEL) -> UserConfig | None:
    """The parsed config file with its source label, or None."""
    if config is None:
        return None
    parsed = load_config(config) if isinstance(config, Path) else config
    if parsed.label == label or label == CONFIG_LABEL:
        return parsed  # a file that names its own source (the `tuned:` block of `deploy tune`) keeps it
    return replace(parsed, label=label)


def select_from(inputs: Inputs) -> Selected:
    """facts + profiles + config: everything needed to choose a profile."""
    if inputs.profiles is not None and inputs.profile_dirs:
        raise UsageError("pass either loaded profiles or profile directories, not both",
                         "load the directories once with load_profiles(dirs) and pass the set")
    profiles = inputs.profiles if inputs.profiles is not None else load_profiles(tuple(inputs.profile_dirs))
    config = load_user_config(inputs.config, inputs.config_label)
    facts = load_facts(inputs.facts, inputs.environ, inputs.probe_root)
    forced = inputs.profile or (config.profile if config is not None else None)
    environ = os.environ if inputs.environ is None else inputs.environ
    user = Choices(inputs.settings, environ, config, {}, "")  # every user value parsed, once
    return Selected(facts, profiles, config, forced, tuple(profiles.overrides), environ, model_request(user), user)


def plan_from(inputs: Inputs) -> Planned:
    """The plan for ``inputs``: precedence applied once, every value recorded with its source."""
    selected = select_from(inputs)
    selection = selected.select()
    environ = os.environ if inputs.environ is None else inputs.environ
    plan = make_plan(selected.facts, selection, inputs.settings, environ, selected.config, user=selected.user)
    return Planned(inputs, selected.facts, selected.profiles, selection, selected.config, plan, selected.notes)


def render_files(plan: Plan, formats: Iterable[str] = FORMATS, options: RenderOptions | None = None) -> dict[str, str]:
    """File name -> text of the rendered deployment files (see :mod:`orchestrator.render.renderer`)."""
    return render(plan, formats, options)


def write_plan_files(directory: Path, plan: Plan, facts: HostFacts) -> tuple[Path, Path]:
    """``plan.json`` + ``facts.json``: what ``deploy up DIR`` reads and the OOM step-down replans from.

    ``plan.json`` is written with mode 0600 because the plan's environment can hold secrets
    (``TAILOR_API_KEY``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    plan_path, facts_path = directory / PLAN_FILE, directory / FACTS_FILE
    write_json_atomic(plan_path, plan.to_dict(), mode=0o600)
    write_json_atomic(facts_path, facts.to_dict())
    return plan_path, facts_path


def render_options(facts: HostFacts, *, public: bool = False, network: str = "bridge", python: str | None = None,
                   service_user: str | None = None) -> RenderOptions:
    """How to render for the machine ``facts`` describe, from those facts and the options given.

    The systemd unit's interpreter is ``python`` if given, else the target's own install as its
    probe recorded it (``facts.install``), else ``/opt/tailor/venv/bin/python``. Its user is
    ``service_user`` if given, else the owner of the home directory the target's interpreter
    lives in (a venv over a pyenv in /root runs as root), else decided from the path. Nothing of
    the machine that renders is looked at: a fleet controller renders for its hosts.
    """
    install = facts.install
    chosen = python or (install.python if install is not None else DEFAULT_PYTHON)
    user = service_user or ""
    if not user and install is not None and chosen == install.python:
        user = install.home_owner
    return RenderOptions(public=public, network=network, python=chosen, service_user=user)


def write_deployment(directory: Path, planned: Planned, formats: Iterable[str] = FORMATS,
                     options: RenderOptions | None = None) -> tuple[Path, ...]:
    """A deployment directory: the rendered files, then plan.json + facts.json. Returns every path written."""
    options = options or render_options(planned.facts)
    written = write_rendered(render_files(planned.plan, formats, options), directory)
    return (*written, *write_plan_files(directory, planned.plan, planned.facts))


def cli_settings(sets: Iterable[str] = (), **flags: object) -> dict[str, str]:
    """Command-line values from ``--set KEY=VALUE`` items and flags (None = not given).

    Flags win over a ``--set`` of the same knob; both are validated later by the planner with
    the knob table's rules, so ``--set port=99999`` and ``--port 99999`` fail alike.
    """
    result: dict[str, str] = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {item!r} is not KEY=VALUE", "for example --set workers=2")
        result[key.strip()] = value.strip()
    for flag, flag_value in flags.items():
        if flag_value is not None:
            result[flag] = str(flag_value)
    return result


__all__ = [
    "CONFIG_LABEL",
    "Inputs",
    "Planned",
    "Selected",
    "cli_settings",
    "load_facts",
    "load_user_config",
    "plan_from",
    "render_files",
    "render_options",
    "select_from",
    "write_deployment",
    "write_plan_files",
]
