"""One candidate running: launched by the process backend, measured by the load generator.

Measurement-only settings (never written to the tuned config): the response cache is off (the
text set repeats), the queue holds the highest concurrency level, the port is a free loopback
port, and the log level is ``warning``.
"""

from __future__ import annotations

import dataclasses
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import LaunchError
from orchestrator.launch.process_backend import ProcessRunner, tree_rss_bytes
from orchestrator.launch.spec import LaunchSpec
from orchestrator.polling import poll_until
from orchestrator.supervise.http_client import check_ready
from orchestrator.tune.loadgen import LevelResult, run_level
from orchestrator.tune.space import Candidate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Round:
    """One pass of every concurrency level against one candidate."""

    levels: tuple[LevelResult, ...]
    peak_rss_bytes: int

    def score(self, objective: str) -> float:
        """Higher is better: geometric mean of audio-s/s (throughput) or of 1/p95 (latency)."""
        if objective == "latency":
            values = [1.0 / lv.latency_quantile(0.95) if lv.ok else 0.0 for lv in self.levels]
        else:
            values = [lv.audio_per_s for lv in self.levels]
        if any(v <= 0 for v in values):
            return 0.0
        return math.exp(sum(math.log(v) for v in values) / len(values))


class Instance:
    """A running candidate. Use as a context manager: it is always stopped (by pid)."""

    def __init__(self, candidate: Candidate, spec: LaunchSpec, state_dir: Path,
                 environ: Mapping[str, str], ready_timeout_s: float = 180.0) -> None:
        self.candidate = candidate
        port = free_port()
        self.spec = spec.with_port(port)
        self.state_dir = state_dir
        self.runner = ProcessRunner(self.spec, state_dir, environ=environ)
        self.ready_timeout_s = ready_timeout_s
        self.startup_s = 0.0

    @property
    def url(self) -> str:
        return self.spec.url

    def __enter__(self) -> Instance:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self) -> None:
        started = time.monotonic()
        self.runner.start()
        try:
            self._wait_ready(started)
        except BaseException:  # Ctrl-C while it starts: the caller never gets it to stop
            self.stop()
            raise

    def _wait_ready(self, started: float) -> None:
        last = ""

        def ready() -> bool | None:
            nonlocal last
            status = self.runner.poll()
            if not status.running:
                tail = "\n  ".join(self.runner.logs(8))
                self.stop()
                raise LaunchError(f"candidate {self.candidate.label()} {status.detail} before it was ready:\n  {tail}",
                                  f"see {self.runner.log_path}")
            health = check_ready(self.url, self.runner.identity.instance_id)
            if health.ok:
                self.startup_s = time.monotonic() - started
                return True
            last = health.detail
            return None

        if poll_until(ready, started + self.ready_timeout_s - time.monotonic(), 0.2):
            return
        self.stop()
        raise LaunchError(f"candidate {self.candidate.label()} not ready after {self.ready_timeout_s:.0f} s ({last})",
                          f"see {self.runner.log_path}")

    def stop(self) -> None:
        self.runner.stop(20.0)
        self.runner.remove()

    def tree_rss_bytes(self) -> int:
        try:
            return tree_rss_bytes(int(self.runner.ident))
        except ValueError:
            return 0

    def measure(self, levels: Sequence[int], requests: int, api_key: str = "") -> Round:
        """Every level once, the same sentences in the same order; peak RSS sampled every 50 ms."""
        peak = [self.tree_rss_bytes()]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                peak[0] = max(peak[0], self.tree_rss_bytes())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            results = tuple(run_level(self.url, level, max(requests, level), api_key=api_key) for level in levels)
        finally:
            stop.set()
            sampler.join()
        return Round(results, peak[0])


def measurement_spec(spec: LaunchSpec, levels: Sequence[int]) -> LaunchSpec:
    """The candidate's spec with the measurement-only settings."""
    env = dict(spec.env)
    env["TAILOR_CACHE_BYTES"] = "0"
    env["TAILOR_LOG_LEVEL"] = "warning"
    env["TAILOR_MAX_QUEUE"] = str(max(int(env.get("TAILOR_MAX_QUEUE", "0") or 0), max(levels)))
    return dataclasses.replace(spec, env=tuple(sorted(env.items())))


@dataclass(frozen=True)
class Comparison:
    """A paired comparison: rounds alternate between the incumbent and the challenger."""

    ratios: tuple[float, ...]
    """Challenger score / incumbent score, one per pair."""
    verdict: str
    """``better``, ``worse`` or ``tie`` (the difference is within the run-to-run spread)."""

    @property
    def mean_ratio(self) -> float:
        return sum(self.ratios) / len(self.ratios) if self.ratios else 1.0

    @property
    def spread(self) -> float:
        """Half the range of the pair ratios: how much the same comparison moves from pair to pair."""
        return (max(self.ratios) - min(self.ratios)) / 2 if len(self.ratios) > 1 else 0.0


def decide(ratios: Sequence[float], min_effect: float = 0.02) -> str:
    """``better``/``worse`` when every pair agrees and the mean is further from 1 than the spread."""
    if not ratios:
        return "tie"
    mean = sum(ratios) / len(ratios)
    spread = (max(ratios) - min(ratios)) / 2 if len(ratios) > 1 else float("inf")
    margin = max(spread, min_effect)
    if all(r > 1 for r in ratios) and mean - 1 > margin:
        return "better"
    if all(r < 1 for r in ratios) and 1 - mean > margin:
        return "worse"
    return "tie"


def paired_comparison(incumbent: Instance, challenger: Instance, *, levels: Sequence[int], requests: int,
                      objective: str, min_pairs: int, max_pairs: int,
                      record: Callable[[Instance, Round], None], keep_going: Callable[[], bool]) -> Comparison:
    """Alternate incumbent and challenger (ABBA order) until the verdict is clear or ``max_pairs`` ran."""
    ratios: list[float] = []
    for pair in range(max_pairs):
        order = (incumbent, challenger) if pair % 2 == 0 else (challenger, incumbent)
        rounds: dict[int, Round] = {}
        for inst in order:
            result = inst.measure(levels, requests)
            record(inst, result)
            rounds[id(inst)] = result
        a = rounds[id(incumbent)].score(objective)
        b = rounds[id(challenger)].score(objective)
        ratios.append(b / a if a > 0 else (float("inf") if b > 0 else 1.0))
        if len(ratios) >= min_pairs and (decide(ratios) != "tie" or not keep_going()):
            break
    return Comparison(tuple(ratios), decide(ratios))
