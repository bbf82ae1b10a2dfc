"""The Piper VITS family: voice files, int8 model variants, and its onnx and torch engines."""
