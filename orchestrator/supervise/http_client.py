"""The supervisor's HTTP calls to the runtime (standard library only): readiness and a sample synthesis."""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from urllib.parse import urlsplit

from orchestrator.errors import LaunchError, UsageError
from orchestrator.supervise.supervisor import HealthResult

SAMPLE_TEXT = "Hello from Tailor. This voice runs on your own hardware."
_FORMATS = {".wav": "wav", ".mp3": "mp3", ".flac": "flac", ".opus": "opus", ".ogg": "opus", ".pcm": "pcm",
            ".aac": "aac"}


def _connection(url: str, timeout_s: float) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"{url} is not an http:// URL", "the runtime serves plain HTTP on loopback")
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)


def check_ready(url: str, timeout_s: float = 3.0) -> HealthResult:
    """GET ``/readyz``: ok on HTTP 200 (model loaded and warmed up)."""
    conn = _connection(url, timeout_s)
    try:
        conn.request("GET", "/readyz")
        resp = conn.getresponse()
        body = resp.read(300).decode("utf-8", errors="replace").strip()
    except (OSError, http.client.HTTPException) as exc:
        reason = "connection refused" if isinstance(exc, ConnectionRefusedError) else (
            "timed out" if isinstance(exc, (socket.timeout, TimeoutError)) else f"{type(exc).__name__}: {exc}")
        return HealthResult(False, f"GET /readyz: {reason}")
    finally:
        conn.close()
    if resp.status == 200:
        return HealthResult(True, "GET /readyz 200")
    return HealthResult(False, f"GET /readyz {resp.status}" + (f": {body[:120]}" if body else ""))


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
                  timeout_s: float = 120.0) -> int:
    """POST ``/v1/audio/speech`` and write the audio to ``path``; returns the byte count."""
    fmt = audio_format_for(path)
    body = json.dumps({"model": "tts-1", "input": text, "voice": "alloy", "response_format": fmt}).encode()
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    conn = _connection(url, timeout_s)
    try:
        conn.request("POST", "/v1/audio/speech", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise LaunchError(f"POST {url}/v1/audio/speech failed: {exc}", "see `deploy logs`") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise LaunchError(f"POST {url}/v1/audio/speech answered {resp.status}: "
                          f"{data[:300].decode('utf-8', errors='replace')}", "see `deploy logs`")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}", "pick a writable path for --synthesize-to") from exc
    return len(data)
