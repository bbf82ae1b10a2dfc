"""The wire format between the runtime and an engine process: frames, messages, PCM.

Imported by both sides, so it needs only the standard library and numpy, and runs on
Python 3.10. See the package docstring for the protocol itself.
"""

from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

VERSION = 1
"""Protocol version, sent as ``"v"`` in every header; a peer speaking another one is refused."""

PREFIX = struct.Struct(">II")
"""Header length, payload length: unsigned 32-bit, big-endian."""
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 64 << 20

FORMATS: dict[str, np.dtype[Any]] = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}
"""PCM sample formats an ``audio`` frame may carry (mono, little-endian)."""

ERROR_CODES = frozenset({
    "protocol_error",       # a frame or header the engine could not read
    "bad_request",          # a well-formed request with a bad field (empty text, speed out of range)
    "not_ready",            # the model is loading or failed to load (the message says which)
    "busy",                 # another synthesis holds this engine for longer than the request's wait_s
    "voice_not_found",      # no reference recording of that name in the voices directory
    "unsupported_language",
    "out_of_memory",        # the model ran out of (GPU) memory on this request
    "synthesis_failed",     # the model raised; the message has its error
    "internal_error",
})


class ProtocolError(Exception):
    """A frame that cannot be read: truncated, oversized, not a JSON object, wrong version."""


@dataclass(frozen=True)
class Frame:
    header: dict[str, Any]
    payload: bytes = b""

    @property
    def op(self) -> str:
        return str(self.header["op"])


def encode_frame(header: dict[str, Any], payload: bytes = b"") -> bytes:
    """One frame: the 8-byte prefix, the header as compact UTF-8 JSON (``v`` added), the payload."""
    body = json.dumps({"v": VERSION, **header}, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(body) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(body)} bytes exceeds the limit of {MAX_HEADER_BYTES}")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the limit of {MAX_PAYLOAD_BYTES}")
    return PREFIX.pack(len(body), len(payload)) + body + payload


def send_frame(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    sock.sendall(encode_frame(header, payload))


def _recv_exact(sock: socket.socket, count: int, what: str) -> bytes | None:
    """``count`` bytes, or None at a clean end of stream before the first one. Raises
    ProtocolError when the stream ends part-way (socket timeouts propagate as TimeoutError)."""
    chunks = bytearray()
    while len(chunks) < count:
        data = sock.recv(min(count - len(chunks), 1 << 20))
        if not data:
            if not chunks:
                return None
            raise ProtocolError(f"connection closed in the middle of a frame's {what} "
                                f"({len(chunks)} of {count} bytes)")
        chunks += data
    return bytes(chunks)


def decode_header(raw: bytes) -> dict[str, Any]:
    """A header's JSON object, checked for version and ``op``."""
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"frame header is not UTF-8 JSON: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"frame header is a JSON {type(header).__name__}, not an object")
    if header.get("v") != VERSION:
        raise ProtocolError(f"protocol version {header.get('v')!r} is not the supported {VERSION}: "
                            "the engine and the runtime come from different Tailor versions")
    if not isinstance(header.get("op"), str):
        raise ProtocolError("frame header has no 'op' string")
    return header


def read_frame(sock: socket.socket) -> Frame | None:
    """The next frame, or None when the peer closed the connection between frames."""
    prefix = _recv_exact(sock, PREFIX.size, "length prefix")
    if prefix is None:
        return None
    header_len, payload_len = PREFIX.unpack(prefix)
    if header_len == 0 or header_len > MAX_HEADER_BYTES:
        raise ProtocolError(f"frame header length {header_len} is outside 1-{MAX_HEADER_BYTES}")
    if payload_len > MAX_PAYLOAD_BYTES:
        raise ProtocolError(f"frame payload length {payload_len} exceeds {MAX_PAYLOAD_BYTES}")
    raw = _recv_exact(sock, header_len, "header")
    if raw is None:
        raise ProtocolError("connection closed after a frame's length prefix")
    header = decode_header(raw)
    payload = b""
    if payload_len:
        data = _recv_exact(sock, payload_len, "payload")
        if data is None:
            raise ProtocolError("connection closed before a frame's payload")
        payload = data
    return Frame(header, payload)


def encode_pcm(samples: np.ndarray, fmt: str) -> bytes:
    """Float samples in [-1, 1] as ``fmt`` bytes (non-finite values become 0, peaks are clipped)."""
    audio = np.nan_to_num(np.asarray(samples, dtype=np.float32).reshape(-1), nan=0.0, posinf=0.0, neginf=0.0)
    audio = np.clip(audio, -1.0, 1.0)
    if fmt == "f32le":
        return audio.astype("<f4").tobytes()
    if fmt == "s16le":
        return np.round(audio * 32767.0).astype("<i2").tobytes()
    raise ProtocolError(f"unknown PCM format {fmt!r}; expected one of {', '.join(FORMATS)}")


def decode_pcm(payload: bytes, fmt: str, samples: int) -> np.ndarray:
    """An ``audio`` frame's payload as float32 mono, checked against its declared sample count."""
    dtype = FORMATS.get(fmt)
    if dtype is None:
        raise ProtocolError(f"unknown PCM format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if len(payload) != samples * dtype.itemsize:
        raise ProtocolError(f"audio frame declares {samples} {fmt} samples but carries {len(payload)} bytes")
    data: np.ndarray = np.frombuffer(payload, dtype=dtype).astype(np.float32)
    if fmt == "s16le":
        data /= 32767.0
    return data


def parse_address(address: str) -> tuple[str, Any]:
    """``unix:/path/engine.sock`` -> ("unix", path); ``tcp:127.0.0.1:7300`` -> ("tcp", (host, port))."""
    kind, sep, rest = address.partition(":")
    if sep and kind == "unix" and rest.startswith("/"):
        if len(rest.encode()) > 107:
            raise ValueError(f"socket path {rest!r} is longer than the 107 bytes a Unix socket allows; "
                             "use a shorter directory")
        return "unix", rest
    if sep and kind == "tcp":
        host, colon, port = rest.rpartition(":")
        if colon and host and port.isdigit() and 0 < int(port) < 65536:
            return "tcp", (host, int(port))
    raise ValueError(f"engine address {address!r} is not unix:/ABSOLUTE/PATH or tcp:HOST:PORT")


def connect(address: str, timeout_s: float) -> socket.socket:
    """A connected socket to an engine at ``address`` (see :func:`parse_address`)."""
    kind, where = parse_address(address)
    family = socket.AF_UNIX if kind == "unix" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        sock.connect(where)
    except BaseException:
        sock.close()
        raise
    return sock
