"""The supervisor's state machine, driven by a fake runner and a fake clock."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field, replace

import pytest

from orchestrator.errors import LaunchError, PortInUseError
from orchestrator.launch.runner import RunnerStatus, RuntimeIdentity
from orchestrator.launch.spec import LaunchSpec
from orchestrator.supervise.http_client import HealthResult
from orchestrator.supervise.supervisor import Backoff, CrashLoop, Policy, State, Supervisor

SPEC = LaunchSpec(profile="cpu-small", image="tailor-runtime:0.1.0-cpu", flavor="cpu",
                  env=(("TAILOR_PORT", "8000"), ("TAILOR_WORKERS", "2")), port=8000,
                  memory_limit_bytes=1_000_000_000)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class FakeRunner:
    """One instance: scripted to be running until `exit_status` is set."""

    spec: LaunchSpec
    backend: str = "fake"
    ident: str = ""
    exit_status: RunnerStatus | None = None
    stopped_with: float | None = None
    removed: bool = False
    fail_start: bool = False
    port_taken: bool = False
    instance_id: str = ""

    @property
    def identity(self) -> RuntimeIdentity:
        return RuntimeIdentity(ident=self.ident, instance_id=self.instance_id)

    def start(self) -> str:
        if self.port_taken:
            raise PortInUseError("port 8000 is already in use by pid 42 (nc -l 8000)", "pass --port")
        if self.fail_start:
            raise LaunchError("cannot start python: No such file", "check the interpreter")
        self.ident = "pid-1"
        self.instance_id = "inst-1"
        return self.ident

    def poll(self) -> RunnerStatus:
        return self.exit_status or RunnerStatus(running=True, detail="running")

    def stop(self, grace_s: float) -> RunnerStatus:
        self.stopped_with = grace_s
        self.exit_status = self.exit_status or RunnerStatus(running=False, exit_code=0, detail="exited with code 0")
        return self.exit_status

    def remove(self) -> None:
        self.removed = True

    def logs(self, lines: int) -> list[str]:
        return ["loading voice", "MemoryError"][-lines:]


@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    runners: list[FakeRunner] = field(default_factory=list)
    healthy: bool = True
    fail_next_start: bool = False
    port_taken_next: bool = False
    health_instances: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)
    snapshots: list[str] = field(default_factory=list)

    def factory(self, spec: LaunchSpec) -> FakeRunner:
        runner = FakeRunner(spec, fail_start=self.fail_next_start, port_taken=self.port_taken_next)
        self.runners.append(runner)
        return runner

    def health(self, _spec: LaunchSpec, instance: str) -> HealthResult:
        self.health_instances.append(instance)
        return HealthResult(self.healthy, "200 from /readyz" if self.healthy else "connection refused")

    def supervisor(self, step_down=None, policy: Policy | None = None) -> Supervisor:
        return Supervisor(SPEC, self.factory, self.health, clock=self.clock, policy=policy or Policy(),
                          rng=random.Random(7), step_down=step_down, log=self.log.append,
                          on_change=lambda s: self.snapshots.append(s.state.value))

    def running(self, policy: Policy | None = None) -> Supervisor:
        """A supervisor started and ticked once: RUNNING while the world is healthy."""
        sup = self.supervisor(policy=policy)
        sup.start()
        sup.tick()
        return sup

    def advance(self, sup: Supervisor, seconds: float) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end and sup.state not in (State.FATAL, State.STOPPED):
            sup.tick()
            self.clock.sleep(sup.policy.poll_interval_s)


def wait_out_backoff(w: World, sup: Supervisor, step_s: float = 0.01) -> float:
    """Tick through BACKOFF on the fake clock; the seconds that really passed before the next
    instance was started (measured, not read from the message)."""
    assert sup.state is State.BACKOFF
    started, instances = w.clock.now, len(w.runners)
    while sup.state is State.BACKOFF:
        assert len(w.runners) == instances  # nothing is started during the wait
        w.clock.sleep(step_s)
        sup.tick()
    assert len(w.runners) == instances + 1 and sup.state is State.STARTING
    return w.clock.now - started


def crash(runner: FakeRunner, *, oom: bool = False) -> None:
    runner.exit_status = RunnerStatus(running=False, exit_code=-9, oom_killed=oom,
                                      detail="OOM-killed" if oom else "killed by SIGKILL")


def test_start_becomes_running_when_ready_and_logs_transition() -> None:
    w = World()
    sup = w.supervisor()
    sup.start()
    assert sup.state is State.STARTING
    sup.tick()
    assert sup.state is State.RUNNING
    assert [(t.from_state, t.to_state) for t in sup.transitions] == [("STOPPED", "STARTING"), ("STARTING", "RUNNING")]
    assert "STARTING -> RUNNING: ready after" in w.log[-1]
    assert w.log[-1].startswith("2023-11-14T22:")  # wall time from the injected clock


def test_not_ready_stays_starting_then_stalls_to_fatal_with_logs() -> None:
    w = World(healthy=False)
    sup = w.supervisor(policy=Policy(startup_budget_s=10))
    sup.start()
    w.advance(sup, 5)
    assert sup.state is State.STARTING
    w.advance(sup, 10)
    assert sup.state is State.FATAL
    assert "start-up stalled" in sup.reason and "MemoryError" in sup.reason
    assert w.runners[0].stopped_with is not None and w.runners[0].removed


def test_exit_backs_off_then_restarts() -> None:
    w = World()
    sup = w.running()
    crash(w.runners[0])
    sup.tick()
    assert sup.state is State.BACKOFF
    assert "killed by SIGKILL; restarting in" in sup.reason
    assert w.runners[0].removed
    assert sup.last_exit_reason == "killed by SIGKILL"
    w.advance(sup, 2.0)  # initial backoff 1 s +-20 %
    assert sup.state is State.RUNNING
    assert sup.restarts == 1 and len(w.runners) == 2


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    w = World()
    sup = w.supervisor(policy=Policy(crash_loop=CrashLoop(restarts=100)))
    sup.start()
    delays = []
    for _ in range(7):
        crash(w.runners[-1])
        sup.tick()
        assert sup.state is State.BACKOFF
        stated = float(sup.reason.rsplit("restarting in ", 1)[1].split()[0])
        waited = wait_out_backoff(w, sup)
        assert abs(waited - stated) <= 0.05 + 0.011, (waited, stated)  # the message tells the real wait
        delays.append(waited)
    for i, delay in enumerate(delays):
        base = min(30.0, 2.0 ** i)  # 1, 2, 4, 8, 16, then capped at 30
        assert base * 0.8 <= delay <= base * 1.2 + 0.011, (i, delay)
    assert delays[4] > delays[2] > delays[0]
    assert len({round(d / min(30.0, 2.0 ** i), 3) for i, d in enumerate(delays)}) > 1  # jittered, not a fixed factor


def test_backoff_delay_formula_at_the_jitter_extremes() -> None:
    class Fixed(random.Random):
        def __init__(self, value: float) -> None:
            super().__init__(0)
            self.value = value

        def random(self) -> float:
            return self.value

    backoff = Backoff(initial_s=1.0, max_s=30.0, jitter_fraction=0.2)
    assert [backoff.delay_s(n, Fixed(0.5)) for n in (1, 2, 3, 6, 7)] == [1.0, 2.0, 4.0, 30.0, 30.0]
    assert backoff.delay_s(3, Fixed(0.0)) == pytest.approx(3.2)  # 4 s x 0.8
    assert backoff.delay_s(3, Fixed(1.0)) == pytest.approx(4.8)  # 4 s x 1.2


def test_crash_loop_goes_fatal_with_last_log_lines() -> None:
    w = World()
    sup = w.supervisor()
    sup.start()
    for _ in range(6):
        crash(w.runners[-1])
        sup.tick()
        while sup.state is State.BACKOFF:
            w.clock.sleep(0.1)
            sup.tick()
    assert sup.state is State.FATAL
    assert "crash loop: 6 failures within 120 s" in sup.reason
    assert "last log lines:\n  loading voice\n  MemoryError" in sup.reason
    assert sup.restarts == 5


def test_failures_spread_over_time_are_not_a_crash_loop() -> None:
    w = World()
    sup = w.supervisor()
    sup.start()
    for _ in range(8):
        sup.tick()
        assert sup.state is State.RUNNING
        w.advance(sup, 70)  # stable for 70 s, so failures fall out of the 120 s window
        crash(w.runners[-1])
        sup.tick()
        assert wait_out_backoff(w, sup) <= 1.2 + 0.011  # the backoff exponent was reset by the stable run
    assert sup.restarts == 8


def test_health_is_checked_every_interval_once_running() -> None:
    w = World()
    calls: list[float] = []
    sup = Supervisor(SPEC, w.factory, lambda s, _i: calls.append(w.clock.now) or HealthResult(True, "ok"),
                     clock=w.clock, policy=Policy(poll_interval_s=0.5, health_interval_s=2.0))
    sup.start()
    sup.tick()  # STARTING: checks at once
    assert sup.state is State.RUNNING
    w.advance(sup, 10.0)
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps and all(abs(g - 2.0) < 1e-9 for g in gaps[1:]), gaps
    assert len(calls) in (5, 6)


def test_consecutive_failed_health_checks_restart() -> None:
    w = World()
    sup = w.running(policy=Policy(health_failures_to_restart=3, health_interval_s=0))
    w.healthy = False
    sup.tick()
    sup.tick()
    assert sup.state is State.RUNNING and sup.last_health == "failed: connection refused"
    sup.tick()
    assert sup.state is State.BACKOFF
    assert "3 consecutive failed health checks (connection refused)" in sup.reason
    assert w.runners[0].stopped_with == Policy().stop_grace_s


def test_one_failed_health_check_is_forgiven() -> None:
    w = World()
    sup = w.running(policy=Policy(health_failures_to_restart=2, health_interval_s=0))
    for healthy in (False, True, False, True):
        w.healthy = healthy
        sup.tick()
    assert sup.state is State.RUNNING


def test_oom_steps_down_then_fatal_when_no_smaller_plan() -> None:
    w = World()
    steps = iter([replace(SPEC, profile="cpu-tiny")])

    def step_down(spec: LaunchSpec) -> tuple[LaunchSpec, str] | None:
        nxt = next(steps, None)
        return None if nxt is None else (nxt, f"{spec.profile} -> {nxt.profile}")

    sup = w.supervisor(step_down=step_down)
    sup.start()
    crash(w.runners[0], oom=True)
    sup.tick()
    assert sup.state is State.BACKOFF
    assert sup.step_downs == ["cpu-small -> cpu-tiny"]
    assert any("step-down after OOM-killed: cpu-small -> cpu-tiny" in line for line in w.log)
    while sup.state is State.BACKOFF:
        w.clock.sleep(0.1)
        sup.tick()
    assert w.runners[-1].spec.profile == "cpu-tiny"
    crash(w.runners[-1], oom=True)
    sup.tick()
    assert sup.state is State.FATAL
    assert "OOM-killed; no smaller plan to step down to" in sup.reason


def test_stop_request_stops_runtime_cleanly() -> None:
    w = World()
    sup = w.running(policy=Policy(stop_grace_s=7))
    sup.request_stop("SIGTERM received")
    assert sup.tick() is State.STOPPED
    assert w.runners[0].stopped_with == 7 and w.runners[0].removed
    assert [t.to_state for t in sup.transitions][-2:] == ["STOPPING", "STOPPED"]
    assert w.snapshots[-2:] == ["STOPPING", "STOPPED"]


def test_first_start_failure_propagates_as_launch_error() -> None:
    w = World(fail_next_start=True)
    sup = w.supervisor()
    with pytest.raises(LaunchError, match="cannot start python"):
        sup.start()
    assert sup.state is State.FATAL


def test_restart_start_failure_backs_off() -> None:
    w = World()
    sup = w.running()
    crash(w.runners[0])
    w.fail_next_start = True
    sup.tick()
    w.advance(sup, 1.5)
    assert sup.state is State.BACKOFF
    assert "could not start: cannot start python" in sup.reason


def test_run_until_predicate_and_terminal() -> None:
    w = World()
    sup = w.supervisor()
    assert sup.run(until=lambda s: s.state is State.RUNNING) is State.RUNNING
    sup.request_stop("done")
    assert sup.run() is State.STOPPED


def test_health_checks_ask_for_the_launchs_own_instance() -> None:
    w = World()
    sup = w.supervisor()
    sup.start()
    w.advance(sup, 1)
    assert sup.state is State.RUNNING
    assert set(w.health_instances) == {"inst-1"}
    assert sup.snapshot().identity == RuntimeIdentity(ident="pid-1", instance_id="inst-1")


def test_first_start_on_a_taken_port_is_fatal_and_raised() -> None:
    w = World(port_taken_next=True)
    sup = w.supervisor()
    with pytest.raises(PortInUseError):
        sup.start()
    assert sup.state is State.FATAL and "in use by pid 42" in sup.reason


def test_port_taken_before_a_restart_is_fatal_not_a_crash_loop() -> None:
    w = World()
    sup = w.supervisor(policy=Policy(backoff=Backoff(initial_s=1, jitter_fraction=0)))
    sup.start()
    w.advance(sup, 1)
    w.port_taken_next = True
    crash(w.runners[-1])
    w.advance(sup, 10)
    assert sup.state is State.FATAL
    assert "could not start: port 8000 is already in use by pid 42" in sup.reason
    assert len(w.runners) == 2  # no retries: another program holds the port


def test_a_restart_done_by_the_engine_is_counted_and_waits_for_ready_again() -> None:
    w = World()
    sup = w.supervisor()
    sup.start()
    w.advance(sup, 1)
    runner = w.runners[-1]
    runner.exit_status = RunnerStatus(running=True, restarted=True,
                                      detail="container exited with code 137 (SIGKILL); Docker restarted it")
    w.healthy = False
    sup.tick()
    assert sup.state is State.STARTING and sup.restarts == 1
    assert "Docker restarted it" in sup.reason and "Docker restarted it" in sup.last_exit_reason
    assert len(w.runners) == 1  # the engine's instance is kept: no second one started
    runner.exit_status = None
    w.healthy = True
    w.advance(sup, 1)
    assert sup.state is State.RUNNING and len(w.runners) == 1


def test_an_oom_restart_by_the_engine_still_steps_down() -> None:
    w = World()
    smaller = replace(SPEC, env=(("TAILOR_PORT", "8000"), ("TAILOR_WORKERS", "1")))
    sup = w.supervisor(step_down=lambda spec: (smaller, "workers 2 -> 1"),
                       policy=Policy(backoff=Backoff(initial_s=1, jitter_fraction=0)))
    sup.start()
    w.advance(sup, 1)
    first = w.runners[-1]
    first.exit_status = RunnerStatus(running=True, restarted=True, oom_killed=True, detail="OOM-killed at 200 MB")
    w.advance(sup, 3)
    assert first.stopped_with is not None and first.removed
    assert sup.step_downs == ["workers 2 -> 1"] and w.runners[-1].spec is smaller
    assert sup.state is State.RUNNING


def test_engine_restarts_in_a_loop_go_fatal_and_remove_the_instance() -> None:
    w = World()
    sup = w.supervisor(policy=Policy(crash_loop=CrashLoop(restarts=3, window_s=120)))
    sup.start()
    w.advance(sup, 1)
    runner = w.runners[-1]
    for _ in range(4):
        runner.exit_status = RunnerStatus(running=True, restarted=True, detail="exited with code 1; Docker restarted it")
        sup.tick()
        runner.exit_status = None
        w.advance(sup, 1)
    assert sup.state is State.FATAL and "crash loop: 4 failures" in sup.reason
    assert runner.removed


def test_an_adopted_instance_is_running_only_once_its_own_instance_is_ready() -> None:
    w = World(healthy=False)
    sup = w.supervisor()
    runner = FakeRunner(SPEC, ident="c0ffee", instance_id="inst-old")
    sup.adopt(runner, "adopted the running container c0ffee")
    assert sup.state is State.STARTING and "adopted the running container c0ffee (fake c0ffee)" in sup.reason
    sup.tick()
    assert sup.state is State.STARTING and w.health_instances == ["inst-old"]
    w.healthy = True
    sup.tick()
    assert sup.state is State.RUNNING and sup.restarts == 0 and w.runners == []  # nothing new started
    assert sup.run(until=lambda s: True) is State.RUNNING  # run() does not start a second instance
    assert w.runners == []


BROKEN_LOG = ["INFO:     Finished server process [4242]",
              "error: the model file /v/en_US-x-medium.onnx is corrupt or truncated (onnxruntime: INVALID_PROTOBUF)",
              "hint: re-install it, or point TAILOR_VOICES_DIR at a directory with an intact NAME.onnx"]


@pytest.mark.parametrize(("code", "meaning"), [(4, "model or configuration broken"), (2, "invalid settings")])
def test_an_exit_that_restarting_cannot_fix_is_fatal_at_once_with_the_file_and_the_fix(
        code: int, meaning: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(FakeRunner, "logs", lambda _self, lines: BROKEN_LOG[-lines:])
    w = World(healthy=False)
    sup = w.supervisor()
    sup.start()
    w.runners[0].exit_status = RunnerStatus(running=False, exit_code=code, detail=f"exited with code {code}")
    w.advance(sup, 60)
    assert sup.state is State.FATAL and len(w.runners) == 1 and sup.restarts == 0  # no backoff, no retry
    first = sup.reason.splitlines()[0]
    assert first.startswith("the model file /v/en_US-x-medium.onnx is corrupt or truncated")
    assert f"; restarting cannot fix it ({meaning}, exit code {code})" in first
    assert first.endswith("; fix: re-install it, or point TAILOR_VOICES_DIR at a directory with an intact NAME.onnx")
    assert "TAILOR_ENGINE" not in sup.reason


def test_a_start_failure_that_may_pass_keeps_its_backoff() -> None:
    w = World(healthy=False)
    sup = w.supervisor()
    sup.start()
    w.runners[0].exit_status = RunnerStatus(running=False, exit_code=3, detail="exited with code 3")
    sup.tick()
    assert sup.state is State.BACKOFF and "restarting in" in sup.reason


def test_an_engine_restart_after_an_unrecoverable_exit_is_stopped_and_fatal() -> None:
    w = World()
    sup = w.running()
    w.runners[0].exit_status = RunnerStatus(running=True, restarted=True, exit_code=4,
                                            detail="container exited with code 4; Docker restarted it")
    sup.tick()
    assert sup.state is State.FATAL and w.runners[0].removed and w.runners[0].stopped_with is not None
    assert "restarting cannot fix it (model or configuration broken, exit code 4)" in sup.reason
