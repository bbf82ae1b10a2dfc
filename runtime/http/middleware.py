"""Pure ASGI middleware: request context (id, instance, access log, metrics), API-key check,
request-body size limit and body timeout.

Pure ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through untouched.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from runtime.errors import (
    ApiError,
    BadRequest,
    PayloadTooLarge,
    RequestBodyTimeout,
    StreamCut,
    Unauthorized,
)
from runtime.serving.metrics import RuntimeMetrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KNOWN_ROUTES = frozenset(
    {"/v1/audio/speech", "/v1/audio/captioned_speech", "/dev/captioned_speech", "/v1/models",
     "/v1/audio/voices", "/healthz", "/readyz", "/metrics", "/"}
)
PROTECTED_PREFIXES = ("/v1/", "/dev/")
"""Paths that need the API key when one is set (the page at / and the probes do not)."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays/objects a JSON request body may have (a speech request needs 2)."""
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
CLIENT_CLOSED = 499
"""Status recorded (metrics, access log) when the client went away before the response ended."""
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:/+=@-]{1,128}$")
ACCESS_LOG = logging.getLogger("tailor.access")
_LOG = logging.getLogger("tailor.runtime")


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class AccessRecord:
    """What one request's access line says; the speech route fills in the speech fields."""

    request_id: str
    method: str
    path: str
    started: float
    status: int = 0
    voice: str | None = None
    characters: int | None = None
    audio_seconds: float | None = None
    ttfa_seconds: float | None = None
    response_format: str | None = None
    stream: str | None = None
    outcome: str | None = None
    """Set when a response started as 200 did not end well: ``cut:<code>`` (deadline, engine
    failure, shutdown) after audio was sent."""


def access_record(scope: Scope) -> AccessRecord | None:
    """The access record of a request (None outside the middleware, e.g. in unit tests)."""
    state = scope.get("state")
    record = state.get("tailor_access") if isinstance(state, dict) else None
    return record if isinstance(record, AccessRecord) else None


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name.lower() == b"x-request-id":
            supplied = bytes(value).decode("latin-1").strip()
            if REQUEST_ID_PATTERN.fullmatch(supplied):
                return supplied
    return uuid.uuid4().hex


def status_label(record: AccessRecord) -> str:
    """``tailor_requests_total``'s status: the HTTP status, but ``200_cut`` for a response that
    started as 200 and was cut (its client did not get the whole answer)."""
    if record.outcome is not None and record.outcome.startswith("cut:"):
        return f"{record.status}_cut"
    return str(record.status)


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when ``body`` (JSON text) nests arrays/objects deeper than ``limit`` (brackets inside
    strings do not count). Cheap for ordinary bodies: scanned only with more than ``limit`` brackets."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return False


class RequestContextMiddleware:
    """Outermost layer. For every HTTP request: accepts ``X-Request-ID`` (letters, digits and
    ``._:/+=@-``, at most 128) or generates one; adds ``X-Request-ID`` and ``X-Tailor-Instance``
    to the response; counts it in ``tailor_requests_total`` by route and status, with 499 for a
    client that disconnected before the response was complete and ``200_cut`` for a response cut
    after it started (see :func:`status_label`); writes one JSON access line
    (logger ``tailor.access``) per request - at DEBUG for successful /healthz, /readyz and
    /metrics, which probes and scrapers call every few seconds."""

    def __init__(self, app: ASGIApp, metrics: RuntimeMetrics, instance_id: str) -> None:
        self.app = app
        self.metrics = metrics
        self.instance = instance_id.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        record = AccessRecord(_request_id(scope), str(scope.get("method", "")), path, time.monotonic())
        state = scope.setdefault("state", {})
        if isinstance(state, dict):
            state["tailor_access"] = record
        ended = False
        disconnected = False

        async def tracking_receive() -> Message:
            nonlocal disconnected
            message = await receive()
            if message["type"] == "http.disconnect" and not ended:
                disconnected = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal ended, disconnected
            if message["type"] == "http.response.start":
                record.status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", record.request_id.encode("latin-1")))
                headers.append((b"x-tailor-instance", self.instance))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                ended = True
            try:
                await send(message)
            except OSError:
                disconnected = True
                raise

        try:
            await self.app(scope, tracking_receive, tracking_send)
        except StreamCut:
            # Already logged and recorded; returning without the final body message makes the
            # server close the connection, so the client sees the cut.
            pass
        except Exception as exc:
            if record.status:  # response started: nothing valid can follow
                _LOG.error("request %s failed after the response started: %s: %s",
                           record.request_id, type(exc).__name__, exc)
            else:
                _LOG.exception("request %s: unexpected error", record.request_id)
                try:
                    await send_error(tracking_send, ApiError(f"internal error: {type(exc).__name__}"))
                except OSError:
                    disconnected = True
        finally:
            if disconnected and not ended:
                record.status = CLIENT_CLOSED
            elif not record.status:
                record.status = CLIENT_CLOSED if disconnected else 500
            route = path if path in KNOWN_ROUTES else "/v1/models/{model}" if path.startswith("/v1/models/") else "other"
            self.metrics.requests.labels(route, status_label(record)).inc()
            self._log(record)

    @staticmethod
    def _log(record: AccessRecord) -> None:
        # Probes and scrapes that succeed (every few seconds from a supervisor or Prometheus)
        # log at DEBUG; everything else at INFO.
        level = logging.DEBUG if record.path in OPEN_PATHS and record.status < 400 else logging.INFO
        if not ACCESS_LOG.isEnabledFor(level):
            return
        line: dict[str, Any] = {
            "request_id": record.request_id,
            "method": record.method,
            "path": record.path,
            "status": record.status,
            "latency_s": round(time.monotonic() - record.started, 4),
        }
        for key in ("voice", "characters", "response_format", "stream", "outcome"):
            value = getattr(record, key)
            if value is not None:
                line[key] = value
        if record.audio_seconds is not None:
            line["audio_s"] = round(record.audio_seconds, 3)
        if record.ttfa_seconds is not None:
            line["ttfa_s"] = round(record.ttfa_seconds, 4)
        ACCESS_LOG.log(level, "%s", json.dumps(line, separators=(",", ":")))


class ApiKeyMiddleware:
    """With ``TAILOR_API_KEY`` set, ``/v1/*`` and ``/dev/*`` need ``Authorization: Bearer KEY``."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.key or not str(scope.get("path", "")).startswith(PROTECTED_PREFIXES):
            await self.app(scope, receive, send)
            return
        supplied = b""
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = token.strip()
        if not supplied or not hmac.compare_digest(supplied, self.key):
            await send_error(send, Unauthorized(
                "missing or wrong API key: send 'Authorization: Bearer <TAILOR_API_KEY>'",
                headers={"WWW-Authenticate": "Bearer"},
            ))
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads request bodies up to ``limit_bytes`` (413 beyond) within ``timeout_s`` (408 after)
    and replays them to the app, so a slow or endless body cannot pin a request. A body nested
    deeper than ``MAX_JSON_DEPTH`` is a 400 that says so (the JSON parser would fail on it with
    a recursion error, which reads like an encoding problem)."""

    def __init__(self, app: ASGIApp, limit_bytes: int, timeout_s: float = 15.0) -> None:
        self.app = app
        self.limit_bytes = limit_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(
            f"request body is larger than {self.limit_bytes} bytes; shorten the input",
            code="body_too_large",
        )
        for name, value in scope.get("headers", []):
            if name.lower() == b"content-length" and value.isdigit() and int(value) > self.limit_bytes:
                await send_error(send, too_large)
                return
        body = bytearray()
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                await send_error(send, RequestBodyTimeout(
                    f"request body not received within {self.timeout_s:g} s "
                    f"(TAILOR_BODY_TIMEOUT_S); {len(body)} bytes arrived",
                    headers={"Connection": "close"},
                ))
                return
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > self.limit_bytes:
                await send_error(send, too_large)
                return
            if not message.get("more_body", False):
                break
        if json_depth_exceeds(bytes(body), MAX_JSON_DEPTH):
            await send_error(send, BadRequest(
                f"request body nests too deeply (more than {MAX_JSON_DEPTH} levels of arrays or "
                "objects); a speech request is a flat JSON object", code="invalid_body"))
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
