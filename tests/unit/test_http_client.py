"""The orchestrator's small HTTP client for the runtime: audio formats, readiness checks."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.supervise.http_client import audio_format_for, check_ready


def test_audio_format_from_suffix() -> None:
    assert audio_format_for(Path("a.wav")) == "wav"
    assert audio_format_for(Path("a")) == "wav"
    assert audio_format_for(Path("a.MP3")) == "mp3"
    assert audio_format_for(Path("a.ogg")) == "opus"
    with pytest.raises(UsageError, match="cannot tell the audio format"):
        audio_format_for(Path("a.doc"))


def test_readiness_on_a_closed_port_is_a_failed_check() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = check_ready(f"http://127.0.0.1:{port}")
    assert not result.ok and result.detail == "GET /readyz: connection refused"
