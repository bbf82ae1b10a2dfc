"""A native PyTorch implementation of VITS inference for Piper voices.

The weights come straight from a voice's ``.onnx`` file (see :mod:`.onnx_weights`); the
architecture's sizes are read from the same file (see :mod:`.hyperparams`). Only the inference
direction exists here: text encoder, stochastic duration predictor run in reverse, monotonic
expansion, normalising flow run in reverse and the HiFi-GAN generator.
"""

from __future__ import annotations

from runtime.families.piper.vits.hyperparams import VitsHyperparams
from runtime.families.piper.vits.model import VitsSynthesizer
from runtime.families.piper.vits.onnx_weights import VoiceWeights, read_voice_weights

__all__ = ["VitsHyperparams", "VitsSynthesizer", "VoiceWeights", "read_voice_weights"]
