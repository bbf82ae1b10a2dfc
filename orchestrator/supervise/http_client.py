"""The supervisor's HTTP calls to the runtime, through httpx: readiness and a sample synthesis."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from orchestrator.errors import LaunchError, UsageError

SAMPLE_TEXT = "Hello from Tailor. This voice runs on your own hardware."
_FORMATS = {".wav": "wav", ".mp3": "mp3", ".flac": "flac", ".opus": "opus", ".ogg": "opus", ".pcm": "pcm",
            ".aac": "aac"}


def _endpoint(url: str, path: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"{url} is not an http:// URL", "the runtime serves plain HTTP on loopback")
    return url.rstrip("/") + path


def _failure(exc: Exception) -> str:
    """Why a request got no answer, in a few words."""
    if isinstance(exc, httpx.ConnectError) and "refused" in str(exc).lower():
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class HealthResult:
    """One readiness check: did this deployment's own runtime answer ready, and what it said."""
    ok: bool
    detail: str



INSTANCE_HEADER = "X-Tailor-Instance"


@dataclass(frozen=True)
class RuntimeView:
    """The runtime's own account of itself (``GET /readyz``), as ``deploy status`` shows it."""

    reachable: bool
    ready: bool
    instance: str
    """What the answering server says it is ("" when it did not say: not a Tailor runtime of this version)."""
    detail: str
    """``GET /readyz 200`` / ``connection refused`` / ``GET /readyz 503``."""
    body: Mapping[str, Any]
    """The /readyz JSON body (state, engine, workers, queue_depth, reason...); empty when none."""

    def ours(self, expected_instance: str) -> bool:
        return not expected_instance or self.instance == expected_instance

    def summary(self) -> str:
        """One line: ``ready, model piper, engine onnx:en_US-joe-medium, 2 workers, queue 0`` (the model
        family or families the runtime serves, as its /readyz reports them)."""
        if not self.reachable:
            return f"not answering ({self.detail})"
        b = self.body
        state = str(b.get("state") or b.get("status") or ("ready" if self.ready else "not ready"))
        parts = [state]
        if b.get("reason"):
            parts[0] += f" ({b['reason']})"
        models = b.get("models")
        if isinstance(models, list) and len(models) > 1:
            parts.append("models " + ", ".join(str(m) for m in models))
        elif b.get("model"):
            parts.append(f"model {b['model']}")
        if b.get("engine"):
            parts.append(f"engine {b['engine']}")
        if isinstance(b.get("workers"), int):
            parts.append(f"{b['workers']} workers")
        if isinstance(b.get("queue_depth"), int):
            parts.append(f"queue {b['queue_depth']}")
        if isinstance(b.get("in_flight"), int):
            parts.append(f"in flight {b['in_flight']}")
        return ", ".join(parts)


def fetch_readiness(url: str, timeout_s: float = 3.0) -> RuntimeView:
    """``GET /readyz`` and the identity the answering server gives (header, else body)."""
    endpoint = _endpoint(url, "/readyz")
    try:
        resp = httpx.get(endpoint, timeout=timeout_s, trust_env=False)
    except (httpx.HTTPError, OSError) as exc:
        return RuntimeView(False, False, "", f"GET /readyz: {_failure(exc)}", {})
    raw = resp.content[:64 * 1024]
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    instance = resp.headers.get(INSTANCE_HEADER) or str(body.get("instance") or "")
    detail = f"GET /readyz {resp.status_code}"
    if resp.status_code != 200:
        reason = body.get("reason") or body.get("state") or raw[:120].decode("utf-8", errors="replace").strip()
        if reason:
            detail += f": {reason}"
    return RuntimeView(True, resp.status_code == 200, instance, detail, body)


def check_ready(url: str, instance_id: str = "", timeout_s: float = 3.0) -> HealthResult:
    """Ready means: ``/readyz`` 200 from the server that carries this launch's ``instance_id``.

    Another server answering on the port (another deployment, any other program) is never
    counted as ready, whatever it answers.
    """
    view = fetch_readiness(url, timeout_s)
    if not view.reachable:
        return HealthResult(False, view.detail)
    if not view.ours(instance_id):
        who = f"instance {view.instance}" if view.instance else "a server that gives no Tailor instance id"
        return HealthResult(False, f"port answered by another server ({who}; this launch is instance {instance_id})")
    if view.ready:
        return HealthResult(True, "GET /readyz 200" + (f" from instance {instance_id}" if instance_id else ""))
    return HealthResult(False, view.detail)


def audio_format_for(path: Path) -> str:
    """Response format from the file suffix; ``wav`` when there is none."""
    suffix = path.suffix.lower()
    if not suffix:
        return "wav"
    try:
        return _FORMATS[suffix]
    except KeyError:
        raise UsageError(f"cannot tell the audio format of {path} from its suffix {suffix!r}",
                         "use one of " + ", ".join(sorted(_FORMATS))) from None


def synthesize_to(url: str, path: Path, text: str = SAMPLE_TEXT, *, api_key: str = "",
                  timeout_s: float = 120.0, logs_hint: str = "see `deploy logs`") -> int:
    """POST ``/v1/audio/speech`` and write the audio to ``path``; returns the byte count."""
    fmt = audio_format_for(path)
    body = {"model": "tts-1", "input": text, "voice": "alloy", "response_format": fmt}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    endpoint = _endpoint(url, "/v1/audio/speech")
    try:
        resp = httpx.post(endpoint, json=body, headers=headers, timeout=timeout_s, trust_env=False)
    except (httpx.HTTPError, OSError) as exc:
        raise LaunchError(f"POST {url}/v1/audio/speech failed: {_failure(exc)}", logs_hint) from exc
    data = resp.content
    if resp.status_code != 200:
        raise LaunchError(f"POST {url}/v1/audio/speech answered {resp.status_code}: "
                          f"{data[:300].decode('utf-8', errors='replace')}", logs_hint)
    if fmt == "wav":  # the server streams (length 'unknown'); the file is whole: real lengths
        from runtime.audio.encode import wav_with_length

        data = wav_with_length(data)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", "pick a writable path for --synthesize-to") from exc
    return len(data)
