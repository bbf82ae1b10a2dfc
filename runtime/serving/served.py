"""A served model family: its engine chain, workers and admission estimate, and how a family's
engine chain is assembled from TAILOR_FALLBACK and the planned options."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from runtime.engines.base import EngineOptions
from runtime.families.base import Family, Voice
from runtime.serving.admission import WorkEstimator
from runtime.serving.engine_chain import ChainEntry, EngineChain
from runtime.serving.scheduler import Scheduler


@dataclass
class ServedFamily:
    """One loaded family with its own engine chain, workers and admission estimate (a character of
    Kokoro costs several of Piper's, so each family measures its own)."""

    family: Family
    chain: EngineChain
    scheduler: Scheduler
    admission: WorkEstimator
    """Seconds per character of this family's own workers, calibrated at start (per family: a
    character of Kokoro costs several of Piper's)."""
    engine_in_use: dict[str, str] | None = None
    active_engine: str = ""

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def catalog(self) -> Mapping[str, Voice]:
        return self.family.voices()

    @property
    def default_voice(self) -> str:
        return self.family.default_voice()


def entries_for(family: Family, fallback: Sequence[ChainEntry], primary: bool, voices: set[str]) -> list[ChainEntry]:
    """TAILOR_FALLBACK entries of ``family``: those naming its voices, and (for the first family) those
    naming no served voice, which stay listed as configured and are skipped as today."""
    return [e for e in fallback
            if (e.voice in family.voices() and e.engine in family.engines) or (primary and e.voice not in voices)]


def secondary_options(family: Family, options: EngineOptions) -> EngineOptions:
    """A second family's options: TAILOR_PRECISION where the family runs in it on this device,
    else the family's own first choice there (TAILOR_PRECISION is planned for the first family)."""
    allowed = family.spec.devices.get(options.device, ())
    if not allowed or options.precision in allowed:
        return options
    return dataclasses.replace(options, precision=allowed[0])
