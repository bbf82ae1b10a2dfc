"""One parser for the kernel's ``oom_kill N`` line (launch/memory_cgroup.py), for all three files."""

from __future__ import annotations

from orchestrator.launch.memory_cgroup import oom_kill_field


def test_reads_cgroup_v1_v2_and_vmstat() -> None:
    assert oom_kill_field("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n") == 2  # memory.oom_control (v1)
    assert oom_kill_field("low 0\nhigh 0\nmax 7\noom 3\noom_kill 1\noom_group_kill 0\n") == 1  # memory.events (v2)
    assert oom_kill_field("pgfault 123\noom_kill 41\nnr_dirty 5\n") == 41  # /proc/vmstat


def test_no_line_is_none_and_near_names_do_not_count() -> None:
    assert oom_kill_field("") is None
    assert oom_kill_field("oom_kill_disable 1\noom_group_kill 4\noom 9\n") is None
