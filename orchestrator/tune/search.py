"""The search: Model Analyzer's quick mode, with paired measurements.

Start from the plan's default; move one knob at a time (``space.neighbours``); each challenger
runs next to the incumbent and the two are measured alternately (``trial.paired_comparison``)
until the difference is outside the pair-to-pair spread, or it is a tie. A challenger that wins
(and meets the constraints) becomes the incumbent. The search stops when the best has improved
by less than ``min_gain`` for ``patience`` candidates in a row, when every knob has been tried
with nothing gained, or when the time budget would run out. Ctrl-C stops it too; everything
measured until then is kept. Finally the chosen configuration is compared once more, paired,
against the plan's default, and the default is kept unless the chosen one is at least a tie.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import DeployError
from orchestrator.launch.spec import LaunchSpec
from orchestrator.tune.loadgen import LevelResult
from orchestrator.tune.space import Candidate, Knob, neighbours
from orchestrator.tune.trial import Comparison, Instance, Round, measurement_spec, paired_comparison

DEFAULT = Candidate((), "the plan's own values")


@dataclass(frozen=True)
class Constraints:
    p95_max_s: float | None = None
    ttfa_max_s: float | None = None
    memory_max_bytes: int | None = None


@dataclass(frozen=True)
class TuneOptions:
    levels: tuple[int, ...]
    requests: int
    objective: str = "throughput"
    budget_s: float = 600.0
    constraints: Constraints = Constraints()
    min_gain: float = 0.05
    patience: int = 3
    min_pairs: int = 2
    max_pairs: int = 4


@dataclass(frozen=True)
class LevelSummary:
    concurrency: int
    requests: int
    failures: int
    audio_per_s: float
    p50_s: float
    p95_s: float
    ttfa_p50_s: float
    ttfa_p95_s: float


def summarize_level(results: Sequence[LevelResult]) -> LevelSummary:
    """The rounds' results at one concurrency level as one: their samples and wall time together."""
    level = LevelResult(results[0].concurrency, tuple(s for r in results for s in r.samples),
                        sum(r.wall_s for r in results))
    return LevelSummary(
        concurrency=level.concurrency, requests=len(level.samples), failures=level.failures,
        audio_per_s=level.audio_per_s,
        p50_s=level.latency_quantile(0.5), p95_s=level.latency_quantile(0.95),
        ttfa_p50_s=level.ttfa_quantile(0.5), ttfa_p95_s=level.ttfa_quantile(0.95))


@dataclass
class Record:
    """Everything measured about one candidate."""

    number: int
    candidate: Candidate
    rounds: list[Round] = field(default_factory=list)
    startup_s: float = 0.0
    against: int | None = None
    """Number of the incumbent it was compared with."""
    comparison: Comparison | None = None
    outcome: str = "measured"
    """``incumbent``, ``accepted``, ``rejected``, ``tie``, ``infeasible``, ``failed``, ``interrupted``."""
    error: str = ""
    instance: Instance | None = field(default=None, repr=False, compare=False)
    """The running instance while this candidate is the incumbent-to-be."""

    def levels(self) -> list[LevelSummary]:
        if not self.rounds:
            return []
        return [summarize_level([r.levels[i] for r in self.rounds]) for i in range(len(self.rounds[0].levels))]

    @property
    def peak_rss_bytes(self) -> int:
        return max((r.peak_rss_bytes for r in self.rounds), default=0)

    def score(self, objective: str) -> float:
        scores = [r.score(objective) for r in self.rounds]
        return sum(scores) / len(scores) if scores else 0.0

    def violations(self, constraints: Constraints) -> list[str]:
        found: list[str] = []
        for level in self.levels():
            if level.failures:
                found.append(f"{level.failures} failed request(s) at concurrency {level.concurrency}")
            if constraints.p95_max_s is not None and level.p95_s > constraints.p95_max_s:
                found.append(f"p95 {level.p95_s:.2f} s > {constraints.p95_max_s:g} s at concurrency {level.concurrency}")
            if constraints.ttfa_max_s is not None and level.ttfa_p95_s > constraints.ttfa_max_s:
                found.append(f"time to first audio p95 {level.ttfa_p95_s:.2f} s > {constraints.ttfa_max_s:g} s "
                             f"at concurrency {level.concurrency}")
        if constraints.memory_max_bytes is not None and self.peak_rss_bytes > constraints.memory_max_bytes:
            found.append(f"peak RSS {self.peak_rss_bytes / 2**20:.0f} MiB > {constraints.memory_max_bytes / 2**20:.0f} MiB")
        return found


@dataclass
class TuneResult:
    records: list[Record]
    chosen: Record
    default: Record
    stop_reason: str
    final: Comparison | None
    """Chosen vs plan default, paired, at the end (None when the default was chosen)."""
    why: list[str]
    elapsed_s: float
    gate: list[dict[str, object]] = field(default_factory=list)
    interrupted: bool = False


Progress = Callable[[str], None]
SpecFor = Callable[[Mapping[str, str]], LaunchSpec]
"""Runtime variables to set -> the LaunchSpec of the plan made with them (the pipeline)."""


class _Stop(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class Search:
    spec_for: SpecFor
    knobs: Sequence[Knob]
    plan_env: Mapping[str, str]
    options: TuneOptions
    work_dir: Path
    environ: Mapping[str, str]
    progress: Progress
    started: float
    """``clock()`` when the tuning began: the time budget counts from there."""
    clock: Callable[[], float] = time.monotonic
    records: list[Record] = field(default_factory=list, init=False)
    _cost_s: float = field(default=0.0, init=False)
    _startup_s: float = field(default=0.0, init=False)
    """Measured: launching the plan's default until ready."""
    _round_s: float = field(default=0.0, init=False)
    """Measured: one round (every level) on the plan's default."""
    _incumbent: Record = field(default_factory=lambda: Record(0, DEFAULT), init=False)
    _inc_inst: Instance | None = field(default=None, init=False)

    # --- budget ------------------------------------------------------------------------
    def left_s(self) -> float:
        return self.options.budget_s - (self.clock() - self.started)

    def _estimate_s(self) -> float:
        """Seconds one more comparison should take: a launch, the untimed warm-up round and the
        minimum pairs (two rounds each), at the durations measured on the plan's default; the
        slowest comparison so far when that took longer."""
        model = self._startup_s + (1 + 2 * self.options.min_pairs) * self._round_s
        return max(self._cost_s, model)

    def _final_check_s(self) -> float:
        """Seconds the final paired check against the default takes: two launches, two warm-ups, the pairs."""
        return 2 * self._startup_s + (2 + 2 * self.options.min_pairs) * self._round_s

    def _room_for_another_pair(self) -> bool:
        """A comparison adds pairs beyond the minimum only while the final check stays affordable."""
        return self.left_s() - self._final_check_s() > 2 * self._round_s

    def _max_candidates(self) -> int:
        return 1 + sum(len(k.options) for k in self.knobs)

    # --- instances ---------------------------------------------------------------------
    def _record(self, candidate: Candidate) -> Record:
        record = Record(len(self.records) + 1, candidate)
        self.records.append(record)
        return record

    def _launch(self, record: Record) -> Instance:
        spec = measurement_spec(self.spec_for(record.candidate.mapping), self.options.levels)
        inst = Instance(record.candidate, spec, self.work_dir / f"candidate-{record.number:02d}", self.environ)
        inst.start()
        record.startup_s = inst.startup_s
        return inst

    def _compare(self, inc: Instance, inc_rec: Record, ch: Instance, ch_rec: Record) -> Comparison:
        by_inst = {id(inc): inc_rec, id(ch): ch_rec}
        return paired_comparison(
            inc, ch, levels=self.options.levels, requests=self.options.requests, objective=self.options.objective,
            min_pairs=self.options.min_pairs, max_pairs=self.options.max_pairs,
            record=lambda inst, rnd: by_inst[id(inst)].rounds.append(rnd),
            keep_going=self._room_for_another_pair)

    def _feasible(self, record: Record) -> bool:
        return not record.violations(self.options.constraints)

    # --- the search ----------------------------------------------------------------------
    def run(self) -> TuneResult:
        default = self._record(DEFAULT)
        default.outcome = "incumbent"
        self._incumbent, self._inc_inst = default, None
        stop_reason = "every knob tried"
        interrupted = False
        final: Comparison | None = None
        try:
            self.progress(f"candidate 1 of <= {self._max_candidates()}: the plan's default; {self.left_s():.0f} s left")
            began = self.clock()
            try:
                self._inc_inst = self._launch(default)
                launched = self.clock()
                default.rounds.append(self._inc_inst.measure(self.options.levels, self.options.requests))
            except DeployError as exc:
                default.outcome, default.error = "failed", exc.message.splitlines()[0]
                raise _Stop(f"the plan's default could not be measured ({default.error})") from None
            self._startup_s, self._round_s = launched - began, self.clock() - launched
            self._climb()
        except _Stop as stop:
            stop_reason = stop.reason
        except KeyboardInterrupt:
            interrupted, stop_reason = True, "interrupted (Ctrl-C): keeping what was measured"
        finally:
            if self._inc_inst is not None:
                self._inc_inst.stop()
            for record in self.records:
                if record.instance is not None:
                    record.instance.stop()
                    record.instance = None
        if self.records[-1].outcome == "measuring":
            self.records[-1].outcome = "interrupted"
        why: list[str] = []
        chosen = self._incumbent
        if chosen is not default:
            chosen.outcome = "chosen"
        if chosen is not default and not interrupted:
            try:
                final = self._confirm(default, chosen)
            except KeyboardInterrupt:
                interrupted, stop_reason = True, f"{stop_reason}; interrupted during the final check"
            except DeployError as exc:
                why.append(f"the final check against the default could not run ({exc.message}); keeping the default")
                chosen = default
        if final is not None and final.verdict == "worse":
            why.append(f"the final paired check measured the chosen configuration at {final.mean_ratio:.2f}x the "
                       "plan's default (slower beyond the spread), so the default is kept")
            chosen = default
        why[:0] = self._explain(chosen, default, final, stop_reason)
        return TuneResult(self.records, chosen, default, stop_reason, final, why, self.clock() - self.started,
                          interrupted=interrupted)

    def _climb(self) -> None:
        """Hill-climb from ``self._incumbent``; raises _Stop with the reason it stopped."""
        tried: set[tuple[tuple[str, str], ...]] = {self._incumbent.candidate.values}
        flat = 0
        improved = True
        while improved:
            improved = False
            for knob in self.knobs:
                incumbent = self._incumbent
                for candidate in neighbours(incumbent.candidate, knob, self.plan_env):
                    if candidate.values in tried:
                        continue
                    tried.add(candidate.values)
                    # A candidate starts only if it can finish, and a win's final check after it.
                    need = self._estimate_s() + self._final_check_s()
                    if self.left_s() < need:
                        raise _Stop(f"time budget: {max(0.0, self.left_s()):.0f} s left; the next candidate needs "
                                    f"~{need:.0f} s (a comparison ~{self._estimate_s():.0f} s and the final check "
                                    f"~{self._final_check_s():.0f} s, from the durations measured here)")
                    record = self._record(candidate)
                    self.progress(f"candidate {record.number} of <= {self._max_candidates()}: {candidate.change} | "
                                  f"best: {incumbent.candidate.label()} "
                                  f"({incumbent.score(self.options.objective):.2f}) | {self.left_s():.0f} s left")
                    began = self.clock()
                    inc_inst = self._inc_inst
                    assert inc_inst is not None
                    gain = self._challenge(incumbent, inc_inst, record)
                    self._cost_s = max(self._cost_s, self.clock() - began)
                    if record.outcome == "accepted":
                        inc_inst.stop()
                        incumbent.outcome = "superseded" if incumbent.number != 1 else "default (superseded)"
                        self._incumbent, self._inc_inst = record, record.instance
                        record.instance = None
                        improved = True
                    flat = flat + 1 if gain < self.options.min_gain else 0
                    if flat >= self.options.patience:
                        raise _Stop(f"gains flattened: {flat} candidates in a row improved the best by less than "
                                    f"{self.options.min_gain:.0%}")
                    if record.outcome == "accepted":
                        break  # the knob moved; go on with the next knob from the new incumbent

    def _challenge(self, incumbent: Record, inc_inst: Instance, record: Record) -> float:
        """Measure ``record`` against the incumbent; sets its outcome; returns the gain (ratio - 1)."""
        record.outcome = "measuring"
        record.against = incumbent.number
        try:
            ch = self._launch(record)
        except DeployError as exc:
            record.outcome, record.error = "failed", exc.message.splitlines()[0]
            self.progress(f"  candidate {record.number} failed to start: {record.error}")
            return 0.0
        keep = False
        try:
            # One untimed round first: the incumbent is warm from earlier rounds, a fresh instance is
            # not (onnxruntime/oneDNN build kernels for new input shapes on first use).
            ch.measure(self.options.levels, self.options.requests)
            record.comparison = self._compare(inc_inst, incumbent, ch, record)
            comp = record.comparison
            if not self._feasible(record):
                record.outcome = "infeasible"
            elif not self._feasible(incumbent) or comp.verdict == "better":
                record.outcome, keep = "accepted", True
            else:
                record.outcome = "tie" if comp.verdict == "tie" else "rejected"
            self.progress(f"  candidate {record.number}: {comp.mean_ratio:.2f}x the best "
                          f"(pairs {', '.join(f'{r:.2f}' for r in comp.ratios)}; spread +/-{comp.spread:.2f}) "
                          f"-> {record.outcome}")
            return comp.mean_ratio - 1 if keep else 0.0
        finally:
            if keep:
                record.instance = ch
            else:
                ch.stop()

    def _confirm(self, default: Record, chosen: Record) -> Comparison:
        """Chosen vs plan default, paired, fresh instances of both."""
        self.progress(f"final check: {chosen.candidate.label()} against the plan's default, paired")
        check_default = Record(0, default.candidate)
        check_chosen = Record(0, chosen.candidate)
        with self._launch_quiet(default.candidate, "final-default") as a, \
                self._launch_quiet(chosen.candidate, "final-chosen") as b:
            for fresh in (a, b):  # untimed warm-up rounds, as for every challenger
                fresh.measure(self.options.levels, self.options.requests)
            return paired_comparison(
                a, b, levels=self.options.levels, requests=self.options.requests, objective=self.options.objective,
                min_pairs=self.options.min_pairs, max_pairs=self.options.max_pairs,
                record=lambda inst, rnd: (check_default if inst is a else check_chosen).rounds.append(rnd),
                keep_going=lambda: self.left_s() > 2 * self._round_s)

    def _launch_quiet(self, candidate: Candidate, name: str) -> Instance:
        spec = measurement_spec(self.spec_for(candidate.mapping), self.options.levels)
        return Instance(candidate, spec, self.work_dir / name, self.environ)

    def _explain(self, chosen: Record, default: Record, final: Comparison | None, stop_reason: str) -> list[str]:
        objective = self.options.objective
        lines = [f"search stopped: {stop_reason}"]
        if not default.rounds:
            lines.append("nothing was measured, so the config keeps the plan's values; give `deploy tune` a larger "
                         "--budget, or run it on a quieter machine")
        elif chosen is default:
            lines.append("chosen: the plan's default - no candidate beat it by more than the run-to-run spread "
                         "while meeting the constraints")
        else:
            lines.append(f"chosen: {chosen.candidate.label()} (candidate {chosen.number}); it won its paired "
                         f"comparison ({chosen.comparison.mean_ratio:.2f}x, spread +/-{chosen.comparison.spread:.2f})"
                         if chosen.comparison else f"chosen: {chosen.candidate.label()}")
        if final is not None:
            lines.append(f"final paired check against the plan's default: {final.mean_ratio:.2f}x on {objective} "
                         f"(pairs {', '.join(f'{r:.2f}' for r in final.ratios)}; verdict {final.verdict})")
        violations = chosen.violations(self.options.constraints)
        if violations:
            lines.append("no candidate met every constraint; the chosen one misses: " + "; ".join(violations))
        return lines

