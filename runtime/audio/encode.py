"""Audio encoding: float32 samples to wav, pcm, flac, mp3, aac and Ogg/Opus, whole or streamed.

Rates: ``pcm`` is raw 16-bit little-endian mono at 24 kHz, as OpenAI clients play it (the
voice's rate is resampled); Opus runs at 24 kHz (one of its own rates); the other formats keep
the voice's rate, which their headers state.

Streaming: ``pcm`` is raw samples; ``wav`` starts with a header whose length fields say
"unknown" (0xFFFFFFFF), then raw PCM (a complete answer, cached or written to a file, gets its
real lengths: :func:`wav_with_length`); ``mp3``, ``aac`` (ADTS) and ``opus`` (Ogg) run FFmpeg's
encoders (libmp3lame, aac, libopus through PyAV's bundled FFmpeg) into a non-seekable sink that
hands out bytes as soon as the muxer writes them, so nothing is patched back afterwards.
``flac`` is the exception: FLAC's header carries the total sample count, and a stream without it
is unreadable for libsndfile (soundfile), so a FLAC answer is encoded whole once the audio is
complete and then sent whole, with its length (``runtime.http.speech``: nothing goes out before it
exists, so a request that cannot finish gets its error instead).
"""

from __future__ import annotations

import io
import struct
from typing import Any

import numpy as np
import soxr

from runtime.errors import BadRequest

MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
FORMATS = tuple(MEDIA_TYPES)
PCM_RATE_HZ = 24000
"""OpenAI's raw PCM: 24 kHz, 16-bit signed little-endian, mono."""
_AV = {"mp3": ("mp3", "libmp3lame", 64000), "aac": ("adts", "aac", 64000),
       "opus": ("ogg", "libopus", 32000), "flac": ("flac", "flac", 0)}
"""format -> (FFmpeg muxer, encoder, bit rate; 0 = lossless)."""
_OPUS_RATES_HZ = (8000, 12000, 16000, 24000, 48000)


def check_format(name: str) -> str:
    if name not in MEDIA_TYPES:
        raise BadRequest(
            f"response_format {name!r} is not supported; use one of {', '.join(FORMATS)}",
            param="response_format",
            code="unsupported_response_format",
        )
    return name


def output_rate_hz(fmt: str, sample_rate_hz: int) -> int:
    """The sample rate a format is delivered at (pcm: 24 kHz; Opus: one of its own rates)."""
    if fmt == "pcm":
        return PCM_RATE_HZ
    if fmt != "opus" or sample_rate_hz in _OPUS_RATES_HZ:
        return sample_rate_hz
    return next((r for r in _OPUS_RATES_HZ if r >= sample_rate_hz), _OPUS_RATES_HZ[-1])


def to_int16(samples: np.ndarray) -> np.ndarray:
    pcm: np.ndarray = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    return pcm


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """One whole signal from ``from_hz`` to ``to_hz`` (libsoxr, high quality), as float32."""
    if from_hz == to_hz or samples.size == 0:
        unchanged: np.ndarray = samples.astype(np.float32, copy=False)
        return unchanged
    out: np.ndarray = soxr.resample(samples.astype(np.float32, copy=False), from_hz, to_hz, quality="HQ")
    return out.astype(np.float32, copy=False)


def wav_stream_header(sample_rate_hz: int) -> bytes:
    """A 16-bit mono WAV header whose lengths are 'unknown' (0xFFFFFFFF), for streaming."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, sample_rate_hz, sample_rate_hz * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", unknown)


WAV_HEADER_BYTES = 44


def wav_with_length(data: bytes) -> bytes:
    """A complete WAV answer with its real lengths in the header.

    A stream starts with :func:`wav_stream_header`, whose lengths say "unknown" (0xFFFFFFFF):
    right while it streams, wrong once the body is whole (a file on disk, a cached answer sent
    with its Content-Length): players read 0xFFFFFFFF as 27 hours. Bytes that do not start with
    that header are returned as they are.
    """
    if len(data) < WAV_HEADER_BYTES or data[:4] != b"RIFF" or data[36:40] != b"data" \
            or data[4:8] != b"\xff\xff\xff\xff":
        return data
    size = len(data) - WAV_HEADER_BYTES
    size -= size % 2  # 16-bit samples: a stray byte is no sample
    return (b"RIFF" + struct.pack("<I", 36 + size) + data[8:40] + struct.pack("<I", size)
            + data[WAV_HEADER_BYTES:WAV_HEADER_BYTES + size])


class _Sink:
    """A write-only, non-seekable target: the muxer cannot go back, bytes leave as written."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._buffer.extend(chunk)
        return len(chunk)

    def take(self) -> bytes:
        fresh = bytes(self._buffer)
        self._buffer.clear()
        return fresh


class _AvEncoder:
    """One FFmpeg encoder + muxer (PyAV) writing into ``target``."""

    def __init__(self, fmt: str, rate_hz: int, target: Any) -> None:
        import av

        muxer, codec, bit_rate = _AV[fmt]
        self._container: Any = av.open(target, mode="w", format=muxer)
        stream: Any = self._container.add_stream(codec, rate=rate_hz, layout="mono")
        if bit_rate:
            stream.bit_rate = bit_rate
        self._stream = stream
        self._rate = rate_hz
        self._pts = 0
        self._closed = False

    def write(self, samples: np.ndarray) -> None:
        import av

        if samples.size == 0:
            return
        frame = av.AudioFrame.from_ndarray(to_int16(samples).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self._rate
        frame.pts = self._pts
        self._pts += samples.size
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._container.close()


class StreamEncoder:
    """Encodes successive blocks of float32 samples; ``feed`` returns the bytes ready so far."""

    def __init__(self, fmt: str, sample_rate_hz: int) -> None:
        self.format = check_format(fmt)
        self.input_rate_hz = sample_rate_hz
        self.output_rate_hz = output_rate_hz(fmt, sample_rate_hz)
        self._started = False
        self._sink = _Sink()
        self._encoder: _AvEncoder | None = None
        self._held: list[np.ndarray] = []
        # One resampler for the whole stream: its filter state runs across blocks, so block
        # edges leave no seam; it holds back a few ms, which ``finish`` flushes.
        self._resampler = (soxr.ResampleStream(sample_rate_hz, self.output_rate_hz, 1, dtype="float32", quality="HQ")
                           if sample_rate_hz != self.output_rate_hz else None)
        if fmt in _AV and fmt != "flac":
            self._encoder = _AvEncoder(fmt, self.output_rate_hz, self._sink)

    @property
    def cheap(self) -> bool:
        """True where ``feed`` is only a cast and a copy (WAV at the voice's own rate): cheaper
        to run on the event loop than to hand to a worker thread and back."""
        return self.format == "wav" and self.input_rate_hz == self.output_rate_hz

    def feed(self, samples: np.ndarray) -> bytes:
        return self._emit(self._resampled(samples, last=False))

    def _resampled(self, samples: np.ndarray, *, last: bool) -> np.ndarray:
        block = samples.astype(np.float32, copy=False)
        if self._resampler is None:
            return block
        out: np.ndarray = self._resampler.resample_chunk(block, last=last)
        return out

    def _emit(self, samples: np.ndarray) -> bytes:
        if self.format in ("pcm", "wav"):
            prefix = b""
            if self.format == "wav" and not self._started:
                prefix = wav_stream_header(self.output_rate_hz)
            self._started = True
            return prefix + to_int16(samples).tobytes()
        if self.format == "flac":
            self._held.append(samples)
            return b""
        assert self._encoder is not None
        self._encoder.write(samples)
        return self._sink.take()

    def finish(self) -> bytes:
        tail = b""
        if self._resampler is not None:
            tail = self._emit(self._resampled(np.zeros(0, dtype=np.float32), last=True))
        return tail + self._finish_format()

    def _finish_format(self) -> bytes:
        if self.format == "flac":
            held = np.concatenate(self._held) if self._held else np.zeros(0, dtype=np.float32)
            self._held = []
            return _encode_av(held, self.output_rate_hz, "flac")
        if self._encoder is None:
            if self.format == "wav" and not self._started:
                self._started = True
                return wav_stream_header(self.output_rate_hz)
            return b""
        self._encoder.close()
        return self._sink.take()

    def abort(self) -> None:
        self._held = []
        if self._encoder is not None:
            self._encoder.abort()


def _encode_av(samples: np.ndarray, rate_hz: int, fmt: str) -> bytes:
    buffer = io.BytesIO()  # seekable: the muxer patches exact lengths into the header
    encoder = _AvEncoder(fmt, rate_hz, buffer)
    encoder.write(samples)
    encoder.close()
    return buffer.getvalue()


def encode(samples: np.ndarray, sample_rate_hz: int, fmt: str) -> bytes:
    """A complete file (or raw PCM) with exact lengths in its header."""
    check_format(fmt)
    rate = output_rate_hz(fmt, sample_rate_hz)
    samples = resample(samples, sample_rate_hz, rate)
    if fmt == "pcm":
        return to_int16(samples).tobytes()
    if fmt in _AV:
        return _encode_av(samples, rate, fmt)
    import soundfile

    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", rate, 1, format="WAV", subtype="PCM_16") as handle:
        handle.write(np.clip(samples, -1.0, 1.0).astype(np.float32))
    return buffer.getvalue()
