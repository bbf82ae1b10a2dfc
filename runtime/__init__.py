"""Tailor's bundled speech runtime: an OpenAI-compatible text-to-speech server."""

from importlib import metadata

DISTRIBUTION = "tailor-deploy"
"""The distribution the runtime ships in (``[project] name`` in pyproject.toml)."""
UNKNOWN_VERSION = "0+unknown"
"""The version reported when the runtime runs from a source tree that was never installed."""


def installed_version(distribution: str = DISTRIBUTION) -> str:
    """The installed distribution's version (its package metadata); :data:`UNKNOWN_VERSION` when
    it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


__version__ = installed_version()
