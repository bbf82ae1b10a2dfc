"""The XTTS-v2 family end to end on a tiny random-weight checkpoint built at test time.

The checkpoint is coqui-tts's real ``Xtts`` architecture with a 2-layer, 64-channel GPT and the
real HiFi-GAN decoder (:mod:`runtime.families.xtts.tiny`); it is built once per session. Random
weights make noise, not speech, so the tests check the plumbing: loading, voices from reference
recordings, token-chunk streaming, the cloned-voice cache, the instance lock and every error.
The tiny model always generates 12 audio tokens per text piece (its stop token is suppressed).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

if importlib.util.find_spec("TTS") is None:
    pytest.skip("coqui-tts is not installed (the XTTS-v2 family's extra: "
                "pip install -e '.[xtts]' -c ci/constraints.txt)", allow_module_level=True)

from runtime.errors import StartupError
from runtime.families.xtts import _coqui
from runtime.families.xtts.engine import XttsEngine
from runtime.families.xtts.errors import (
    BadSynthesisInput,
    CheckpointError,
    DeviceUnavailable,
    EngineBusy,
    UnknownVoice,
    VoiceUnusable,
    XttsNotInstalled,
)
from runtime.families.xtts.loader import XttsOptions, load, read_state_dict
from runtime.families.xtts.tiny import TINY, build_random_checkpoint

pytestmark = pytest.mark.slow

TOKENS = TINY.gpt_max_audio_tokens - 3
"""Audio tokens the tiny model generates per text piece."""
CHUNK_TOKENS = 4
SAMPLES_PER_TOKEN = 1024 * 24000 / 22050
"""One GPT token is 1024 samples at 22.05 kHz; the vocoder writes 24 kHz."""


def _speechlike(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A voiced, vowel-like signal with breath noise (stands in for a reference recording)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    noise = np.random.default_rng(seed).standard_normal(len(t))
    return (0.15 * voiced * envelope + 0.01 * noise).astype(np.float32)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_checkpoint(tmp_path_factory.mktemp("xtts") / "tiny")


@pytest.fixture(scope="session")
def voices_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile

    folder = tmp_path_factory.mktemp("xtts-voices")
    soundfile.write(folder / "alice.wav", _speechlike(3.0, 16000, 1), 16000)
    stereo = np.stack([_speechlike(2.5, 44100, 2), _speechlike(2.5, 44100, 3)], axis=1)
    soundfile.write(folder / "bob.flac", stereo, 44100)
    (folder / "notes.txt").write_text("not a voice")
    return folder


@pytest.fixture(scope="session")
def engine(tiny_dir: Path, voices_dir: Path) -> Iterator[XttsEngine]:
    engine = load(tiny_dir, XttsOptions(voices_dir=voices_dir, stream_chunk_tokens=CHUNK_TOKENS))
    yield engine
    engine.close()


def test_loads_the_checkpoint_and_lists_recordings_and_builtin_speakers(engine: XttsEngine) -> None:
    assert engine.sample_rate_hz == 24000
    assert "en" in engine.languages
    voices = {v.name: v for v in engine.voices()}
    assert sorted(voices) == ["Tiny Studio", "alice", "bob"]
    assert voices["alice"].source == "recording" and voices["alice"].path is not None
    assert voices["alice"].path.name == "alice.wav"
    assert voices["Tiny Studio"].source == "builtin" and voices["Tiny Studio"].path is None
    report = engine.report
    assert report is not None and report.device == "cpu" and report.precision == "fp32"
    assert 20e6 < report.params < 30e6  # the real HiFi-GAN and speaker encoder, a tiny GPT
    assert report.rss_bytes > 100 * 2**20


def test_streams_token_chunks_of_audio(engine: XttsEngine) -> None:
    stream = engine.stream("Hello world, this is a test.", "alice", "en")
    chunks = list(stream)
    # One chunk per CHUNK_TOKENS tokens, then the tail coqui-tts holds back for the cross-fade.
    assert len(chunks) == TOKENS // CHUNK_TOKENS + 1
    for chunk in chunks:
        assert chunk.dtype == np.float32 and chunk.ndim == 1 and chunk.size > 0
        assert np.isfinite(chunk).all()
    audio = np.concatenate(chunks)
    assert float(np.sqrt(np.mean(audio**2))) > 1e-4, "the stream is silent"
    assert np.abs(audio).max() <= 1.0
    assert audio.size == pytest.approx(TOKENS * SAMPLES_PER_TOKEN, rel=0.1)
    assert not engine.busy


def test_synthesize_whole_and_speed_shortens(engine: XttsEngine) -> None:
    audio = engine.synthesize("Hi there.", "Tiny Studio", "en-US", speed=2.0)
    assert audio.dtype == np.float32 and np.isfinite(audio).all()
    assert float(np.sqrt(np.mean(audio**2))) > 1e-4
    assert audio.size == pytest.approx(TOKENS * SAMPLES_PER_TOKEN / 2, rel=0.15)


def test_long_text_is_generated_piece_by_piece(engine: XttsEngine) -> None:
    assert engine.pieces("One. Two!", "en") == ["One.", "Two!"]
    long_sentence = ", ".join(["a rather long clause of words"] * 12) + "."
    pieces = engine.pieces(long_sentence, "en")
    assert len(pieces) > 1 and all(len(p) <= 250 for p in pieces)


def test_cloned_voices_are_cached_per_file_version(engine: XttsEngine, voices_dir: Path) -> None:
    import soundfile

    first = engine.conditioning("bob")
    before = engine.cache_stats()
    assert engine.conditioning("bob") is first
    assert engine.conditioning("bob.flac") is first
    after = engine.cache_stats()
    assert (after.hits, after.misses) == (before.hits + 2, before.misses)
    assert first.gpt_cond_latent.shape == (1, 32, TINY.gpt_n_model_channels)
    assert first.speaker_embedding.shape == (1, 512, 1)

    # A new recording under the same name is cloned again, and replaces the stale entry.
    original = (voices_dir / "bob.flac").read_bytes()
    try:
        soundfile.write(voices_dir / "bob.flac", _speechlike(2.0, 22050, 9), 22050)
        second = engine.conditioning("bob")
        assert second is not first
        assert engine.cache_stats().misses == before.misses + 1
        assert engine.cache_stats().entries == before.entries
    finally:
        (voices_dir / "bob.flac").write_bytes(original)


def test_unknown_voice_says_which_exist_and_where(engine: XttsEngine, voices_dir: Path) -> None:
    with pytest.raises(UnknownVoice) as caught:
        engine.stream("Hello.", "carol")  # raised by the call, before any generation
    message = str(caught.value)
    assert "'carol'" in message and str(voices_dir) in message
    assert "alice" in message and "Tiny Studio" in message
    assert "carol.wav" in caught.value.hint
    with pytest.raises(UnknownVoice):
        engine.conditioning("../alice")


def test_unusable_recordings_are_refused_with_reasons(
        engine: XttsEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import soundfile

    soundfile.write(tmp_path / "short.wav", _speechlike(0.3, 16000, 4), 16000)
    (tmp_path / "broken.wav").write_bytes(b"RIFF not really a wave file")
    soundfile.write(tmp_path / "twice.wav", _speechlike(2.0, 16000, 5), 16000)
    soundfile.write(tmp_path / "twice.flac", _speechlike(2.0, 16000, 6), 16000)
    monkeypatch.setattr(engine, "voices_dir", tmp_path)
    with pytest.raises(VoiceUnusable, match=r"0\.30 s long"):
        engine.conditioning("short")
    with pytest.raises(VoiceUnusable, match="cannot be decoded"):
        engine.conditioning("broken")
    with pytest.raises(VoiceUnusable, match="ambiguous"):
        engine.conditioning("twice")
    assert engine.conditioning("twice.flac").speaker_embedding.shape == (1, 512, 1)


def test_bad_text_language_and_speed_are_refused(engine: XttsEngine) -> None:
    with pytest.raises(BadSynthesisInput, match="language 'xx'"):
        engine.stream("Hello.", "alice", "xx")
    with pytest.raises(BadSynthesisInput, match="speed 9"):
        engine.stream("Hello.", "alice", speed=9.0)
    with pytest.raises(BadSynthesisInput, match="empty"):
        engine.synthesize("   ", "alice")


def test_one_generation_at_a_time_per_instance(engine: XttsEngine) -> None:
    first = engine.stream("Hello.", "alice")
    assert next(first).size > 0
    assert engine.busy
    second = engine.stream("Again.", "alice")
    with pytest.raises(EngineBusy, match="already streaming in this thread"):
        next(second)
    blocked: list[BaseException] = []
    other = threading.Thread(target=lambda: blocked.append(_busy_error(engine)))
    other.start()
    other.join(timeout=30)
    assert len(blocked) == 1 and isinstance(blocked[0], EngineBusy)
    first.close()
    assert not engine.busy


def _busy_error(engine: XttsEngine) -> BaseException:
    engine._lock._wait_s = 0.2  # another thread gives up after 0.2 s instead of waiting
    try:
        next(engine.stream("Meanwhile.", "alice"))
    except EngineBusy as exc:
        return exc
    finally:
        engine._lock._wait_s = None
    raise AssertionError("a second thread streamed while the first stream was open")


def _copy_dir(source: Path, target: Path, skip: str = "") -> Path:
    target.mkdir()
    for path in source.iterdir():
        if path.name != skip:
            (target / path.name).symlink_to(path)
    return target


def test_missing_files_are_named(tiny_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"lacks vocab\.json") as caught:
        load(_copy_dir(tiny_dir, tmp_path / "no-vocab", skip="vocab.json"))
    assert isinstance(caught.value, StartupError)
    assert "config.json, model.pth and vocab.json" in caught.value.hint
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_corrupt_checkpoints_are_refused(tiny_dir: Path, tmp_path: Path) -> None:
    broken = _copy_dir(tiny_dir, tmp_path / "broken", skip="model.pth")
    (broken / "model.pth").write_bytes((tiny_dir / "model.pth").read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint") as caught:
        load(broken)
    assert "truncated" in caught.value.hint

    garbled = _copy_dir(tiny_dir, tmp_path / "garbled", skip="config.json")
    (garbled / "config.json").write_text("{ not json")
    with pytest.raises(CheckpointError, match="not a valid XTTS-v2 config"):
        load(garbled)

    mismatched = _copy_dir(tiny_dir, tmp_path / "mismatched", skip="config.json")
    text = (tiny_dir / "config.json").read_text().replace('"gpt_layers": 2', '"gpt_layers": 3')
    (mismatched / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match="does not fit") as caught:
        load(mismatched)
    assert "same XTTS-v2 release" in caught.value.hint


def test_original_release_checkpoints_load_without_being_rewritten(
        tiny_dir: Path, tmp_path: Path) -> None:
    """Coqui's release pickles its XttsConfig beside the weights; coqui-tts's own reader
    rewrites such a file in place. Ours reads it and leaves it alone."""
    import torch

    coqui = _coqui.import_coqui()
    state = read_state_dict(coqui, tiny_dir / "model.pth")
    config = coqui.config_class()
    config.load_json(str(tiny_dir / "config.json"))
    legacy = tmp_path / "model.pth"
    with coqui.legacy_safe_globals():  # pickles the config under its original module path
        torch.save({"model": state, "config": config}, legacy)
    before = legacy.read_bytes()
    loaded = read_state_dict(coqui, legacy)
    assert loaded.keys() == state.keys()
    assert legacy.read_bytes() == before


def test_device_and_precision_are_checked(tiny_dir: Path) -> None:
    with pytest.raises(DeviceUnavailable, match="fp16 on cpu"):
        load(tiny_dir, XttsOptions(precision="fp16"))
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(DeviceUnavailable, match="no CUDA device"):
            load(tiny_dir, XttsOptions(device="cuda"))


def test_missing_library_is_reported_with_the_extra(
        tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "TTS.tts.models.xtts", None)  # makes the import fail
    _coqui.forget()
    try:
        with pytest.raises(XttsNotInstalled, match="coqui-tts") as caught:
            load(tiny_dir)
    finally:
        monkeypatch.undo()
        _coqui.forget()
    assert "tailor-deploy[xtts]" in caught.value.hint
    assert isinstance(caught.value, StartupError)
