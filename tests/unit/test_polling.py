"""The one poll-until-deadline helper (orchestrator/polling.py), on a fake monotonic clock."""

from __future__ import annotations

import pytest

from orchestrator.polling import poll_until, wait_while


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_value_and_stops_polling() -> None:
    clock, answers = FakeClock(), iter([None, None, "ready", "never asked"])
    assert poll_until(lambda: next(answers), 10, 0.5, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.sleeps == [0.5, 0.5]
    assert next(answers) == "never asked"


def test_gives_up_at_the_deadline_after_a_last_check() -> None:
    clock, calls = FakeClock(), []

    def check() -> None:
        calls.append(clock.now)

    assert poll_until(check, 1.0, 0.4, clock=clock, sleep=clock.sleep) is None
    assert calls == pytest.approx([100.0, 100.4, 100.8, 101.0])  # the last sleep is cut to the deadline, then one more look
    assert clock.now == pytest.approx(101.0)


def test_a_value_at_the_very_deadline_still_counts() -> None:
    clock = FakeClock()
    assert poll_until(lambda: "late" if clock.now >= 101.0 else None, 1.0, 0.3, clock=clock, sleep=clock.sleep) == "late"


def test_an_error_in_the_check_ends_the_wait() -> None:
    clock = FakeClock()

    def check() -> None:
        raise RuntimeError("the child died")

    with pytest.raises(RuntimeError, match="child died"):
        poll_until(check, 10, 1, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_wait_while_says_whether_the_condition_ended() -> None:
    clock = FakeClock()
    assert wait_while(lambda: clock.now < 100.5, 2, 0.2, clock=clock, sleep=clock.sleep)
    clock = FakeClock()
    assert not wait_while(lambda: True, 1, 0.2, clock=clock, sleep=clock.sleep)
    assert clock.now == pytest.approx(101.0)


def test_falsy_values_other_than_none_are_results() -> None:
    clock = FakeClock()
    assert poll_until(lambda: 0, 1, 0.1, clock=clock, sleep=clock.sleep) == 0
    assert clock.sleeps == []
