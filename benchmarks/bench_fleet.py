"""Fleet benchmarks (#12).

``controller``: `deploy fleet plan --json` and `deploy fleet render --k8s` over N facts files
generated from the recorded machines (tests/fixtures/facts) with varied limits (CPU quota or
cpuset, cgroup memory limit). Each command runs as its own process, as an operator runs it;
wall time includes the interpreter. Peak RSS comes from getrusage(RUSAGE_CHILDREN) of a fresh
child per measurement, so runs at several fleet sizes show whether memory grows with the fleet.

``provision``: the test fleet of tests/fleet (three bare containers on the private engine,
different limits, --network none, docker_api connection): `deploy fleet up` from bare
containers (install from the wheelhouse, render, launch, ready), then the idempotent second
run, then `deploy fleet down`. Needs DOCKER_HOST (scripts/docker-test-env.sh) and a cp311
wheelhouse (--wheelhouse).

    .venv/bin/python benchmarks/bench_fleet.py controller --sizes 250,500,1000
    .venv/bin/python benchmarks/bench_fleet.py provision --wheelhouse ~/.cache/tailor-ci/wheelhouse-cp311
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FACTS = ROOT / "tests" / "fixtures" / "facts"
GIB = 1024**3


def generate_facts(directory: Path, count: int, seed: int = 12) -> None:
    """``count`` facts files: each a recorded machine under a random CPU and memory limit."""
    rng = random.Random(seed)
    machines = [json.loads(p.read_text()) for p in sorted(FACTS.glob("*.json"))]
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        data = copy.deepcopy(rng.choice(machines))
        cpu, memory = data["cpu"], data["memory"]
        cpus = rng.choice([c for c in (1, 2, 4, 8) if c <= cpu["logical_cores"]] or [1])
        if rng.random() < 0.5:
            cpu.update(cgroup_quota_cpus=float(cpus), effective_cpus=cpus, effective_cpus_source="cgroup-quota")
        else:
            cpu.update(cpuset_cpus=cpus, effective_cpus=cpus, effective_cpus_source="cpuset")
        limit = min(memory["total_bytes"], rng.choice([2, 4, 8, 16]) * GIB)
        memory.update(cgroup_limit_bytes=limit, effective_total_bytes=limit,
                      effective_available_bytes=int(limit * 0.9), effective_source="cgroup")
        data["hostname"] = f"host-{i:04d}"
        (directory / f"host-{i:04d}.json").write_text(json.dumps(data))


def timed(argv: list[str]) -> tuple[float, int, subprocess.CompletedProcess[str]]:
    """(wall seconds, peak RSS KiB of this child, result); one helper process per call so that
    RUSAGE_CHILDREN's max covers this command only."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "w = time.perf_counter() - t\n"
               "print(json.dumps({'wall': w, 'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,"
               " 'rc': p.returncode, 'err': p.stderr[-400:], 'out_len': len(p.stdout)}))\n")
    proc = subprocess.run([sys.executable, "-c", wrapper, *argv], capture_output=True, text=True, cwd=ROOT,
                          check=True)
    data = json.loads(proc.stdout)
    if data["rc"] != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {data['err']}")
    return data["wall"], data["rss"], proc


def controller(sizes: list[int], repeat: int) -> None:
    print(f"load average before: {os.getloadavg()}")
    print(f"| facts files | command | wall s (best of {repeat}) | peak RSS MiB | classes |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="tailor-bench-fleet-") as tmp:
        for size in sizes:
            facts = Path(tmp) / f"facts-{size}"
            generate_facts(facts, size)
            plan = [sys.executable, "-m", "orchestrator", "fleet", "plan", "--facts-dir", str(facts), "--json"]
            render = [sys.executable, "-m", "orchestrator", "fleet", "render", "--k8s", "--facts-dir", str(facts),
                      "--out", str(Path(tmp) / f"k8s-{size}"), "--json"]
            for name, argv in (("fleet plan --json", plan), ("fleet render --k8s", render)):
                runs = [timed(argv) for _ in range(repeat)]
                wall = min(r[0] for r in runs)
                rss = max(r[1] for r in runs) / 1024
                classes = len(list((Path(tmp) / f"k8s-{size}").glob("*.yaml"))) - 1 if "render" in name else "-"
                print(f"| {size} | `deploy {name}` | {wall:.2f} | {rss:.0f} | {classes} |")
    print(f"load average after: {os.getloadavg()}")


def provision(wheelhouse: Path) -> None:
    import docker

    client = docker.from_env(timeout=120)
    base = os.environ.get("TAILOR_TEST_BASE_IMAGE", "tailor-test-base:bookworm")
    suffix = uuid.uuid4().hex[:6]
    limits = {"fleet-a": {"nano_cpus": 10**9, "mem_limit": "2g"}, "fleet-b": {"nano_cpus": 2 * 10**9, "mem_limit": "4g"},
              "fleet-c": {"cpuset_cpus": "0", "mem_limit": "3g"}}
    started = []
    print(f"load average before: {os.getloadavg()}")
    try:
        with tempfile.TemporaryDirectory(prefix="tailor-bench-fleet-") as tmp:
            lines = ["[tts]"]
            for name, lim in limits.items():
                cname = f"tailor-bench-{name}-{suffix}"
                started.append(client.containers.run(base, ["sleep", "infinity"], name=cname, detach=True, init=True,
                                                     network_mode="none", **lim))
                lines.append(f"{name} ansible_host={cname}")
            lines += ["[all:vars]", "ansible_connection=community.docker.docker_api",
                      f"ansible_docker_docker_host={os.environ['DOCKER_HOST']}", "ansible_docker_timeout=60",
                      "ansible_user=root", "ansible_python_interpreter=/usr/bin/python3"]
            inventory = Path(tmp) / "hosts.ini"
            inventory.write_text("\n".join(lines) + "\n")
            base_argv = [sys.executable, "-m", "orchestrator", "fleet"]
            common = ["-i", str(inventory), "--fleet-dir", str(Path(tmp) / "fleet"), "--wheelhouse", str(wheelhouse),
                      "--json"]
            for label, argv in (("up from bare containers", [*base_argv, "up", *common]),
                                ("up again (idempotent)", [*base_argv, "up", *common]),
                                ("down", [*base_argv, "down", "-i", str(inventory), "--json"])):
                t0 = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
                wall = time.perf_counter() - t0
                rows = json.loads(proc.stdout)["hosts"] if proc.stdout.startswith("{") else []
                changed = sum(r.get("changed", 0) for r in rows)
                print(f"| {label} | {wall:.1f} s | exit {proc.returncode} | {changed} changed tasks | "
                      f"load {os.getloadavg()[0]:.2f} |")
                if proc.returncode != 0:
                    print(proc.stderr[-2000:])
    finally:
        for container in started:
            container.remove(force=True)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("controller")
    c.add_argument("--sizes", default="250,500,1000")
    c.add_argument("--repeat", type=int, default=3)
    p = sub.add_parser("provision")
    p.add_argument("--wheelhouse", type=Path, required=True)
    args = parser.parse_args()
    if args.mode == "controller":
        controller([int(s) for s in args.sizes.split(",")], args.repeat)
    else:
        provision(args.wheelhouse)


if __name__ == "__main__":
    main()
