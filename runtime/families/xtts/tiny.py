"""XTTS-v2 checkpoint directories with random weights, built locally (no download).

No package ships XTTS-v2's weights and model hubs cannot be reached from the test machines, so
the tests (and the memory benchmark) build a checkpoint directory in the layout of the real
release: ``config.json``, ``model.pth`` (``{"model": state_dict}``), ``vocab.json`` and
``speakers_xtts.pth``. The architecture is coqui-tts's own ``Xtts``; only the sizes and the
weights differ:

- :data:`TINY`: a 2-layer, 64-channel GPT (about 1 M parameters) in front of the real
  HiFi-GAN decoder and speaker encoder (their sizes are fixed in coqui-tts): a 120 MB
  ``model.pth`` that loads and streams in seconds on a CPU.
- :data:`FULL`: the real XTTS-v2 sizes (30 layers, 1024 channels, 16 heads, 6681 text tokens,
  1026 audio tokens; 466.9 M parameters, 1.87 GB in fp32), for measuring memory and speed.

The tokenizer is the BPE tokenizer JSON that ships inside the coqui-tts wheel (Tortoise's
character vocabulary), extended with XTTS's special tokens (``[START]`` and one ``[lang]`` token
per language). Random weights make noise, not speech: the audio is only good for checking that
every stage runs and streams. The stop token is suppressed so that a random model always
generates its full ``max_audio_tokens`` (a fixed, known length) instead of stopping at random.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.families.xtts._coqui import import_coqui


@dataclass(frozen=True)
class RandomCheckpointSpec:
    """Sizes of a random-weight XTTS checkpoint."""

    gpt_layers: int
    gpt_n_model_channels: int
    gpt_n_heads: int
    gpt_max_audio_tokens: int
    """Audio tokens one text piece may generate (the real model: 605, about 28 s of speech)."""
    text_tokens: int
    """Size of the text vocabulary (the real one: 6681); 0 keeps the shipped one (~280)."""
    audio_tokens: int = 1026
    """Size of the audio code vocabulary, including the start and stop tokens (the real one)."""


TINY = RandomCheckpointSpec(gpt_layers=2, gpt_n_model_channels=64, gpt_n_heads=2,
                            gpt_max_audio_tokens=15, text_tokens=0)
FULL = RandomCheckpointSpec(gpt_layers=30, gpt_n_model_channels=1024, gpt_n_heads=16,
                            gpt_max_audio_tokens=605, text_tokens=6681)
SPEAKERS = ("Tiny Studio",)
"""Built-in speakers written to ``speakers_xtts.pth`` (random conditioning latents)."""


def _write_vocab(path: Path, languages: list[str], text_tokens: int) -> None:
    import TTS
    from tokenizers import Tokenizer

    shipped = Path(TTS.__file__).parent / "tts" / "utils" / "assets" / "tortoise" / "tokenizer.json"
    tokenizer = Tokenizer.from_file(str(shipped))
    tokenizer.add_special_tokens(["[START]", *(f"[{lang}]" for lang in languages)])
    missing = text_tokens - tokenizer.get_vocab_size()
    if missing > 0:
        # Filler tokens only bring the embedding tables to the real model's size.
        tokenizer.add_special_tokens([f"[unused{i}]" for i in range(missing)])
    tokenizer.save(str(path))


def build_random_checkpoint(directory: Path, spec: RandomCheckpointSpec = TINY, *,
                            seed: int = 0, speakers: tuple[str, ...] = SPEAKERS) -> Path:
    """Write a random-weight XTTS-v2 checkpoint directory; returns ``directory``.

    Deterministic for a given ``seed``. Needs coqui-tts (``tailor-deploy[xtts]``).
    """
    coqui = import_coqui()
    import torch
    from TTS.tts.layers.xtts.tokenizer import VoiceBpeTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    config = coqui.config_class()
    args = config.model_args
    args.gpt_layers = spec.gpt_layers
    args.gpt_n_model_channels = spec.gpt_n_model_channels
    args.decoder_input_dim = spec.gpt_n_model_channels
    args.gpt_n_heads = spec.gpt_n_heads
    args.gpt_max_audio_tokens = spec.gpt_max_audio_tokens
    args.gpt_num_audio_tokens = spec.audio_tokens
    args.gpt_start_audio_token = spec.audio_tokens - 2
    args.gpt_stop_audio_token = spec.audio_tokens - 1
    args.gpt_use_perceiver_resampler = True  # as the released XTTS-v2
    _write_vocab(directory / "vocab.json", list(config.languages), spec.text_tokens)

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = coqui.xtts_class(config)
        model.tokenizer = VoiceBpeTokenizer(vocab_file=str(directory / "vocab.json"))
        model.init_models()  # also records the text vocabulary in config.model_args
        config.save_json(str(directory / "config.json"))
        with torch.no_grad():
            model.gpt.mel_head.bias[args.gpt_stop_audio_token] = -1e4
            model.mel_stats.uniform_(0.5, 1.5)
        state: dict[str, Any] = model.state_dict()
        torch.save({"model": state}, directory / "model.pth")
        dim = spec.gpt_n_model_channels
        torch.save({name: {"gpt_cond_latent": torch.randn(1, 32, dim),
                           "speaker_embedding": torch.nn.functional.normalize(
                               torch.randn(1, 512, 1), dim=1)}
                    for name in speakers},
                   directory / "speakers_xtts.pth")
    finally:
        torch.random.set_rng_state(generator_state)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m runtime.families.xtts.tiny",
        description="Write an XTTS-v2 checkpoint directory with random weights.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args(argv)
    build_random_checkpoint(options.directory, TINY if options.size == "tiny" else FULL,
                            seed=options.seed)
    print(options.directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
