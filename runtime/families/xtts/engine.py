"""The XTTS-v2 engine: text, a voice and a language in; float32 mono audio at 24 kHz out,
streamed by GPT token chunks.

Built by :func:`runtime.families.xtts.loader.load`. One instance holds one loaded model.

**Not safe for concurrent calls.** coqui-tts keeps per-call state on the model: the GPT's
conditioning prefix (``gpt_inference.cached_prefix_emb``) is stored on the module when a
generation starts and read again at every step, so two generations interleaved on one instance
(in two threads, or two open streams in one thread) would each speak with the other's prefix.
Every generation therefore holds the instance's lock from its first token to its last chunk: a
second stream waits for the first to finish (or fails after ``lock_wait_s``), and a second
stream opened in a thread that is still inside an open stream fails at once with
:class:`EngineBusy` instead of deadlocking. Serve concurrent requests with several instances.

Precision: fp32 everywhere by default. On CUDA, ``fp16`` runs the GPT and the vocoder under
``torch.autocast(float16)`` (the weights stay fp32); it is an option, off by default, because
its gain has not been measured on a GPU here yet. The CPU runs fp32 only.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from runtime.families.xtts.errors import BadSynthesisInput, EngineBusy, VoiceUnusable
from runtime.families.xtts.voices import CacheStats, LatentCache, Voice, list_voices, resolve_voice
from runtime.text.frontend import chunk_sentence, split_sentences

log = logging.getLogger(__name__)

CONDITIONING_RATE_HZ = 22050
"""XTTS's GPT conditioning and speaker encoder take 22.05 kHz audio."""
MIN_REFERENCE_S = 1.0
"""Shortest reference recording accepted (coqui-tts needs at least 0.33 s; 6 to 10 s of clean
speech clone best)."""
SPEED_RANGE = (0.25, 4.0)
"""The OpenAI speech API's range for ``speed``."""


@dataclass(frozen=True)
class Conditioning:
    """A cloned voice: the GPT's conditioning latents and the vocoder's speaker embedding."""

    gpt_cond_latent: torch.Tensor
    speaker_embedding: torch.Tensor


@dataclass(frozen=True)
class LoadReport:
    """What loading took; the loader fills it in."""

    seconds: float
    rss_bytes: int
    """Resident set size of the process right after loading."""
    params: int
    device: str
    precision: str
    coqui_version: str
    torchaudio_extension: bool


class _StreamLock:
    """The instance's generation lock (see the module doc)."""

    def __init__(self, wait_s: float | None) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._wait_s = wait_s

    def locked(self) -> bool:
        return self._lock.locked()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        if self._owner == threading.get_ident():
            raise EngineBusy(
                "this XTTS-v2 engine is already streaming in this thread; one instance runs one "
                "generation at a time",
                "finish or close the open stream first, or load one engine per concurrent stream")
        if not self._lock.acquire(timeout=-1 if self._wait_s is None else self._wait_s):
            raise EngineBusy(
                f"this XTTS-v2 engine stayed busy for {self._wait_s:g} s",
                "load more instances for more concurrent streams, or raise lock_wait_s")
        self._owner = threading.get_ident()
        try:
            yield
        finally:
            self._owner = None
            self._lock.release()


class XttsEngine:
    """A loaded XTTS-v2 model with its voices. See the module doc for concurrency."""

    def __init__(self, model: Any, config: Any, *, device: torch.device, precision: str,
                 voices_dir: Path | None, builtin_speakers: Mapping[str, Conditioning],
                 resample: Callable[..., torch.Tensor], stream_chunk_tokens: int = 20,
                 latent_cache_entries: int = 64, lock_wait_s: float | None = None,
                 report: LoadReport | None = None) -> None:
        if stream_chunk_tokens < 1:
            raise ValueError(f"stream_chunk_tokens must be at least 1, got {stream_chunk_tokens}")
        self.model = model
        self.config = config
        self.device = device
        self.precision = precision
        self.voices_dir = voices_dir
        self.builtin_speakers = dict(builtin_speakers)
        self.stream_chunk_tokens = stream_chunk_tokens
        self.report = report
        self.sample_rate_hz = int(config.model_args.output_sample_rate)
        self.languages: tuple[str, ...] = tuple(config.languages)
        self._resample = resample
        self._cache: LatentCache[Conditioning] = LatentCache(latent_cache_entries)
        self._lock = _StreamLock(lock_wait_s)
        self._autocast = precision == "fp16" and device.type == "cuda"

    @property
    def busy(self) -> bool:
        """A generation (or a voice being cloned) holds the instance right now."""
        return self._lock.locked()

    # -- voices -----------------------------------------------------------------------------

    def voices(self) -> list[Voice]:
        """Reference recordings in the voices directory and the built-in speakers."""
        return list_voices(self.voices_dir, self.builtin_speakers)

    def conditioning(self, voice: str) -> Conditioning:
        """The voice's conditioning, cloned from its recording once and then cached."""
        found = resolve_voice(voice, self.voices_dir, self.builtin_speakers)
        if found.path is None:
            return self.builtin_speakers[found.name]
        return self._cache.get_or_compute(found.path, self._clone)

    def cache_stats(self) -> CacheStats:
        return self._cache.stats()

    def _clone(self, path: Path) -> Conditioning:
        import soundfile

        try:
            samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
        except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError is a RuntimeError
            raise VoiceUnusable(f"voice recording {path} cannot be decoded: {exc}",
                                "use a WAV or FLAC file (any rate, mono or stereo)") from exc
        mono = samples.mean(axis=1)
        seconds = len(mono) / rate if rate else 0.0
        if seconds < MIN_REFERENCE_S:
            raise VoiceUnusable(
                f"voice recording {path} is {seconds:.2f} s long; XTTS-v2 needs at least "
                f"{MIN_REFERENCE_S:g} s", "record 6 to 10 s of one clean speaker")
        if not np.isfinite(mono).all():
            raise VoiceUnusable(f"voice recording {path} holds NaN or infinite samples",
                                "export the recording again")
        audio = torch.from_numpy(np.ascontiguousarray(mono))[None, :]
        with self._lock.held(), torch.inference_mode():
            if rate != CONDITIONING_RATE_HZ:
                audio = self._resample(audio, int(rate), CONDITIONING_RATE_HZ)
            audio = audio[:, : CONDITIONING_RATE_HZ * int(self.config.max_ref_len)]
            if self.config.sound_norm_refs:
                audio = audio / audio.abs().max().clamp(min=1e-8) * 0.75
            audio = audio.clamp(-1.0, 1.0)
            embedding = self.model.get_speaker_embedding(audio.to(self.device),
                                                         CONDITIONING_RATE_HZ)
            latent = self.model.get_gpt_cond_latents(
                audio, CONDITIONING_RATE_HZ, length=int(self.config.gpt_cond_len),
                chunk_length=int(self.config.gpt_cond_chunk_len))
        log.info("cloned voice %s from %s (%.1f s)", path.stem, path, seconds)
        return Conditioning(latent, embedding)

    # -- text -------------------------------------------------------------------------------

    def _language(self, language: str) -> str:
        code = language.strip().lower()
        if code == "zh":
            code = "zh-cn"
        if code not in self.languages:
            code = code.split("-")[0]
        if code not in self.languages:
            raise BadSynthesisInput(
                f"XTTS-v2 does not speak language {language!r}",
                f"use one of: {', '.join(self.languages)}")
        return code

    def pieces(self, text: str, language: str) -> list[str]:
        """The text cut into the pieces generated one after another: sentences, and within a
        sentence clauses or word runs, each within XTTS's per-language character limit and the
        GPT's text-token limit."""
        code = self._language(language)
        text = text.strip()
        if not text:
            raise BadSynthesisInput("the text is empty", "send the text to speak")
        tokenizer = self.model.tokenizer
        short = code.split("-")[0]
        limit = min(int(tokenizer.char_limits.get(short, 250)),
                    int(self.config.model_args.gpt_max_text_tokens) - 3)

        def count(piece: str) -> int:
            if len(piece) > limit:
                return len(piece)  # over the bound already; coqui-tts would log a warning
            try:
                tokens = len(tokenizer.encode(piece.lower(), lang=code))
            except (ImportError, NotImplementedError) as exc:
                raise BadSynthesisInput(
                    f"XTTS-v2's text front end for {code!r} is not installed here: {exc}",
                    f"install coqui-tts's extra for that language (coqui-tts[{short}])") from exc
            return max(len(piece), tokens)

        pieces = [p for s in split_sentences(text) for p in chunk_sentence(s, count, limit)]
        return [p for p in pieces if p.strip()]

    def _check_speed(self, speed: float) -> None:
        if not (SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]):
            raise BadSynthesisInput(
                f"speed {speed:g} is outside {SPEED_RANGE[0]:g} to {SPEED_RANGE[1]:g}",
                "1.0 is the voice's own pace")

    # -- synthesis --------------------------------------------------------------------------

    def _inference_settings(self) -> dict[str, Any]:
        c = self.config
        return {"temperature": c.temperature, "length_penalty": c.length_penalty,
                "repetition_penalty": c.repetition_penalty, "top_k": c.top_k, "top_p": c.top_p}

    def _autocast_context(self) -> contextlib.AbstractContextManager[Any]:
        if self._autocast:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @staticmethod
    def _to_numpy(wav: Any) -> np.ndarray:
        array = wav.detach().float().cpu().numpy() if isinstance(wav, torch.Tensor) else wav
        return np.ascontiguousarray(np.asarray(array, dtype=np.float32).reshape(-1))

    def stream(self, text: str, voice: str, language: str = "en", speed: float = 1.0,
               *, chunk_tokens: int | None = None) -> Iterator[np.ndarray]:
        """Speech for ``text`` as float32 mono chunks at :attr:`sample_rate_hz`.

        Each chunk is the audio of ``chunk_tokens`` GPT tokens (default: the engine's
        ``stream_chunk_tokens``; one token is 1024 samples at 22.05 kHz, about 46 ms), cross-faded
        with its neighbours. Text, language, speed and voice are checked (and the voice cloned)
        before this returns; generation starts at the first ``next()`` and holds the instance's
        lock until the last chunk, or until the iterator is closed.
        """
        self._check_speed(speed)
        pieces = self.pieces(text, language)
        code = self._language(language)
        conditioning = self.conditioning(voice)
        size = self.stream_chunk_tokens if chunk_tokens is None else chunk_tokens
        if size < 1:
            raise BadSynthesisInput(f"chunk_tokens must be at least 1, got {size}",
                                    "20 tokens is about 0.9 s of speech")
        return self._generate(pieces, code, conditioning, speed, size)

    def _generate(self, pieces: list[str], code: str, conditioning: Conditioning, speed: float,
                  chunk_tokens: int) -> Iterator[np.ndarray]:
        with self._lock.held():
            for piece in pieces:
                started = time.monotonic()
                chunks = self.model.inference_stream(
                    piece, code, conditioning.gpt_cond_latent, conditioning.speaker_embedding,
                    stream_chunk_size=chunk_tokens, speed=speed, enable_text_splitting=False,
                    **self._inference_settings())
                try:
                    while True:
                        with self._autocast_context():
                            try:
                                wav = next(chunks)
                            except StopIteration:
                                break
                        chunk = self._to_numpy(wav)
                        if chunk.size:
                            yield chunk
                finally:
                    chunks.close()
                log.debug("xtts piece of %d chars in %.2f s", len(piece),
                          time.monotonic() - started)

    def synthesize(self, text: str, voice: str, language: str = "en",
                   speed: float = 1.0) -> np.ndarray:
        """Speech for ``text`` in one array (each piece generated whole, decoded once: cheaper
        than joining a stream, whose every chunk decodes the piece so far again)."""
        self._check_speed(speed)
        pieces = self.pieces(text, language)
        code = self._language(language)
        conditioning = self.conditioning(voice)
        parts: list[np.ndarray] = []
        with self._lock.held():
            for piece in pieces:
                with self._autocast_context():
                    out = self.model.inference(
                        piece, code, conditioning.gpt_cond_latent,
                        conditioning.speaker_embedding, speed=speed,
                        enable_text_splitting=False, **self._inference_settings())
                parts.append(self._to_numpy(out["wav"]))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        """Drop the model and the cached voices (frees their memory once nothing else holds
        them); the instance cannot synthesize afterwards."""
        with self._lock.held():
            self._cache.clear()
            self.builtin_speakers.clear()
            self.model = None
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
