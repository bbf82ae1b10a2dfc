"""Tailor: hardware-aware deployment orchestrator for self-hosted speech inference."""

__version__ = "0.1.0"
