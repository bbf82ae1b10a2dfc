"""One error tree for the orchestrator.

Every error carries a message (what went wrong, and where) and a hint (how to fix it).
Adapters wrap third-party exceptions (``raise LaunchError(...) from exc``); only the CLI's
``main()`` turns these into exit codes.
"""

from __future__ import annotations


class DeployError(Exception):
    """Root of every error the orchestrator reports to a user: a message (what went wrong, and
    where) and a hint (how to fix it). The orchestrator's lowest floor imports nothing of the
    runtime: the two error trees share only this shape (``runtime.errors.HintedError``)."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class UsageError(DeployError):
    """The command line or an input file is wrong."""

    exit_code = 2


class FactsError(UsageError):
    """A facts file (``deploy probe --json`` output) cannot be read or is invalid."""


class ProbeError(DeployError):
    """The host could not be probed at all (partial failures are recorded as notes instead)."""


class ProfileError(UsageError):
    """A profile file is malformed or contradictory."""


class PlanError(DeployError):
    """No usable plan can be made from the facts and the profile."""


class RenderError(DeployError):
    """A template failed to render or its output did not parse back."""


class LaunchError(DeployError):
    """The runtime could not be started (image build, container or process start)."""


class SupervisorError(DeployError):
    """The supervisor gave up (crash loop, start-up stall, fatal state)."""


class StateError(DeployError):
    """The deployment state file is missing, stale or unreadable."""


class PortInUseError(LaunchError):
    """The runtime's port is held by another program (named in the message)."""


class AlreadyRunningError(LaunchError):
    """A live supervisor already runs a deployment from this state directory."""


class UnhealthyError(SupervisorError):
    """`deploy status` found the deployment FATAL, backing off, stale or not ready by its own account."""


class Interrupted(DeployError):
    """Ctrl-C / SIGINT stopped a foreground command (after it cleaned up)."""

    exit_code = 130
