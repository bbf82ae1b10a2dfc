"""Cheaper model variants of a Piper voice: int8 models made with onnxruntime's quantisation tools.

A variant is another ``.onnx`` file with the same inputs and outputs as the voice model. It is
made on this machine (``make_variant``), cached next to the model (``NAME.<variant>.onnx``) or,
where that directory is read-only (a system site-packages), in ``$XDG_CACHE_HOME/tailor/variants``,
and served when ``TAILOR_MODEL_VARIANT`` names it. Which parts are quantised matters:

* ``int8-dynamic``: every MatMul and Conv, weights int8, activations quantised on the fly
  (ConvInteger). Also quantises the duration predictor, so the lengths of the phonemes change;
  the quality gate is expected to reject it.
* ``int8-dynamic-decoder``: the same, only in the decoder (``/dec/``, the waveform generator,
  about 90 % of the arithmetic); the duration predictor, text encoder and flow stay fp32.
* ``int8-static-decoder``: static QDQ int8 in the decoder, activation ranges calibrated on the
  shipped sentences (``CALIBRATION_SENTENCES``); fast where the CPU has VNNI/AMX.
* ``int8-static-upsampler``: static QDQ int8 of the decoder's three upsampling ConvTranspose
  layers only (the residual blocks measured the most sensitive to int8 activations).
* ``int8-static``: static QDQ int8 in every Conv/MatMul (calibrated); for comparison.

Nothing here is imported by the orchestrator at start-up; ``onnx`` and ``onnxruntime``'s
quantisation module are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import StartupError
from runtime.settings import MODEL_VARIANTS

_LOG = logging.getLogger("tailor.runtime.variants")

FP32 = "fp32"


@dataclass(frozen=True)
class VariantSpec:
    name: str
    mode: str
    """``dynamic`` or ``static`` (QDQ, calibrated)."""
    scope: str
    """``all`` (every matching op), ``decoder`` (nodes under ``/dec/``) or ``upsampler`` (``/dec/ups``)."""
    description: str
    ops: tuple[str, ...] = ("Conv", "MatMul")
    """Operator types quantised."""


VARIANT_SPECS: Mapping[str, VariantSpec] = {
    spec.name: spec
    for spec in (
        VariantSpec("int8-dynamic", "dynamic", "all",
                    "dynamic int8 of every Conv and MatMul (duration predictor included)"),
        VariantSpec("int8-dynamic-decoder", "dynamic", "decoder", "dynamic int8 of the decoder only"),
        VariantSpec("int8-static-decoder", "static", "decoder",
                    "static QDQ int8 of the decoder only (Conv and ConvTranspose), calibrated on the "
                    "shipped sentences", ("Conv", "ConvTranspose")),
        VariantSpec("int8-static-upsampler", "static", "upsampler",
                    "static QDQ int8 of the decoder's upsampling ConvTranspose layers only, calibrated",
                    ("ConvTranspose",)),
        VariantSpec("int8-static", "static", "all",
                    "static QDQ int8 of every Conv, ConvTranspose and MatMul, calibrated on the shipped "
                    "sentences", ("Conv", "ConvTranspose", "MatMul")),
    )
}
VARIANT_NAMES: tuple[str, ...] = MODEL_VARIANTS
"""Every value ``TAILOR_MODEL_VARIANT`` accepts; ``fp32`` is the voice model as shipped."""
assert set(VARIANT_NAMES) == {FP32, *VARIANT_SPECS}, "runtime/settings.py MODEL_VARIANTS and VARIANT_SPECS disagree"

CALIBRATION_SENTENCES: tuple[str, ...] = (
    "The weather will be cloudy in the morning, with some sun later in the day.",
    "Please hold the line; your call is important to us.",
    "Seven hundred and forty two people signed the petition on Tuesday.",
    "Is this the right way to the station?",
    "She sells sea shells by the sea shore.",
    "Numbers like 3.14 and dates like the first of May are read out in full.",
    "Yes.",
    "A long time ago, in a small village by the mountains, there lived an old clockmaker "
    "who repaired every clock in the valley without ever asking for payment.",
)
"""Calibration text for static quantisation: mixed lengths, a question, numbers, a one-word answer."""

_QUANTISED_OPS = ("Conv", "MatMul")


def user_cache_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/tailor/variants`` (``~/.cache/tailor/variants`` by default)."""
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME") or tempfile.gettempdir()) / ".cache")
    return Path(base) / "tailor" / "variants"


def variant_file_name(model_path: Path, variant: str) -> str:
    stem = model_path.name[: -len(".onnx")] if model_path.name.endswith(".onnx") else model_path.name
    return f"{stem}.{variant}.onnx"


def candidate_paths(model_path: Path, variant: str, environ: Mapping[str, str]) -> list[Path]:
    """Where the variant file may be: next to the model first, then the user cache."""
    name = variant_file_name(model_path, variant)
    return [model_path.with_name(name), user_cache_dir(environ) / name]


def check_variant_name(variant: str) -> str:
    if variant not in VARIANT_NAMES:
        raise StartupError(f"TAILOR_MODEL_VARIANT={variant!r} is not a known variant",
                           hint="use one of " + ", ".join(VARIANT_NAMES))
    return variant


def find_variant(model_path: Path, variant: str, environ: Mapping[str, str]) -> Path:
    """The file to load for ``variant`` of ``model_path``; StartupError when it was never made."""
    check_variant_name(variant)
    if variant == FP32:
        return model_path
    paths = candidate_paths(model_path, variant, environ)
    for path in paths:
        if path.is_file():
            return path
    raise StartupError(
        f"model variant {variant} of {model_path.name} has not been made on this machine "
        f"(looked for {' and '.join(str(p) for p in paths)})",
        hint=f"run `python -m runtime.tools.variants make {variant}` (or `deploy tune`, which makes the variants it "
             "tries), or set TAILOR_MODEL_VARIANT=fp32",
    )


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def target_path(model_path: Path, variant: str, environ: Mapping[str, str]) -> Path:
    """Where ``make_variant`` writes: next to the model when that directory is writable."""
    first, fallback = candidate_paths(model_path, variant, environ)
    return first if _writable_dir(first.parent) else fallback


def decoder_nodes(model: Any, ops: Sequence[str] = _QUANTISED_OPS, prefix: str = "/dec/") -> list[str]:
    """Names of the nodes of the VITS decoder (``/dec/...``) of the given types in a Piper export."""
    return [n.name for n in model.graph.node if n.op_type in ops and n.name.startswith(prefix)]


def _nodes_for(spec: VariantSpec, model_path: Path) -> list[str] | None:
    if spec.scope == "all":
        return None
    import onnx

    prefix = "/dec/ups" if spec.scope == "upsampler" else "/dec/"
    nodes = decoder_nodes(onnx.load(str(model_path), load_external_data=False), spec.ops, prefix)
    if not nodes:
        raise StartupError(f"{model_path.name} has no decoder nodes to quantise; it is not a Piper VITS export",
                           hint="decoder-only variants need a Piper voice model")
    return nodes


class _CalibrationReader:
    """Feeds the calibration sentences to onnxruntime's static quantiser (deterministic scales)."""

    def __init__(self, feeds: Sequence[dict[str, Any]]) -> None:
        self._feeds: Iterator[dict[str, Any]] = iter(feeds)

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)

    def rewind(self) -> None:  # called by newer onnxruntime versions between passes
        pass


def model_feeds(phoneme_ids: Sequence[int], noise_scale: float = 0.0, length_scale: float = 1.0,
                noise_w: float = 0.0) -> dict[str, Any]:
    """onnxruntime inputs of a Piper model for one utterance."""
    import numpy as np

    ids = np.asarray(phoneme_ids, dtype=np.int64)[np.newaxis, :]
    return {"input": ids, "input_lengths": np.array([ids.shape[1]], dtype=np.int64),
            "scales": np.array([noise_scale, length_scale, noise_w], dtype=np.float32)}


def make_variant(model_path: Path, variant: str, phonemize: Callable[[str], Sequence[int]],
                 environ: Mapping[str, str], *, force: bool = False) -> Path:
    """Make (or reuse) ``variant`` of ``model_path``; returns its path.

    ``phonemize`` turns a calibration sentence into phoneme ids (the voice's Phonemizer.ids).
    The file is written to a temporary name and renamed, so a crash never leaves half a model.
    """
    check_variant_name(variant)
    if variant == FP32:
        return model_path
    spec = VARIANT_SPECS[variant]
    out = target_path(model_path, variant, environ)
    if not force:
        for existing in candidate_paths(model_path, variant, environ):
            if existing.is_file():
                return existing
    out.parent.mkdir(parents=True, exist_ok=True)
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    nodes = _nodes_for(spec, model_path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        if spec.mode == "dynamic":
            quantize_dynamic(str(model_path), str(tmp), weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(spec.ops), nodes_to_quantize=nodes)
        else:
            feeds = [model_feeds(phonemize(s)) for s in CALIBRATION_SENTENCES]
            quantize_static(str(model_path), str(tmp), _CalibrationReader(feeds),
                            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=list(spec.ops), nodes_to_quantize=nodes,
                            extra_options={"ActivationSymmetric": False})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        for leftover in out.parent.glob(f".{out.name}.{os.getpid()}.tmp*"):
            leftover.unlink(missing_ok=True)
    _LOG.info("made %s (%s) at %s", variant, spec.description, out)
    return out

