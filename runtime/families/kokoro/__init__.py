"""Kokoro-82M: the int8 ONNX model from PyPI parts, style-vector voices, espeak-ng phonemes."""
