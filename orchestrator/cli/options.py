"""Typed option aliases shared by every command, and the one place they become pipeline Inputs.

Every command that plans (`profiles`, `plan`, `render`, `auto`, and the fleet/tune commands)
spells its inputs with these aliases, so ``--facts``, ``--profile``, ``--profiles``,
``--config``, ``--model``, ``--set`` and the knob flags mean the same everywhere, and
:func:`pipeline_inputs` turns them into :class:`orchestrator.pipeline.Inputs` the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator import pipeline
from orchestrator.plan.user_config import check_value

FactsOpt = Annotated[Path | None, typer.Option(
    "--facts", help="Plan for a facts file (`deploy probe --json > FILE`) instead of probing this machine.",
    dir_okay=False)]
ProfilesDirOpt = Annotated[list[Path] | None, typer.Option(
    "--profiles", help="Directory of extra profiles (NAME.yaml); same name replaces a built-in. Repeatable.",
    file_okay=False)]
ProfileOpt = Annotated[str | None, typer.Option("--profile", help="Force this profile (warns if it does not fit).")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="User config file (YAML).", dir_okay=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ExplainOpt = Annotated[bool, typer.Option("--explain", help="Why each number: profiles, budget, each value's source.")]
ShowSecretsOpt = Annotated[bool, typer.Option(
    "--show-secrets", help="Print secret values (TAILOR_API_KEY...) instead of ***redacted***.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Set a runtime variable or knob: --set workers=2, --set TAILOR_LOG_LEVEL=debug. Repeatable.")]
WorkersOpt = Annotated[int | None, typer.Option("--workers", help="Synthesis workers.")]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Intra-op threads per worker.")]
PrecisionOpt = Annotated[str | None, typer.Option(
    "--precision", help="fp32, fp16, bf16 or int8 (int8: families with an int8 model, e.g. kokoro-82m on the CPU).")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="Model family: piper (default), kokoro-82m, xtts-v2 or indextts2 (`deploy models` lists them).")]
PortOpt = Annotated[int | None, typer.Option("--port", help="TCP port the runtime listens on (1-65535).")]

# Launching (`auto`, `up`) and the deployment's state (`status`, `logs`, `down`).
StateDirOpt = Annotated[str | None, typer.Option(
    "--state-dir", help="Where state.json and logs live (default $TAILOR_STATE_DIR or ./.tailor).")]
BackendOpt = Annotated[str, typer.Option(
    "--backend", help="auto (docker when a daemon answers, else process), docker or process.")]
DetachOpt = Annotated[bool, typer.Option("--detach", help="Leave the supervisor running in the background once ready.")]
SynthesizeOpt = Annotated[Path | None, typer.Option(
    "--synthesize-to",
    help="Once ready, synthesize a sample sentence into FILE (format from the suffix, wav by default).")]
BaseImageOpt = Annotated[str | None, typer.Option("--base-image", help="Base image for the runtime image (docker backend).")]
WheelhouseOpt = Annotated[Path | None, typer.Option(
    "--wheelhouse", help="Directory of wheels for an offline image build (docker backend); IndexTTS2's engine "
    "image needs DIR/indextts2/ with its wheels (DIR/tailor/ for Tailor's, optional).")]
RebuildOpt = Annotated[bool, typer.Option("--rebuild", help="Build the runtime image even if its tag exists.")]
NetworkOpt = Annotated[str | None, typer.Option(
    "--network", help="Container network mode: bridge (port published on 127.0.0.1) or host.")]
StartupTimeoutOpt = Annotated[float | None, typer.Option(
    "--startup-timeout", help="Seconds from start to ready before the start-up counts as stalled (FATAL). "
                              "Default: the config's startup_timeout_s, else derived from the plan "
                              "(workers, engine, device).")]
HealthIntervalOpt = Annotated[float | None, typer.Option(
    "--health-interval", help="Seconds between readiness checks once running (default: the config's "
                              "health_interval_s, else 2).")]
DirectoryArg = Annotated[Path | None, typer.Argument(
    help="A rendered deployment directory (default: <state dir>/rendered).")]


def pipeline_inputs(*, facts: Path | None = None, profile: str | None = None,
                    profiles_dirs: list[Path] | None = None, config: Path | None = None,
                    sets: list[str] | None = None, workers: int | None = None, threads: int | None = None,
                    precision: str | None = None, port: int | None = None, model: str | None = None) -> pipeline.Inputs:
    """The shared options as pipeline Inputs. Flag values are checked by the planner with the
    knob table's rules, exactly like ``--set`` and config values."""
    settings = pipeline.cli_settings(sets or (), workers=workers, threads=threads, precision=precision, port=port,
                                     model=model)
    return pipeline.Inputs(facts=facts, profile=profile, profile_dirs=tuple(profiles_dirs or ()),
                           config=config, settings=settings)


def checked_port(port: int | None) -> int | None:
    """``--port`` of a command that does not plan (`up DIR`), checked by the knob table's rule."""
    if port is None:
        return None
    return int(check_value("TAILOR_PORT", str(port), "command line (port)"))
