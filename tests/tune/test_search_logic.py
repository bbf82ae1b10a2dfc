"""The search loop with a stand-in for the runtime: every rule of the quick search, deterministically.

Instances are replaced by objects whose measured throughput is a fixed function of the candidate's
settings (a table below), so the tests can state what the search must conclude. The real paired
comparison, decision rule, budget and patience code runs unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from orchestrator.errors import LaunchError
from orchestrator.tune import search as search_mod
from orchestrator.tune.loadgen import LevelResult, Sample
from orchestrator.tune.search import Constraints, Search, TuneOptions
from orchestrator.tune.space import Knob, as_values
from orchestrator.tune.trial import Round

PLAN_ENV = {"TAILOR_WORKERS": "2", "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_SOLO_WIDE": "true"}
KNOBS = [
    Knob("workers x threads", (as_values({"TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "2"}),), "layout"),
    Knob("solo-wide", (as_values({"TAILOR_SOLO_WIDE": "false"}),), "solo", min_workers=2),
    Knob("arena", (as_values({"TAILOR_ORT_MEMORY_ARENA": "false"}),), "arena"),
    Knob("graph", (as_values({"TAILOR_ORT_GRAPH_OPTIMIZATION": "extended"}),), "graph"),
    Knob("mode", (as_values({"TAILOR_ORT_EXECUTION_MODE": "parallel"}),), "mode"),
]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def install_fakes(monkeypatch: pytest.MonkeyPatch, speed: Any, clock: FakeClock, *, rss: int = 100 * 2**20,
                  broken: frozenset[str] = frozenset(), round_s: float = 4.0,
                  default_broken: bool = False) -> list[str]:
    launched: list[str] = []

    class FakeInstance:
        def __init__(self, candidate: Any, spec: Any, state_dir: Path, environ: Mapping[str, str]) -> None:
            self.candidate = candidate
            self.startup_s = 1.0

        def start(self) -> None:
            launched.append(self.candidate.label())
            clock.now += 5
            if any(k in broken for k in self.candidate.mapping) or (default_broken and not self.candidate.mapping):
                raise LaunchError(f"candidate {self.candidate.label()} exited with code 1 before it was ready", "")

        def stop(self) -> None:
            pass

        def __enter__(self) -> FakeInstance:
            self.start()
            return self

        def __exit__(self, *_: object) -> None:
            self.stop()

        def measure(self, levels: Any, requests: int) -> Round:
            clock.now += round_s
            audio_per_s = speed(self.candidate.mapping)
            results = tuple(LevelResult(c, tuple(Sample(1.0, 0.3, audio_per_s / requests, 200) for _ in range(requests)), 1.0)
                            for c in levels)
            return Round(results, rss)

    monkeypatch.setattr(search_mod, "Instance", FakeInstance)
    monkeypatch.setattr(search_mod, "measurement_spec", lambda spec, levels: spec)
    return launched


def run_search(speed: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *, budget_s: float = 600,
               constraints: Constraints | None = None, rss: int = 100 * 2**20,
               broken: frozenset[str] = frozenset(), round_s: float = 4.0,
               default_broken: bool = False) -> tuple[search_mod.TuneResult, list[str], list[str]]:
    clock = FakeClock()
    launched = install_fakes(monkeypatch, speed, clock, rss=rss, broken=broken, round_s=round_s,
                             default_broken=default_broken)
    progress: list[str] = []
    options = TuneOptions(levels=(1, 8), requests=4, budget_s=budget_s,
                          constraints=constraints or Constraints())
    result = Search(lambda values: object(), KNOBS, PLAN_ENV, options, tmp_path, {}, progress.append,  # type: ignore[arg-type,return-value]
                    clock=clock, started=0.0).run()
    return result, launched, progress


def test_a_clear_winner_is_chosen_and_confirmed_against_the_default(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    result, launched, progress = run_search(
        lambda v: 13.0 if v.get("TAILOR_WORKERS") == "1" else 10.0, monkeypatch, tmp_path)
    assert result.chosen.candidate.mapping == {"TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "2"}
    assert result.records[1].outcome == "chosen" and result.records[1].comparison is not None
    assert result.records[1].comparison.verdict == "better"
    assert result.final is not None and result.final.verdict == "better"
    # Solo-wide is not tried with one worker; the rest tie, and three ties in a row stop the search.
    assert not any("solo_wide=false" in label and "workers=1" in label for label in launched)
    assert "gains flattened" in result.stop_reason
    assert [r.outcome for r in result.records[2:]] == ["tie", "tie", "tie"]
    assert any(line.startswith("candidate 2 of <= 6") for line in progress)


def test_when_nothing_beats_the_default_it_is_kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, _launched, _progress = run_search(
        lambda v: 7.0 if v.get("TAILOR_WORKERS") == "1" else 10.0, monkeypatch, tmp_path)
    assert result.chosen is result.default and result.final is None
    assert result.records[1].outcome == "rejected"
    assert "plan's default" in result.why[1]


def test_a_faster_candidate_over_the_memory_limit_never_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    limit = Constraints(memory_max_bytes=200 * 2**20)
    result, _launched, _progress = run_search(
        lambda v: 20.0 if v.get("TAILOR_WORKERS") == "1" else 10.0, monkeypatch, tmp_path, constraints=limit,
        rss=300 * 2**20)
    # Every candidate (the default too) is over the limit: none is feasible, the default stays.
    assert result.records[1].outcome == "infeasible" and result.chosen is result.default
    assert any("misses" in line for line in result.why)


def test_a_candidate_that_cannot_start_is_recorded_and_skipped(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    result, _launched, _progress = run_search(
        lambda v: 10.0, monkeypatch, tmp_path, broken=frozenset({"TAILOR_WORKERS"}))
    assert result.records[1].outcome == "failed" and "exited with code 1" in result.records[1].error
    assert result.chosen is result.default


def test_the_budget_stops_the_search_before_it_runs_out(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    result, launched, _progress = run_search(lambda v: 10.0, monkeypatch, tmp_path, budget_s=40)
    # The default costs 5 s of launch + one 4 s round; a candidate needs a comparison (5 s + 5 rounds)
    # and the final check (2 x 5 s + 6 rounds): 59 s, more than the 31 s left, so none starts.
    assert [(r.outcome, r.candidate.label()) for r in result.records] == [("incumbent", "plan default")]
    assert launched == ["plan default"] and result.chosen is result.default
    assert result.stop_reason.startswith("time budget: 31 s left; the next candidate needs ~59 s "
                                         "(a comparison ~25 s and the final check ~34 s")
    assert result.elapsed_s == 9.0


FASTER_WITH_ONE_WORKER = staticmethod(lambda v: 13.0 if v.get("TAILOR_WORKERS") == "1" else 10.0)


@pytest.mark.parametrize("budget_s", [60.0, 120.0, 250.0, 400.0, 600.0])
def test_a_candidate_starts_only_if_it_and_the_final_check_fit_the_budget(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, budget_s: float) -> None:
    # Slow rounds (30 s, as on a loaded machine): the run started candidate 2 with 62 s left
    # against a ~189 s comparison and used 248 s of a 120 s budget.
    result, launched, _progress = run_search(FASTER_WITH_ONE_WORKER, monkeypatch, tmp_path, budget_s=budget_s,
                                             round_s=30.0)
    assert result.elapsed_s <= budget_s, (result.elapsed_s, result.stop_reason, launched)
    if len(result.records) == 1:
        # launch 5 s + (1 warm-up + 2 pairs x 2) x 30 s; final: 2 x 5 s + (2 + 4) x 30 s
        assert result.stop_reason.startswith(f"time budget: {budget_s - 35:.0f} s left; the next candidate needs "
                                             "~345 s (a comparison ~155 s and the final check ~190 s")
        assert "search stopped: time budget" in result.why[0]


def test_the_default_that_cannot_start_still_gives_a_result_that_says_why(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    from orchestrator.tune.report import tuned_config, write_report

    result, _launched, _progress = run_search(lambda v: 10.0, monkeypatch, tmp_path, default_broken=True)
    assert result.chosen is result.default and result.default.outcome == "failed"
    assert result.stop_reason.startswith("the plan's default could not be measured (candidate ")
    assert result.why[1].startswith("nothing was measured, so the config keeps the plan's values")
    options = TuneOptions(levels=(1, 8), requests=4)
    report = write_report(tmp_path / "report", result, options, config_path=tmp_path / "tuned.yaml",
                          plan_summary="cpu-only", gate=[], gate_note="")
    assert "could not be measured" in report.read_text()
    assert tuned_config(result, "cpu-only", ["TAILOR_WORKERS"], PLAN_ENV, tmp_path / "report", "throughput")
