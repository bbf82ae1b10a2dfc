"""Audio encoding: float32 samples to wav, pcm, flac, mp3 and Ogg/Opus, whole or streamed.

Every format streams: ``pcm`` is raw 16-bit little-endian mono; ``wav`` starts with a header
whose length fields say "unknown" (0xFFFFFFFF), then raw PCM; ``mp3``, ``flac`` and ``opus``
run libsndfile's encoder (through soundfile) into a sink that hands out bytes as soon as the
encoder writes them. libsndfile goes back at close to patch a FLAC header's sample count;
in a stream that patch is dropped, which leaves the valid "length unknown" header. Opus only
takes 8/12/16/24/48 kHz, so audio is resampled (windowed sinc) to the next such rate.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np

from runtime.errors import BadRequest

MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "wav": "audio/wav",
    "flac": "audio/flac",
    "opus": "audio/ogg; codecs=opus",
    "pcm": "audio/pcm",
}
FORMATS = tuple(MEDIA_TYPES)
_SOUNDFILE = {"mp3": ("MP3", "MPEG_LAYER_III"), "flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS")}
_OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)
_MP3_OPTIONS = {"bitrate_mode": "CONSTANT", "compression_level": 0.6}
"""Constant ~64 kbit/s for 22 kHz mono: decoders can size a stream without a VBR header, and
libsndfile's default VBR setting sounds thin on speech."""


def _encoder_options(fmt: str) -> dict[str, Any]:
    return dict(_MP3_OPTIONS) if fmt == "mp3" else {}


def check_format(name: str) -> str:
    if name not in MEDIA_TYPES:
        raise BadRequest(
            f"response_format {name!r} is not supported; use one of {', '.join(FORMATS)}",
            param="response_format",
            code="unsupported_response_format",
        )
    return name


def output_rate_hz(fmt: str, sample_rate_hz: int) -> int:
    """The sample rate a format is delivered at (Opus needs one of its own rates)."""
    if fmt != "opus" or sample_rate_hz in _OPUS_RATES_HZ:
        return sample_rate_hz
    return next((r for r in _OPUS_RATES_HZ if r >= sample_rate_hz), _OPUS_RATES_HZ[-1])


def to_int16(samples: np.ndarray) -> np.ndarray:
    pcm: np.ndarray = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    return pcm


def resample(samples: np.ndarray, from_hz: int, to_hz: int, half_taps: int = 16) -> np.ndarray:
    """Band-limited resampling with a Hann-windowed sinc kernel (``half_taps`` each side)."""
    if from_hz == to_hz or samples.size == 0:
        unchanged: np.ndarray = samples.astype(np.float32, copy=False)
        return unchanged
    n_out = round(samples.size * to_hz / from_hz)
    positions = np.arange(n_out, dtype=np.float64) * (from_hz / to_hz)
    cutoff = min(1.0, to_hz / from_hz)
    base = np.floor(positions).astype(np.int64)
    out = np.zeros(n_out, dtype=np.float64)
    padded = np.concatenate([np.zeros(half_taps), samples.astype(np.float64), np.zeros(half_taps + 1)])
    for k in range(-half_taps + 1, half_taps + 1):
        index = base + k
        distance = positions - index
        window = 0.5 + 0.5 * np.cos(np.pi * distance / half_taps)
        kernel = cutoff * np.sinc(cutoff * distance) * window
        out += padded[index + half_taps] * kernel
    return out.astype(np.float32)


def wav_stream_header(sample_rate_hz: int) -> bytes:
    """A 16-bit mono WAV header whose lengths are 'unknown' (0xFFFFFFFF), for streaming."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate_hz, sample_rate_hz * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", unknown)


class _Sink(io.RawIOBase):
    """A seekable write target that releases bytes incrementally; late back-patches are dropped."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._position = 0
        self._emitted = 0

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return b""

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        end = self._position + len(chunk)
        if end > len(self._buffer):
            self._buffer.extend(b"\0" * (end - len(self._buffer)))
        self._buffer[self._position : end] = chunk
        self._position = end
        return len(chunk)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._position = offset
        elif whence == 1:
            self._position += offset
        else:
            self._position = len(self._buffer) + offset
        return self._position

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        fresh = bytes(self._buffer[self._emitted :])
        self._emitted = len(self._buffer)
        return fresh


class StreamEncoder:
    """Encodes successive blocks of float32 samples; ``feed`` returns the bytes ready so far."""

    def __init__(self, fmt: str, sample_rate_hz: int) -> None:
        self.format = check_format(fmt)
        self.input_rate_hz = sample_rate_hz
        self.output_rate_hz = output_rate_hz(fmt, sample_rate_hz)
        self._started = False
        self._sink: _Sink | None = None
        self._file: Any = None
        if fmt in _SOUNDFILE:
            import soundfile

            container, subtype = _SOUNDFILE[fmt]
            self._sink = _Sink()
            self._file = soundfile.SoundFile(
                self._sink, "w", self.output_rate_hz, 1, format=container, subtype=subtype,
                **_encoder_options(fmt),
            )

    def feed(self, samples: np.ndarray) -> bytes:
        samples = resample(samples, self.input_rate_hz, self.output_rate_hz)
        if self.format in ("pcm", "wav"):
            prefix = b""
            if self.format == "wav" and not self._started:
                prefix = wav_stream_header(self.output_rate_hz)
            self._started = True
            return prefix + to_int16(samples).tobytes()
        assert self._file is not None and self._sink is not None
        self._file.write(np.clip(samples, -1.0, 1.0).astype(np.float32))
        if self.format != "mp3":
            # Ogg and FLAC hold encoded audio until a page/frame is complete; flushing now sends
            # this block's audio at once. For mp3, a flush rewrites the LAME info frame at the
            # start of the file with the frame count so far, which would end decoding early.
            self._file.flush()
        return self._sink.take()

    def finish(self) -> bytes:
        if self._file is None or self._sink is None:
            if self.format == "wav" and not self._started:
                self._started = True
                return wav_stream_header(self.output_rate_hz)
            return b""
        self._file.close()
        self._file = None
        return self._sink.take()

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


def encode(samples: np.ndarray, sample_rate_hz: int, fmt: str) -> bytes:
    """A complete file (or raw PCM) with exact lengths in its header."""
    check_format(fmt)
    rate = output_rate_hz(fmt, sample_rate_hz)
    samples = resample(samples, sample_rate_hz, rate)
    if fmt == "pcm":
        return to_int16(samples).tobytes()
    import soundfile

    container, subtype = ("WAV", "PCM_16") if fmt == "wav" else _SOUNDFILE[fmt]
    buffer = io.BytesIO()
    with soundfile.SoundFile(
        buffer, "w", rate, 1, format=container, subtype=subtype, **_encoder_options(fmt)
    ) as handle:
        handle.write(np.clip(samples, -1.0, 1.0).astype(np.float32))
    return buffer.getvalue()
