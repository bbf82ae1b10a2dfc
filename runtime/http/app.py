"""The HTTP app: ``create_app(settings, engine_factory=...)``.

Routes: ``POST /v1/audio/speech`` (OpenAI shape), ``GET /v1/models``, ``GET /v1/audio/voices``,
``GET /healthz`` (alive), ``GET /readyz`` (200 once loaded and warmed up; 503 before and while
draining), ``GET /metrics`` (Prometheus text). Every error is OpenAI-style JSON
(``{"error": {"message", "type", "code", "param"}}``); FastAPI's 422 becomes 400.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.audio.encode import MEDIA_TYPES, StreamEncoder, check_format, output_rate_hz
from runtime.engines import create_engine
from runtime.errors import ApiError, BadRequest, EngineFailed, MethodNotAllowed, NotFound, StreamCut
from runtime.families.base import EngineFactory
from runtime.families.spec import FamilySpec
from runtime.families.voices import OPENAI_VOICES
from runtime.http.middleware import (
    AccessRecord,
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    RequestContextMiddleware,
    access_record,
)
from runtime.http.openapi import describe_api
from runtime.http.schemas import OPENAI_MODELS, SNAPSHOT_PATTERN, SpeechRequest
from runtime.serving.cache import CacheKey
from runtime.serving.memory import process_rss_bytes
from runtime.serving.metrics import CONTENT_TYPE
from runtime.serving.service import SpeechService
from runtime.settings import Settings
from runtime.text.frontend import validate_input
from runtime.text.normalize import prepare_text

_LOG = logging.getLogger("tailor.runtime")
SPEECH_ROUTE = "/v1/audio/speech"


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    where = ".".join(loc) or "body"
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON: " + str(first.get("ctx", {}).get("error", "")), None
    if first.get("type") == "model_attributes_type":
        return "request body must be a JSON object (Content-Type: application/json)", None
    return f"{where}: {first.get('msg', 'invalid value')}", where


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


def create_app(
    settings: Settings,
    engine_factory: EngineFactory = create_engine,
    rss_reader: Callable[[], int] = process_rss_bytes,
    families: Sequence[FamilySpec] | None = None,
) -> FastAPI:
    """Build the app; the model loads in the background once the server starts. ``families``
    overrides TAILOR_MODEL's list of family declarations (tests)."""
    service = SpeechService(settings, engine_factory, rss_reader, families=families)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loader = asyncio.get_running_loop().run_in_executor(None, service.start)
        loader.add_done_callback(lambda f: f.exception())  # failure is reported via /readyz
        try:
            yield
        finally:
            service.begin_drain()
            await asyncio.to_thread(service.wait_idle, settings.shutdown_grace_s)
            with anyio.CancelScope(shield=True):
                await asyncio.wait({loader}, timeout=5)
            service.close()

    app = FastAPI(
        title="Tailor speech runtime",
        version="0.1.0",
        description="OpenAI-compatible text-to-speech.",
        lifespan=lifespan,
    )
    app.state.service = service

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            app.openapi_schema = describe_api(
                schema, max_input_chars=settings.max_input_chars,
                voices=[v for f in service.families.values() for v in f.catalog],
                openai_voices=OPENAI_VOICES | set(service.voice_map), models=(*OPENAI_MODELS, *service.families),
                snapshot_pattern=SNAPSHOT_PATTERN, api_key=bool(settings.api_key))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error_response(BadRequest(message, param=param, code="invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            return _error_response(NotFound("no such route; see /docs for the API"))
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            return _error_response(MethodNotAllowed(
                f"method not allowed on this route; allowed: {allow or 'none'}",
                headers={"Allow": allow} if allow else None))
        if exc.status_code == 400:
            return _error_response(BadRequest(
                f"request body could not be read ({exc.detail}); send UTF-8 encoded JSON",
                code="invalid_body"))
        error = ApiError(str(exc.detail), code=f"http_{exc.status_code}")
        error.status_code = exc.status_code
        if exc.status_code < 500:
            error.error_type = "invalid_request_error"
        return _error_response(error)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        _LOG.exception("unexpected error")
        return _error_response(ApiError(f"internal error: {type(exc).__name__}"))

    @app.get("/healthz", summary="Liveness: the process answers.")
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "instance": service.instance_id}

    @app.get("/readyz", summary="Readiness: model loaded and warmed up, not draining.")
    async def readyz() -> JSONResponse:
        ready, body = service.readiness()
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics.")
    async def metrics() -> Response:
        service.metrics.cache_bytes.set(service.cache.size_bytes)
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models", summary="Accepted model names: the served families, OpenAI's names, voice names.")
    async def models() -> dict[str, Any]:
        rows: list[dict[str, Any]] = []

        def row(model_id: str, family: str, voice: str, **extra: Any) -> dict[str, Any]:
            served = service.families[family]
            return {"id": model_id, "object": "model", "created": 0, "owned_by": "tailor",
                    "family": family, "variant": served.catalog[voice].variant, **extra}

        for name, served in service.families.items():
            rows.append(row(name, name, served.default_voice, kind="family",
                            default=served is service.primary, voices=len(served.catalog)))
        for model_id in OPENAI_MODELS:
            family = service.model_map.get(model_id, service.primary.name)
            rows.append(row(model_id, family, service.families[family].default_voice, kind="openai"))
        listed = {r["id"] for r in rows}
        for name, served in service.families.items():
            for voice in sorted(served.catalog):
                if voice not in listed:
                    listed.add(voice)
                    rows.append(row(voice, name, voice, kind="voice"))
        return {"object": "list", "data": rows}

    @app.get("/v1/audio/voices", summary="Voices per served family, and the OpenAI names that alias the default.")
    async def voices() -> dict[str, Any]:
        rows: list[dict[str, Any]] = []
        families: dict[str, Any] = {}
        for family, served in service.families.items():
            names = sorted(served.catalog)
            families[family] = {"default": served.default_voice, "voices": names,
                                "sample_rate": served.family.spec.sample_rate_hz}
            for name in names:
                info = served.catalog[name]
                rows.append({"id": name, "name": name, "family": family, "language": info.language,
                             "sample_rate": info.sample_rate_hz, "source": info.source,
                             "default": served is service.primary and name == served.default_voice,
                             **dict(info.details)})
        primary = service.primary
        return {"object": "list", "voices": rows, "default": primary.default_voice, "families": families,
                "aliases": {alias: _alias_target(alias, primary.catalog, primary.default_voice)
                            for alias in sorted(OPENAI_VOICES | set(service.voice_map))}}

    def _alias_target(alias: str, catalog: Mapping[str, Any], default: str) -> str:
        target = service.voice_map.get(alias, default)
        return target if target in catalog else default

    @app.post(
        SPEECH_ROUTE,
        summary="Text to speech (OpenAI-compatible).",
        response_class=Response,
        responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}},
                   400: {"description": "Invalid request"}, 413: {"description": "Input too long"},
                   429: {"description": "Queue full"}, 503: {"description": "Not ready"},
                   504: {"description": "Timed out"}},
    )
    async def speech(body: SpeechRequest, request: Request) -> Response:
        started = time.monotonic()
        service.check_accepting()
        fmt = check_format(body.response_format)
        served, voice = service.route(body.model, body.voice_name())
        chain = served.chain
        text = validate_input(body.input, settings.max_input_chars)
        rate = voice.sample_rate_hz
        sse = body.stream_format == "sse"
        record = access_record(request.scope)
        if record is not None:
            record.voice, record.characters, record.response_format = voice.name, len(text), fmt
            record.stream = "sse" if sse else "audio"
        prepared = prepare_text(text, voice.language, voice.name, settings.normalize)
        extra_headers = {"X-Tailor-Warning": prepared.warning} if prepared.warning else {}
        key = CacheKey(voice.name, f"{served.name}|{chain.primary_engine}|{settings.fallback}", text, body.speed, fmt)
        cached = service.cache.get(key)
        (service.metrics.cache_hits if cached is not None else service.metrics.cache_misses).inc()
        if cached is not None:
            if sse:
                return _sse_response(_sse_cached(cached), headers=extra_headers)
            return Response(cached, media_type=MEDIA_TYPES[fmt],
                            headers={"X-Tailor-Cache": "hit", "X-Tailor-Sample-Rate": str(output_rate_hz(fmt, rate)),
                                     **extra_headers})

        phonemizer = chain.phonemizer(voice.name)
        family = served.family
        # While it is phonemized (the one wait before admission) the request is a companion-to-be:
        # a worker alone with another request waits out the batch window for it.
        with service.arriving():
            chunks = await anyio.to_thread.run_sync(
                phonemizer.prepare_segments, prepared.segments, family.chunk_limit, family.first_chunk_limit)
            if not chunks:
                raise BadRequest("input has nothing to speak (no pronounceable text)", param="input",
                                 code="empty_input")
            job = service.admit(voice.name, chunks, body.speed, started, served.name)
        released = False
        generator: AsyncGenerator[Any, None] | None = None

        async def release() -> None:
            nonlocal released
            if not released:
                released = True
                service.release(job)
                service.metrics.latency.labels(SPEECH_ROUTE).observe(time.monotonic() - started)

        try:
            generator = _timed(service, service.audio_blocks(job), started, record, rate)
            first = await generator.__anext__()  # errors before the first audio stay JSON errors
            encoder = StreamEncoder(fmt, rate)
            live = generator

            async def close() -> None:
                await live.aclose()
                encoder.abort()
                await release()

            stream = _stream_bytes(first, generator, encoder, record,
                                   lambda data: service.cache.put(key, data))
            if sse:
                return _sse_response(_sse_events(stream, len(text)), close, headers=extra_headers)
            return _ClosingStream(stream, close, media_type=MEDIA_TYPES[fmt],
                                  headers={"X-Tailor-Sample-Rate": str(encoder.output_rate_hz),
                                           "X-Tailor-Cache": "miss", **extra_headers})
        except StopAsyncIteration:
            await release()
            raise EngineFailed("synthesis produced no audio") from None
        except BaseException:
            if generator is not None:
                await generator.aclose()  # cancels queued sentences now, not at garbage collection
            await release()
            raise

    def _sse_response(events: AsyncIterator[bytes], on_close: Callable[[], Any] | None = None,
                      headers: Mapping[str, str] | None = None) -> Response:
        async def nothing() -> None:
            return None

        return _ClosingStream(events, on_close or nothing, media_type="text/event-stream",
                              headers={"Cache-Control": "no-cache", **(headers or {})})

    app.add_middleware(BodyLimitMiddleware, limit_bytes=settings.max_input_chars * 12 + 16384,
                       timeout_s=settings.body_timeout_s)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics, instance_id=service.instance_id)
    return app


async def _timed(
    service: SpeechService, blocks: AsyncGenerator[Any, None], started: float,
    record: AccessRecord | None, rate: int,
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
            if record is not None:
                record.audio_seconds = (record.audio_seconds or 0.0) + len(block) / rate
            yield block
    finally:
        await blocks.aclose()


async def _stream_bytes(
    first: Any, rest: AsyncIterator[Any], encoder: StreamEncoder, record: AccessRecord | None,
    on_complete: Callable[[bytes], Any],
) -> AsyncIterator[bytes]:
    """Encoded audio, block by block; the whole answer goes to ``on_complete`` (the cache)
    when it finished. A failure after the first block raises :class:`StreamCut`."""
    sent: list[bytes] = []

    async def encode(block: Any) -> bytes:
        return encoder.feed(block) if encoder.cheap else await anyio.to_thread.run_sync(encoder.feed, block)

    data = await encode(first)
    if data:
        sent.append(data)
        yield data
    try:
        async for block in rest:
            data = await encode(block)
            if data:
                sent.append(data)
                yield data
    except ApiError as exc:
        _LOG.warning("stream cut after the first audio: %s", exc.message)
        if record is not None:
            record.outcome = f"cut:{exc.code}"
        encoder.abort()
        raise StreamCut(exc) from exc
    tail = encoder.finish() if encoder.cheap else await anyio.to_thread.run_sync(encoder.finish)
    if tail:
        sent.append(tail)
        yield tail
    on_complete(b"".join(sent))


def _sse_event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


async def _sse_events(stream: AsyncIterator[bytes], characters: int) -> AsyncIterator[bytes]:
    """OpenAI's speech SSE: ``speech.audio.delta`` events, then ``speech.audio.done``; a cut
    stream ends with an ``error`` event (OpenAI's error shape) instead of ``done``."""
    samples_bytes = 0
    try:
        async for data in stream:
            samples_bytes += len(data)
            yield _sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except StreamCut as cut:
        yield _sse_event({"type": "error", **cut.error.body()})
        return
    yield _sse_event({"type": "speech.audio.done",
                      "usage": {"input_characters": characters, "output_bytes": samples_bytes}})


async def _sse_cached(data: bytes) -> AsyncIterator[bytes]:
    yield _sse_event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    yield _sse_event({"type": "speech.audio.done", "usage": {"output_bytes": len(data), "cached": True}})


__all__ = ["create_app"]
