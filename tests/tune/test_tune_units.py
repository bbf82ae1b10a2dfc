"""deploy tune's pure parts: knob neighbours, the paired decision, the Pareto front, the load
generator's WAV arithmetic, option parsing and the tuned config's round trip through --config."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from orchestrator.cli.tune_cmd import parse_duration, parse_levels
from orchestrator.errors import UsageError
from orchestrator.plan.user_config import load_config
from orchestrator.tune.loadgen import LevelResult, Sample, quantile, wav_audio_seconds
from orchestrator.tune.report import pareto_front, write_config
from orchestrator.tune.search import Constraints, Record, summarize_level
from orchestrator.tune.space import Candidate, build_knobs, layouts, neighbours
from orchestrator.tune.trial import Round, decide

PLAN_2CPU = {"workers": 2, "threads": 1, "device": "cpu", "engine": "onnx", "precision": "fp32",
             "env": {"TAILOR_WORKERS": "2", "TAILOR_THREADS_PER_WORKER": "1", "TAILOR_SOLO_WIDE": "true",
                     "TAILOR_ORT_MEMORY_ARENA": "true"}}


def test_layouts_split_every_cpu() -> None:
    assert layouts(4) == [(4, 1), (2, 2), (1, 4)]
    assert layouts(2) == [(2, 1), (1, 2)]


def test_knobs_for_a_two_cpu_onnx_plan_start_with_gated_models_then_the_layout() -> None:
    knobs = build_knobs(PLAN_2CPU, variants=["int8-static-decoder"], torch_available=False, allocators={},
                        torch_bf16=True)
    names = [k.name for k in knobs]
    assert names[:4] == ["model variant", "torch bf16", "workers x threads", "solo-wide"]
    assert [k.name for k in build_knobs(PLAN_2CPU, torch_available=False, allocators={})][:2] == [
        "workers x threads", "solo-wide"]
    assert "engine" not in names and "allocator" not in names
    with_alloc = build_knobs(PLAN_2CPU, torch_available=True, allocators={"jemalloc": "/usr/lib/libjemalloc.so.2"})
    assert "allocator" in [k.name for k in with_alloc] and "engine" in [k.name for k in with_alloc]
    assert "model variant" not in [k.name for k in with_alloc]  # no variant passed the gate


def test_torch_and_gpu_plans_also_try_a_shorter_gil_switch_interval() -> None:
    gpu = {"workers": 2, "threads": 2, "device": "cuda", "engine": "torch", "precision": "bf16",
           "env": {"TAILOR_WORKERS": "2", "TAILOR_THREADS_PER_WORKER": "2"}}
    knobs = {k.name: k for k in build_knobs(gpu, allocators={})}
    assert knobs["GIL switch interval"].options == ((("TAILOR_SWITCH_INTERVAL_MS", "0.5"),),)
    assert "precision" in knobs and "workers x threads" not in knobs
    # An onnx plan on the CPU does not pay for the trial: measured ~10 % slower at concurrency 1.
    assert "GIL switch interval" not in [k.name for k in build_knobs(PLAN_2CPU, torch_available=True, allocators={})]


def test_neighbours_move_one_knob_and_can_go_back_to_the_plan_value() -> None:
    env = PLAN_2CPU["env"]
    assert isinstance(env, dict)
    layout, solo = build_knobs(PLAN_2CPU, torch_available=False, allocators={})[:2]
    default = Candidate((), "plan")
    [one_by_two] = neighbours(default, layout, env)
    assert one_by_two.mapping == {"TAILOR_WORKERS": "1", "TAILOR_THREADS_PER_WORKER": "2"}
    assert "workers 2 -> 1" in one_by_two.change
    # From 1x2 the layout knob offers only the plan's own 2x1 again (which the search has tried).
    assert [c.mapping for c in neighbours(one_by_two, layout, env)] == [{}]
    # Solo-wide needs two workers: nothing to try from 1x2.
    assert neighbours(one_by_two, solo, env) == []
    [solo_off] = neighbours(default, solo, env)
    assert solo_off.mapping == {"TAILOR_SOLO_WIDE": "false"}


@pytest.mark.parametrize(("ratios", "verdict"), [
    ([1.30, 1.32], "better"),        # consistent and far outside the spread
    ([0.70, 0.72, 0.69], "worse"),
    ([1.05, 1.55], "better"),        # mean 1.30 > 1 + spread 0.25
    ([2.04, 0.85, 0.57, 0.89], "tie"),  # pairs disagree: noise
    ([1.01, 1.015], "tie"),          # consistent but under the 2 % floor
    ([1.4], "tie"),                  # one pair has no spread to compare with
])
def test_paired_decision(ratios: list[float], verdict: str) -> None:
    assert decide(ratios) == verdict


def test_pareto_front_keeps_points_nothing_beats_on_both_axes() -> None:
    # (throughput, p95): higher throughput and lower p95 are better.
    points = [(10.0, 2.0), (8.0, 1.0), (7.0, 1.5), (10.0, 3.0), (12.0, 4.0)]
    assert pareto_front(points) == [0, 1, 4]


def _wav(seconds: float, rate: int = 22050) -> bytes:
    data = b"\0\0" * int(seconds * rate)
    header = b"RIFF" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"fmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF)
    return header + data


def test_wav_seconds_come_from_the_header_rate() -> None:
    assert wav_audio_seconds(_wav(1.5)) == pytest.approx(1.5)
    assert wav_audio_seconds(_wav(2.0, 24000)) == pytest.approx(2.0)
    assert wav_audio_seconds(b"{\"error\": 1}") == 0.0


def test_level_summary_pools_rounds_and_counts_failures() -> None:
    a = LevelResult(4, (Sample(1.0, 0.2, 3.0, 200), Sample(2.0, 0.3, 3.0, 200)), 2.0)
    b = LevelResult(4, (Sample(1.5, 0.2, 3.0, 200), Sample(9.0, 9.0, 0.0, 503)), 2.0)
    s = summarize_level([a, b])
    assert s.requests == 4 and s.failures == 1
    assert s.audio_per_s == pytest.approx(9.0 / 4.0)
    assert s.p95_s == 2.0 and quantile([], 0.5) == float("inf")
    mib = 2**20
    record = Record(1, Candidate((), "x"), rounds=[Round((a,), 100 * mib), Round((b,), 300 * mib)])
    assert record.peak_rss_bytes == 300 * mib
    assert record.violations(Constraints(p95_max_s=1.8, memory_max_bytes=200 * mib)) == [
        "1 failed request(s) at concurrency 4", "p95 2.00 s > 1.8 s at concurrency 4", "peak RSS 300 MiB > 200 MiB"]
    assert record.violations(Constraints()) == ["1 failed request(s) at concurrency 4"]


@pytest.mark.parametrize(("text", "seconds"), [("300", 300.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0)])
def test_budget_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, "--budget") == seconds


def test_bad_options_are_usage_errors_with_a_hint() -> None:
    with pytest.raises(UsageError) as info:
        parse_duration("five minutes", "--budget")
    assert "5m" in info.value.hint
    with pytest.raises(UsageError):
        parse_levels("1,x")
    assert parse_levels("8,1,8") == (1, 8)


def test_tuned_config_is_read_back_with_the_source_tuned(tmp_path: Path) -> None:
    path = tmp_path / "tuned.yaml"
    write_config(path, {"tuned": {"by": "deploy tune", "objective": "throughput", "report": "r/report.md"},
                        "profile": "cpu-only", "settings": {"workers": 1, "threads": 2},
                        "env": {"TAILOR_SOLO_WIDE": "false"}})
    config = load_config(path)
    assert config.label == "tuned" and config.profile == "cpu-only"
    assert config.values["TAILOR_WORKERS"] == 1 and config.values["TAILOR_SOLO_WIDE"] is False
    path.write_text("tuned:\n  by: me\n  colour: blue\n")
    with pytest.raises(UsageError, match="colour"):
        load_config(path)


def test_a_missing_tune_extra_is_named_with_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.tune import gate

    monkeypatch.setattr(gate, "missing_packages", lambda: ["pesq", "pystoi"])
    with pytest.raises(UsageError) as err:
        gate.run_gate(["int8-static-decoder"], {}, timeout_s=10)
    assert err.value.message == "the quality gate needs pesq, pystoi, scipy; not installed: pesq, pystoi"
    assert "pip install 'tailor-deploy[tune]'" in err.value.hint and "--variants none" in err.value.hint
