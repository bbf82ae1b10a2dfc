"""IndexTTS2's engine image: the one owner of its flavor, its interpreter path and why it exists.

IndexTTS2 pins what Tailor's runtime images cannot hold (Python 3.11, torch 2.8.*, transformers
4.52.1), so its engine runs in an environment of its own: in a container, the image built from
``templates/docker/indextts2-engine.Dockerfile.j2`` (Tailor's runtime in /opt/tailor, IndexTTS2's
venv in :data:`ENGINE_VENV`); as a host process, the venv the operator names with
``TAILOR_INDEXTTS2_PYTHON``. The planner, the renderer, the Docker backend and the Dockerfile all
read these values from here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

FAMILY = "indextts2"
FLAVOR = "indextts2"
"""Image flavor beside cpu/cuda/l4t: ``tailor-runtime:<version>-indextts2[-<cuda build>]``."""
PYTHON_VARIABLE = "TAILOR_INDEXTTS2_PYTHON"
ENGINE_VENV = "/opt/indextts2"
ENGINE_PYTHON = f"{ENGINE_VENV}/bin/python"
"""The engine environment's interpreter inside the engine image."""
BASE_IMAGE = "python:3.11-slim-bookworm"
"""The recipe asserts Python 3.11 in its base; torch's wheels bring their own CUDA libraries."""
PINS = "Python 3.11, torch 2.8.*, torchaudio 2.8.*, transformers 4.52.1"
DOCKERFILE = "indextts2-engine.Dockerfile"
"""What ``deploy render`` names the rendered recipe in its output directory."""
TEMPLATE = "docker/indextts2-engine.Dockerfile.j2"
TAILOR_EXTRAS = ("runtime",)
"""Tailor's side of the image needs no torch: the engine's torch lives in the engine venv."""
REQUIREMENT = "tailor-deploy[runtime]"
MODEL_DIR = "/opt/tailor/share/tailor/models/indextts2"
"""Where the runtime in the image finds the model files (its environment's share/tailor/models)."""
WHEELHOUSES = ("wheels/tailor", "wheels/indextts2")
"""The build context's two wheelhouses, beside the Dockerfile."""


def uses_engine_image(family: str) -> bool:
    return family == FAMILY


def container_env(flavor: str, env: Mapping[str, str]) -> dict[str, str]:
    """What a container of ``flavor`` needs set that the host process does not: for the engine
    image, ``TAILOR_INDEXTTS2_PYTHON`` = the image's interpreter where it is empty (a value the
    user set wins)."""
    if flavor == FLAVOR and not env.get(PYTHON_VARIABLE, "").strip():
        return {PYTHON_VARIABLE: ENGINE_PYTHON}
    return {}


def torch_build(cuda_build: str) -> str:
    """PyTorch's wheel index for the engine's torch: the plan's CUDA build, else ``cpu``."""
    return cuda_build or "cpu"


def venv_recipe() -> str:
    """How to make the engine's environment on a host (process backend, systemd)."""
    return (f"python3.11 -m venv {ENGINE_VENV} && {ENGINE_PYTHON} -m pip install ./index-tts "
            "'torch==2.8.*' 'torchaudio==2.8.*' 'transformers==4.52.1' numpy (from an index-tts checkout), then "
            f"{PYTHON_VARIABLE}={ENGINE_PYTHON}")


def host_python_problem(env: Mapping[str, str], indextts_importable: Callable[[], bool]) -> str:
    """Why a host process of this env cannot run IndexTTS2's real engine, or "".

    Empty ``TAILOR_INDEXTTS2_PYTHON`` means the runtime's own interpreter, which works only where
    that interpreter has ``indextts`` (the runtime itself then refuses at load, after start-up).
    """
    if env.get("TAILOR_MODEL") != FAMILY or env.get("TAILOR_INDEXTTS2_ADAPTER", "real") != "real":
        return ""
    if env.get(PYTHON_VARIABLE, "").strip() or indextts_importable():
        return ""
    return (f"{PYTHON_VARIABLE} is unset and this interpreter has no IndexTTS2 (indextts): IndexTTS2 pins {PINS}, "
            "so its engine runs from its own environment")
