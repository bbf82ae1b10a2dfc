"""Loading families by name: ``FamilySpec.loader`` (``module:function``) is imported only here, when
the runtime serves that family, so a runtime that serves Piper never imports Kokoro's code (nor the
orchestrator any of it). Every failure becomes a :class:`StartupError` that names the family, what
failed and how to fix it (``python -m runtime`` exits 3 with it)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence

from runtime.errors import StartupError
from runtime.families.base import EngineFactory, Family, FamilyContext, Loader
from runtime.families.catalog import UnknownFamilyError, family
from runtime.families.spec import FamilySpec
from runtime.settings import Settings

_LOG = logging.getLogger("tailor.runtime")

def resolve_loader(spec: FamilySpec) -> Loader:
    """The callable ``spec.loader`` names (imported now); StartupError when it cannot be had."""
    module_name, sep, attribute = spec.loader.partition(":")
    if not sep or not module_name or not attribute:
        raise StartupError(f"model family {spec.name}: loader {spec.loader!r} is not 'module:function'",
                           hint="fix the family's declaration in runtime/families/catalog.py")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or ""
        if missing and (module_name == missing or module_name.startswith(missing + ".")):
            raise StartupError(
                f"model family {spec.name} has no runtime in this installation (module {module_name} not found)",
                hint=f"it needs {spec.install}; or serve another family (TAILOR_MODEL)") from exc
        raise StartupError(
            f"model family {spec.name} needs a library that is not installed: {exc}",
            hint=f"install {spec.install} (e.g. pip install '{spec.install}')") from exc
    loader = getattr(module, attribute, None)
    if not callable(loader):
        raise StartupError(f"model family {spec.name}: {module_name} has no function {attribute!r}",
                           hint="fix the family's declaration in runtime/families/catalog.py")
    return loader  # type: ignore[no-any-return]


def load_family(spec: FamilySpec, context: FamilyContext) -> Family:
    """Run the family's loader; its failures (other than a StartupError of its own) are wrapped."""
    loader = resolve_loader(spec)
    try:
        loaded = loader(spec, context)
    except StartupError:
        raise
    except Exception as exc:
        raise StartupError(f"model family {spec.name} failed to load: {type(exc).__name__}: {exc}",
                           hint=f"check its files ({spec.weights}) and that {spec.install} is installed") from exc
    if not isinstance(loaded, Family):
        raise StartupError(f"model family {spec.name}: its loader returned {type(loaded).__name__}, not a Family",
                           hint="the loader must return a runtime.families.base.Family")
    return loaded


def served_families(settings: Settings) -> tuple[FamilySpec, ...]:
    """The families TAILOR_MODEL lists, first the default; StartupError for an unknown name."""
    names = [n.strip() for n in settings.model.split(",") if n.strip()]
    try:
        return tuple(family(n) for n in names)
    except UnknownFamilyError as exc:
        raise StartupError(f"TAILOR_MODEL: {exc}", hint="TAILOR_MODEL=piper, or a comma-separated list") from None


def load_families(
    settings: Settings, environ: Mapping[str, str], engine_factory: EngineFactory | None = None,
    specs: Sequence[FamilySpec] | None = None,
) -> dict[str, Family]:
    """Load every served family in order (the first is the primary); a failure closes those loaded."""
    loaded: dict[str, Family] = {}
    try:
        for index, spec in enumerate(specs if specs is not None else served_families(settings)):
            loaded[spec.name] = load_family(spec, FamilyContext(settings, environ, index == 0, engine_factory))
            _LOG.info("model family %s: %d voices", spec.name, len(loaded[spec.name].voices()))
    except BaseException:
        for done in loaded.values():
            done.close()
        raise
    return loaded


__all__ = ["load_families", "load_family", "resolve_loader", "served_families"]
