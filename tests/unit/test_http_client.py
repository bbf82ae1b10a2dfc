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


def test_synthesize_to_writes_a_wav_with_its_real_length(tmp_path: Path) -> None:
    import struct
    import wave

    from orchestrator.supervise.http_client import synthesize_to
    from tests.helpers import QuietHandler, served

    samples = b"\x01\x00\xff\xff" * 11025  # half a second at 22,050 Hz
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 22050, 44100, 2, 16)
    streamed = b"RIFF\xff\xff\xff\xffWAVEfmt " + fmt + b"data\xff\xff\xff\xff" + samples  # what the runtime streams

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(streamed)))
            self.end_headers()
            self.wfile.write(streamed)

    path = tmp_path / "hello.wav"
    with served(Handler) as url:
        assert synthesize_to(url, path) == len(streamed)
    with wave.open(str(path)) as reader:  # soxi said 27 hours, wave 2,147,483,647 frames
        assert reader.getnframes() == 11025 * 2 and reader.getframerate() == 22050
