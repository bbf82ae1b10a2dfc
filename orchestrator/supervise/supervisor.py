"""The supervisor: an explicit state machine around one runner.

States and what moves between them::

    STARTING --ready (/readyz 200)--> RUNNING
    STARTING --exited / crashed-----> BACKOFF   (restart after an exponential, jittered delay)
    STARTING --not ready in budget--> FATAL     (a stalled start-up is not fixed by restarting)
    RUNNING  --exited / N failed health checks--> BACKOFF
    RUNNING  --the engine restarted it (Docker restart policy)--> STARTING  (counted as a restart)
    any      --port taken by another program--> FATAL  (named; restarting cannot fix it)
    any      --exit code 2 or 4 (settings, model or configuration broken)--> FATAL at once, with
               the runtime's own error (the file and the cause) and its hint
    BACKOFF  --delay over-----------> STARTING
    any      --crash loop (more than `crash_loop.restarts` restarts in `crash_loop.window_s`)--> FATAL
    any      --OOM kill, no smaller plan--> FATAL   (with a smaller plan: step down, then BACKOFF)
    any      --stop requested-------> STOPPING --runtime stopped--> STOPPED

The runner, the health check, the clock, the random generator (for jitter) and the step-down
function are injected, so unit tests drive every transition with fakes, and the CLI wires the
real ones. Every transition is logged with its time and reason and reported to ``on_change``.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from orchestrator.errors import LaunchError, PortInUseError
from orchestrator.launch.backends import RunnerFactory
from orchestrator.launch.runner import Runner, RunnerStatus, RuntimeIdentity
from orchestrator.launch.spec import LaunchSpec
from orchestrator.supervise.http_client import HealthResult
from orchestrator.supervise.state import Transition
from runtime.errors import EXIT_CODES, UNRECOVERABLE_EXITS


class State(str, Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    BACKOFF = "BACKOFF"
    FATAL = "FATAL"
    STOPPING = "STOPPING"
    STOPPED = "STOPPED"


TERMINAL = frozenset({State.FATAL, State.STOPPED})


class Clock(Protocol):
    def monotonic(self) -> float: ...
    def time(self) -> float: ...
    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


@dataclass(frozen=True)
class Backoff:
    """The wait before the n-th restart in a row: ``initial_s`` x 2^(n-1), at most ``max_s``,
    scaled by a random factor within 1 +- ``jitter_fraction``."""

    initial_s: float = 1.0
    max_s: float = 30.0
    jitter_fraction: float = 0.2
    stable_after_s: float = 60.0
    """Running this long resets the backoff exponent."""

    def delay_s(self, failures: int, rng: random.Random) -> float:
        base = min(self.max_s, self.initial_s * (2.0 ** (failures - 1)))
        jitter = 1.0 + self.jitter_fraction * (2.0 * rng.random() - 1.0)
        return max(0.0, base * jitter)


@dataclass(frozen=True)
class CrashLoop:
    """More than ``restarts`` failures within ``window_s`` is a crash loop: FATAL, no restart."""

    restarts: int = 5
    window_s: float = 120.0


@dataclass(frozen=True)
class Policy:
    poll_interval_s: float = 0.5
    startup_budget_s: float = 300.0
    """Time from start to ready before the start-up counts as stalled (model load + warm-up)."""
    health_interval_s: float = 2.0
    """Seconds between readiness checks once RUNNING (while STARTING, every poll)."""
    health_failures_to_restart: int = 3
    backoff: Backoff = Backoff()
    crash_loop: CrashLoop = CrashLoop()
    stop_grace_s: float = 25.0
    log_lines_kept: int = 20


@dataclass(frozen=True)
class Snapshot:
    """Everything the state file records about the supervisor."""

    state: State
    reason: str
    spec: LaunchSpec
    runner_id: str
    identity: RuntimeIdentity | None
    instance_started_at_s: float | None
    instance_started_mono_s: float | None
    """The same moment on the supervisor's monotonic clock (None before any start)."""
    restarts: int
    step_downs: tuple[str, ...]
    last_health: str
    last_health_at_s: float | None
    last_exit_reason: str
    last_log_lines: tuple[str, ...]
    transitions: tuple[Transition, ...]


HealthCheck = Callable[[LaunchSpec, str], HealthResult]
"""``(spec, instance_id) -> result``: ready only when the answering server is that instance."""
StepDown = Callable[[LaunchSpec], "tuple[LaunchSpec, str] | None"]
"""Returns the next smaller spec and a sentence describing the change, or None at the bottom."""


class Supervisor:
    def __init__(
        self,
        spec: LaunchSpec,
        runner_factory: RunnerFactory,
        health: HealthCheck,
        *,
        clock: Clock | None = None,
        policy: Policy | None = None,
        rng: random.Random | None = None,
        step_down: StepDown | None = None,
        on_change: Callable[[Snapshot], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.spec = spec
        self._runner_factory = runner_factory
        self._health = health
        self._clock = clock or SystemClock()
        self.policy = policy or Policy()
        self._rng = rng or random.Random()
        self._step_down = step_down
        self._on_change = on_change
        self._log = log or (lambda _line: None)
        self.state = State.STOPPED
        self.reason = "not started"
        self.runner: Runner | None = None
        self.restarts = 0
        self.step_downs: list[str] = []
        self.transitions: list[Transition] = []
        self.last_health = ""
        self.last_health_at_s: float | None = None
        self.last_exit_reason = ""
        self.last_log_lines: tuple[str, ...] = ()
        self._started_mono = 0.0
        self._last_health_mono: float | None = None
        self._started_wall: float | None = None
        self._ready_mono: float | None = None
        self._health_failures = 0
        self._consecutive_failures = 0
        self._failure_times: list[float] = []
        self._next_start_mono = 0.0
        self._pending_reason = ""
        self._stop_reason: str | None = None

    # -- public -------------------------------------------------------------------------

    def start(self) -> None:
        """First start. A LaunchError here (image missing, port taken...) propagates."""
        self._launch("starting the runtime", first=True)

    def adopt(self, runner: Runner, reason: str) -> None:
        """Take over an instance a previous supervisor started (instead of :meth:`start`).

        It enters STARTING like a fresh start, so it counts as RUNNING only once its own
        instance answers ready; from then on it is supervised like any other.
        """
        self.runner = runner
        self._new_instance(self._clock.monotonic())
        self._transition(State.STARTING, f"{reason} ({runner.backend} {runner.ident})")

    def request_stop(self, reason: str) -> None:
        """Ask for a clean stop; takes effect on the next tick (safe from a signal handler)."""
        if self._stop_reason is None:
            self._stop_reason = reason

    def tick(self) -> State:
        """Advance the machine by one step."""
        if self._stop_reason is not None and self.state not in TERMINAL:
            self._stop(self._stop_reason)
            return self.state
        if self.state is State.STARTING:
            self._tick_starting()
        elif self.state is State.RUNNING:
            self._tick_running()
        elif self.state is State.BACKOFF and self._clock.monotonic() >= self._next_start_mono:
            self._launch(f"restart {self.restarts + 1} after: {self._pending_reason}", first=False)
        return self.state

    def run(self, until: Callable[[Supervisor], bool] | None = None) -> State:
        """Tick until STOPPED or FATAL (or until ``until(self)`` is true)."""
        if self.state is State.STOPPED and not self.transitions:
            self.start()
        while self.state not in TERMINAL:
            self.tick()
            if self.state in TERMINAL or (until is not None and until(self)):
                break
            self._clock.sleep(self.policy.poll_interval_s)
        return self.state

    def snapshot(self) -> Snapshot:
        return Snapshot(
            state=self.state, reason=self.reason, spec=self.spec,
            runner_id=self.runner.ident if self.runner is not None else "",
            identity=self.runner.identity if self.runner is not None else None,
            instance_started_at_s=self._started_wall,
            instance_started_mono_s=self._started_mono if self._started_wall is not None else None,
            restarts=self.restarts,
            step_downs=tuple(self.step_downs), last_health=self.last_health,
            last_health_at_s=self.last_health_at_s, last_exit_reason=self.last_exit_reason,
            last_log_lines=self.last_log_lines, transitions=tuple(self.transitions[-50:]),
        )

    # -- transitions --------------------------------------------------------------------

    def _transition(self, new: State, reason: str) -> None:
        at = self._clock.time()
        old = self.state
        self.transitions.append(Transition(at_s=at, from_state=old.value, to_state=new.value, reason=reason))
        self.state = new
        self.reason = reason
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
        self._log(f"{stamp} {old.value} -> {new.value}: {reason}")
        self._changed()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.snapshot())

    def _launch(self, reason: str, *, first: bool) -> None:
        self.runner = self._runner_factory(self.spec)
        self._new_instance(self._clock.monotonic())
        try:
            ident = self.runner.start()
        except PortInUseError as exc:
            self.last_exit_reason = exc.message
            self._transition(State.FATAL, f"could not start: {exc.message}")
            if first:
                raise
            return
        except LaunchError as exc:
            if first:
                self._transition(State.FATAL, f"could not start: {exc.message}")
                raise
            self._failed(RunnerStatus(running=False, detail=f"could not start: {exc.message}"))
            return
        if not first:
            self.restarts += 1
        self._transition(State.STARTING, f"{reason} ({self.runner.backend} {ident})")

    def _new_instance(self, started_mono: float) -> None:
        """A new runtime instance began at ``started_mono``: its start times, no readiness yet, no
        failed health checks (the one reset of a fresh start, an adoption and an engine restart)."""
        self._started_mono = started_mono
        self._started_wall = self._clock.time()
        self._ready_mono = None
        self._health_failures = 0

    def _poll_alive(self) -> bool:
        """Poll the runner; False when it died or its engine restarted it (both handled here)."""
        assert self.runner is not None
        status = self.runner.poll()
        if not status.running:
            self._failed(status)
            return False
        if status.restarted:
            self._engine_restarted(status)
            return False
        return True

    def _tick_starting(self) -> None:
        assert self.runner is not None
        if not self._poll_alive():
            return
        health = self._check_health()
        now = self._clock.monotonic()
        if health.ok:
            self._ready_mono = now
            self._transition(State.RUNNING, f"ready after {now - self._started_mono:.1f} s ({health.detail})")
            return
        if now - self._started_mono > self.policy.startup_budget_s:
            self._capture_logs()
            self.runner.stop(self.policy.stop_grace_s)
            self.runner.remove()
            self.last_exit_reason = "start-up stalled"
            self._transition(
                State.FATAL,
                f"start-up stalled: not ready {self.policy.startup_budget_s:.0f} s after start "
                f"(last health check: {health.detail})" + self._logs_suffix(),
            )

    def _tick_running(self) -> None:
        assert self.runner is not None
        if not self._poll_alive():
            return
        now = self._clock.monotonic()
        if (self._consecutive_failures and self._ready_mono is not None
                and now - self._ready_mono >= self.policy.backoff.stable_after_s):
            self._consecutive_failures = 0
        if self._last_health_mono is not None and now - self._last_health_mono < self.policy.health_interval_s:
            return
        health = self._check_health()
        if health.ok:
            self._health_failures = 0
            return
        self._health_failures += 1
        if self._health_failures >= self.policy.health_failures_to_restart:
            final = self.runner.stop(self.policy.stop_grace_s)
            self._failed(dataclasses.replace(
                final, running=False,
                detail=f"{self._health_failures} consecutive failed health checks ({health.detail})"))

    def _engine_restarted(self, status: RunnerStatus) -> None:
        """The engine restarted the instance itself: count it as our restart, never start a second one.

        An OOM kill still steps down (the restarted instance has the same too-small plan), and a
        crash loop still goes FATAL; both stop the engine's instance first.
        """
        assert self.runner is not None
        self.last_exit_reason = status.detail
        if status.oom_killed:
            self.runner.stop(self.policy.stop_grace_s)
            self._failed(dataclasses.replace(status, running=False, restarted=False))
            return
        now = self._clock.monotonic()
        crash_loop = self._count_failure(now)
        self._capture_logs()
        broken = self._unrecoverable(status)
        if crash_loop or broken:
            self.runner.stop(self.policy.stop_grace_s)
            self.runner.remove()
            self._transition(State.FATAL, (broken or f"{crash_loop}; last: {status.detail}") + self._logs_suffix())
            return
        self.restarts += 1
        self._new_instance(now)
        self._transition(State.STARTING, f"restart {self.restarts}: {status.detail}")

    def _check_health(self) -> HealthResult:
        assert self.runner is not None
        result = self._health(self.spec, self.runner.identity.instance_id)
        self._last_health_mono = self._clock.monotonic()
        self.last_health_at_s = self._clock.time()
        text = ("ok: " if result.ok else "failed: ") + result.detail
        if text != self.last_health:
            self.last_health = text
            self._changed()
        return result

    def _capture_logs(self) -> None:
        if self.runner is None:
            return
        try:
            self.last_log_lines = tuple(self.runner.logs(self.policy.log_lines_kept))
        except LaunchError as exc:
            self.last_log_lines = (f"(logs unavailable: {exc.message})",)

    def _logs_suffix(self) -> str:
        if not self.last_log_lines:
            return ""
        return "\nlast log lines:\n  " + "\n  ".join(self.last_log_lines)

    def _unrecoverable(self, status: RunnerStatus) -> str:
        """A FATAL reason when the runtime's exit code says a restart cannot help; "" otherwise.

        The runtime says what is broken on stderr (``error: ...`` and ``hint: ...``): that cause and
        fix lead the reason, so `deploy status` and `up`'s error show them on their first line.
        """
        code = status.exit_code
        if status.oom_killed or code is None or code not in UNRECOVERABLE_EXITS:
            return ""
        error, hint = runtime_error(self.last_log_lines)
        # The runtime's own error first: a reader who sees only the first words (a fleet's short
        # rollback line, a narrow terminal) sees the cause, then the verdict.
        verdict = f"restarting cannot fix it ({EXIT_CODES[code]}, exit code {code})"
        reason = f"{error}; {verdict}" if error else f"the runtime cannot start, and {verdict}"
        return reason + (f"; fix: {hint}" if hint else "")

    def _failed(self, status: RunnerStatus) -> None:
        """The instance is gone: record why, then step down, back off or give up."""
        assert self.runner is not None
        self._capture_logs()
        self.runner.remove()
        self.last_exit_reason = status.detail
        now = self._clock.monotonic()
        broken = self._unrecoverable(status)
        if broken:
            self._count_failure(now)
            self._transition(State.FATAL, broken + self._logs_suffix())
            return
        if status.oom_killed:
            stepped = self._step_down(self.spec) if self._step_down is not None else None
            if stepped is None:
                self._transition(State.FATAL, f"{status.detail}; no smaller plan to step down to" + self._logs_suffix())
                return
            self.spec, change = stepped
            self.step_downs.append(change)
            self._log(f"step-down after {status.detail}: {change}")
            # A new configuration starts a new crash-loop count and backoff sequence.
            self._failure_times.clear()
            self._consecutive_failures = 0
        crash_loop = self._count_failure(now)
        if crash_loop:
            self._transition(State.FATAL, f"{crash_loop}; last: {status.detail}" + self._logs_suffix())
            return
        self._consecutive_failures += 1
        delay = self.policy.backoff.delay_s(self._consecutive_failures, self._rng)
        self._next_start_mono = now + delay
        self._pending_reason = status.detail
        self._transition(State.BACKOFF, f"{status.detail}; restarting in {delay:.1f} s")

    def _count_failure(self, now: float) -> str:
        """Record a failure at ``now``; why that makes a crash loop, or empty when it does not."""
        loop = self.policy.crash_loop
        self._failure_times = [t for t in self._failure_times if now - t <= loop.window_s] + [now]
        if len(self._failure_times) <= loop.restarts:
            return ""
        return f"crash loop: {len(self._failure_times)} failures within {loop.window_s:.0f} s"

    def _stop(self, reason: str) -> None:
        self._transition(State.STOPPING, reason)
        if self.runner is not None:
            final = self.runner.stop(self.policy.stop_grace_s)
            self.last_exit_reason = final.detail
            self.runner.remove()
        self._transition(State.STOPPED, f"stopped: {reason}")


def runtime_error(lines: tuple[str, ...] | list[str]) -> tuple[str, str]:
    """The runtime's last ``error: ...`` line in its log and the ``hint: ...`` after it ("" when none)."""
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if line.startswith("error: "):
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            return line[len("error: "):], following[len("hint: "):] if following.startswith("hint: ") else ""
    return "", ""
