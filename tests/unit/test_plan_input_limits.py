"""The plan sizes TAILOR_MAX_INPUT_CHARS and TAILOR_REQUEST_TIMEOUT_S from the measured speed (#21):
the longest input it admits finishes within the runtime's admission budget."""

from __future__ import annotations

from pathlib import Path

from orchestrator.plan.input_limits import SPEEDS, chars_that_fit, speed_for
from orchestrator.plan.planner import Plan, make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from runtime.families.catalog import DEFAULT_FAMILY
from runtime.serving.admission import TYPICAL_CHUNK_CHARS, WorkEstimator
from runtime.settings import Settings

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"


def plan_for(name: str, **overrides: str) -> Plan:
    host = HostFacts.from_json_file(FACTS / f"{name}.json")
    return make_plan(host, select_profile(host, load_profiles()), overrides, {})


def prov(plan: Plan, name: str) -> tuple[str, str]:
    p = next(p for p in plan.provenance if p.name == name)
    return p.source, p.reason


def fits_idle(plan: Plan) -> bool:
    """Whether the plan's longest input finishes within the admission budget at the measured rate."""
    settings = Settings.from_environ(dict(plan.env))
    speed = speed_for(plan.model, plan.device, jetson=False)
    assert speed is not None
    estimator = WorkEstimator(settings.workers, settings.request_timeout_s, initial=speed.seconds_per_char)
    chars = settings.max_input_chars
    return estimator.idle_seconds(chars, min(chars, TYPICAL_CHUNK_CHARS)) <= estimator.budget_s


def test_two_vcpu_cpu_plan_admits_only_what_finishes_within_the_timeout() -> None:
    plan = plan_for("vps-2cpu-4gb")
    assert plan.device == "cpu"
    chars = int(plan.env["TAILOR_MAX_INPUT_CHARS"])
    assert plan.env["TAILOR_REQUEST_TIMEOUT_S"] == "60"
    assert 250 < chars < 4096  # the runtime default 4096 would take minutes on 2 vCPUs
    assert fits_idle(plan)
    assert chars == chars_that_fit(SPEEDS[(DEFAULT_FAMILY, "cpu")], plan.workers, 60.0) // 50 * 50
    source, reason = prov(plan, "TAILOR_MAX_INPUT_CHARS")
    assert source == "derived"
    assert "0.06 s/char" in reason and "60 s" in reason and "benchmarks/RESULTS.md" in reason
    assert any(r.startswith(f"max_input_chars={chars}: about ") for r in plan.reasons)


def test_gpu_plan_admits_longer_inputs_than_a_cpu_plan() -> None:
    gpu, cpu = plan_for("rtx3060-16gb"), plan_for("vps-2cpu-4gb")
    assert gpu.device == "cuda"
    assert int(gpu.env["TAILOR_MAX_INPUT_CHARS"]) > int(cpu.env["TAILOR_MAX_INPUT_CHARS"])
    assert gpu.env["TAILOR_MAX_INPUT_CHARS"] == "4096"  # capped at the runtime default
    assert "capped at the runtime default" in prov(gpu, "TAILOR_MAX_INPUT_CHARS")[1]
    assert fits_idle(gpu)


def test_more_cpu_workers_admit_longer_inputs() -> None:
    small, large = plan_for("vps-2cpu-4gb"), plan_for("cpu-4core-16gb")
    assert large.workers > small.workers
    assert int(large.env["TAILOR_MAX_INPUT_CHARS"]) > int(small.env["TAILOR_MAX_INPUT_CHARS"])
    assert fits_idle(large)


def test_a_longer_timeout_set_by_the_user_admits_longer_inputs() -> None:
    base = plan_for("vps-2cpu-4gb")
    longer = plan_for("vps-2cpu-4gb", TAILOR_REQUEST_TIMEOUT_S="120")
    assert longer.env["TAILOR_REQUEST_TIMEOUT_S"] == "120"
    assert prov(longer, "TAILOR_REQUEST_TIMEOUT_S")[0] == "cli"
    assert int(longer.env["TAILOR_MAX_INPUT_CHARS"]) > int(base.env["TAILOR_MAX_INPUT_CHARS"])
    assert fits_idle(longer)


def test_a_user_max_input_chars_is_kept_and_the_timeout_grows_to_fit_it() -> None:
    plan = plan_for("vps-2cpu-4gb", TAILOR_MAX_INPUT_CHARS="3000")
    assert plan.env["TAILOR_MAX_INPUT_CHARS"] == "3000"
    assert prov(plan, "TAILOR_MAX_INPUT_CHARS")[0] == "cli"
    timeout = float(plan.env["TAILOR_REQUEST_TIMEOUT_S"])
    assert timeout > 60
    source, reason = prov(plan, "TAILOR_REQUEST_TIMEOUT_S")
    assert source == "derived" and "3000 characters" in reason
    assert fits_idle(plan)
    assert not any("TAILOR_MAX_INPUT_CHARS" in w for w in plan.warnings)


def test_both_set_and_inconsistent_are_kept_with_a_warning() -> None:
    plan = plan_for("vps-2cpu-4gb", TAILOR_MAX_INPUT_CHARS="3000", TAILOR_REQUEST_TIMEOUT_S="30")
    assert (plan.env["TAILOR_MAX_INPUT_CHARS"], plan.env["TAILOR_REQUEST_TIMEOUT_S"]) == ("3000", "30")
    warning = next(w for w in plan.warnings if w.startswith("TAILOR_MAX_INPUT_CHARS=3000"))
    assert "only about" in warning and "413" in warning
    assert not fits_idle(plan)


def test_kokoro_on_a_small_cpu_admits_far_shorter_inputs_than_piper() -> None:
    # Kokoro int8 costs ~10x Piper's CPU per second of audio: the same 2-vCPU box and timeout
    # admit a fraction of the characters, and the plan says why with the family's own figure.
    from orchestrator.select.selection import ModelRequest
    from runtime.families.catalog import family

    host = HostFacts.from_json_file(FACTS / "vps-2cpu-4gb.json")
    selection = select_profile(host, load_profiles(), model=ModelRequest(family("kokoro-82m")))
    kokoro = make_plan(host, selection, {"model": "kokoro-82m"}, {})
    piper = plan_for("vps-2cpu-4gb")
    assert kokoro.device == "cpu" and kokoro.env["TAILOR_MODEL"] == "kokoro-82m"
    chars = int(kokoro.env["TAILOR_MAX_INPUT_CHARS"])
    assert 0 < chars < int(piper.env["TAILOR_MAX_INPUT_CHARS"]) / 3
    assert chars == chars_that_fit(SPEEDS[("kokoro-82m", "cpu")], kokoro.workers, 60.0) // 50 * 50
    assert "0.3 s/char" in prov(kokoro, "TAILOR_MAX_INPUT_CHARS")[1]


def test_without_a_measured_speed_the_runtime_defaults_stay() -> None:
    plan = plan_for("jetson-orin-nx-8gb")
    assert plan.env["TAILOR_MAX_INPUT_CHARS"] == "4096"
    assert prov(plan, "TAILOR_MAX_INPUT_CHARS")[0] == "default"
    assert any("no speed of" in r for r in plan.reasons)


def test_a_plan_json_round_trip_keeps_the_limits() -> None:
    plan = plan_for("vps-2cpu-4gb", TAILOR_REQUEST_TIMEOUT_S="90")
    again = Plan.from_dict(plan.to_dict())
    assert again.env == plan.env
