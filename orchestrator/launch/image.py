"""Build the runtime image: wheelhouse + rendered Dockerfile + ``docker build``.

The build context holds a **wheelhouse**: the project's own wheel (built from the installed
source, like ``pip wheel --no-deps .``) and the wheels of the runtime's dependencies, either
downloaded for the image's Python and platform (``pip download``, when a package index is
reachable) or copied from ``--wheelhouse DIR`` (offline). The Dockerfile installs with
``pip install --no-index --find-links``, so the build itself never needs an index: air-gapped
hosts and registry-less CI build the same image.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from orchestrator import __version__
from orchestrator.errors import LaunchError, UsageError
from orchestrator.launch.docker_backend import wrap
from orchestrator.plan import engine_image
from orchestrator.plan.container_spec import DEFAULT_BASE_IMAGES
from orchestrator.plan.decisions import container_user
from orchestrator.render.renderer import render_engine_dockerfile
from orchestrator.render.templating import render_template

DISTRIBUTION = "tailor-deploy"
# Fixed timestamp so the project wheel is byte-identical while the source is, and Docker's
# layer cache holds across builds.
_SOURCE_DATE_EPOCH = "1704067200"

# Core metadata writes extras markers as: extra == 'runtime'
_EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([A-Za-z0-9_.-]+)['"]""")

Log = Callable[[str], None]
CommandRunner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class Flavor:
    name: str
    """``cpu``, ``cuda``, ``l4t`` or ``indextts2`` (IndexTTS2's engine image: Tailor's side only; the
    engine's own wheels come from ``--wheelhouse DIR/indextts2``)."""
    extras: tuple[str, ...]
    """Extras of tailor-deploy installed in the image."""
    default_python: str
    """Python version of the default base (used when the base's own cannot be asked)."""
    architecture: str | None
    """Fixed wheel architecture, or None for the host's."""

    @property
    def default_base_image(self) -> str:
        return DEFAULT_BASE_IMAGES[self.name]


FLAVORS: dict[str, Flavor] = {f.name: f for f in (
    Flavor("cpu", ("runtime", "kokoro"), "3.11", None),
    Flavor("cuda", ("runtime", "torch", "kokoro"), "3.10", None),
    Flavor("l4t", ("runtime", "kokoro"), "3.10", "aarch64"),
    Flavor(engine_image.FLAVOR, engine_image.TAILOR_EXTRAS, "3.11", None),
)}


@dataclass(frozen=True)
class ImageResult:
    tag: str
    built: bool
    seconds: float
    reason: str


def flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise UsageError(f"unknown image flavor {name!r}", "the plan's container.flavor must be one of "
                         + ", ".join(sorted(FLAVORS))) from None


def requirement(fl: Flavor) -> str:
    return f"{DISTRIBUTION}[{','.join(fl.extras)}]"


def render_dockerfile(fl: Flavor, base_image: str, port: int, cuda_build: str = "") -> str:
    """The Dockerfile for a flavor (logic-free template, StrictUndefined); IndexTTS2's engine image
    takes the plan's CUDA build for its torch index."""
    if fl.name == engine_image.FLAVOR:
        return render_engine_dockerfile(base_image, cuda_build, port)
    return render_template(f"docker/Dockerfile.{fl.name}.j2",
                           {"base_image": base_image, "requirement": requirement(fl), "port": port,
                            "version": __version__, "user": container_user()})


def dependency_requirements(extras: Sequence[str]) -> list[str]:
    """The project's dependencies for these extras (no markers other than extras).

    Read from the checkout's pyproject.toml when running from one: the image installs a wheel
    built from that checkout, and an editable install's metadata goes stale when dependencies
    are added. Installed from a wheel, the installed metadata is that wheel's.
    """
    import importlib.metadata as md

    root = project_root()
    if root is not None:
        declared = _pyproject_requirements(root / "pyproject.toml", extras)
        if declared is not None:
            return declared
    try:
        raw = md.requires(DISTRIBUTION) or []
    except md.PackageNotFoundError as exc:
        raise LaunchError(f"{DISTRIBUTION} is not installed, so its dependencies are unknown",
                          "install the project, or pass --wheelhouse DIR with every wheel") from exc
    out = []
    for line in raw:
        spec, _, marker = line.partition(";")
        wanted = _EXTRA_MARKER.fullmatch(marker.strip())
        if not marker.strip() or (wanted is not None and wanted.group(1) in extras):
            out.append(spec.strip())
    return sorted(out)


def _pyproject_requirements(path: Path, extras: Sequence[str]) -> list[str] | None:
    """Core + extras dependencies from pyproject.toml; None where it cannot be read (Python 3.10)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: fall back to the installed metadata
        return None
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    out = list(project.get("dependencies", []))
    for extra in extras:
        out += project.get("optional-dependencies", {}).get(extra, [])
    return sorted(str(r).strip() for r in out)


def project_root() -> Path | None:
    """The source checkout this orchestrator runs from, or None when installed from a wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**_os_environ(), "SOURCE_DATE_EPOCH": _SOURCE_DATE_EPOCH, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, check=False)


def _os_environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _check(proc: subprocess.CompletedProcess[str], what: str, hint: str) -> None:
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise LaunchError(f"{what} failed (exit {proc.returncode}):\n{tail}", hint)


def platform_tags(architecture: str) -> list[str]:
    tags = [f"manylinux2014_{architecture}"]
    tags += [f"manylinux_2_{minor}_{architecture}" for minor in (17, 24, 27, 28, 31, 34, 35)]
    return tags


TORCH_INDEX = "https://download.pytorch.org/whl/{build}"
"""PyTorch's wheel index for one CUDA build; its ``torch`` wheels carry the build as a local
version (``2.13.0+cu126``), which sorts above PyPI's plain ``2.13.0``, so pip takes them."""


def build_backend_installed() -> bool:
    """Whether the project's build backend (hatchling) is importable here."""
    return importlib.util.find_spec("hatchling") is not None


def prepare_wheelhouse(dest: Path, fl: Flavor, *, python_version: str, wheelhouse: Path | None,
                       run: CommandRunner = _run, log: Log = lambda _m: None, cuda_build: str = "",
                       has_build_backend: Callable[[], bool] = build_backend_installed) -> list[str]:
    """Fill ``dest`` with every wheel the image needs; returns the wheel file names.

    ``cuda_build`` (the plan's, e.g. ``cu126``) adds PyTorch's index for that build, so the CUDA
    image gets the torch build with kernels for the planned GPUs and a CUDA its driver runs.
    ``has_build_backend`` says whether a source checkout's wheel can be built without fetching
    hatchling (``--no-build-isolation``).
    """
    dest.mkdir(parents=True, exist_ok=True)
    if wheelhouse is not None:
        if not wheelhouse.is_dir():
            raise UsageError(f"--wheelhouse {wheelhouse} is not a directory",
                             "pass a directory of .whl files (pip download/pip wheel output)")
        wheels = sorted(wheelhouse.glob("*.whl"))
        if not wheels:
            raise UsageError(f"--wheelhouse {wheelhouse} holds no .whl files",
                             f"fill it with `pip download -d {wheelhouse} --only-binary=:all: '{requirement(fl)}'`")
        for wheel in wheels:
            shutil.copy2(wheel, dest / wheel.name)
        log(f"wheelhouse: {len(wheels)} wheels from {wheelhouse}")
    root = project_root()
    if root is not None:
        log(f"wheelhouse: building the {DISTRIBUTION} wheel from {root}")
        for old in dest.glob("tailor_deploy-*.whl"):
            old.unlink()
        # Offline hosts need the build backend installed; without it pip fetches hatchling itself.
        isolation = ["--no-build-isolation"] if has_build_backend() else []
        _check(run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation,
                    "--wheel-dir", str(dest), str(root)]),
               f"building the {DISTRIBUTION} wheel",
               "offline? install the build backend first (pip install hatchling), or put the "
               f"{DISTRIBUTION} wheel into --wheelhouse")
    elif not any(dest.glob("tailor_deploy-*.whl")) and wheelhouse is None:
        log(f"wheelhouse: downloading the {DISTRIBUTION} {__version__} wheel (installed from a wheel, no source)")
        _check(run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest),
                    f"{DISTRIBUTION}=={__version__}"]),
               f"downloading the {DISTRIBUTION} wheel",
               f"no package index reachable? put the {DISTRIBUTION} wheel into --wheelhouse DIR")
    elif not any(dest.glob("tailor_deploy-*.whl")):
        raise LaunchError(f"no {DISTRIBUTION} wheel: not running from a source checkout and none in --wheelhouse",
                          f"put the {DISTRIBUTION} wheel into the --wheelhouse directory")
    if wheelhouse is None:
        arch = fl.architecture or platform.machine()
        reqs = dependency_requirements(fl.extras)
        log(f"wheelhouse: downloading {len(reqs)} requirements for Python {python_version} on {arch}")
        argv = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--implementation", "cp",
                "--python-version", python_version, "--dest", str(dest)]
        for tag in platform_tags(arch):
            argv += ["--platform", tag]
        if cuda_build and "torch" in fl.extras:
            argv += ["--extra-index-url", TORCH_INDEX.format(build=cuda_build)]
            log(f"wheelhouse: torch from the {cuda_build} build ({TORCH_INDEX.format(build=cuda_build)})")
        _check(run([*argv, *reqs]), "downloading the runtime's dependency wheels",
               "no package index reachable? pass --wheelhouse DIR with the wheels (pip download on a connected machine)")
    return sorted(p.name for p in dest.glob("*.whl"))


def base_python_version(client: docker.DockerClient, base_image: str, default: str) -> str:
    """``major.minor`` of python3 in the base image, or ``default`` when it has none or cannot be run."""
    try:
        out = client.containers.run(base_image, ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                                    remove=True, network_mode="none")
    except docker.errors.DockerException:
        return default
    text = out.decode().strip() if isinstance(out, bytes) else str(out).strip()
    return text if text.count(".") == 1 else default


def image_exists(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise wrap(exc, f"cannot look up image {tag}") from exc


def ensure_image(client: docker.DockerClient, tag: str, flavor_name: str, *, port: int,
                 base_image: str | None = None, wheelhouse: Path | None = None, rebuild: bool = False,
                 log: Log = lambda _m: None, run: CommandRunner = _run, cuda_build: str = "") -> ImageResult:
    """Build ``tag`` unless it exists (``rebuild`` forces a build; Docker's layer cache still applies)."""
    t0 = time.monotonic()
    if not rebuild and image_exists(client, tag):
        return ImageResult(tag, False, time.monotonic() - t0, f"image {tag} already exists")
    fl = flavor(flavor_name)
    base = base_image or fl.default_base_image
    if fl.name == engine_image.FLAVOR:
        return _build_engine_image(client, tag, base, engine_wheelhouse(tag, wheelhouse), port=port,
                                   log=log, run=run, cuda_build=cuda_build, t0=t0)
    with tempfile.TemporaryDirectory(prefix="tailor-build-") as tmp:
        ctx = Path(tmp)
        python_version = fl.default_python
        if wheelhouse is None:
            python_version = base_python_version(client, base, fl.default_python)
        names = prepare_wheelhouse(ctx / "wheels", fl, python_version=python_version, wheelhouse=wheelhouse,
                                   run=run, log=log, cuda_build=cuda_build)
        (ctx / "Dockerfile").write_text(render_dockerfile(fl, base, port), encoding="utf-8")
        log(f"building {tag} from {base} ({len(names)} wheels)")
        _docker_build(client, ctx, tag, log)
    return ImageResult(tag, True, time.monotonic() - t0, f"built {tag} from {base}")


def engine_wheelhouse(tag: str, wheelhouse: Path | None) -> Path:
    """``--wheelhouse DIR``'s ``indextts2/`` folder of IndexTTS2's wheels, or a LaunchError that says
    what is missing, where it goes and how to build the image by hand (called before any build step).

    IndexTTS2's wheels (index-tts, torch 2.8, transformers 4.52.1, for Python 3.11) cannot be
    downloaded by Tailor: index-tts is not on a package index, and its pins are not Tailor's.
    """
    wanted = (wheelhouse / "indextts2") if wheelhouse is not None else None
    if wanted is not None and wanted.is_dir() and any(wanted.glob("*.whl")):
        return wanted
    where = str(wanted) if wanted is not None else "DIR/indextts2"
    raise LaunchError(
        f"image {tag} (IndexTTS2's engine image) is not here, and it cannot be built without IndexTTS2's wheels: "
        f"no .whl files in {where}",
        f"on a machine with network access and Python 3.11: `pip wheel -w {where} ./index-tts 'torch==2.8.*' "
        "'torchaudio==2.8.*' 'transformers==4.52.1' numpy` (an index-tts checkout; add --extra-index-url "
        "https://download.pytorch.org/whl/<cuda build>), then pass --wheelhouse DIR (DIR/tailor/ may hold Tailor's "
        "wheels; else they are fetched as usual); or build it by hand from `deploy render`'s "
        f"{engine_image.DOCKERFILE} (build context: that file plus {' and '.join(engine_image.WHEELHOUSES)}): "
        f"`docker build -f {engine_image.DOCKERFILE} -t {tag} .`")


def _build_engine_image(client: docker.DockerClient, tag: str, base: str, engine_wheels: Path, *, port: int,
                        log: Log, run: CommandRunner, cuda_build: str, t0: float) -> ImageResult:
    """IndexTTS2's engine image: Tailor's wheelhouse (``DIR/tailor`` or fetched) + IndexTTS2's, and its recipe."""
    fl = FLAVORS[engine_image.FLAVOR]
    own = engine_wheels.parent / "tailor"
    with tempfile.TemporaryDirectory(prefix="tailor-build-") as tmp:
        ctx = Path(tmp)
        tailor_wheels, indextts2_wheels = (ctx / w for w in engine_image.WHEELHOUSES)
        names = prepare_wheelhouse(tailor_wheels, fl, python_version=fl.default_python,
                                   wheelhouse=own if own.is_dir() else None, run=run, log=log)
        indextts2_wheels.mkdir(parents=True)
        for wheel in sorted(engine_wheels.glob("*.whl")):
            shutil.copy2(wheel, indextts2_wheels / wheel.name)
        (ctx / "Dockerfile").write_text(render_dockerfile(fl, base, port, cuda_build), encoding="utf-8")
        log(f"building {tag} from {base} ({len(names)} Tailor wheels, IndexTTS2's from {engine_wheels})")
        _docker_build(client, ctx, tag, log)
    return ImageResult(tag, True, time.monotonic() - t0, f"built {tag} from {base}")


def _docker_build(client: docker.DockerClient, ctx: Path, tag: str, log: Log) -> None:
    recent: list[str] = []
    try:
        stream = client.api.build(path=str(ctx), tag=tag, rm=True, forcerm=True, decode=True,
                                  labels={"io.tailor.version": __version__})
        for chunk in stream:
            _consume(chunk, recent, log)
    except docker.errors.DockerException as exc:
        raise wrap(exc, f"docker build of {tag}") from exc


def _consume(chunk: Any, recent: list[str], log: Log) -> None:
    if not isinstance(chunk, dict):
        return
    if "error" in chunk:
        detail = "\n".join(recent[-10:])
        raise LaunchError(f"docker build failed: {chunk['error'].strip()}\n{detail}",
                          "the base image needs python3 with venv (--base-image); offline builds need every "
                          "wheel in --wheelhouse")
    text = chunk.get("stream")
    if isinstance(text, str):
        for line in text.rstrip("\n").splitlines():
            if line.strip():
                recent.append(line)
                if line.startswith("Step "):
                    log(line)
    elif "aux" in chunk:
        log(f"image id {json.dumps(chunk['aux'].get('ID', ''))}")
