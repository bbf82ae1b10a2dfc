"""Kokoro-82M's word timestamps from its own duration predictor (the packaged int8 model, for real).

The engine's frames per token add up to the audio (600 samples a frame) and do not change the audio;
captioned speech gives the words in order, and against the audio it returns: words separated by
SSML pauses start right after each silence, every word's span is sound, and what follows the last
word is the model's trailing silence. Families without durations keep their 400 (test_family_seam,
test_timestamps).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from runtime.text.timestamps import chunk_words
from tests.runtime.test_timestamps import silences, voiced

pytestmark = pytest.mark.slow

FRAME = 600
"""Samples per duration frame (measured: 25 ms at 24 kHz)."""


def kokoro_vocab() -> dict[str, int]:
    import json

    from runtime.families.kokoro import assemble

    data = json.loads(assemble.data_file("vocab.json").read_text(encoding="utf-8"))
    return {str(k): int(v) for k, v in data.get("vocab", data).items()}


def test_durations_add_up_to_the_audio_and_leave_it_unchanged(kokoro_models: Path) -> None:
    from runtime.engines.base import EngineOptions
    from runtime.families.kokoro.onnx_engine import KokoroSession
    from runtime.families.kokoro.phonemes import KokoroFrontEnd
    from runtime.families.kokoro.voices import packaged_voices

    model = str(next(kokoro_models.glob("kokoro-82m/packaged/*.onnx")))
    session = KokoroSession(model, "int8", EngineOptions(), (("test", model), lambda: model))
    ids = KokoroFrontEnd(kokoro_vocab()).ids("Timing the words.")
    style = packaged_voices()["jf_alpha"].style_for(len(ids))
    lengths = []
    for speed in (1.0, 2.0):
        timed = session.run_timed(ids, style, speed)
        assert len(timed.id_samples) == len(ids) + 2  # the pads included
        assert int(timed.id_samples.sum()) == timed.audio.size
        assert np.all(timed.id_samples % FRAME == 0) and np.all(timed.id_samples >= FRAME)  # whole frames, at least one
        assert np.array_equal(timed.audio, session.run(ids, style, speed))  # the same audio as the plain session
        lengths.append(timed.audio.size)
    assert lengths[1] < 0.65 * lengths[0]
    session.close()


@pytest.fixture(scope="module")
def kokoro_client(kokoro_models: Path) -> Iterator[httpx.Client]:
    from starlette.testclient import TestClient

    from runtime.families.catalog import family
    from runtime.http.app import create_app
    from runtime.settings import Settings
    from tests.runtime.conftest import wait_ready

    settings = Settings.from_environ({
        "TAILOR_MODEL": "kokoro-82m", "TAILOR_MODELS_DIR": str(kokoro_models), "TAILOR_PRECISION": "int8",
        "TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_CACHE_BYTES": "0",
        "TAILOR_REQUEST_TIMEOUT_S": "600"})
    with TestClient(create_app(settings, families=[family("kokoro-82m")])) as client:
        wait_ready(client, 300.0)
        yield client


def captioned(client: httpx.Client, text: str) -> tuple[np.ndarray, int, list[dict[str, float | str]]]:
    import soundfile

    response = client.post("/v1/audio/captioned_speech",
                           json={"model": "kokoro-82m", "input": text, "response_format": "wav"})
    assert response.status_code == 200, response.text
    audio, rate = soundfile.read(io.BytesIO(base64.b64decode(response.json()["audio"])), dtype="float32")
    return audio, int(rate), response.json()["timestamps"]


def test_word_starts_fall_after_each_pause_and_words_are_sound(kokoro_client: httpx.Client) -> None:
    words = ["apple", "banana", "cherry"]
    audio, rate, stamps = captioned(kokoro_client, "<speak>" + '<break time="800ms"/>'.join(words) + "</speak>")
    assert rate == 24000 and [s["word"] for s in stamps] == words
    sound = voiced(audio, rate)
    gaps = silences(sound, 0.02, 0.6)
    assert len(gaps) == 2, gaps  # the two breaks
    # Kokoro's durations trail its sound a little: measured, the sound starts up to ~0.1 s before the
    # leading pad's frames end, and a word's last phoneme runs up to ~0.15 s into the pause after it.
    for index, (gap_start, gap_end) in enumerate(gaps):
        before, after = stamps[index], stamps[index + 1]
        assert gap_start - 0.06 <= float(before["end_time"]) <= gap_start + 0.25, (before, gaps)
        assert gap_end - 0.06 <= float(after["start_time"]) <= gap_end + 0.2, (after, gaps)
    for stamp in stamps:
        start, end = float(stamp["start_time"]), float(stamp["end_time"])
        assert 0 <= start < end <= audio.size / rate
        span = sound[int(start / 0.02): max(int(start / 0.02) + 1, int(end / 0.02))]
        assert span.mean() > 0.5, (stamp, span.mean())  # most of the word's frames are sound


def test_one_sentence_gets_ordered_words_and_the_rest_is_trailing_silence(kokoro_client: httpx.Client) -> None:
    text = "The quick brown fox, it seems, jumps over twelve lazy dogs"
    audio, rate, stamps = captioned(kokoro_client, text)
    assert [s["word"] for s in stamps] == chunk_words(text)
    starts = [float(s["start_time"]) for s in stamps]
    ends = [float(s["end_time"]) for s in stamps]
    assert all(s < e for s, e in zip(starts, ends, strict=True))
    assert all(e <= s2 for e, s2 in zip(ends, starts[1:], strict=False))  # in order, not overlapping
    assert starts[0] >= FRAME / rate  # the leading pad's frame (at least one) comes first
    seconds = audio.size / rate
    # After the last word only the trailing pad (and the model's fade): short and quiet.
    assert 0 < seconds - ends[-1] < 0.3, (ends[-1], seconds)
    tail = audio[round(ends[-1] * rate) + FRAME:]
    assert tail.size == 0 or float(np.sqrt(np.mean(tail**2))) < 0.1 * float(np.sqrt(np.mean(audio**2)))
