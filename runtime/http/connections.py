"""Connection limits uvicorn does not have: a header timeout and a connection cap with a JSON
answer. Idle keep-alive connections use uvicorn's own ``timeout_keep_alive``; request bodies are
timed by ``BodyLimitMiddleware``.

* Header timeout (``TAILOR_HEADER_TIMEOUT_S``): from the moment a connection opens, or the first
  byte of a further request on a kept-alive connection, the client has this long to complete
  the request line and headers; then the connection is closed. A client that connects and sends
  nothing, or trickles a header, cannot hold a connection.
* Connection cap (``TAILOR_MAX_CONNECTIONS``): a connection beyond the cap is answered at once
  with ``503`` and an OpenAI-style JSON error, then closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

_LOG = logging.getLogger("tailor.runtime")
REFUSED_LINGER_S = 1.0


def _over_capacity_response(limit: int, instance_id: str) -> bytes:
    body = json.dumps({"error": {
        "message": f"too many open connections (TAILOR_MAX_CONNECTIONS={limit}); retry shortly",
        "type": "server_error", "code": "too_many_connections", "param": None}}).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "retry-after: 1\r\n"
        f"x-tailor-instance: {instance_id}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def protocol_class(header_timeout_s: float, max_connections: int, instance_id: str) -> type[H11Protocol]:
    """An h11 protocol class with the header timeout and the connection cap."""

    class LimitedH11Protocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None
        _refused = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if len(self.connections) >= max_connections:
                self._refused = True
                _LOG.warning("connection refused: %d open (TAILOR_MAX_CONNECTIONS)", len(self.connections))
                writer: Any = transport
                writer.write(_over_capacity_response(max_connections, instance_id))
                # Half-close, read and drop what the client still sends, close a moment later:
                # closing with unread request bytes would reset the connection and could
                # destroy the 503 before the client reads it.
                if writer.can_write_eof():
                    writer.write_eof()
                asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.close)
                return
            super().connection_made(transport)  # type: ignore[arg-type]
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._refused:
                return
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._header_timer is None and self._between_requests():
                self._arm()  # a new request starts on a kept-alive connection
            super().data_received(data)
            if not self._between_requests():
                self._disarm()  # headers complete: the request is the app's now

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout_s, self._header_timeout)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _header_timeout(self) -> None:
            self._header_timer = None
            if self._between_requests() and not self.transport.is_closing():
                _LOG.info("closing a connection that sent no complete request headers within %g s "
                          "(TAILOR_HEADER_TIMEOUT_S)", header_timeout_s)
                self.transport.close()

    return LimitedH11Protocol
