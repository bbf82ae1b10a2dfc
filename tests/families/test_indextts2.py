"""IndexTTS2 as an engine process: the protocol, the engine server, and the runtime's client.

The serving path is the real one (engine server module, client, supervision, sockets) with the
model-free stand-in adapter in place of IndexTTS2 (no weights or pins here). Unmarked tests run
in process; ``slow`` ones spawn engine processes (a second or so each). Set
TAILOR_TEST_ENGINE_PYTHON to run the engines under another interpreter (e.g. a Python 3.10
venv with only numpy) to check the engine side needs nothing of Tailor's environment.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.errors import BadRequest, StartupError
from runtime.families.indextts2 import protocol, standin
from runtime.families.indextts2.adapter import LoadFailed, VoiceLibrary
from runtime.families.indextts2.client import (
    EngineOptions,
    EngineStartError,
    EngineStreamError,
    EngineUnavailable,
    IndexTTS2Client,
)
from runtime.families.indextts2.loader import load, options_from_settings
from runtime.families.indextts2.server import Engine, bind
from runtime.settings import Settings
from tests.helpers import process_gone, wait_for

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "runtime" / "families" / "indextts2"
ENGINE_PYTHON = os.environ.get("TAILOR_TEST_ENGINE_PYTHON") or sys.executable
TEXT = "Hello there. How are you today?"


def write_voice(path: Path, seconds: float = 0.5) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16000)
        out.writeframes((np.sin(np.arange(int(16000 * seconds)) * 0.05) * 8000).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("indextts2") / "voices"
    directory.mkdir()
    write_voice(directory / "alice.wav")
    write_voice(directory / "bob.wav")
    return directory


# --- protocol ----------------------------------------------------------------------------------

def test_frames_round_trip_over_a_socket() -> None:
    a, b = socket.socketpair()
    with a, b:
        payload = bytes(range(256)) * 10
        protocol.send_frame(a, {"op": "audio", "id": "r1", "samples": 3})
        protocol.send_frame(a, {"op": "end", "text": "héllo 你好"}, payload)
        a.shutdown(socket.SHUT_WR)
        first = protocol.read_frame(b)
        second = protocol.read_frame(b)
        assert first is not None and first.header == {"v": 1, "op": "audio", "id": "r1", "samples": 3}
        assert first.payload == b""
        assert second is not None and second.op == "end" and second.header["text"] == "héllo 你好"
        assert second.payload == payload
        assert protocol.read_frame(b) is None  # a clean end between frames


def _raw(header: bytes, payload: bytes = b"", header_len: int | None = None, payload_len: int | None = None) -> bytes:
    lengths = struct.pack(">II", len(header) if header_len is None else header_len,
                          len(payload) if payload_len is None else payload_len)
    return lengths + header + payload


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x00\x00", "middle of a frame's length prefix"),
    (_raw(b"", header_len=0), "header length 0"),
    (_raw(b"{}", header_len=protocol.MAX_HEADER_BYTES + 1), "header length"),
    (_raw(b"{}", payload_len=protocol.MAX_PAYLOAD_BYTES + 1), "payload length"),
    (_raw(b'{"v":1,"op":"health"}', header_len=40), "middle of a frame's header"),
    (_raw(b"\xff\xfe", ), "not UTF-8 JSON"),
    (_raw(b"not json"), "not UTF-8 JSON"),
    (_raw(b"[1, 2]"), "JSON list, not an object"),
    (_raw(b'{"v":2,"op":"health"}'), "protocol version 2"),
    (_raw(b'{"v":1}'), "no 'op'"),
    (_raw(b'{"v":1,"op":"audio"}', b"abc", payload_len=10), "middle of a frame's payload"),
])
def test_bad_frames_are_protocol_errors(data: bytes, message: str) -> None:
    a, b = socket.socketpair()
    with a, b:
        a.sendall(data)
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(protocol.ProtocolError, match=message):
            protocol.read_frame(b)


def test_pcm_round_trips_in_both_formats_and_cleans_bad_samples() -> None:
    samples = np.array([0.0, 0.5, -0.5, 1.0, -1.0, 0.25], dtype=np.float32)
    for fmt, tolerance in (("f32le", 0.0), ("s16le", 1.0 / 32767)):
        payload = protocol.encode_pcm(samples, fmt)
        back = protocol.decode_pcm(payload, fmt, samples.size)
        assert back.dtype == np.float32
        np.testing.assert_allclose(back, samples, atol=tolerance)
    dirty = protocol.decode_pcm(protocol.encode_pcm(np.array([np.nan, np.inf, 3.0, -7.0]), "f32le"), "f32le", 4)
    assert dirty.tolist() == [0.0, 0.0, 1.0, -1.0]
    with pytest.raises(protocol.ProtocolError, match="declares 5 f32le samples but carries 24 bytes"):
        protocol.decode_pcm(protocol.encode_pcm(samples, "f32le"), "f32le", 5)
    with pytest.raises(protocol.ProtocolError, match="unknown PCM format"):
        protocol.encode_pcm(samples, "mp3")


def test_addresses() -> None:
    assert protocol.parse_address("unix:/run/tailor/e.sock") == ("unix", "/run/tailor/e.sock")
    assert protocol.parse_address("tcp:127.0.0.1:7300") == ("tcp", ("127.0.0.1", 7300))
    for bad in ("unix:relative.sock", "unix:/" + "x" * 120, "tcp:127.0.0.1:0", "tcp:host", "http://x", ""):
        with pytest.raises(ValueError, match=r"engine address|longer than the 107 bytes"):
            protocol.parse_address(bad)


# --- engine side: stand-in, voices, isolation ----------------------------------------------------

def test_standin_follows_its_duration_rule_deterministically() -> None:
    assert standin.sentences(TEXT) == ["Hello there.", "How are you today?"]
    assert standin.expected_samples(TEXT) == 1323 * (12 + 18) + 4410
    parts = list(standin.render(TEXT, "alice"))
    audio = np.concatenate(parts)
    assert audio.size == standin.expected_samples(TEXT)
    assert np.array_equal(audio, np.concatenate(list(standin.render(TEXT, "alice"))))
    assert not np.array_equal(audio, np.concatenate(list(standin.render(TEXT, "bob"))))  # the voice sets the pitch
    assert 0.1 < float(np.abs(audio).max()) <= 1.0
    assert not np.any(parts[1])  # the pause between the sentences is silence
    assert standin.expected_samples("...") == 3 * 1323  # punctuation only: one silent sentence
    bang = "\uff01"  # fullwidth exclamation mark
    assert standin.sentences(f"你好。世界{bang}再见") == ["你好。", f"世界{bang}", "再见"]


def test_voice_library_lists_recordings_and_says_what_it_skipped(tmp_path: Path) -> None:
    write_voice(tmp_path / "alice.wav")
    (tmp_path / "notes.txt").write_text("not a voice")
    (tmp_path / "broken.wav").write_bytes(b"ID3 this is an mp3")
    write_voice(tmp_path / "bad name.wav")
    voices, skipped = VoiceLibrary(tmp_path).scan()
    assert list(voices) == ["alice"]
    assert {(s.file, s.reason.split(" (")[0]) for s in skipped} == {
        ("broken.wav", "not a RIFF/WAVE file"), ("bad name.wav", "the name is not a voice name")}
    with pytest.raises(LoadFailed, match="does not exist; create it"):
        VoiceLibrary(tmp_path / "missing").check()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.wav").write_bytes(b"junk")
    with pytest.raises(LoadFailed, match=r"no usable reference recording .* \(x.wav: not a RIFF/WAVE file\)"):
        VoiceLibrary(empty).check()


ENGINE_MODULES = ("__init__", "protocol", "adapter", "server", "standin", "real")
ENGINE_SIDE_THIRD_PARTY = {"numpy"}
REAL_MODEL_LIBRARIES = {"torch", "indextts"}  # imported inside the real adapter's methods only


def test_the_engine_side_imports_only_the_standard_library_numpy_and_itself() -> None:
    stdlib = set(sys.stdlib_module_names)
    for name in ENGINE_MODULES:
        tree = ast.parse((PACKAGE / f"{name}.py").read_text(encoding="utf-8"))
        allowed = stdlib | ENGINE_SIDE_THIRD_PARTY | (REAL_MODEL_LIBRARIES if name == "real" else set())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level > 0:
                assert node.module in ENGINE_MODULES, f"{name}.py imports .{node.module} (client side)"
                continue
            roots = ([a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import)
                     else [str(node.module).split(".")[0]] if isinstance(node, ast.ImportFrom) else [])
            for root in roots:
                assert root in allowed, f"{name}.py imports {root}: the engine environment does not have it"
        if name == "real":  # model libraries only inside functions: --help works without them
            top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
            assert not any(a.name.split(".")[0] in REAL_MODEL_LIBRARIES for n in top for a in n.names
                           if isinstance(n, ast.Import))
            assert not any(str(n.module).split(".")[0] in REAL_MODEL_LIBRARIES for n in top
                           if isinstance(n, ast.ImportFrom) and n.level == 0)


# --- the real adapter, against stand-ins for the indextts package ----------------------------------
# IndexTTS2 cannot be installed here; these fakes follow its documented interface (index-tts,
# indextts/infer_v2.py) so the adapter's own logic runs: which arguments it passes to which
# version, where it finds the auxiliary models, how it converts and streams the audio.

class NewIndexTTS2:
    """infer_v2.IndexTTS2 as of IndexTTS 2.5: use_qwen_emo, aux_paths, stream_return."""

    def __init__(self, cfg_path: str, model_dir: str, use_fp16: bool = False, device: str | None = None,
                 use_cuda_kernel: bool | None = None, use_deepspeed: bool = False, use_accel: bool = False,
                 use_torch_compile: bool = False, use_qwen_emo: bool = True,
                 aux_paths: dict[str, str] | None = None) -> None:
        self.kwargs = {"cfg_path": cfg_path, "model_dir": model_dir, "use_fp16": use_fp16, "device": device,
                       "use_cuda_kernel": use_cuda_kernel, "use_qwen_emo": use_qwen_emo, "aux_paths": aux_paths}
        self.device = device
        self.use_fp16 = use_fp16 and device != "cpu"
        self.qwen_emo = object() if use_qwen_emo else None
        self.calls: list[dict[str, Any]] = []

    def infer(self, spk_audio_prompt: str, text: str, output_path: str | None, use_emo_text: bool = False,
              verbose: bool = False, stream_return: bool = False, **generation: Any) -> Any:
        import torch

        self.calls.append({"voice": spk_audio_prompt, "text": text, "use_emo_text": use_emo_text,
                           "stream_return": stream_return})
        if text == "OOM":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        def segments() -> Iterator[Any]:
            yield torch.full((1, 100), 16383.5)
            yield torch.zeros(1, 50)  # the silence between segments
            yield torch.full((1, 100), -32767.0)
        return segments()


class OldIndexTTS2:
    """infer_v2.IndexTTS2 of September 2025: no use_qwen_emo, no aux_paths, no stream_return."""

    def __init__(self, cfg_path: str, model_dir: str, use_fp16: bool = False, device: str | None = None,
                 use_cuda_kernel: bool | None = None, use_deepspeed: bool = False) -> None:
        self.device = device
        self.use_fp16 = use_fp16
        self.qwen_emo = object()

    def infer(self, spk_audio_prompt: str, text: str, output_path: str | None, **kwargs: Any) -> Any:
        return 22050, np.full((250, 1), 16383, dtype=np.int16)


def real_adapter(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cls: type, *,
                 aux: bool = True) -> Any:
    import types

    from runtime.families.indextts2.real import AUX_FILES, IndexTTS2Adapter

    module = types.ModuleType("indextts.infer_v2")
    module.IndexTTS2 = cls  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "indextts", types.ModuleType("indextts"))
    monkeypatch.setitem(sys.modules, "indextts.infer_v2", module)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the adapter sets them; keep the test process unchanged
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    (tmp_path / "config.yaml").write_text("gpt: {}\n")
    if aux:
        for key, rel in AUX_FILES.items():
            target = tmp_path / rel
            if key in ("w2v_bert", "bigvgan"):
                target.mkdir(parents=True)
                for name in ("config.json", "bigvgan_generator.pt") if key == "bigvgan" else ("model.safetensors",):
                    (target / name).write_bytes(b"x")
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(b"x")
    return IndexTTS2Adapter(model_dir=tmp_path, cfg_path=tmp_path / "config.yaml", device="cuda:1", fp16=True,
                            emotion=False, cuda_kernel=False, torch_compile=False)


def test_real_adapter_passes_what_the_installed_indextts_accepts_and_streams(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = real_adapter(tmp_path, monkeypatch, NewIndexTTS2)
    details = adapter.load()
    kwargs = adapter._tts.kwargs
    assert (kwargs["use_qwen_emo"], kwargs["use_fp16"], kwargs["device"]) == (False, True, "cuda:1")
    assert kwargs["aux_paths"]["bigvgan"] == str(tmp_path / "hf_cache" / "bigvgan")
    assert (details["emotion_model"], details["fp16_gpt"], details["streams_segments"]) == (False, True, True)
    chunks = list(adapter.synthesize("Hello.", tmp_path / "alice.wav", "en", 1.0))
    assert [c.size for c in chunks] == [100, 50, 100] and all(c.dtype == np.float32 for c in chunks)
    assert chunks[0][0] == pytest.approx(0.5, abs=1e-4) and chunks[2][0] == -1.0
    assert adapter._tts.calls[-1] == {"voice": str(tmp_path / "alice.wav"), "text": "Hello.",
                                      "use_emo_text": False, "stream_return": True}
    from runtime.families.indextts2.adapter import OutOfMemory

    with pytest.raises(OutOfMemory, match="out of GPU memory on a 3-character text"):
        list(adapter.synthesize("OOM", tmp_path / "alice.wav", None, 1.0))


def test_real_adapter_names_missing_auxiliary_models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = real_adapter(tmp_path, monkeypatch, NewIndexTTS2, aux=False)
    with pytest.raises(LoadFailed, match=r"auxiliary models missing .*campplus_cn_common.bin.*ensure_models_available"):
        adapter.load()


def test_real_adapter_serves_an_older_indextts_in_one_chunk_and_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = real_adapter(tmp_path, monkeypatch, OldIndexTTS2, aux=False)  # old versions fetch their own
    details = adapter.load()
    assert details["streams_segments"] is False and details["emotion_model"] is True
    assert "always loads its Qwen emotion model" in details["notes"][0]
    [chunk] = list(adapter.synthesize("Hello.", tmp_path / "alice.wav", None, 1.0))
    assert chunk.shape == (250,) and chunk[0] == pytest.approx(0.5, abs=1e-4)


def test_real_adapter_says_where_indextts_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.families.indextts2.real import IndexTTS2Adapter

    monkeypatch.setitem(sys.modules, "indextts", None)  # import fails, as in an environment without it
    (tmp_path / "config.yaml").write_text("gpt: {}\n")
    adapter = IndexTTS2Adapter(model_dir=tmp_path, cfg_path=tmp_path / "config.yaml", device="cpu", fp16=False,
                               emotion=False, cuda_kernel=False, torch_compile=False)
    with pytest.raises(LoadFailed, match=r"IndexTTS2 is not installed for .*set TAILOR_INDEXTTS2_PYTHON"):
        adapter.load()
    with pytest.raises(LoadFailed, match=r"config .*missing\.yaml does not exist"):
        IndexTTS2Adapter(model_dir=tmp_path, cfg_path=tmp_path / "missing.yaml", device="cpu", fp16=False,
                         emotion=False, cuda_kernel=False, torch_compile=False).load()


# --- the engine server, in process -------------------------------------------------------------

@pytest.fixture
def engine_at(voices_dir: Path) -> Iterator[tuple[str, Engine]]:
    """The real engine server with the stand-in (0.005 s per character), serving in a thread."""
    directory = Path(tempfile.mkdtemp(prefix="itts2-test-", dir="/tmp"))
    address = f"unix:{directory / 'e.sock'}"
    adapter = standin.StandInAdapter(device="cpu", load_delay_s=0.0, char_delay_s=0.005, fail_load=None,
                                     die_on_load=False, crash_on=None)
    engine = Engine(adapter, VoiceLibrary(voices_dir), instance="t", send_timeout_s=5.0)
    server = bind(address)
    server.engine = engine
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield address, engine
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(directory)


def ask(address: str, header: dict[str, Any]) -> list[protocol.Frame]:
    """Every frame the engine answers to one request."""
    frames = []
    with protocol.connect(address, 10.0) as sock:
        protocol.send_frame(sock, header)
        while (frame := protocol.read_frame(sock)) is not None:
            frames.append(frame)
    return frames


def synth(**fields: Any) -> dict[str, Any]:
    return {"op": "synthesize", "id": "t1", "text": TEXT, "voice": "alice", "language": "en", **fields}


def test_engine_reports_loading_then_ready_and_lists_voices(engine_at: tuple[str, Engine]) -> None:
    address, engine = engine_at
    health = ask(address, {"op": "health"})[0].header
    assert (health["state"], health["adapter"], health["pid"]) == ("loading", "standin", os.getpid())
    [refused] = ask(address, {"op": "voices"})
    assert refused.header["code"] == "not_ready" and "loading" in refused.header["message"]
    engine.load()
    health = ask(address, {"op": "health"})[0].header
    assert health["state"] == "ready" and health["sample_rate_hz"] == 22050 and health["busy"] is False
    assert ask(address, {"op": "voices"})[0].header["voices"] == ["alice", "bob"]


def test_engine_streams_audio_then_a_final_message(engine_at: tuple[str, Engine]) -> None:
    address, engine = engine_at
    engine.load()
    for fmt in ("f32le", "s16le"):
        frames = ask(address, synth(format=fmt))
        *audio, end = frames
        assert {f.op for f in audio} == {"audio"} and [f.header["seq"] for f in audio] == list(range(len(audio)))
        samples = np.concatenate([protocol.decode_pcm(f.payload, fmt, f.header["samples"]) for f in audio])
        assert end.op == "end" and end.header["samples"] == samples.size == standin.expected_samples(TEXT)
        assert end.header["duration_s"] == pytest.approx(standin.expected_duration_s(TEXT))


@pytest.mark.parametrize(("fields", "code", "message"), [
    ({"text": "  "}, "bad_request", "'text' must be a non-empty string"),
    ({"voice": "carol"}, "voice_not_found", "no voice 'carol'.*available: alice, bob"),
    ({"language": "fr-FR"}, "unsupported_language", "reads en, zh, not 'fr-FR'"),
    ({"speed": 2.0}, "bad_request", "own pace"),
    ({"speed": 9}, "bad_request", "'speed' must be a number from 0.25 to 4"),
    ({"format": "mp3"}, "bad_request", "'format' must be one of f32le, s16le"),
    ({"wait_s": -1}, "bad_request", "'wait_s'"),
])
def test_engine_refuses_bad_requests_with_a_code(engine_at: tuple[str, Engine], fields: dict[str, Any],
                                                 code: str, message: str) -> None:
    address, engine = engine_at
    engine.load()
    [error] = ask(address, synth(**fields))
    assert error.op == "error" and error.header["code"] == code and error.header["id"] == "t1"
    assert re.search(message, error.header["message"])


def test_engine_answers_garbage_and_unknown_ops_with_protocol_errors(engine_at: tuple[str, Engine]) -> None:
    address, _ = engine_at
    assert ask(address, {"op": "dance"})[0].header["code"] == "protocol_error"
    with protocol.connect(address, 5.0) as sock:
        sock.sendall(_raw(b"[]"))
        reply = protocol.read_frame(sock)
    assert reply is not None and reply.header["code"] == "protocol_error" and "JSON list" in reply.header["message"]


def test_one_synthesis_at_a_time_busy_or_wait(engine_at: tuple[str, Engine]) -> None:
    address, engine = engine_at
    engine.load()
    ended: list[float] = []

    def drain(sock: socket.socket) -> None:
        while (frame := protocol.read_frame(sock)) is not None:
            if frame.op == "end":
                ended.append(time.monotonic())

    with protocol.connect(address, 10.0) as first:
        protocol.send_frame(first, synth(id="long", text="Hello there, a sentence. " * 4))  # ~0.5 s of work
        assert protocol.read_frame(first) is not None  # the first is synthesizing now
        assert ask(address, {"op": "health"})[0].header["busy"] is True  # health still answers
        [busy] = ask(address, synth(id="second"))
        assert busy.header["code"] == "busy" and "synthesizing request 'long'" in busy.header["message"]
        reader = threading.Thread(target=drain, args=(first,))
        reader.start()
        waited = ask(address, synth(id="patient", wait_s=10))  # waits for the lock, then speaks
        reader.join(10)
    assert waited[-1].op == "end" and len(ended) == 1


def test_a_client_that_goes_away_frees_the_engine(engine_at: tuple[str, Engine]) -> None:
    address, engine = engine_at
    engine.load()
    long_text = "A long sentence to speak. " * 20
    with protocol.connect(address, 10.0) as sock:
        protocol.send_frame(sock, synth(text=long_text))
        assert protocol.read_frame(sock) is not None
    started = time.monotonic()
    frames = ask(address, synth(id="next", wait_s=5))
    assert frames[-1].op == "end"
    assert time.monotonic() - started < 2.0  # not the whole abandoned text (~2.6 s of stand-in work)


# --- settings -> engine options ------------------------------------------------------------------

def test_options_come_from_the_runtime_settings(tmp_path: Path) -> None:
    settings = Settings.from_environ({
        "TAILOR_DEVICE": "cuda", "TAILOR_PRECISION": "fp16", "TAILOR_WORKERS": "3", "TAILOR_GPUS": "2",
        "TAILOR_INDEXTTS2_PYTHON": "/opt/indextts2/bin/python", "TAILOR_INDEXTTS2_EMOTION": "on",
        "TAILOR_INDEXTTS2_ARGS": "--cuda-kernel --cfg '/m/my config.yaml'",
        "TAILOR_INDEXTTS2_MAX_RESTARTS": "2"})
    options = options_from_settings(settings, tmp_path)
    assert (options.instances, options.fp16, options.emotion, options.max_restarts) == (3, True, True, 2)
    assert [options.device_for(i) for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert options.voices_dir == tmp_path / "voices"
    command = options.command(2, "unix:/x/e.sock", 99)
    assert command[:3] == ["/opt/indextts2/bin/python", "-m", "tailor_indextts2.server"]
    assert command[-3:] == ["--cuda-kernel", "--cfg", "/m/my config.yaml"]
    assert {"--fp16", "--emotion", "--exit-on-stdin-eof"} <= set(command)
    assert command[command.index("--device") + 1] == "cuda:0"
    defaults = options_from_settings(Settings.defaults(), tmp_path)
    assert (defaults.python, defaults.adapter, defaults.fp16, defaults.instances) == (sys.executable, "real", False, 1)


@pytest.mark.parametrize(("env", "message"), [
    ({"TAILOR_PRECISION": "bf16", "TAILOR_DEVICE": "cuda"}, "fp32, or with its GPT in fp16 on CUDA; not bf16"),
    ({"TAILOR_PRECISION": "fp16"}, "fp16 GPT needs CUDA"),
    ({"TAILOR_INDEXTTS2_ARGS": "--cfg 'unclosed"}, "cannot be split"),
])
def test_options_refuse_what_indextts2_cannot_run(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError, match=message):
        options_from_settings(Settings.from_environ(env), tmp_path)


def test_engine_image_recipe_renders_with_the_pins() -> None:
    from orchestrator.render.templating import render_template

    text = render_template("docker/indextts2-engine.Dockerfile.j2", {
        "version": "9.9.9", "base_image": "python:3.11-slim-bookworm", "requirement": "tailor-deploy[runtime]",
        "torch_build": "cu128", "model_dir": "/models/indextts2", "user": "1000:1000", "port": 8123,
        "engine_venv": "/opt/indextts2", "engine_python": "/opt/indextts2/bin/python"})
    assert "NOT BUILT BY TAILOR'S TESTS" in text and "FROM python:3.11-slim-bookworm" in text
    assert '"torch==2.8.*"' in text and '"transformers==4.52.1"' in text and "sys.version_info[:2] == (3, 11)" in text
    assert "TAILOR_INDEXTTS2_PYTHON=/opt/indextts2/bin/python" in text
    assert "-m tailor_indextts2.server --adapter real --help" in text


# --- the runtime's client, with engine processes ---------------------------------------------------

def options(voices: Path, *extra: str, **overrides: Any) -> EngineOptions:
    fields: dict[str, Any] = {"model_dir": voices.parent, "voices_dir": voices, "adapter": "standin",
                              "python": ENGINE_PYTHON, "extra_args": tuple(extra), "startup_timeout_s": 30.0,
                              "restart_backoff_s": 0.1, "stop_grace_s": 3.0, **overrides}
    return EngineOptions(**fields)


TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def client(voices_dir: Path) -> Iterator[IndexTTS2Client]:
    engine = IndexTTS2Client(options(voices_dir, "--load-delay-s", "0.4", "--char-delay-s", "0.004"))
    started = time.monotonic()
    engine.start()
    TIMINGS["start_s"] = time.monotonic() - started
    yield engine
    engine.close()


def timed(client: IndexTTS2Client, text: str, speed: float = 1.0) -> tuple[float, float, np.ndarray]:
    first = 0.0
    chunks = []
    for chunk in client.stream(text, "alice", "en", speed):
        first = first or time.monotonic()
        chunks.append(chunk)
    return first, time.monotonic(), np.concatenate(chunks)


@pytest.mark.slow
def test_client_waits_for_ready_and_lists_voices(client: IndexTTS2Client) -> None:
    assert TIMINGS["start_s"] >= 0.4  # start() waited for the load
    [status] = client.status()
    assert status["state"] == "ready" and status["restarts"] == 0 and client.ready
    assert client.sample_rate_hz == 22050 and client.languages == ["en", "zh"]
    assert client.voices() == ["alice", "bob"]
    with pytest.raises(BadRequest, match="no voice 'carol'"):
        list(client.stream(TEXT, "carol"))


@pytest.mark.slow
def test_client_streams_the_standin_duration_and_applies_speed(client: IndexTTS2Client) -> None:
    _, _, audio = timed(client, TEXT)
    assert audio.dtype == np.float32 and audio.size == standin.expected_samples(TEXT)
    chunks = list(client.stream(TEXT, "alice", "en", 2.0))
    assert len(chunks) > 2  # streamed, not one block
    assert abs(sum(c.size for c in chunks) - standin.expected_samples(TEXT) / 2) <= len(chunks)


@pytest.mark.slow
def test_concurrent_requests_on_one_instance_never_overlap(client: IndexTTS2Client) -> None:
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            first, done, audio = timed(client, "Twenty characters! " * 3)
            assert audio.size == standin.expected_samples("Twenty characters! " * 3)
            spans.append((first, done))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(spans) == 3
    spans.sort()
    for (_, done), (next_first, _) in itertools.pairwise(spans):
        assert done <= next_first, f"requests overlapped: {spans}"


@pytest.mark.slow
def test_a_crash_mid_stream_ends_the_stream_clearly_and_the_engine_restarts(voices_dir: Path) -> None:
    with IndexTTS2Client(options(voices_dir, "--crash-on", "CRASH", max_restarts=3)) as crashing:
        crashing.start()
        [pid] = crashing.pids()
        received = []
        with pytest.raises(EngineStreamError, match=r"died during request .* after 1 audio chunk\(s\): exit code 70"
                           r"; it is being restarted") as info:
            for chunk in crashing.stream("Please CRASH now. " * 3, "alice"):
                received.append(chunk)
        assert len(received) == 1 and info.value.code == "engine_crashed"
        assert "crashing mid-stream on purpose" in info.value.message  # the engine's last output
        wait_for(lambda: crashing.ready and crashing.pids()[0] != pid, 20, "the engine to restart")
        assert crashing.status()[0]["restarts"] == 1 and process_gone(pid)
        assert np.concatenate(list(crashing.stream(TEXT, "bob"))).size == standin.expected_samples(TEXT)


@pytest.mark.slow
def test_past_its_restarts_the_engine_is_given_up_and_not_ready(voices_dir: Path) -> None:
    with IndexTTS2Client(options(voices_dir, "--crash-on", "CRASH", max_restarts=0)) as crashing:
        crashing.start()
        with pytest.raises(EngineStreamError):
            list(crashing.stream("CRASH", "alice"))
        wait_for(lambda: not crashing.ready, 10, "the engine to be given up")
        with pytest.raises(EngineUnavailable, match=r"gave up after 0 restarts.*exit code 70") as info:
            list(crashing.stream(TEXT, "alice"))
        assert info.value.status_code == 503


@pytest.mark.slow
def test_a_stalled_engine_is_killed_and_restarted(voices_dir: Path) -> None:
    with IndexTTS2Client(options(voices_dir, "--char-delay-s", "2", stall_timeout_s=0.5)) as slow:
        slow.start()
        [pid] = slow.pids()
        with pytest.raises(EngineStreamError, match=r"sent nothing for 0\.5 s"):
            list(slow.stream(TEXT, "alice"))
        wait_for(lambda: slow.ready and slow.pids()[0] != pid, 20, "the engine to restart")


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "expected"), [
    (("--fail-load", "gpt.pth is missing from /models/indextts2"),
     r"did not start: the model failed to load: gpt.pth is missing from /models/indextts2"),
    (("--die-on-load",), r"exited while starting \(exit code 71\)(.|\n)*dying while loading"),
    (("--no-such-flag",), r"exited while starting \(exit code 2\)(.|\n)*unrecognized arguments: --no-such-flag"),
])
def test_a_failed_start_names_its_cause(voices_dir: Path, extra: tuple[str, ...], expected: str) -> None:
    with pytest.raises(EngineStartError, match=expected) as info:
        load(voices_dir.parent, options(voices_dir, *extra))
    assert "hint:" in str(info.value) and "TAILOR_INDEXTTS2_PYTHON" in info.value.hint


@pytest.mark.slow
def test_the_engine_dies_with_the_runtime_on_kill_9(voices_dir: Path) -> None:
    script = (
        "import sys; from pathlib import Path\n"
        "from runtime.families.indextts2.client import IndexTTS2Client, EngineOptions\n"
        f"c = IndexTTS2Client(EngineOptions(model_dir=Path({str(voices_dir.parent)!r}), "
        f"voices_dir=Path({str(voices_dir)!r}), adapter='standin', python={ENGINE_PYTHON!r}))\n"
        "c.start(); print(c.pids()[0], c.workdir, flush=True); sys.stdin.read()\n")
    with subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, text=True) as parent:
        assert parent.stdout is not None
        line = parent.stdout.readline().split()
        engine_pid, workdir = int(line[0]), Path(line[1])
        assert not process_gone(engine_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        try:
            wait_for(lambda: process_gone(engine_pid), 10, f"engine pid {engine_pid} to die with its parent")
        finally:
            if not process_gone(engine_pid):
                os.kill(engine_pid, signal.SIGKILL)
    shutil.rmtree(workdir, ignore_errors=True)  # the parent could not clean up after kill -9


def test_settings_reject_a_bad_adapter() -> None:
    from runtime.settings import SettingsError

    with pytest.raises(SettingsError, match="TAILOR_INDEXTTS2_ADAPTER='fake' is invalid: expected one of real, standin"):
        Settings.from_environ({"TAILOR_INDEXTTS2_ADAPTER": "fake"})
