"""Process backend: the runtime as a supervised child process (``python -m runtime``).

The child runs under the same interpreter as ``deploy`` (``sys.executable``), in its own
session (so a terminal's Ctrl-C reaches only the supervisor, which stops it cleanly), with the
plan's environment, and writes stdout+stderr to ``<state dir>/runtime.log``.

Memory limit and OOM detection, in order of preference:

1. **Its own memory cgroup** (orchestrator/launch/memory_cgroup.py) when we are root and a memory
   controller is writable. The kernel enforces the plan's limit and counts its OOM kills.
2. Otherwise **an RSS watchdog**: every poll sums the RSS of the child's process tree and, over
   the plan's budget, kills it (SIGKILL) and reports an OOM kill. A SIGKILL we did not send,
   while the kernel's global ``oom_kill`` counter (``/proc/vmstat``) went up, is also reported
   as an OOM kill.

``RLIMIT_AS`` is deliberately not used: onnxruntime reserves far more address space than it
touches, so an address-space limit breaks model loading long before memory runs out.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from orchestrator.errors import LaunchError
from orchestrator.launch.identity import (
    ProcessStamp,
    is_same_process,
    read_stamp,
    runtime_recognition,
)
from orchestrator.launch.memory_cgroup import MemoryCgroup, vmstat_oom_kills
from orchestrator.launch.ports import RecordedRuntime, ensure_port_free
from orchestrator.launch.runner import (
    INSTANCE_ENV,
    OsCalls,
    RunnerStatus,
    RuntimeIdentity,
    describe_exit,
    new_instance_id,
)
from orchestrator.launch.spec import LaunchSpec
from orchestrator.plan.decisions import LOOPBACK
from orchestrator.polling import wait_while

LOG_FILE = "runtime.log"
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "TZ", "PYTHONPATH", "XDG_CACHE_HOME",
              "LD_LIBRARY_PATH")
# PYTHONPATH: `deploy` run from a source checkout launches the runtime of that same checkout.
# XDG_CACHE_HOME: where model variants made by `deploy tune` are cached when the model's own
# directory is read-only (runtime/families/piper/variants.py).
# LD_LIBRARY_PATH: where the shell that runs `deploy` finds the NVIDIA driver's libcuda (CUDA base
# images and many GPU hosts put it in /usr/local/nvidia/lib64 and say so only there); without it
# torch in the child sees no GPU and the runtime falls back to its CPU engine.
_MB = 1024 * 1024


def runtime_command() -> list[str]:
    """``python -m runtime`` under the interpreter running ``deploy``."""
    return [sys.executable, "-m", "runtime"]


def child_environment(spec: LaunchSpec, environ: Mapping[str, str], instance_id: str = "") -> dict[str, str]:
    """The plan's env, plus the few host variables a Python process needs (PATH, HOME, locale)."""
    env = {k: environ[k] for k in _INHERITED if k in environ}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(spec.env_map)
    if instance_id:
        env[INSTANCE_ENV] = instance_id
    return env


def stop_process_group(identity: RuntimeIdentity, grace_s: float) -> str:
    """SIGTERM the recorded runtime's process group, SIGKILL after ``grace_s``; a sentence saying what happened.

    Used for a runtime whose supervisor is gone (not our child, so there is no waitpid). A pid
    that now belongs to another process (start ticks or instance differ) is left alone.
    """
    found = runtime_recognition(identity)
    if not found.alive:
        return f"nothing to stop: {found.why}"
    pid = int(identity.ident)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            os.kill(pid, sig)
        if wait_while(lambda: is_same_process(identity), wait_s, 0.1):
            return f"stopped runtime process {pid} ({sig.name})"
    if is_same_process(identity):
        raise LaunchError(f"runtime process {pid} survived SIGKILL", "it may be stuck in the kernel (D state); "
                          f"check `ps -o stat,wchan -p {pid}`")
    return f"stopped runtime process {pid}"


class ProcessRunner:
    """Runs one instance of a command (by default ``python -m runtime``) as a supervised child."""

    backend = "process"

    def __init__(self, spec: LaunchSpec, state_dir: Path, *, argv: Sequence[str] | None = None,
                 environ: Mapping[str, str] | None = None, os_calls: OsCalls | None = None,
                 cgroup_root: Path = Path("/sys/fs/cgroup"), proc_root: Path = Path("/proc"),
                 recorded: RecordedRuntime | None = None) -> None:
        self.spec = spec
        self._recorded = recorded
        self.state_dir = state_dir
        self.argv = list(argv) if argv is not None else runtime_command()
        self._environ = os.environ if environ is None else environ
        self._os = os_calls or OsCalls()
        self._cgroup_root = cgroup_root
        self._proc_root = proc_root
        self._child: subprocess.Popen[bytes] | None = None
        self._cgroup: MemoryCgroup | None = None
        self.memory_enforcement = "none (the plan sets no memory limit)"
        self._vmstat_before: int | None = None
        self._killed_by_us = False
        self._watchdog_detail = ""
        self._final: RunnerStatus | None = None
        self._instance_id = ""
        self._stamp: ProcessStamp | None = None

    @property
    def log_path(self) -> Path:
        return self.state_dir / LOG_FILE

    @property
    def ident(self) -> str:
        return str(self._child.pid) if self._child is not None else ""

    @property
    def identity(self) -> RuntimeIdentity:
        stamp = self._stamp
        return RuntimeIdentity(ident=self.ident, instance_id=self._instance_id,
                               cgroup_path=str(self._cgroup.path) if self._cgroup is not None else "",
                               start_ticks=stamp.start_ticks if stamp is not None else None,
                               boot_id=stamp.boot_id if stamp is not None else "")

    def start(self) -> str:
        if self._child is not None:
            raise LaunchError("this runner already started an instance", "create a new runner per instance")
        ensure_port_free(self.spec.port, self.spec.env_map.get("TAILOR_HOST", LOOPBACK), recorded=self._recorded)
        self._instance_id = new_instance_id()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            log = open(self.log_path, "ab")  # noqa: SIM115 -- the child keeps its own copy of the fd
        except OSError as exc:
            raise LaunchError(f"cannot open the log file {self.log_path}: {exc.strerror}",
                              "check that the state directory is writable") from exc
        with log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} starting: "
                      f"{' '.join(self.argv)}\n".encode())
            log.flush()
            try:
                self._child = self._os.spawn(self.argv,
                                             child_environment(self.spec, self._environ, self._instance_id),
                                             self.state_dir, log)
            except OSError as exc:
                raise LaunchError(f"cannot start {self.argv[0]}: {exc.strerror}",
                                  "check that the interpreter exists and is executable") from exc
        self._stamp = read_stamp(self._child.pid)
        limit = self.spec.memory_limit_bytes
        self._vmstat_before = vmstat_oom_kills(self._os, self._proc_root)
        if limit:
            group, why = MemoryCgroup.create(f"tailor-{self._child.pid}", limit, self._os,
                                             self._cgroup_root, self._proc_root)
            if group is not None:
                try:
                    group.add(self._child.pid)
                    self._cgroup = group
                    self.memory_enforcement = why
                except OSError as exc:
                    group.remove()
                    why = f"cannot move the child into {group.path} ({exc.strerror})"
            if self._cgroup is None:
                self.memory_enforcement = f"RSS watchdog at {limit // _MB} MB ({why})"
        return str(self._child.pid)

    def _tree_rss_bytes(self) -> int:
        assert self._child is not None
        return tree_rss_bytes(self._child.pid)

    def poll(self) -> RunnerStatus:
        if self._final is not None:
            return self._final
        if self._child is None:
            return RunnerStatus(running=False, detail="not started")
        code = self._child.poll()
        if code is None:
            limit = self.spec.memory_limit_bytes
            if limit and self._cgroup is None:
                rss = self._tree_rss_bytes()
                if rss > limit:
                    self._watchdog_detail = (f"OOM: RSS {rss // _MB} MB over the plan's memory budget "
                                             f"{limit // _MB} MB (killed by the RSS watchdog)")
                    self._signal(signal.SIGKILL)
                    code = self._child.wait()
            if code is None:
                return RunnerStatus(running=True, detail="running")
        self._final = self._exit_status(code)
        return self._final

    def _exit_status(self, code: int) -> RunnerStatus:
        detail = describe_exit(code)
        if self._watchdog_detail:
            return RunnerStatus(running=False, exit_code=code, oom_killed=True, detail=self._watchdog_detail)
        if self._cgroup is not None and self._cgroup.oom_kills() > 0:
            return RunnerStatus(running=False, exit_code=code, oom_killed=True,
                                detail=f"OOM-killed by the kernel in its memory cgroup "
                                       f"({(self.spec.memory_limit_bytes or 0) // _MB} MB limit); {detail}")
        if code == -signal.SIGKILL and not self._killed_by_us and self._vmstat_before is not None:
            after = vmstat_oom_kills(self._os, self._proc_root)
            if after is not None and after > self._vmstat_before:
                return RunnerStatus(running=False, exit_code=code, oom_killed=True,
                                    detail=f"OOM-killed by the kernel (/proc/vmstat oom_kill rose); {detail}")
        return RunnerStatus(running=False, exit_code=code, detail=detail)

    def _signal(self, sig: int) -> None:
        assert self._child is not None
        if sig == signal.SIGKILL:
            self._killed_by_us = True
        try:
            self._os.killpg(self._child.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self._os.kill(self._child.pid, sig)

    def stop(self, grace_s: float) -> RunnerStatus:
        if self._child is None:
            return RunnerStatus(running=False, detail="not started")
        if self._child.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self._child.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._child.wait()
                self._final = RunnerStatus(
                    running=False, exit_code=self._child.returncode,
                    detail=f"did not stop within {grace_s:.0f} s of SIGTERM; killed by SIGKILL")
                return self._final
        return self.poll()

    def remove(self) -> None:
        if self._child is not None and self._child.poll() is None:
            self.stop(5.0)
        if self._cgroup is not None:
            self._cgroup.remove()
            self._cgroup = None

    def logs(self, lines: int) -> list[str]:
        return tail_lines(self.log_path, lines)


def tail_lines(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (reads at most the last 256 KiB)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            data = fh.read()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise LaunchError(f"cannot read {path}: {exc.strerror}", "check the state directory's permissions") from exc
    text = data.decode("utf-8", errors="replace").splitlines()
    return text[-lines:] if lines > 0 else []


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in bytes; 0 when it is gone.

    Source: psutil (``/proc/<pid>/statm`` of every process in the tree); processes that exit
    while being summed are skipped.
    """
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += int(p.memory_info().rss)
        except psutil.Error:
            continue
    return total
