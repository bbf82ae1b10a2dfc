"""`deploy` entry point: builds the typer app and maps errors to exit codes.

Only ``main()`` picks exit codes: 0 ok, 1 a DeployError, 2 a usage error, 130 interrupted.
Set ``TAILOR_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import typing
from pathlib import Path
from typing import Any

import typer
import typer.core
import typer.main

from orchestrator import __version__
from orchestrator.cli import fleet_cmd, launch_cmd, plan_cmd, probe_cmd, tune_cmd
from orchestrator.cli import output as out
from orchestrator.errors import DeployError

app = typer.Typer(
    name="deploy",
    help="Tailor: probe this machine, pick a speech-inference profile, render tuned configs, launch and supervise the runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.data(f"tailor {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Tailor deploys self-hosted text-to-speech tuned to the hardware it finds."""


for name, command in {**probe_cmd.COMMANDS, **plan_cmd.COMMANDS, **launch_cmd.COMMANDS, **tune_cmd.COMMANDS}.items():
    app.command(name)(command)
fleet_cmd.register(app)


_TYPE_NAMES = {bool: "", int: "INTEGER", float: "NUMBER", str: "TEXT"}


def _metavar(param: Any) -> str | None:
    """A reader's name for an option's value instead of typer's Python type (``<list[Path]>``):
    nothing for a flag, ``INTEGER``/``NUMBER``/``TEXT``/``FILE``/``DIR``/``PATH`` otherwise."""
    if getattr(param, "is_flag", False):
        return ""
    descriptor = getattr(param, "type_descriptor", None)
    annotation = getattr(descriptor, "annotation", None)
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if getattr(descriptor, "is_path", False) or annotation is Path:
        kind = getattr(descriptor, "path_type", "path")
        return {"file": "FILE", "directory": "DIR"}.get(kind, "PATH")
    return _TYPE_NAMES.get(annotation) if isinstance(annotation, type) else None


def _paragraphs(text: str | None) -> str | None:
    """Docstring paragraphs as one line each, so the help wraps at the terminal, not mid-sentence."""
    if not text:
        return text
    return "\n\n".join(" ".join(line.strip() for line in block.splitlines())
                        for block in inspect.cleandoc(text).split("\n\n"))


def _readable(command: Any) -> Any:
    """Every command's help as readers want it: value names instead of Python types, paragraphs
    reflowed; the same for every subcommand (fleet included) and each --help option."""
    import typer._click as click

    command.help = _paragraphs(command.help)
    help_option = command.get_help_option(click.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if isinstance(param, typer.core.TyperOption) and param.metavar is None:
            param.metavar = _metavar(param)
    for sub in getattr(command, "commands", {}).values():
        _readable(sub)
    return command


@functools.lru_cache(maxsize=1)
def cli() -> Any:
    """The click command behind ``app``, built once, with readable help (:func:`_readable`)."""
    return _readable(typer.main.get_command(app))


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("TAILOR_DEBUG", "") not in ("", "0")
    try:
        cli().main(args=argv, prog_name="deploy", standalone_mode=False)
    except DeployError as exc:
        if debug:
            raise
        out.error(exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        out.error("aborted")
        return 1
    except Exception as exc:
        # typer vendors click; its usage errors carry show() and exit_code.
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(getattr(exc, "exit_code", None), int):
            show()
            return int(exc.exit_code)  # type: ignore[attr-defined]
        if debug:
            raise
        out.error(f"unexpected internal error: {type(exc).__name__}: {exc}",
                  "this is a bug in tailor; run again with TAILOR_DEBUG=1 and report the traceback")
        return 70
    return 0


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
