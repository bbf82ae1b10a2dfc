"""IndexTTS2 as its own engine process, served by the runtime one request at a time per process.

IndexTTS2's code pins Python < 3.12, torch 2.8.* and transformers 4.52.1, and one loaded model
is not safe to call concurrently. So the model runs in an engine process with its own
interpreter (a venv or a container), and the runtime talks to it over a local socket.

Modules
    protocol   the wire format (both sides; standard library and numpy, Python >= 3.10)
    adapter    the adapter interface and the voices directory (engine side)
    server     the engine process: ``python -m tailor_indextts2.server --adapter real|standin ...``
    real       the IndexTTS2 adapter (indextts.infer_v2.IndexTTS2; engine environment only)
    standin    a model-free adapter with the same interface, for tests
    client     the runtime side: spawns, supervises and streams from engine processes
    loader     ``load(model_dir, options) -> IndexTTS2Client``

The engine side (protocol, adapter, server, real, standin, and this file) imports nothing from
Tailor: the client runs it as the package ``tailor_indextts2`` (a link to this directory in a
private directory that is the child's only PYTHONPATH entry and its working directory).

Engine protocol, version 1
--------------------------
Transport: a Unix stream socket (``--listen unix:/PATH``; the file is created mode 0600 inside
a 0700 directory, so only the runtime's user can connect, and no port can collide), or TCP
(``--listen tcp:HOST:PORT``) where a socket file cannot be shared. One connection carries one
request and its replies; the engine serves connections in threads, so health and voices are
answered while a synthesis runs.

Framing: every message is a frame

    uint32 header_length | uint32 payload_length | header | payload     (big-endian lengths)

where the header is a UTF-8 JSON object with ``"v": 1`` and an ``"op"``, and the payload is
raw bytes (only ``audio`` frames have one). Header at most 1 MiB, payload at most 64 MiB; a
frame cut short, oversized, not a JSON object, or of another version is a protocol error.
Length-prefixed frames rather than HTTP over the socket: the engine side stays in the standard
library with nothing to parse but two integers and one JSON object, binary PCM travels without
an encoding, each chunk carries its own header, and an error after audio has started is an
ordinary final message instead of a broken chunked response.

Requests (runtime -> engine) and their replies:

``{"op": "health"}``
    -> ``{"op": "health", "state": "loading" | "ready" | "failed", "reason": str | null,
    "adapter", "instance", "pid", "sample_rate_hz", "languages": [...], "native_speed": bool,
    "busy": bool, "current": request id | null, "load_s", "details": {...}}``.
    The socket is bound before the model loads, so ``loading`` is answered at once.

``{"op": "voices"}``
    -> ``{"op": "voices", "voices": [names], "skipped": [{"file", "reason"}]}``. A voice is a
    reference recording ``NAME.wav`` in the voices directory, read on every request.

``{"op": "synthesize", "id": str, "text": str, "voice": str, "language": str | null,
"speed": 1.0, "format": "f32le" | "s16le", "wait_s": 0}``
    -> zero or more ``{"op": "audio", "id", "seq", "samples": n, "format"}`` frames, each with
    n mono PCM samples as payload, then exactly one final message: ``{"op": "end", "id",
    "sample_rate_hz", "samples", "duration_s", "synthesis_s"}`` or ``{"op": "error", "id",
    "code", "message"}``. One synthesis runs at a time: a request arriving while another holds
    the engine waits up to ``wait_s`` seconds, then gets ``busy``. ``speed`` must be 1 unless
    health says ``native_speed`` (IndexTTS2 has no speed control; the client time-stretches).
    Closing the connection abandons the synthesis (at its next chunk).

Any request may instead get ``{"op": "error", ...}``; codes: protocol_error, bad_request,
not_ready, busy, voice_not_found, unsupported_language, out_of_memory, synthesis_failed,
internal_error (:data:`protocol.ERROR_CODES`).

Lifetime: the client starts the engine as its child with ``--parent-pid`` (the engine sets
PR_SET_PDEATHSIG to SIGKILL, so it dies with the runtime even on kill -9) and
``--exit-on-stdin-eof`` (the runtime holds the engine's stdin; its end of file stops the
engine cleanly). SIGTERM stops it (exit 0); a load failure is reported as ``failed`` for
``--failed-exit-s``, then the engine exits 3.
"""
