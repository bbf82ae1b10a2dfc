"""The HTTP app: ``create_app(settings, engine_factory=...)``.

Routes: ``POST /v1/audio/speech`` (OpenAI shape; the work is in ``runtime.http.speech``),
``POST /v1/audio/captioned_speech`` (and Kokoro-FastAPI's ``/dev/captioned_speech``: audio plus
word timestamps), ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /v1/audio/voices``, ``GET /``
(a small page to try the voices),
``GET /healthz`` (alive), ``GET /readyz`` (200 once loaded and warmed up; 503 before and while
draining), ``GET /metrics`` (Prometheus text). Every error is OpenAI-style JSON
(``{"error": {"message", "type", "code", "param"}}``); FastAPI's 422 becomes 400.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio
from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime import __version__
from runtime.audio.encode import MEDIA_TYPES
from runtime.engines import create_engine
from runtime.errors import ApiError, BadRequest, MethodNotAllowed, NotFound
from runtime.families.base import EngineFactory
from runtime.families.spec import FamilySpec
from runtime.families.voices import OPENAI_VOICES
from runtime.http.middleware import ApiKeyMiddleware, BodyLimitMiddleware, RequestContextMiddleware
from runtime.http.openapi import CAPTIONED_SCHEMA, describe_api
from runtime.http.page import add_page
from runtime.http.schemas import (
    OPENAI_MODELS,
    SNAPSHOT_PATTERN,
    CaptionedSpeechRequest,
    SpeechRequest,
    is_openai_model,
    validation_error,
)
from runtime.http.speech import SPEECH_ROUTE, captioned_speech, speech
from runtime.serving.memory import process_rss_bytes
from runtime.serving.metrics import CONTENT_TYPE
from runtime.serving.service import SpeechService
from runtime.settings import Settings

_LOG = logging.getLogger("tailor.runtime")
CAPTIONED_ROUTE = "/v1/audio/captioned_speech"
KOKORO_CAPTIONED_ROUTE = "/dev/captioned_speech"


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers)


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
        version=__version__,
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
        message, param = validation_error(exc.errors())
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

    @app.get("/v1/models/{model_id}", summary="One accepted model name (OpenAI's retrieve model).",
             responses={404: {"description": "No such model"}})
    async def model(model_id: Annotated[str, Path(examples=["tts-1", "gpt-4o-mini-tts"])]) -> dict[str, Any]:
        rows: dict[str, dict[str, Any]] = {row["id"]: row for row in (await models())["data"]}
        if model_id in rows:
            return rows[model_id]
        if is_openai_model(model_id):  # a dated snapshot: served as its OpenAI name is
            family = service.model_map.get(model_id, service.primary.name)
            served = service.families[family]
            return {"id": model_id, "object": "model", "created": 0, "owned_by": "tailor", "family": family,
                    "variant": served.catalog[served.default_voice].variant, "kind": "openai"}
        raise NotFound(f"the model {model_id!r} does not exist; GET /v1/models lists the accepted names",
                       param="model", code="model_not_found")

    @app.post(
        SPEECH_ROUTE,
        summary="Text to speech (OpenAI-compatible).",
        response_class=Response,
        responses={200: {"content": {m: {} for m in MEDIA_TYPES.values()}},
                   400: {"description": "Invalid request"}, 413: {"description": "Input too long"},
                   429: {"description": "Queue full"}, 503: {"description": "Not ready"},
                   504: {"description": "Timed out"}},
    )
    async def speech_route(body: SpeechRequest, request: Request) -> Response:
        return await speech(service, settings, body, request)

    async def captioned(body: CaptionedSpeechRequest, request: Request) -> JSONResponse:
        return await captioned_speech(service, settings, body, request, CAPTIONED_ROUTE)

    app.add_api_route(CAPTIONED_ROUTE, captioned, methods=["POST"], response_class=JSONResponse,
                      summary="Speech with word-level timestamps (the audio base64 in JSON).",
                      responses={200: {"content": {"application/json": {"schema": CAPTIONED_SCHEMA}}}})
    # Kokoro-FastAPI's path for the same thing, for its clients.
    app.add_api_route(KOKORO_CAPTIONED_ROUTE, captioned, methods=["POST"], response_class=JSONResponse,
                      include_in_schema=False)
    add_page(app)

    app.add_middleware(BodyLimitMiddleware, limit_bytes=settings.max_input_chars * 12 + 16384,
                       timeout_s=settings.body_timeout_s)
    app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key)
    app.add_middleware(RequestContextMiddleware, metrics=service.metrics, instance_id=service.instance_id)
    return app


__all__ = ["create_app"]
