"""The speech service's lifecycle: its states (starting, ready, draining, failed), what it
speaks to warm up and calibrate before it reports ready, and the configuration refused before
anything loads."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from runtime.errors import StartupError
from runtime.families.catalog import family as catalog_family
from runtime.families.spec import FamilySpec
from runtime.settings import Settings

WARMUP_TEXT = "Warm up."
CALIBRATION_TEXT = "Calibration: every worker speaks this at once."
"""The sentence every worker speaks at the same time before the server reports ready (short: it
adds one sentence's time to the start; a short sentence's fixed cost per call makes its rate per
character pessimistic, which is the safe side)."""


class ServiceState(str, Enum):
    """The speech service's lifecycle: STARTING -> READY -> DRAINING, or STARTING -> FAILED
    (DRAINING may also come during STARTING, on a SIGTERM while loading). A ``str`` so that
    ``/readyz`` bodies, the process-group state files and log lines carry the bare value
    ("ready"), as they did when the states were plain strings. ``/readyz`` may report a READY
    service as ``engines_unavailable`` or ``memory_pressure``: conditions judged at each probe,
    not states the service enters (see :meth:`SpeechService.readiness`)."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"

    def __str__(self) -> str:  # the value for str(), %s and f-strings (else "ServiceState.READY")
        return self.value


def check_served_family(settings: Settings, families: Sequence[FamilySpec] | None = None) -> None:
    """Refuse, as a broken configuration (no restart can help), a precision the first served
    family has no model in (TAILOR_PRECISION=int8 for Piper, whose int8 models are variants).
    ``families``: the declarations served instead of TAILOR_MODEL's (tests, embedders)."""
    names = [spec.name for spec in families] if families is not None else [n for n in settings.model.split(",") if n]
    if settings.precision == "int8" and names:
        first = families[0] if families is not None else catalog_family(names[0])
        if not any("int8" in precisions for precisions in first.devices.values()):
            raise StartupError(
                f"TAILOR_PRECISION=int8 is for families with an int8 model; {first.name} runs in "
                + ", ".join(sorted({p for ps in first.devices.values() for p in ps})),
                hint="use TAILOR_PRECISION=fp32 (CPU)" + ("; Piper's int8 models are chosen with "
                     "TAILOR_MODEL_VARIANT" if first.name == "piper" else ""))
