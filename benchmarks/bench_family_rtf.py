"""Benchmark: real-time factor and memory of one model family's engine, outside the server.

    .venv/bin/python benchmarks/bench_family_rtf.py [--models kokoro-82m,piper] [--threads 1,2] \
        [--sentences 4] [--models-dir DIR] [--precision int8]

For every (family, thread count) a fresh Python process loads the family through the runtime's own
seam (``runtime.families.registry``), creates one instance with that many intra-op threads and
reports: load time, RSS after load, RSS after the first sentence, and the real-time factor (seconds
of synthesis per second of audio; < 1 is faster than real time) over the next ``--sentences``
sentences of the load generator's text set (the same text for every family), and the CPU seconds the
process spent per second of audio (what a busy, shared machine distorts least). Fresh processes, so no
family's memory or arenas count against another's. Prints a Markdown table with the load average
(the figures are only comparable on an otherwise idle machine, or side by side in one run).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIB = 1024**2


def child(model: str, threads: int, sentences: int, precision: str) -> dict[str, float | str]:
    import psutil

    from orchestrator.tune.loadgen import TEXTS
    from runtime.engines.base import EngineOptions
    from runtime.families.base import FamilyContext
    from runtime.families.catalog import family
    from runtime.families.registry import load_family
    from runtime.settings import Settings

    def rss() -> float:
        return psutil.Process().memory_info().rss / MIB

    settings = Settings.from_environ({**os.environ, "TAILOR_MODEL": model, "TAILOR_PRECISION": precision})
    started = time.perf_counter()
    loaded = load_family(family(model), FamilyContext(settings, os.environ))
    voice = loaded.default_voice()
    options = dataclasses.replace(EngineOptions.from_settings(settings), intra_op_threads=threads)
    engine = loaded.create(loaded.engine(settings.engine), voice, options, 0)
    load_s = time.perf_counter() - started
    after_load = rss()
    front = loaded.front_end(voice)
    texts = [t for t in TEXTS if len(t) > 20]
    first = front.prepare(texts[0], loaded.chunk_limit)
    engine.synthesize(first, [1.0] * len(first))
    after_first = rss()
    audio_s = synth_s = cpu_s = 0.0
    for text in (texts[1:] * 4)[:sentences]:
        chunks = front.prepare(text, loaded.chunk_limit)
        t0, c0 = time.perf_counter(), time.process_time()
        audio = engine.synthesize(chunks, [1.0] * len(chunks))
        synth_s += time.perf_counter() - t0
        cpu_s += time.process_time() - c0
        audio_s += sum(a.size for a in audio) / engine.sample_rate
    engine.close()
    return {"model": model, "precision": getattr(engine, "precision", precision), "threads": threads,
            "load_s": load_s, "rss_after_load_mib": after_load, "rss_after_first_mib": after_first,
            "audio_s": audio_s, "synth_s": synth_s, "rtf": synth_s / audio_s if audio_s else float("nan"),
            "cpu_per_audio_s": cpu_s / audio_s if audio_s else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="kokoro-82m,piper")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--precision", default="", help="TAILOR_PRECISION for Kokoro (default int8; Piper runs fp32)")
    parser.add_argument("--models-dir", default=os.environ.get("TAILOR_MODELS_DIR", ""))
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "THREADS", "PRECISION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, threads, precision = args.child
        print(json.dumps(child(model, int(threads), args.sentences, precision)))
        return
    env = {**os.environ, "TAILOR_MODELS_DIR": args.models_dir} if args.models_dir else dict(os.environ)
    print(f"load average before: {os.getloadavg()}", flush=True)
    rows = []
    for model in args.models.split(","):
        precision = args.precision or ("int8" if model == "kokoro-82m" else "fp32")
        for threads in args.threads.split(","):
            out = subprocess.run([sys.executable, __file__, "--sentences", str(args.sentences),
                                  "--child", model, threads, precision],
                                 capture_output=True, text=True, env=env, check=False, cwd=REPO)
            if out.returncode != 0:
                sys.exit(f"{model} x{threads} failed:\n{out.stderr[-2000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{model} {threads} thread(s): RTF {rows[-1]['rtf']:.3f}", flush=True)
    print(f"load average after: {os.getloadavg()}\n")
    print("| family | precision | threads | load s | RSS after load MiB | RSS after 1st sentence MiB | audio s | RTF | CPU s per audio s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['precision']} | {r['threads']} | {r['load_s']:.1f} | {r['rss_after_load_mib']:.0f} | "
              f"{r['rss_after_first_mib']:.0f} | {r['audio_s']:.1f} | {r['rtf']:.3f} | {r['cpu_per_audio_s']:.3f} |")


if __name__ == "__main__":
    main()
