"""XTTS-v2's host memory on the CPU: RSS once coqui-tts is imported, the load's peak, RSS after
loading (and after a first synthesis), for a random-weight checkpoint of the tiny or the real
size, loaded with and without memory-mapping ``model.pth``.

    .venv/bin/python benchmarks/bench_xtts_memory.py [--size tiny|full] [--dir DIR] [--synthesize]

The checkpoint is built once in ``DIR`` (default ``/tmp/tailor-xtts-SIZE``) by
:func:`runtime.families.xtts.tiny.build_random_checkpoint`: the released architecture and
parameter count for ``full`` (466.9 M, ``model.pth`` 1.87 GB), random weights. Each load runs in
a fresh child process, so the figures do not include this script's own memory. ``peak`` is the
child's highest RSS (``ru_maxrss``); ``anon pk`` and ``file pk`` are the highest anonymous and
file-backed parts of it, sampled every 20 ms (file-backed pages, the mapped ``model.pth``, are
page cache the kernel can drop under pressure; anonymous ones are not). Rows: ``mmap`` and
``read`` are the family's loader with and without mapping; ``coqui`` is coqui-tts's own path
(``Xtts(config).load_checkpoint(...)``), which builds the GPT twice and reads the file whole. ``--synthesize``
then streams one short sentence with the built-in speaker (for ``full`` a random model generates
its whole 602-token budget, about 28 s of audio: minutes on a small CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, threading, time
from pathlib import Path
import psutil
proc = psutil.Process()
peaks = {"anon": 0, "file": 0}
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0
def sample():
    while True:
        peaks["anon"] = max(peaks["anon"], status("RssAnon"))
        peaks["file"] = max(peaks["file"], status("RssFile"))
        time.sleep(0.02)
threading.Thread(target=sample, daemon=True).start()
start = proc.memory_info().rss
from runtime.families.xtts._coqui import import_coqui
import_coqui()
imported = proc.memory_info().rss
from runtime.families.xtts.loader import XttsOptions, load
began = time.monotonic()
if sys.argv[2] == "coqui":  # coqui-tts's own loading path, for comparison
    coqui = import_coqui()
    config = coqui.config_class()
    config.load_json(str(Path(sys.argv[1]) / "config.json"))
    model = coqui.xtts_class(config)
    model.load_checkpoint(config, checkpoint_dir=sys.argv[1], eval=True)
    params = sum(p.numel() for p in model.parameters())
else:
    engine = load(Path(sys.argv[1]), XttsOptions(mmap=sys.argv[2] == "mmap"))
    params = engine.report.params
out = {"python": start, "imported": imported, "loaded": proc.memory_info().rss,
       "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
       "load_s": time.monotonic() - began, "params": params,
       "peak_anon": peaks["anon"], "peak_file": peaks["file"]}
if sys.argv[3] == "1" and sys.argv[2] != "coqui":
    began = time.monotonic()
    samples = sum(c.size for c in engine.stream("Hello there.", engine.voices()[0].name))
    out.update(synth_s=time.monotonic() - began, audio_s=samples / engine.sample_rate_hz,
               after_synth=proc.memory_info().rss,
               peak_after_synth=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
print(json.dumps(out))
"""


def _mb(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--dir", type=Path)
    parser.add_argument("--synthesize", action="store_true")
    args = parser.parse_args()
    directory = args.dir or Path(f"/tmp/tailor-xtts-{args.size}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if not (directory / "model.pth").is_file():
        print(f"building a random {args.size} checkpoint in {directory}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "runtime.families.xtts.tiny", str(directory),
                        "--size", args.size], check=True, env=env, stdout=subprocess.DEVNULL)
    size = (directory / "model.pth").stat().st_size
    print(f"XTTS-v2 {args.size}: model.pth {_mb(size)}")
    print(f"{'load':<8}{'params':>9}{'imported':>11}{'peak':>11}{'anon pk':>11}{'file pk':>11}"
          f"{'loaded':>11}{'load s':>8}"
          f"{'synth s':>9}{'audio s':>9}{'after':>11}")
    for mode in ("mmap", "read", "coqui"):
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(directory), mode, "1" if args.synthesize else "0"],
            check=True, env=env, capture_output=True, text=True)
        r = json.loads(child.stdout.strip().splitlines()[-1])
        synth = (f"{r['synth_s']:>9.1f}{r['audio_s']:>9.2f}{_mb(r['after_synth']):>11}"
                 if "synth_s" in r else "")
        print(f"{mode:<8}{r['params'] / 1e6:>8.1f}M{_mb(r['imported']):>11}{_mb(r['peak']):>11}"
              f"{_mb(r['peak_anon']):>11}{_mb(r['peak_file']):>11}"
              f"{_mb(r['loaded']):>11}{r['load_s']:>8.1f}{synth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
