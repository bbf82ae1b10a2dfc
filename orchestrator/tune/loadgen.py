"""A small async load generator for the runtime's speech route, on httpx's async streaming client.

Closed loop: ``concurrency`` clients each send the next sentence of a fixed list as soon as
their previous request finished, until the list is used up. Every request asks for streamed
WAV and records latency (until the last byte), time to first audio (the first byte after the
44-byte WAV header) and the seconds of audio in the body (from the header's sample rate).
Only loopback URLs are used by ``deploy tune``.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

TEXTS: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Please remember to bring your umbrella tomorrow morning, because the forecast says it will rain all day.",
    "Yes.",
    "Our flight to Denver leaves at half past seven.",
    "She opened the window and listened to the rain falling on the roofs of the old town.",
    "Turn left at the second traffic light.",
    "Fresh bread is baked here every single morning, and by noon the shelves are usually empty again.",
    "Could you send me the slides after the meeting?",
    "The museum has a new exhibition about ancient maps.",
    "Thank you for calling; all of our agents are busy right now, so please stay on the line and we will be with you shortly.",
    "A gentle breeze moved through the tall summer grass.",
    "Good morning!",
)
"""The shipped, fixed text set: short, medium and long sentences in a fixed order."""

WAV_HEADER_BYTES = 44


@dataclass(frozen=True)
class Sample:
    latency_s: float
    ttfa_s: float
    audio_s: float
    status: int

    @property
    def ok(self) -> bool:
        """Answered 200; any other status (0: no response at all) is a failure and delivers no audio."""
        return self.status == 200


@dataclass(frozen=True)
class LevelResult:
    """One concurrency level of one measurement."""

    concurrency: int
    samples: tuple[Sample, ...]
    wall_s: float

    @property
    def ok(self) -> tuple[Sample, ...]:
        return tuple(s for s in self.samples if s.ok)

    @property
    def failures(self) -> int:
        return len(self.samples) - len(self.ok)

    @property
    def audio_per_s(self) -> float:
        """Seconds of audio delivered per wall-clock second (failed requests deliver none)."""
        return sum(s.audio_s for s in self.ok) / self.wall_s if self.wall_s > 0 else 0.0

    def latency_quantile(self, q: float) -> float:
        return quantile([s.latency_s for s in self.ok], q)

    def ttfa_quantile(self, q: float) -> float:
        return quantile([s.ttfa_s for s in self.ok], q)


def quantile(values: Sequence[float], q: float) -> float:
    """Nearest-rank quantile; +inf for an empty list (nothing succeeded: worst possible)."""
    if not values:
        return float("inf")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def wav_audio_seconds(body: bytes) -> float:
    """Seconds of PCM in a (possibly streamed, length-less) WAV body, from its fmt chunk."""
    if len(body) < WAV_HEADER_BYTES or body[:4] != b"RIFF" or body[8:12] != b"WAVE":
        return 0.0
    channels, rate = (int(v) for v in struct.unpack_from("<HI", body, 22))
    bits = int(struct.unpack_from("<H", body, 34)[0])
    frame = max(1, channels * bits // 8)
    return float(max(0, len(body) - WAV_HEADER_BYTES) / frame / max(1, rate))


async def speak(client: httpx.AsyncClient, url: str, text: str, *, timeout_s: float = 120.0,
                api_key: str = "", model: str = "tts-1") -> Sample:
    """One ``POST /v1/audio/speech`` (streamed WAV) read as it arrives: time to the first audio
    byte past the WAV header, total latency, seconds of audio. Failures are samples with their
    status (0: no answer, a broken body or the timeout). ``model``: the request's model field (a
    served family, or an OpenAI name)."""
    payload = {"model": model, "input": text, "voice": "alloy", "response_format": "wav", "stream_format": "audio"}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = bytearray()
    first_audio: list[float] = []
    started = time.perf_counter()

    async def exchange() -> int:
        async with client.stream("POST", f"{url.rstrip('/')}/v1/audio/speech", json=payload,
                                 headers=headers) as response:
            async for chunk in response.aiter_raw():
                body.extend(chunk)
                if not first_audio and len(body) > WAV_HEADER_BYTES:
                    first_audio.append(time.perf_counter() - started)
            return response.status_code

    try:
        status = await asyncio.wait_for(exchange(), timeout_s)
    except (httpx.HTTPError, OSError, asyncio.TimeoutError):
        elapsed = time.perf_counter() - started
        return Sample(elapsed, elapsed, 0.0, 0)
    latency = time.perf_counter() - started
    audio = wav_audio_seconds(bytes(body)) if status == 200 else 0.0
    return Sample(latency, first_audio[0] if first_audio else latency, audio, status)


async def _run_level(url: str, concurrency: int, texts: Sequence[str], timeout_s: float,
                     api_key: str, model: str = "tts-1") -> LevelResult:
    queue = list(reversed(texts))
    samples: list[Sample] = []
    # One connection per client, kept alive between its requests (as a real client's pool is).
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s), limits=limits, trust_env=False) as http:

        async def client() -> None:
            while queue:
                samples.append(await speak(http, url, queue.pop(), timeout_s=timeout_s, api_key=api_key,
                                           model=model))

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return LevelResult(concurrency, tuple(samples), time.perf_counter() - started)


def run_level(url: str, concurrency: int, requests: int, *, offset: int = 0, timeout_s: float = 120.0,
              api_key: str = "", texts: Sequence[str] = TEXTS, model: str = "tts-1") -> LevelResult:
    """``requests`` sentences (the text set in order, from ``offset``) at ``concurrency`` clients."""
    chosen = [texts[(offset + i) % len(texts)] for i in range(requests)]
    return asyncio.run(_run_level(url, concurrency, chosen, timeout_s, api_key, model))
