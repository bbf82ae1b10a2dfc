"""Encoders: every format decodes back to the right rate and length, whole and streamed."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

from runtime.audio import FORMATS, StreamEncoder, check_format, encode, output_rate_hz, resample
from runtime.errors import BadRequest

RATE = 22050


def tone(seconds: float, hz: float = 220.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_unknown_format_is_a_clear_400() -> None:
    with pytest.raises(BadRequest, match="'aac' is not supported; use one of mp3, wav, flac, opus, pcm"):
        check_format("aac")


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus"])
def test_whole_file_round_trip(fmt: str) -> None:
    data = encode(tone(1.0), RATE, fmt)
    samples, rate = soundfile.read(io.BytesIO(data))
    assert rate == output_rate_hz(fmt, RATE)
    assert abs(len(samples) / rate - 1.0) < 0.08


def test_pcm_is_raw_int16_at_voice_rate() -> None:
    data = encode(tone(0.5), RATE, "pcm")
    assert len(data) == int(0.5 * RATE) * 2
    assert np.frombuffer(data, "<i2").max() > 15000


def test_opus_rate_is_a_supported_opus_rate() -> None:
    assert output_rate_hz("opus", 22050) == 24000
    assert output_rate_hz("opus", 16000) == 16000
    assert output_rate_hz("mp3", 22050) == 22050


def test_resample_keeps_frequency_and_length() -> None:
    out = resample(tone(1.0, 440.0), 22050, 24000)
    assert len(out) == 24000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 24000 / len(out) - 440.0) < 2.0


def streamed(fmt: str, blocks: list[np.ndarray]) -> tuple[bytes, list[bytes]]:
    encoder = StreamEncoder(fmt, RATE)
    parts = [encoder.feed(b) for b in blocks]
    parts.append(encoder.finish())
    return b"".join(parts), parts


@pytest.mark.parametrize("fmt", ["mp3", "opus", "wav", "pcm"])
def test_streamed_output_decodes_and_first_block_is_not_empty(fmt: str) -> None:
    data, parts = streamed(fmt, [tone(0.7), tone(0.7, 330.0), tone(0.6)])
    assert parts[0], f"{fmt}: first block produced no bytes"
    if fmt == "pcm":
        assert len(data) == 2 * (len(tone(0.7)) * 2 + len(tone(0.6)))
        return
    samples, rate = soundfile.read(io.BytesIO(data))
    assert abs(len(samples) / rate - 2.0) < 0.1


def test_streamed_wav_header_says_unknown_length() -> None:
    data, _ = streamed("wav", [tone(0.2)])
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"


@pytest.mark.skipif(shutil.which("flac") is None, reason="flac CLI not installed")
def test_streamed_flac_is_valid_for_the_reference_decoder(tmp_path: Path) -> None:
    data, parts = streamed("flac", [tone(0.5), tone(0.5)])
    assert parts[0].startswith(b"fLaC")
    source = tmp_path / "s.flac"
    source.write_bytes(data)
    subprocess.run(["flac", "-d", "-s", "-f", str(source), "-o", str(tmp_path / "s.wav")], check=True)
    samples, rate = soundfile.read(tmp_path / "s.wav")
    assert rate == RATE and len(samples) == 2 * len(tone(0.5))


def test_every_declared_format_encodes() -> None:
    for fmt in FORMATS:
        assert encode(tone(0.1), RATE, fmt)
