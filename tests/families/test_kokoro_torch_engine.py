"""The torch Kokoro engine's per-chunk inputs (its CUDA model is not on this machine: a stand-in
``KModel`` on the CPU records what it is given)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from runtime.engines.base import EngineError, EngineOptions
from runtime.families.kokoro.phonemes import MAX_TOKENS, PAD
from runtime.families.kokoro.torch_engine import KokoroTorchVoice
from runtime.families.kokoro.voices import StyleVoice
from runtime.text.frontend import TextChunk

torch = pytest.importorskip("torch")


class RecordingModel:
    def __init__(self, durations: bool) -> None:
        self.durations = durations
        self.calls: list[tuple[list[int], Any, float]] = []

    def forward_with_tokens(self, tokens: Any, style: Any, speed: float) -> Any:
        self.calls.append((tokens[0].tolist(), style, speed))
        n = tokens.shape[1]
        wave = torch.ones(n * 4)
        return (wave, torch.full((n,), 4.0)) if self.durations else wave


def voice(model: RecordingModel, precision: str = "fp32") -> KokoroTorchVoice:
    styles = np.arange(3 * 256, dtype=np.float32).reshape(3, 256)
    engine = KokoroTorchVoice(model, StyleVoice("af_test", styles, "package"),
                              EngineOptions(device="cuda", precision=precision))
    engine._device = "cpu"  # the stand-in runs where this machine can
    return engine


def test_each_chunk_is_padded_capped_and_styled_for_its_length() -> None:
    model = RecordingModel(durations=False)
    long = tuple(range(1, MAX_TOKENS + 20))
    audio = voice(model).synthesize([TextChunk("a", (5, 6)), TextChunk("b", long)], [1.0, 1.5])
    assert [a.size for a in audio] == [4 * 4, (MAX_TOKENS + 2) * 4]
    (first, style1, speed1), (second, style2, speed2) = model.calls
    assert first == [PAD, 5, 6, PAD] and (speed1, speed2) == (1.0, 1.5)
    assert second == [PAD, *long[:MAX_TOKENS], PAD]
    assert style1.dtype == torch.float32 and float(style1[0, 0]) == 256.0  # row 2 - 1 for two ids
    assert float(style2[0, 0]) == 512.0  # the last row for a capped chunk


def test_fp16_styles_and_no_phonemes() -> None:
    model = RecordingModel(durations=False)
    engine = voice(model, precision="fp16")
    engine.synthesize([TextChunk("a", (5,))], [1.0])
    assert model.calls[0][1].dtype == torch.float16
    with pytest.raises(ValueError, match="no phonemes"):
        engine.synthesize([TextChunk("?", ())], [1.0])
    with pytest.raises(ValueError, match="no phonemes"):
        engine.synthesize_timed(TextChunk("?", ()), 1.0)


def test_timed_chunk_reads_the_models_durations() -> None:
    timed = voice(RecordingModel(durations=True)).synthesize_timed(TextChunk("a", (5, 6, 7)), 1.0)
    assert timed.audio.size == 5 * 4
    assert list(timed.id_samples) == [4] * 5
    with pytest.raises(EngineError, match="returns no durations"):
        voice(RecordingModel(durations=False)).synthesize_timed(TextChunk("a", (5,)), 1.0)
