"""Benchmark: the CPU-side ceiling of one runtime process, whatever GPUs it drives.

    .venv/bin/python benchmarks/bench_phonemizer_ceiling.py [--seconds 10] [--threads 1,2,4]

Every sentence is phonemized by espeak-ng under one process-wide lock before any engine sees it
(runtime/text/frontend.py). However many GPUs one process spreads its workers over, it cannot serve more
audio per second than this lock lets through. The script measures it: the bundled voice's
phonemizer (``Phonemizer.prepare``, the call a request makes) on a fixed sentence list, from 1, 2
and 4 threads for ``--seconds`` each, times the audio those sentences make (each synthesized once
with onnx on the CPU to learn its duration). Prints sentences/s and the audio-s/s ceiling.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's runtime, not an installed one

from benchmarks.bench_runtime_vs_piper import SENTENCES as RUNTIME_BENCH_SENTENCES  # noqa: E402

SENTENCES = RUNTIME_BENCH_SENTENCES[:8]
"""The runtime benchmark's first eight sentences: the figures in RESULTS.md were measured on these."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", default="1,2,4")
    args = parser.parse_args()

    from runtime.engines.base import EngineOptions
    from runtime.families.base import FamilyContext
    from runtime.families.catalog import family
    from runtime.families.registry import load_family
    from runtime.serving.engine_chain import EngineChain
    from runtime.serving.metrics import RuntimeMetrics
    from runtime.settings import Settings

    piper = load_family(family("piper"), FamilyContext(Settings.defaults(), os.environ))
    voice = "en_US-joe-medium"
    chain = EngineChain(primary_engine="onnx", fallback=(), family=piper,
                        options=EngineOptions(intra_op_threads=2), instances=1,
                        metrics=RuntimeMetrics(rss_bytes=lambda: 0.0))
    phonemizer = chain.phonemizer(voice)
    rate = chain.voice_info(voice).sample_rate_hz
    durations = []
    for sentence in SENTENCES:
        chunks = phonemizer.prepare(sentence)
        audio = chain.synthesize(0, voice, chunks, [1.0] * len(chunks))
        durations.append(sum(a.size for a in audio) / rate)
    chain.close()
    audio_per_sentence = sum(durations) / len(durations)

    print(f"load average before: {os.getloadavg()}")
    print(f"{len(SENTENCES)} sentences, mean {audio_per_sentence:.2f} s of audio each; {args.seconds:g} s per level")
    print("| threads | sentences/s | audio-s/s ceiling |")
    print("|---|---|---|")
    for threads in (int(t) for t in args.threads.split(",")):
        done = [0] * threads
        stop = time.monotonic() + args.seconds

        def loop(slot: int, done: list[int] = done, stop: float = stop) -> None:
            i = slot
            while time.monotonic() < stop:
                phonemizer.prepare(SENTENCES[i % len(SENTENCES)])
                done[slot] += 1
                i += 1

        started = time.perf_counter()
        workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
        per_s = sum(done) / elapsed
        print(f"| {threads} | {per_s:.0f} | {per_s * audio_per_sentence:.0f} |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
