"""Render a plan into deployment files: docker-compose.yml + .env, Kubernetes, systemd.

Every decision is made here, in Python; the templates in ``templates/`` only place ready
values (strings arrive already quoted for YAML) and test precomputed booleans. Rendering uses
``StrictUndefined``; every output is parsed back (YAML, env lines, unit sections) and
compared with what was meant before anything is written. Output is deterministic: the same
plan and options give byte-identical files.
"""

from __future__ import annotations

import configparser
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from orchestrator import __version__, envfile
from orchestrator.errors import RenderError, UsageError
from orchestrator.files import write_text_atomic
from orchestrator.plan import engine_image
from orchestrator.plan.container_spec import ContainerSpec
from orchestrator.plan.decisions import (
    CONTAINER_GID,
    CONTAINER_UID,
    HEALTHCHECK_INTERVAL_S,
    HEALTHCHECK_RETRIES,
    HEALTHCHECK_TIMEOUT_S,
    SECURITY,
    bind_address,
    container_user,
    healthcheck_command,
    healthcheck_start_period_s,
    publish_address,
)
from orchestrator.plan.planner import Plan
from orchestrator.plan.processes import pod_processes
from orchestrator.plan.runtime_env import set_by_user
from orchestrator.render.templating import render_template

FORMATS = ("compose", "env", "k8s", "systemd")
DEFAULT_PYTHON = "/opt/tailor/venv/bin/python"
"""Where the README installs Tailor for a systemd service (and the fleet role installs it)."""
SERVICE_NAME = "tailor-runtime"
_FILES = {
    "compose": ("docker-compose.yml", ".env"),
    "env": (".env",),
    "k8s": ("k8s.yaml",),
    "systemd": ("tailor-runtime.service", "tailor-runtime.env"),
}
_TEMPLATES = {
    "docker-compose.yml": "docker-compose.yml.j2",
    ".env": "env.j2",
    "k8s.yaml": "k8s.yaml.j2",
    "tailor-runtime.service": "tailor-runtime.service.j2",
    "tailor-runtime.env": "env.j2",
}
# The planner preloads jemalloc/tcmalloc when the facts' host has it; the runtime images built
# from templates/docker/ install none, so container targets leave these out.
_HOST_ALLOCATOR_VARIABLES = ("LD_PRELOAD", "MALLOC_CONF", "TCMALLOC_RELEASE_RATE")
# Host device numbering means nothing inside a container: the reservation picks the devices.
_CONTAINER_DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES",)


@dataclass(frozen=True)
class RenderOptions:
    public: bool = False
    """Publish the port on every interface (compose) / bind 0.0.0.0 (systemd)."""
    network: str = "bridge"
    """``bridge`` (ports published on 127.0.0.1 unless public) or ``host`` (no ports)."""
    python: str = DEFAULT_PYTHON
    """Interpreter for the systemd unit's ExecStart: ``--python``, else the target's own install
    (``HostFacts.install``, recorded by its probe), else the documented ``/opt/tailor/venv``
    (see :func:`orchestrator.pipeline.render_options`)."""
    service_user: str = ""
    """Who the unit runs as: a user name, ``dynamic`` (a transient DynamicUser), or "" to decide
    from the ``python`` path alone (under /root or /home/NAME: that user; else DynamicUser). The
    renderer never looks at the filesystem it runs on."""
    env_file: str = "/etc/tailor/tailor-runtime.env"
    """Where the systemd unit expects its environment file to be installed."""


def parse_formats(text: str) -> tuple[str, ...]:
    """``compose,k8s`` -> ('compose', 'k8s'); a UsageError for unknown names."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UsageError(f"unknown format(s): {', '.join(unknown) or '(none given)'}",
                         "choose from: " + ", ".join(FORMATS))
    return names


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text)


def _user_set(plan: Plan, name: str) -> bool:
    return any(p.name == name and set_by_user(p.source) for p in plan.provenance)


def runtime_env(plan: Plan, target: str, options: RenderOptions) -> tuple[dict[str, str], dict[str, str]]:
    """(env, notes) for where the runtime runs: a container must bind 0.0.0.0 to be reachable
    through a published port; the host process binds loopback unless ``public``. ``notes``
    says why a value differs from the plan's."""
    env = dict(plan.env)
    notes: dict[str, str] = {}
    if not _user_set(plan, "TAILOR_HOST"):
        address, why = bind_address(in_container=target == "container", network=options.network,
                                    public=options.public)
        env["TAILOR_HOST"] = address
        notes["TAILOR_HOST"] = f"render: {why}"
    if target == "container":
        for name, value in engine_image.container_env(plan.container.flavor, env).items():
            env[name] = value
            notes[name] = (f"render: {name} is the engine image's interpreter ({plan.container.image}; "
                           f"IndexTTS2 pins {engine_image.PINS})")
        for name in _CONTAINER_DEVICE_VARIABLES:
            if name in env:
                del env[name]
                notes[name] = (f"render: {name} left out: the container's GPU reservation (compose device_ids, "
                               "the k8s device plugin) exposes exactly the planned GPUs")
        for name in _HOST_ALLOCATOR_VARIABLES:
            if name in env and not _user_set(plan, name):
                del env[name]
                notes[name] = (f"render: {name} left out: the runtime images ship no malloc replacement "
                               "(it applies to the process backend only)")
    for name, value in env.items():
        envfile.assignment(name, value, RenderError)
    return env, notes


@dataclass(frozen=True)
class PodShape:
    """What one Kubernetes pod of a plan asks for, and how many pods the plan runs."""

    replicas: int
    cpus: float
    memory_bytes: int
    gpus: int
    """``nvidia.com/gpu`` (or MIG resource) count per pod; 0 without a GPU."""


def pod_shape(c: ContainerSpec) -> PodShape:
    """The one place that turns the plan's container decisions into a pod: one pod per GPU when
    the plan spreads workers over several whole GPUs (``k8s_replicas`` > 1), else one pod with
    the plan's requests. Used by the k8s template, its read-back check and `deploy fleet render`."""
    if c.k8s_replicas > 1:
        return PodShape(c.k8s_replicas, c.k8s_request_cpus, c.k8s_request_memory_bytes, 1 if c.gpu_count else 0)
    return PodShape(1, c.request_cpus, c.request_memory_bytes, c.gpu_count)


def k8s_pod_env(plan: Plan) -> dict[str, str]:
    """One pod's environment: the container's, and with one pod per GPU (``k8s_replicas`` > 1) that
    pod's share: one GPU, its workers, its part of the queue."""
    env, _notes = runtime_env(plan, "container", RenderOptions(public=True, network="bridge"))
    c = plan.container
    if c.k8s_replicas > 1:
        env["TAILOR_GPUS"] = "1"
        env["TAILOR_WORKERS"] = str(c.k8s_workers)
        env["TAILOR_MAX_QUEUE"] = str(-(-plan.max_queue // c.k8s_replicas))
        env["TAILOR_PROCESSES"] = str(pod_processes(plan.processes, c.k8s_replicas))
    return env


def _env_context(plan: Plan, env_notes: tuple[dict[str, str], dict[str, str]], title: str) -> dict[str, Any]:
    sources = {p.name: p for p in plan.provenance}
    env, notes = env_notes
    lines = []
    for name, value in env.items():
        p = sources.get(name)
        note = notes.get(name) or (f"{p.source}: {p.reason}" if p is not None else "set by the plan")
        lines.append({"comment": f"# {note}".replace("\n", " "),
                      "assignment": envfile.assignment(name, value, RenderError)})
    for name in sorted(set(notes) - set(env)):
        lines.append({"comment": f"# {notes[name]}", "assignment": ""})
    return {"title": title, "version": __version__, "profile": plan.profile, "lines": lines}


def _context(plan: Plan, options: RenderOptions) -> dict[str, dict[str, Any]]:
    c = plan.container
    port = plan.port
    container_env = runtime_env(plan, "container", options)
    host_env = runtime_env(plan, "host", options)
    grace = int(float(plan.other_env["TAILOR_SHUTDOWN_GRACE_S"]))
    mem_mib = c.memory_limit_bytes // 1024**2
    common = {"version": __version__, "profile": plan.profile, "service": SERVICE_NAME, "port": port,
              "image": _q(c.image), "grace_s": grace, "user": _q(c.user)}
    publish = f"{port}:{port}" if options.public else f"{publish_address(False)}:{port}:{port}"
    compose = {
        **common,
        "mem_limit": _q(f"{mem_mib}m"),
        "cpus": _q(_cpus(c.cpus)),
        "shm_size": _q(f"{c.shm_size_bytes // 1024**2}m"),
        "pids_limit": c.pids_limit,
        "tmpfs": _q(f"{SECURITY.tmpfs_path}:size={SECURITY.tmpfs_size_mib}m,mode=1777"),
        "security_opt": _q("no-new-privileges:true") if SECURITY.no_new_privileges else "",
        "cap_drop": list(SECURITY.cap_drop),
        "read_only": "true" if SECURITY.read_only_root else "false",
        "network_host": options.network == "host",
        "publish": _q(publish),
        "nvidia_runtime": c.runtime == "nvidia",
        "gpu": c.gpu_count > 0,
        "device_ids": ", ".join(_q(d) for d in c.gpu_device_ids),
        "healthcheck": ", ".join(_q(a) for a in healthcheck_command(port)),
        "health_interval": f"{HEALTHCHECK_INTERVAL_S}s", "health_timeout": f"{HEALTHCHECK_TIMEOUT_S}s",
        "health_retries": HEALTHCHECK_RETRIES,
        "start_period": _q(f"{healthcheck_start_period_s(plan.preload)}s"),
    }
    k8s_env = k8s_pod_env(plan)
    pod = pod_shape(c)
    k8s = {
        **common,
        "replicas": pod.replicas,
        "env": [{"name": _q(k), "value": _q(v)} for k, v in k8s_env.items()],
        "cpu": _q(_cpus(pod.cpus)),
        "memory": _q(f"{pod.memory_bytes // 1024**2}Mi"),
        "gpu": c.gpu_count > 0,
        "gpu_count": _q(str(pod.gpus)),
        "gpu_resource": c.gpu_resource,
        "architecture": _q(c.architecture),
        "l4t_major": _q(c.l4t_major),
        "jetson": bool(c.l4t_major),
        "gpu_product": _q(c.gpu_product),
        "gpu_memory_gt": _q(str(max(0, c.gpu_memory_mib - 1))),
        "runtime_class": c.runtime == "nvidia",
        "shm_size": _q(f"{c.shm_size_bytes // 1024**2}Mi"),
        "pids_limit": c.pids_limit,
        "startup_failures": 30 if plan.preload else 12,
        "uid": CONTAINER_UID, "gid": CONTAINER_GID,
    }
    systemd = {
        **common,
        "python": options.python,
        "env_file": options.env_file,
        **_service_identity(options.python, options.service_user),
        "start_limit_burst": SYSTEMD_START_LIMIT_BURST,
        "start_limit_interval_s": SYSTEMD_START_LIMIT_INTERVAL_S,
        "tasks_max": c.pids_limit,
        "memory_max": str(c.memory_limit_bytes),
        "cpu_quota": f"{round(c.cpus * 100)}%",
        "private_devices": "no" if plan.device == "cuda" else "yes",
        "stop_timeout_s": grace + 10,
    }
    return {
        "docker-compose.yml": compose,
        ".env": _env_context(plan, container_env, "docker compose (env_file)"),
        "k8s.yaml": k8s,
        "tailor-runtime.service": systemd,
        "tailor-runtime.env": _env_context(plan, host_env, "systemd EnvironmentFile"),
    }


SYSTEMD_START_LIMIT_BURST = 5
SYSTEMD_START_LIMIT_INTERVAL_S = 300
"""A crash loop under systemd stops after 5 starts in 5 minutes (the supervisor's own rule is
more than 5 restarts in 2 minutes; systemd restarts every 2 s, so it needs the longer window)."""
def home_user(path: str) -> str:
    """The user whose home directory ``path`` is in, from the path alone ("" when none):
    ``/root/...`` -> root, ``/home/NAME/...`` -> NAME."""
    if path.startswith("/root/"):
        return "root"
    parts = path.split("/")
    return parts[2] if path.startswith("/home/") and len(parts) > 3 and parts[2] else ""


def _service_identity(python: str, service_user: str) -> dict[str, str]:
    """Who the unit runs as, from the options alone (no file is looked at on this machine).

    An install outside home directories (``/opt/tailor/venv``, ``/usr``) runs as a transient
    ``DynamicUser`` with home directories hidden. An interpreter inside a home directory (a
    clone's ``.venv``, or a venv over a pyenv in /root, which the target's probe records) is
    unreadable to a dynamic user (``/root`` is 0700), so the unit runs as that directory's owner,
    with home directories read-only.
    """
    user = service_user or home_user(python)
    if user in ("", "dynamic"):
        return {"user_directive": "DynamicUser=yes", "protect_home": "yes",
                "install_note": f"{python}, run by a transient DynamicUser"}
    note = (f"{python} is in {user}'s home directory, which a DynamicUser cannot read, so it runs as User={user}; "
            "install into /opt/tailor/venv for an isolated service user" if home_user(python) == user
            else f"{python}, run as User={user}")
    return {"user_directive": f"User={user}", "protect_home": "read-only", "install_note": note}


def _cpus(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def render_engine_dockerfile(base_image: str, cuda_build: str, port: int) -> str:
    """IndexTTS2's engine image recipe (templates/docker/indextts2-engine.Dockerfile.j2), for
    ``deploy render`` (written beside compose/k8s) and the Docker backend alike."""
    return render_template(engine_image.TEMPLATE, {
        "version": __version__, "base_image": base_image, "requirement": engine_image.REQUIREMENT,
        "torch_build": engine_image.torch_build(cuda_build), "model_dir": engine_image.MODEL_DIR,
        "user": container_user(), "port": port,
        "engine_venv": engine_image.ENGINE_VENV, "engine_python": engine_image.ENGINE_PYTHON})


_IMAGE_FORMATS = ("compose", "k8s")
"""Formats that run a container image: with IndexTTS2's engine image, its recipe comes along."""


def render(plan: Plan, formats: Iterable[str] = FORMATS, options: RenderOptions | None = None) -> dict[str, str]:
    """File name -> text for the requested formats (``compose`` brings its ``.env``; a container
    format of an IndexTTS2 plan brings the engine image's Dockerfile, which the operator builds)."""
    options = options or RenderOptions()
    if options.network not in ("bridge", "host"):
        raise UsageError(f"network {options.network!r} is not bridge or host", "use --network bridge|host")
    contexts = _context(plan, options)
    files: dict[str, str] = {}
    for fmt in formats:
        if fmt not in _FILES:
            raise UsageError(f"unknown format {fmt!r}", "choose from: " + ", ".join(FORMATS))
        for name in _FILES[fmt]:
            if name in files:
                continue
            text = render_template(_TEMPLATES[name], contexts[name])
            _parse_back(name, text, plan, options)
            files[name] = text
        c = plan.container
        if fmt in _IMAGE_FORMATS and c.flavor == engine_image.FLAVOR:
            files[engine_image.DOCKERFILE] = render_engine_dockerfile(c.base_image, c.cuda_build, plan.port)
    return dict(sorted(files.items()))


def parse_env_text(text: str, source: str = ".env") -> dict[str, str]:
    """Rendered env-file text read back with the one env-file reader (a bad line is a bug here)."""
    return envfile.parse_env_text(text, source, RenderError, "this is a bug in tailor")


def _parse_back(name: str, text: str, plan: Plan, options: RenderOptions) -> None:
    def fail(problem: str) -> RenderError:
        return RenderError(f"rendered {name} did not parse back: {problem}", "this is a bug in tailor's templates")

    if name.endswith(".env"):
        target = "host" if name == "tailor-runtime.env" else "container"
        if parse_env_text(text, name) != runtime_env(plan, target, options)[0]:
            raise fail("its variables differ from the plan's")
        return
    if name.endswith(".service"):
        parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",))
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            parser.read_string(text, source=name)
        except configparser.Error as exc:
            raise fail(str(exc)) from exc
        if parser.sections() != ["Unit", "Service", "Install"]:
            raise fail(f"sections are {parser.sections()}")
        if not parser["Service"].get("ExecStart", "").endswith(" -m runtime"):
            raise fail("ExecStart does not run `-m runtime`")
        return
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise fail(str(exc)) from exc
    if name == "docker-compose.yml":
        service = docs[0]["services"][SERVICE_NAME]
        if service["image"] != plan.container.image or service["env_file"] != ".env":
            raise fail("image or env_file differ from the plan")
        if options.network == "host" and "ports" in service:
            raise fail("host networking must not publish ports")
    elif name == "k8s.yaml":
        kinds = [d.get("kind") for d in docs]
        if kinds != ["Deployment", "Service"]:
            raise fail(f"documents are {kinds}, expected Deployment and Service")
        container = docs[0]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"]}
        c = plan.container
        if env != k8s_pod_env(plan) or container["image"] != c.image:
            raise fail("env or image differ from the plan")
        pod = pod_shape(c)
        if docs[0]["spec"]["replicas"] != pod.replicas:
            raise fail(f"replicas differ from the plan's {pod.replicas}")
        limits = container["resources"]["limits"]
        if c.gpu_count and limits.get(c.gpu_resource) != str(pod.gpus):
            raise fail(f"{c.gpu_resource} differs from the plan's {pod.gpus} GPU(s) per pod")


def write_rendered(files: Mapping[str, str], out_dir: Path) -> list[Path]:
    """Write each file atomically and durably under ``out_dir`` (created); env files get mode 0600
    (they may hold TAILOR_API_KEY)."""
    try:
        return [write_text_atomic(out_dir / name, text, mode=0o600 if name.endswith(".env") else 0o644)
                for name, text in files.items()]
    except OSError as exc:
        raise RenderError(f"cannot write to {out_dir}: {exc.strerror}",
                          "choose a writable directory with --out") from exc
