"""Encoders: every format decodes back to the right rate and length, whole and streamed."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import soundfile

from runtime.audio.encode import (
    FORMATS,
    StreamEncoder,
    check_format,
    encode,
    output_rate_hz,
    resample,
)
from runtime.errors import BadRequest

RATE = 22050


def tone(seconds: float, hz: float = 220.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def av_decode(data: bytes) -> tuple[np.ndarray, int]:
    """Decode with FFmpeg (PyAV): the decoder most players and browsers share."""
    import av

    with av.open(io.BytesIO(data)) as container:
        rate = container.streams.audio[0].rate
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames), int(rate)


def test_unknown_format_is_a_clear_400() -> None:
    with pytest.raises(BadRequest, match="'aiff' is not supported; use one of mp3, opus, aac, flac, wav, pcm"):
        check_format("aiff")


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "opus", "aac"])
def test_whole_file_round_trip(fmt: str) -> None:
    data = encode(tone(1.0), RATE, fmt)
    if fmt != "aac":  # libsndfile has no AAC decoder
        samples, rate = soundfile.read(io.BytesIO(data))
        assert rate == output_rate_hz(fmt, RATE)
        assert abs(len(samples) / rate - 1.0) < 0.08
    samples, rate = av_decode(data)
    assert rate == (48000 if fmt == "opus" else output_rate_hz(fmt, RATE))  # FFmpeg decodes Opus at 48k
    assert abs(len(samples) / rate - 1.0) < 0.08


def test_pcm_is_raw_int16_at_24khz() -> None:
    data = encode(tone(0.5), RATE, "pcm")
    assert len(data) == int(0.5 * 24000) * 2
    samples = np.frombuffer(data, "<i2")
    assert samples.max() > 15000
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 24000 / len(samples) - 220.0) < 3.0  # pitch kept: 24 kHz for real


def test_delivered_rates() -> None:
    assert output_rate_hz("opus", 22050) == 24000
    assert output_rate_hz("opus", 16000) == 16000
    assert output_rate_hz("pcm", 22050) == 24000
    assert output_rate_hz("mp3", 22050) == 22050 and output_rate_hz("aac", 22050) == 22050


def test_resample_keeps_frequency_and_length() -> None:
    out = resample(tone(1.0, 440.0), 22050, 24000)
    assert len(out) == 24000
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * 24000 / len(out) - 440.0) < 2.0


def test_a_resampled_stream_has_no_seams_at_block_edges() -> None:
    # pcm goes out at 24 kHz: blocks of a 22.05 kHz sentence stream resampled one after another
    # must equal the whole signal resampled at once (one filter state across blocks), with
    # nothing lost at the end. Resampling each block on its own leaves a dip at every edge.
    signal = tone(1.0, 440.0)
    edges = [0, 1234, 5000, 5001, 9000, 15000, len(signal)]
    encoder = StreamEncoder("pcm", RATE)
    data = b"".join(encoder.feed(signal[a:b]) for a, b in itertools.pairwise(edges)) + encoder.finish()
    got = np.frombuffer(data, dtype="<i2").astype(np.float64) / 32767
    whole = np.frombuffer(encode(signal, RATE, "pcm"), dtype="<i2").astype(np.float64) / 32767
    assert abs(len(got) - len(whole)) <= 2 and abs(len(got) - 24000) <= 2
    n = min(len(got), len(whole))
    assert np.max(np.abs(got[:n] - whole[:n])) < 2e-3


def streamed(fmt: str, blocks: list[np.ndarray]) -> tuple[bytes, list[bytes]]:
    encoder = StreamEncoder(fmt, RATE)
    parts = [encoder.feed(b) for b in blocks]
    parts.append(encoder.finish())
    return b"".join(parts), parts


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "wav", "pcm", "flac"])
def test_streamed_output_decodes(fmt: str) -> None:
    data, parts = streamed(fmt, [tone(0.7), tone(0.7, 330.0), tone(0.6)])
    if fmt != "flac":  # flac is sent whole once complete (its header needs the length)
        assert b"".join(parts[:2]), f"{fmt}: the first blocks produced no bytes"
    if fmt == "pcm":
        assert abs(len(data) / 2 / 24000 - 2.0) < 0.01
        return
    if fmt != "aac":
        samples, rate = soundfile.read(io.BytesIO(data))
        assert abs(len(samples) / rate - 2.0) < 0.1, fmt
    samples, rate = av_decode(data)
    assert abs(len(samples) / rate - 2.0) < 0.1, fmt


def test_streamed_wav_header_says_unknown_length() -> None:
    data, _ = streamed("wav", [tone(0.2)])
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"


def test_every_declared_format_encodes() -> None:
    for fmt in FORMATS:
        assert encode(tone(0.1), RATE, fmt)


@pytest.mark.parametrize("speed", [0.25, 0.5, 0.8, 1.5, 2.0, 4.0])
def test_time_stretch_is_exact_in_length_and_keeps_pitch(speed: float) -> None:
    from runtime.audio.timestretch import time_stretch

    source = tone(2.0, 220.0)
    out = time_stretch(source, speed)
    assert len(out) == round(len(source) / speed)
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * RATE / len(out) - 220.0) < 3.0
    middle = out[len(out) // 4 : 3 * len(out) // 4]
    assert 0.4 < np.abs(middle).max() < 0.6  # no level change in the body


def test_time_stretch_of_short_or_unchanged_audio() -> None:
    from runtime.audio.timestretch import time_stretch

    assert len(time_stretch(tone(0.01), 2.0)) == round(len(tone(0.01)) / 2)
    same = tone(0.5)
    assert np.array_equal(time_stretch(same, 1.0), same)


def test_only_native_rate_wav_is_cheap_enough_for_the_event_loop() -> None:
    assert StreamEncoder("wav", RATE).cheap
    assert not StreamEncoder("pcm", RATE).cheap  # resampled to 24 kHz
    assert not StreamEncoder("mp3", RATE).cheap and not StreamEncoder("flac", RATE).cheap


def test_a_complete_wav_body_gets_its_real_lengths() -> None:
    import wave

    from runtime.audio.encode import wav_with_length

    data, _ = streamed("wav", [tone(0.5), tone(0.25, 330.0)])
    whole = wav_with_length(data)
    assert len(whole) == len(data) and whole[44:] == data[44:]
    with wave.open(io.BytesIO(whole)) as reader:  # Python's wave read 2,147,483,647 frames before
        assert reader.getnframes() == (len(data) - 44) // 2 and reader.getframerate() == RATE
    assert int.from_bytes(whole[4:8], "little") == len(whole) - 8
    samples, rate = soundfile.read(io.BytesIO(whole))
    assert abs(len(samples) / rate - 0.75) < 0.01
    assert wav_with_length(whole) == whole and wav_with_length(b"ID3\x04rest") == b"ID3\x04rest"
