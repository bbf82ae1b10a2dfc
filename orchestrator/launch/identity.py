"""Which process a recorded pid is: identity from the kernel, never from the wall clock.

A pid alone names nobody for long: once a process exits, the kernel hands its number to the
next one. A pid together with its start time does. That start time must not come from the
wall clock: psutil's ``create_time()`` is the boot time (``btime`` in /proc/stat, a wall-clock
value) plus the kernel's start ticks, and it moves whenever the clock is stepped or slewed (an
NTP step, a VM paused and resumed: 379 s on one VM). The kernel's own record does not move:
field 22 of ``/proc/PID/stat`` (``starttime``, clock ticks after boot). With the boot id
(``/proc/sys/kernel/random/boot_id``, new at every boot) it names one process for the life of
the machine. Every caller that trusts a recorded pid (the supervisor's liveness, the runtime's,
takeover, teardown, the port-holder report) asks this module.

State files written before the start ticks were recorded have only the wall-clock start time.
For those, a process counts as the recorded one when its command line is what was started
there (a Tailor supervisor, a ``python -m runtime``); where the command line cannot be read,
the wall-clock start times are compared with a generous tolerance. :class:`Recognition` says
which fallback decided, so a caller can say so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from orchestrator.launch.runner import INSTANCE_ENV, RuntimeIdentity

PROC = Path("/proc")
LEGACY_TOLERANCE_S = 600.0
"""For state files without start ticks and a process whose command line is unreadable: the
largest wall-clock difference still taken as the same process (clock steps of minutes happen)."""


@dataclass(frozen=True)
class ProcessStamp:
    """One process for the life of the machine: pid, start ticks after boot and the boot."""

    pid: int
    start_ticks: int
    """``/proc/PID/stat`` field 22: clock ticks (``SC_CLK_TCK``) from boot to the process's start."""
    boot_id: str
    """``/proc/sys/kernel/random/boot_id`` when it was read ("" where unreadable)."""


def parse_stat(text: str) -> tuple[str, int]:
    """``(state, start_ticks)`` from the text of ``/proc/PID/stat``; ValueError when garbled.

    Sample: ``4242 (python -m run) S 1 4242 4242 0 -1 4194560 ... 20 0 1 0 31337 ...``. The
    command name (field 2) is in parentheses and may itself hold spaces and ``)``, so the fields
    after it are split after the *last* ``)``: there the state is field 3 and the start time 22.
    """
    close = text.rfind(")")
    if close < 0:
        raise ValueError("no ')' closing the command name")
    fields = text[close + 1:].split()
    if len(fields) < 20:
        raise ValueError(f"{len(fields) + 2} fields, expected at least 22")
    return fields[0], int(fields[19])


def read_boot_id(proc_root: Path = PROC) -> str:
    """This boot's id; "" where the file cannot be read (then only the start ticks are compared)."""
    try:
        return (proc_root / "sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        return ""


def read_stamp(pid: int, proc_root: Path = PROC) -> ProcessStamp | None:
    """The live process ``pid``'s stamp; None when there is none, or only a zombie (it has exited)."""
    if pid <= 0:
        return None
    try:
        text = (proc_root / str(pid) / "stat").read_text(encoding="utf-8", errors="replace")
        state, ticks = parse_stat(text)
    except (OSError, ValueError):
        return None
    if state in ("Z", "X", "x"):
        return None
    return ProcessStamp(pid=pid, start_ticks=ticks, boot_id=read_boot_id(proc_root))


def boot_seconds() -> float:
    """Seconds since boot (``CLOCK_BOOTTIME``): comparable across processes, never stepped."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def ticks_to_boot_seconds(ticks: int) -> float:
    """Start ticks (``/proc/PID/stat`` field 22) as seconds after boot."""
    return ticks / os.sysconf("SC_CLK_TCK")


def wall_start_time(pid: int) -> float | None:
    """The wall-clock start time (Unix seconds, psutil ``create_time``) for display and for old
    state files only: it moves with the clock, so it never decides identity on its own."""
    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def command_line(pid: int) -> list[str] | None:
    """``pid``'s argv; None when it cannot be read (gone, or not ours to read)."""
    try:
        return list(psutil.Process(pid).cmdline())
    except psutil.Error:
        return None


def environment_value(pid: int, name: str) -> str | None:
    """One variable of ``pid``'s initial environment ("" when unset); None when unreadable."""
    try:
        return psutil.Process(pid).environ().get(name, "")
    except psutil.Error:
        return None


def is_supervisor_command(argv: Sequence[str]) -> bool:
    """A ``deploy``/``python -m orchestrator`` process (the supervisor runs as ``deploy up``/``auto``)."""
    names = [Path(a).name for a in argv[:3]]
    return "deploy" in names or any(argv[i:i + 2] == ["-m", "orchestrator"] for i in range(len(argv)))


def is_runtime_command(argv: Sequence[str]) -> bool:
    """A ``python -m runtime`` process (the process backend's runtime)."""
    return any(list(argv[i:i + 2]) == ["-m", "runtime"] for i in range(len(argv)))


@dataclass(frozen=True)
class Recognition:
    """Whether a recorded process still runs, and how that was decided."""

    alive: bool
    why: str
    """A sentence: ``pid 42 is gone``, ``pid 42 now belongs to another process (started 12.3 s
    after boot, the record says 4.1 s)``, ``pid 42 runs (start ticks match)`` ..."""
    fallback: str = ""
    """Set when a state file from an older Tailor (no start ticks) was judged by a fallback:
    which one, in a sentence a status line can show."""

    def __bool__(self) -> bool:
        return self.alive


def recognise(pid: int, start_ticks: int | None, boot_id: str = "", *, legacy_started_at_s: float | None = None,
              expected: Callable[[Sequence[str]], bool] | None = None, what: str = "process",
              proc_root: Path = PROC) -> Recognition:
    """Is the process recorded as ``pid`` (+ ``start_ticks`` in boot ``boot_id``) still running?

    With ``start_ticks`` recorded, only the kernel's record decides (a clock step changes
    nothing). Without (a state file from an older Tailor): the command line must satisfy
    ``expected``; where it cannot be read, the wall-clock start time must be within
    :data:`LEGACY_TOLERANCE_S` of ``legacy_started_at_s``.
    """
    stamp = read_stamp(pid, proc_root)
    if stamp is None:
        return Recognition(False, f"{what} pid {pid} is gone")
    if start_ticks is not None:
        if boot_id and stamp.boot_id and boot_id != stamp.boot_id:
            return Recognition(False, f"{what} pid {pid} was recorded in an earlier boot (the machine rebooted)")
        if stamp.start_ticks != start_ticks:
            return Recognition(False, f"{what} pid {pid} now belongs to another process (started "
                                      f"{ticks_to_boot_seconds(stamp.start_ticks):.2f} s after boot, the record "
                                      f"says {ticks_to_boot_seconds(start_ticks):.2f} s)")
        return Recognition(True, f"{what} pid {pid} runs (its start time after boot matches the record)")
    note = "the state file was written by an older Tailor without boot-relative start times; "
    argv = command_line(pid) if expected is not None else None
    if argv is not None and expected is not None:
        if expected(argv):
            return Recognition(True, f"{what} pid {pid} runs", note + "recognised by its command line")
        return Recognition(False, f"{what} pid {pid} now runs something else ({' '.join(argv)[:80]})",
                           note + "recognised by its command line")
    started = wall_start_time(pid)
    if legacy_started_at_s is None or started is None:
        return Recognition(True, f"{what} pid {pid} runs", note + "assumed to be the recorded process "
                                                                 "(its command line and start time are unknown)")
    if abs(started - legacy_started_at_s) <= LEGACY_TOLERANCE_S:
        return Recognition(True, f"{what} pid {pid} runs", note + f"wall-clock start times compared within "
                                                                 f"{LEGACY_TOLERANCE_S:.0f} s")
    return Recognition(False, f"{what} pid {pid} now belongs to another process (started "
                              f"{started - legacy_started_at_s:+.0f} s from the record)",
                       note + f"wall-clock start times compared within {LEGACY_TOLERANCE_S:.0f} s")


def runtime_recognition(identity: RuntimeIdentity, proc_root: Path = PROC) -> Recognition:
    """Is the recorded process runtime (pid + start ticks + instance id) still running?"""
    if not identity.ident.isdigit():
        return Recognition(False, f"runtime {identity.ident or '(none)'} is not a process id")
    pid = int(identity.ident)
    found = recognise(pid, identity.start_ticks, identity.boot_id, legacy_started_at_s=identity.started_at_s,
                      expected=is_runtime_command, what="runtime", proc_root=proc_root)
    if not found.alive or not identity.instance_id:
        return found
    seen = environment_value(pid, INSTANCE_ENV)
    if seen is not None and seen != identity.instance_id:
        return Recognition(False, f"runtime pid {pid} runs instance {seen or '(none)'}, "
                                  f"not the recorded {identity.instance_id}", found.fallback)
    return found


def is_same_process(identity: RuntimeIdentity) -> bool:
    """True when the recorded runtime (pid, start ticks, instance id) still runs."""
    return runtime_recognition(identity).alive
