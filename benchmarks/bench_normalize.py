"""Score and time English text normalisation (issue 21, item 4).

    .venv/bin/python benchmarks/bench_normalize.py [--runs 200] [--wrong] [--baseline OLD.py]

Reads the held-out cases (``tests/runtime/data/normalize_heldout.tsv``), the cases issue 21
lists (``normalize_issue21.tsv``) and a post-hoc set of realistic sentences
(``normalize_posthoc.tsv``) through the runtime's front end (``prepare_text`` for an
English voice, segments joined by a space) and counts each reading as right, acceptable or
wrong, per file and per category (``--wrong`` lists the wrong ones). Then it times
``prepare_text`` on two 4,096-character English paragraphs, one full of numbers, prices, dates,
units and abbreviations, one of plain prose: the minimum, median and 95th percentile of the
CPU time of ``--runs`` calls (and the median wall time), in one process.
``--baseline`` times another version of the module too, interleaved call by call so that both
see the same machine load (``git show REV:runtime/normalize.py > /tmp/old.py``).

Judging: a reading is *right* when it equals the expected text; *acceptable* when it equals one
of the listed alternatives, or the expected text or an alternative once case, hyphens (read as
spaces) and commas are set aside, which espeak-ng reads alike; *wrong* otherwise.
tests/runtime/test_runtime_normalize.py requires at least 95 % right or acceptable per file.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # this checkout's runtime, not an installed one

from runtime.text.normalize import prepare_text  # noqa: E402

DATA = REPO / "tests" / "runtime" / "data"
HELD_OUT = DATA / "normalize_heldout.tsv"
ISSUE_CASES = DATA / "normalize_issue21.tsv"
POST_HOC = DATA / "normalize_posthoc.tsv"
"""Realistic sentences written after the rules, scored as they came out (a check on overfitting)."""
VERDICTS = ("right", "acceptable", "wrong")

PARAGRAPH_PIECE = (
    "On 2024-03-15 at 3:30 pm, Dr. Smith paid $1,234.56 for 3 GB of storage, 45% more than "
    "the $2.5M budget of 1999 allowed. The 21st runner covered 5 km in 20 min at 12 mph, "
    "while Mr. and Mrs. Jones (see pp. 10-20) called (555) 123-4567 about the 1990s, e.g. "
    "the '80s, Henry VIII and World War II. Mix 1/2 cup with 2 1/2 hours of #MachineLearning "
    "on a 16:9 screen; the score was 3-2, etc. Use the <b>bold</b> tag when 3 < 5. "
)

PROSE_PIECE = (
    "The river was quiet that morning, and the boats sat low in the water while the fishermen "
    "argued about the weather. Nobody expected the storm to come so early in the season, but "
    "the old harbour master had seen the clouds gather over the hills and said as much. "
)


def paragraph(chars: int = 4096, piece: str = PARAGRAPH_PIECE) -> str:
    """A fixed English paragraph of exactly ``chars`` characters (the input limit's default):
    by default dense with numbers, prices, dates and abbreviations (the costly case)."""
    text = piece * (chars // len(piece) + 1)
    return text[:chars]


@dataclass(frozen=True)
class Case:
    category: str
    text: str
    expected: str
    alternatives: tuple[str, ...] = ()


@dataclass
class Score:
    counts: Counter[str] = field(default_factory=Counter)
    by_category: dict[str, Counter[str]] = field(default_factory=dict)
    wrong: list[tuple[Case, str]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def passed_share(self) -> float:
        return (self.counts["right"] + self.counts["acceptable"]) / max(1, self.total)

    def summary(self) -> str:
        return (f"{self.total} cases: {self.counts['right']} right, {self.counts['acceptable']} "
                f"acceptable, {self.counts['wrong']} wrong ({100 * self.passed_share:.1f} % right "
                "or acceptable)")


def load_cases(path: Path) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        columns = line.split("\t")
        if len(columns) not in (3, 4):
            raise ValueError(f"{path}:{number}: expected 3 or 4 tab-separated columns "
                             f"(category, input, expected, alternatives), found {len(columns)}")
        alternatives = tuple(a.strip() for a in columns[3].split(" | ") if a.strip()) if len(columns) == 4 else ()
        cases.append(Case(columns[0], columns[1], columns[2], alternatives))
    return cases


def speak(text: str) -> str:
    """What the front end hands to espeak for an English voice, segments joined by a space."""
    return " ".join(segment.text for segment in prepare_text(text, "en_US", "bench").segments)


def _fold(text: str) -> str:
    return " ".join(re.sub(r"[-,]", " ", text.lower()).split())


def judge(case: Case, spoken: str) -> str:
    if spoken == case.expected:
        return "right"
    if spoken in case.alternatives:
        return "acceptable"
    if _fold(spoken) in {_fold(t) for t in (case.expected, *case.alternatives)}:
        return "acceptable"
    return "wrong"


def score(path: Path) -> Score:
    result = Score()
    for case in load_cases(path):
        spoken = speak(case.text)
        verdict = judge(case, spoken)
        result.counts[verdict] += 1
        result.by_category.setdefault(case.category, Counter())[verdict] += 1
        if verdict == "wrong":
            result.wrong.append((case, spoken))
    return result


def time_paragraph(runs: int, baseline: Path | None = None,
                   text: str | None = None) -> dict[str, tuple[list[float], list[float]]]:
    """CPU and wall seconds of ``prepare_text`` on a 4,096-character paragraph, per call, for
    this checkout and (if given) a baseline module file, interleaved. CPU time (this thread's)
    is what a call costs the event loop; wall time also counts other processes on a busy host."""
    text = paragraph() if text is None else text
    versions: dict[str, Callable[..., object]] = {"this checkout": prepare_text}
    if baseline is not None:
        spec = importlib.util.spec_from_file_location("baseline_normalize", baseline)
        if spec is None or spec.loader is None:
            raise SystemExit(f"--baseline {baseline}: not a Python module file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        versions[f"baseline {baseline.name}"] = module.prepare_text
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in versions}
    for function in versions.values():
        function(text, "en_US", "bench")  # warm: compiled patterns, imports, caches
    for _ in range(runs):
        for name, function in versions.items():
            cpu, wall = time.thread_time(), time.perf_counter()
            function(text, "en_US", "bench")
            samples[name][0].append(time.thread_time() - cpu)
            samples[name][1].append(time.perf_counter() - wall)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed prepare_text calls (default 200)")
    parser.add_argument("--wrong", action="store_true", help="list every wrong reading")
    parser.add_argument("--baseline", type=Path, help="another normalize.py to time alongside")
    args = parser.parse_args()
    for path in (HELD_OUT, ISSUE_CASES, POST_HOC):
        result = score(path)
        print(f"{path.relative_to(REPO)}: {result.summary()}")
        for category, counts in sorted(result.by_category.items()):
            print(f"  {category:<12} " + " ".join(f"{v}={counts[v]}" for v in VERDICTS))
        if args.wrong:
            for case, spoken in result.wrong:
                print(f"  WRONG {case.text!r}\n        got      {spoken!r}\n        expected {case.expected!r}")
    for kind, text in (("dense", paragraph()), ("prose", paragraph(piece=PROSE_PIECE))):
        for name, (cpu, wall) in time_paragraph(args.runs, args.baseline, text).items():
            cpu.sort()
            p95 = cpu[min(len(cpu) - 1, int(0.95 * len(cpu)))]
            print(f"prepare_text, {len(text)} characters of {kind} text, {name}: CPU min {cpu[0] * 1000:.2f} ms, "
                  f"median {statistics.median(cpu) * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms; wall median "
                  f"{statistics.median(wall) * 1000:.2f} ms ({args.runs} runs)")


if __name__ == "__main__":
    main()
