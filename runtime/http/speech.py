"""The speech routes' work: ``POST /v1/audio/speech`` and captioned speech (word timestamps).

How an answer ends (what a client can rely on):

* **streamed** (``stream`` true, the default, for every format but FLAC): the headers go out with
  the first audio. A response that cannot finish after that (deadline, every engine failing,
  shutdown) is *cut*: chunked audio ends without its last chunk (the server closes the
  connection, so the client reads an incomplete body, never a clean but truncated 200); SSE ends
  with an ``error`` event instead of ``speech.audio.done``. The access line says
  ``"outcome":"cut:<code>"``, ``tailor_requests_total`` counts it as ``status="200_cut"`` and
  ``tailor_stream_cuts_total{reason}`` counts it.
* **whole** (FLAC always, since its header carries the length; any format with
  ``"stream": false``; captioned speech): nothing is sent until the audio is complete, then one
  body with ``Content-Length``. A request that cannot finish gets its error (504 past the
  deadline) in OpenAI's JSON shape before any byte.

Usage in SSE ``speech.audio.done`` follows OpenAI's shape ``{input_tokens, output_tokens,
total_tokens}``. The models have no text tokenizer, so the counts are stated estimates:
``input_tokens`` = characters of the input / 4, rounded up (OpenAI's rule of thumb for English
text); ``output_tokens`` = seconds of audio x 50, rounded up (one token per 20 ms of audio);
``total_tokens`` their sum.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from runtime.audio.encode import (
    MEDIA_TYPES,
    StreamEncoder,
    check_format,
    encode,
    output_rate_hz,
    wav_with_length,
)
from runtime.errors import ApiError, BadRequest, EngineFailed, StreamCut
from runtime.families.base import Voice
from runtime.http.middleware import AccessRecord, access_record
from runtime.http.normalization import cache_tag, prepare, text_options
from runtime.http.schemas import CaptionedSpeechRequest, SpeechRequest
from runtime.serving.cache import CacheKey
from runtime.serving.gate import SpeechJob
from runtime.serving.served import ServedFamily
from runtime.serving.service import SpeechService, concatenate
from runtime.settings import Settings
from runtime.text.frontend import validate_input
from runtime.text.normalize import NormalizationOptions, PreparedText
from runtime.text.timestamps import ChunkTiming, word_timestamps

_LOG = logging.getLogger("tailor.runtime")
SPEECH_ROUTE = "/v1/audio/speech"
CHARS_PER_TOKEN = 4
AUDIO_TOKENS_PER_SECOND = 50


def usage(characters: int, audio_seconds: float) -> dict[str, int]:
    """OpenAI's usage object, estimated (see the module's docstring)."""
    input_tokens = math.ceil(characters / CHARS_PER_TOKEN)
    output_tokens = math.ceil(round(audio_seconds * AUDIO_TOKENS_PER_SECOND, 6))
    return {"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens}


@dataclass
class Progress:
    """What a response has produced so far."""

    audio_seconds: float = 0.0


@dataclass
class Validated:
    """A speech request checked and normalised, not admitted yet."""

    started: float
    fmt: str
    served: ServedFamily
    """The served model family the request's ``model`` and ``voice`` route to."""
    voice: Voice
    text: str
    options: NormalizationOptions
    prepared: PreparedText
    rate: int
    record: AccessRecord | None
    key: CacheKey
    headers: dict[str, str] = field(default_factory=dict)


def validate(service: SpeechService, settings: Settings, body: SpeechRequest, request: Request) -> Validated:
    started = time.monotonic()
    service.check_accepting()
    fmt = check_format(body.response_format)
    served, voice = service.route(body.model, body.voice_name())
    text = validate_input(body.input, settings.max_input_chars)
    sse = body.stream_format == "sse"
    record = access_record(request.scope)
    if record is not None:
        record.voice, record.characters, record.response_format = voice.name, len(text), fmt
        record.stream = "sse" if sse else "audio" if body.stream and fmt != "flac" else "whole"
    options = text_options(body.normalization_options, settings.normalize)
    prepared = prepare(text, voice.language, voice.name, options)
    headers = {"X-Tailor-Warning": prepared.warning} if prepared.warning else {}
    key = CacheKey(voice.name, f"{served.name}|{served.chain.primary_engine}|{settings.fallback}|{cache_tag(options)}",
                   text, body.speed, fmt)
    return Validated(started, fmt, served, voice, text, options, prepared, voice.sample_rate_hz, record, key, headers)


async def admit(service: SpeechService, request: Validated, speed: float) -> SpeechJob:
    """Phonemize (the one wait before admission, bounded by the family's chunk limits) and admit."""
    served = request.served
    reserved = service.reserve(sum(len(s.text) for s in request.prepared.segments), request.started, served.name)
    try:
        phonemizer = served.chain.phonemizer(request.voice.name)
        # While it is phonemized the request is a companion-to-be: a worker alone with another
        # request waits out the batch window for it.
        with service.arriving():
            chunks = await anyio.to_thread.run_sync(
                phonemizer.prepare_segments, request.prepared.segments, served.family.chunk_limit,
                served.family.first_chunk_limit)
    except BaseException:
        service.unreserve(reserved, served.name)
        raise
    if not chunks:
        service.unreserve(reserved, served.name)
        raise BadRequest("input has nothing to speak (no pronounceable text)", param="input", code="empty_input")
    return service.admit(request.voice.name, chunks, speed, request.started, reserved, served.name)


class _ClosingStream(StreamingResponse):
    """A streaming response that always runs ``on_close`` (even if never started)."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], Any], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._on_close()


async def _nothing() -> None:
    return None


def _sse_response(events: AsyncIterator[bytes], on_close: Callable[[], Any] = _nothing,
                  headers: Mapping[str, str] | None = None) -> Response:
    return _ClosingStream(events, on_close, media_type="text/event-stream",
                          headers={"Cache-Control": "no-cache", **(headers or {})})


class _Job:
    """An admitted job's release (once, however the response ends) and latency metric."""

    def __init__(self, service: SpeechService, job: SpeechJob, started: float, route: str) -> None:
        self.service, self.job, self.started, self.route = service, job, started, route
        self.released = False

    async def release(self) -> None:
        if not self.released:
            self.released = True
            self.service.release(self.job)
            self.service.metrics.latency.labels(self.route).observe(time.monotonic() - self.started)


async def _whole_audio(service: SpeechService, job: SpeechJob, request: Validated, progress: Progress,
                       timings: list[ChunkTiming] | None = None) -> np.ndarray:
    """All of a job's audio, or its error before anything is sent."""
    generator = _timed(service, service.audio_blocks(job, timings=timings), request.started,
                       request.record, request.rate, progress)
    try:
        blocks = [block async for block in generator]
    finally:
        await generator.aclose()
    if not blocks:
        raise EngineFailed("synthesis produced no audio")
    return concatenate(blocks)


async def speech(service: SpeechService, settings: Settings, body: SpeechRequest, request: Request) -> Response:
    checked = validate(service, settings, body, request)
    fmt, key, rate = checked.fmt, checked.key, checked.rate
    sse = body.stream_format == "sse"
    cached = service.cache.get(key)
    (service.metrics.cache_hits if cached is not None else service.metrics.cache_misses).inc()
    if cached is not None:
        if sse:
            return _sse_response(_sse_cached(cached, usage(len(checked.text), service.cache.audio_seconds(key))),
                                 headers=checked.headers)
        return Response(cached, media_type=MEDIA_TYPES[fmt],
                        headers={"X-Tailor-Cache": "hit", "X-Tailor-Sample-Rate": str(output_rate_hz(fmt, rate)),
                                 **checked.headers})

    admitted = _Job(service, await admit(service, checked, body.speed), checked.started, SPEECH_ROUTE)
    progress = Progress()
    if not sse and (fmt == "flac" or not body.stream):
        try:
            audio = await _whole_audio(service, admitted.job, checked, progress)
            data = await anyio.to_thread.run_sync(encode, audio, rate, fmt)
        finally:
            await admitted.release()
        service.cache.put(key, data, progress.audio_seconds)
        return Response(data, media_type=MEDIA_TYPES[fmt],
                        headers={"X-Tailor-Sample-Rate": str(output_rate_hz(fmt, rate)), "X-Tailor-Cache": "miss",
                                 **checked.headers})

    generator: AsyncGenerator[Any, None] | None = None
    try:
        generator = _timed(service, service.audio_blocks(admitted.job), checked.started, checked.record,
                           rate, progress)
        first = await generator.__anext__()  # errors before the first audio stay JSON errors
        encoder = StreamEncoder(fmt, rate)
        live = generator

        async def close() -> None:
            await live.aclose()
            encoder.abort()
            await admitted.release()

        def cut(code: str) -> None:
            service.metrics.stream_cuts.labels(code).inc()

        stream = _stream_bytes(first, generator, encoder, checked.record,
                               lambda data: service.cache.put(  # cached whole: real WAV lengths
                                   key, wav_with_length(data) if fmt == "wav" else data, progress.audio_seconds), cut)
        if sse:
            return _sse_response(_sse_events(stream, len(checked.text), progress), close, headers=checked.headers)
        return _ClosingStream(stream, close, media_type=MEDIA_TYPES[fmt],
                              headers={"X-Tailor-Sample-Rate": str(encoder.output_rate_hz),
                                       "X-Tailor-Cache": "miss", **checked.headers})
    except StopAsyncIteration:
        await admitted.release()
        raise EngineFailed("synthesis produced no audio") from None
    except BaseException:
        if generator is not None:
            await generator.aclose()  # cancels queued sentences now, not at garbage collection
        await admitted.release()
        raise


async def captioned_speech(service: SpeechService, settings: Settings, body: CaptionedSpeechRequest,
                           request: Request, route: str) -> JSONResponse:
    """The audio (base64) and, per word, its start and end in seconds from the model's own
    durations (see ``runtime.text.timestamps``). Answered whole, never streamed."""
    checked = validate(service, settings, body, request)
    if checked.record is not None:
        checked.record.stream = "whole"
    tokens = checked.served.chain.phonemizer(checked.voice.name).token_map() if body.return_timestamps else None
    if body.return_timestamps and tokens is None:
        raise BadRequest(
            f"word timestamps are not available for model family {checked.served.name} (its models do not "
            "report phoneme durations); send return_timestamps=false, or pick a Piper or Kokoro-82M voice",
            param="return_timestamps", code="timestamps_unsupported")
    admitted = _Job(service, await admit(service, checked, body.speed), checked.started, route)
    progress = Progress()
    timings: list[ChunkTiming] = []
    try:
        audio = await _whole_audio(service, admitted.job, checked, progress, timings if body.return_timestamps else None)
        data = await anyio.to_thread.run_sync(encode, audio, checked.rate, checked.fmt)
    finally:
        await admitted.release()
    words = None
    if tokens is not None:
        found = await anyio.to_thread.run_sync(word_timestamps, timings, checked.rate, tokens)
        words = [w.as_json() for w in found]
    return JSONResponse(
        {"audio": base64.b64encode(data).decode(), "audio_format": checked.fmt, "timestamps": words,
         "sample_rate": output_rate_hz(checked.fmt, checked.rate),
         "audio_seconds": round(audio.size / checked.rate, 3)},
        headers=checked.headers)


async def _timed(
    service: SpeechService, blocks: AsyncGenerator[Any, None], started: float,
    record: AccessRecord | None, rate: int, progress: Progress,
) -> AsyncGenerator[Any, None]:
    first = True
    try:
        async for block in blocks:
            if first:
                ttfa = time.monotonic() - started
                service.metrics.ttfa.observe(ttfa)
                if record is not None:
                    record.ttfa_seconds = ttfa
                first = False
            progress.audio_seconds += len(block) / rate
            if record is not None:
                record.audio_seconds = progress.audio_seconds
            yield block
    finally:
        await blocks.aclose()


async def _stream_bytes(
    first: Any, rest: AsyncIterator[Any], encoder: StreamEncoder, record: AccessRecord | None,
    on_complete: Callable[[bytes], Any], on_cut: Callable[[str], None],
) -> AsyncIterator[bytes]:
    """Encoded audio, block by block; the whole answer goes to ``on_complete`` (the cache)
    when it finished. A failure after the first block raises :class:`StreamCut`."""
    sent: list[bytes] = []

    async def encode_block(block: Any) -> bytes:
        return encoder.feed(block) if encoder.cheap else await anyio.to_thread.run_sync(encoder.feed, block)

    data = await encode_block(first)
    if data:
        sent.append(data)
        yield data
    try:
        async for block in rest:
            data = await encode_block(block)
            if data:
                sent.append(data)
                yield data
    except ApiError as exc:
        _LOG.warning("stream cut after the first audio: %s", exc.message)
        if record is not None:
            record.outcome = f"cut:{exc.code}"
        on_cut(exc.code)
        encoder.abort()
        raise StreamCut(exc) from exc
    tail = encoder.finish() if encoder.cheap else await anyio.to_thread.run_sync(encoder.finish)
    if tail:
        sent.append(tail)
        yield tail
    on_complete(b"".join(sent))


def _sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _sse_events(stream: AsyncIterator[bytes], characters: int, progress: Progress) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: ``speech.audio.delta`` events, then ``speech.audio.done`` with the
    usage; a cut stream ends with an ``error`` event (OpenAI's error shape) instead of ``done``."""
    try:
        async for data in stream:
            yield _sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except StreamCut as cut:
        yield _sse_event({"type": "error", **cut.error.body()})
        return
    yield _sse_event({"type": "speech.audio.done", "usage": usage(characters, progress.audio_seconds)})


async def _sse_cached(data: bytes, used: dict[str, int]) -> AsyncIterator[bytes]:
    yield _sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    yield _sse_event({"type": "speech.audio.done", "usage": used})
