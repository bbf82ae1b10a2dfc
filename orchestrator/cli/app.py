"""`deploy` entry point: builds the typer app and maps errors to exit codes.

Only ``main()`` picks exit codes: 0 ok, 1 a DeployError, 2 a usage error, 130 interrupted.
Set ``TAILOR_DEBUG=1`` to see tracebacks.
"""

from __future__ import annotations

import os
import sys

import typer

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


def main(argv: list[str] | None = None) -> int:
    debug = os.environ.get("TAILOR_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, standalone_mode=False)
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
