"""Recorded GPU and Jetson machines: each one plans, renders (compose and k8s, both validated by
their real tools) and explains itself correctly.

The facts files are in tests/fixtures/facts/ (see generate.py there). Kubernetes manifests are
checked against the API schemas shipped by the kubernetes-validate package (strict: unknown
fields fail); compose files by the real ``docker-compose config`` (skipped where it is absent,
failed under CI=true, as in test_render_compose.py).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from orchestrator.cli.app import main
from orchestrator.plan.planner import Plan, make_plan
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import RenderOptions, render, write_rendered
from orchestrator.select.profiles import load_profiles
from orchestrator.select.selection import select_profile
from runtime.settings import VARIABLES
from tests.unit.test_render_compose import compose_binary

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
GIB = 1024**3


@dataclass(frozen=True)
class Machine:
    facts: str
    stands_for: str
    profile: str
    device: str
    gpu_ids: tuple[str, ...]
    """What compose reserves (device UUIDs), empty when no discrete GPU is used."""
    k8s_gpu: tuple[str, int] | None
    """(extended resource, count) the pod asks for."""
    explain: tuple[str, ...]
    """Phrases `deploy plan --explain` must print."""


MACHINES = [
    Machine("h100x8-2tb", "HGX: 8 x H100 80 GB, 224 threads, 2 TiB", "gpu-large", "cuda",
            tuple(f"GPU-9c1d{i:04x}-6e2a-4b7d-a1f3-5e8b0c2d4f{i:02d}" for i in range(8)), ("nvidia.com/gpu", 1),
            ("GPU 7 (NVIDIA H100 80GB HBM3): used: same card as GPU 0",
             "workers=16: 8 GPUs x min(profile max_workers 2",
             "max_batch_size=32", "on each of 8 GPUs")),
    # Recorded, not generated: `deploy probe --json` on a lent H200 VM (driver 580, CUDA 13.0, cgroup v2).
    Machine("h200-recorded", "1 x H200 141 GB VM, 16 vCPU, 126 GiB (recorded by deploy probe)", "gpu-large", "cuda",
            ("GPU-5a7fc4ad-a74b-d70e-26af-aa40513a0a6e",), ("nvidia.com/gpu", 1),
            ("GPU 0 (NVIDIA H200): used: torch 2.13 cu130", "bf16: compute capability 9.0 >= 8.0",
             "max_batch_size=32", "workers=2")),
    Machine("a5000x2-busy", "2 x RTX A5000, GPU 0 held by a training job", "gpu-16gb", "cuda",
            ("GPU-d25f0b87-1c3e-4a9d-b6f2-83e7a1c4d511",), ("nvidia.com/gpu", 1),
            ("GPU 0 (NVIDIA RTX A5000): left out: busy: other processes hold 23.0 GiB of 24.0 GiB",
             "GPU 1 (NVIDIA RTX A5000): used")),
    Machine("rtx3060-busy", "RTX 3060, 412 MiB free", "cpu-only", "cpu", (), None,
            ("412.0 MiB free < 752.3 MiB the model needs",
             "device cpu: no NVIDIA GPU is usable")),
    Machine("t4-driver470", "g4dn.xlarge with driver 470 (CUDA 11.4)", "cpu-only", "cpu", (), None,
            ("driver 470.256.02: the driver supports CUDA <= 11.4", "upgrade the NVIDIA driver",
             "t4-8gb: does not fit (needs a usable NVIDIA GPU")),
    Machine("a100-mig", "A100 40 GB, MIG 3g.20gb + 2g.10gb + 2 x 1g.5gb", "gpu-16gb", "cuda",
            ("MIG-5e0c2a4f-8d71-5b39-a6e2-c4f7d1b8e302",), ("nvidia.com/mig-3g.20gb", 1),
            ("GPU 0 (NVIDIA A100-SXM4-40GB): left out: MIG is enabled: its 4 MIG instance(s) are the devices",
             "GPU 0 MIG 3g.20gb (MIG-5e0c2a4f-8d71-5b39-a6e2-c4f7d1b8e302) (NVIDIA A100-SXM4-40GB MIG 3g.20gb): used",
             "vram total", "nvidia.com/mig-3g.20gb: 1")),
    Machine("rtx2060-6gb", "desktop with a 6 GB RTX 2060", "low-vram-gpu", "cuda",
            ("GPU-2060dddd-7a3b-4c1e-9f0d-000000002060",), ("nvidia.com/gpu", 1),
            ("GPU 0 (NVIDIA GeForce RTX 2060): used: torch 2.13 cu128", "fp16: compute capability 7.5 >= 7.0")),
    Machine("gtx1050-16gb", "laptop with a 2 GB GTX 1050 (Pascal)", "low-vram-gpu", "cuda",
            ("GPU-1050bbbb-0000-4000-8000-000000001050",), ("nvidia.com/gpu", 1),
            ("torch 2.13 cu126", "cu128 has no kernels for it",
             "fp32: compute capability 6.1 has no fp16 tensor cores")),
    Machine("jetson-orin-nx-8gb", "Orin NX 8 GB on L4T R35.4.1", "jetson-cpu", "cpu", (), None,
            ("L4T R35.4.1 (JetPack 5.1.2): the model runs with onnx on the CPU", "upgrade to JetPack 6",
             "jetson-edge: does not fit (L4T R35.4.1 is older than R36.0)")),
    Machine("jetson-nano-r32", "Jetson Nano 4 GB on L4T R32.7.4", "jetson-cpu", "cpu", (), None,
            ("L4T R32.7.4 (JetPack 4.6.4)", "jetson-cpu: fits")),
    Machine("jetson-agx-orin-r36", "AGX Orin 64 GB on L4T R36.4.3", "jetson-edge", "cuda", (), None,
            ("jetson-edge: fits",)),
    Machine("t4-8gb-4cpu", "g4dn: 4 vCPU, 8 GB, T4", "t4-8gb", "cuda",
            ("GPU-5a0c9f7e-1b1d-4c55-9d0e-0000000000t4",), ("nvidia.com/gpu", 1),
            ("GPU 0 (Tesla T4): used",)),
    Machine("rtx3060-16gb", "desktop: 16 GB, RTX 3060 12 GB", "gpu-16gb", "cuda",
            ("GPU-3060aaaa-0000-4000-8000-000000003060",), ("nvidia.com/gpu", 1),
            ("GPU 0 (NVIDIA GeForce RTX 3060): used",)),
]
IDS = [m.facts for m in MACHINES]


def host(name: str) -> HostFacts:
    return HostFacts.from_json_file(FACTS / f"{name}.json")


def plan_for(name: str, environ: dict[str, str] | None = None) -> Plan:
    facts = host(name)
    env = environ or {}
    return make_plan(facts, select_profile(facts, load_profiles(), environ=env), environ=env)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in VARIABLES:
        monkeypatch.delenv(var.name, raising=False)
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "PYTORCH_CUDA_ALLOC_CONF", "LD_PRELOAD"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_plan(machine: Machine) -> None:
    plan = plan_for(machine.facts)
    facts = host(machine.facts)
    assert (plan.profile, plan.device) == (machine.profile, machine.device), machine.stands_for
    assert plan.container.gpu_device_ids == machine.gpu_ids
    assert plan.memory_budget.fits
    if machine.gpu_ids:
        assert plan.env["CUDA_VISIBLE_DEVICES"] == ",".join(machine.gpu_ids)
        assert plan.env["TAILOR_GPUS"] == str(len(machine.gpu_ids))
        assert plan.workers % len(machine.gpu_ids) == 0
        assert plan.container.cuda_build in ("cu126", "cu128", "cu130")
        assert plan.container.base_image.startswith(("nvidia/cuda:12.", "nvidia/cuda:13."))
        # The VRAM budget is per device, within what is free on it.
        vram = plan.memory_budget.total("vram")
        used = [g for g in facts.gpus if g.uuid in machine.gpu_ids]
        assert vram.capacity_bytes == min(g.memory_free_bytes for g in used)
    if plan.device == "cuda" and plan.engine == "torch":
        # The fallback has its own options: onnx on the CPU, fp32, its own threads.
        assert plan.env["TAILOR_FALLBACK"] == "onnx:en_US-joe-medium"
        assert plan.env["TAILOR_FALLBACK_DEVICE"] == "cpu"
        assert int(plan.env["TAILOR_FALLBACK_THREADS"]) >= 1
    # Pods are sized from the plan, never from the node.
    c = plan.container
    assert c.request_cpus <= plan.workers * plan.threads + 2
    assert c.request_memory_bytes <= c.memory_limit_bytes


def test_eight_h100_pod_requests_the_plan_not_the_node() -> None:
    plan = plan_for("h100x8-2tb")
    assert (plan.workers, plan.threads, plan.max_batch_size) == (16, 2, 32)
    assert plan.container.request_cpus == 34.0  # 16 workers x 2 threads + 2 for the server
    # Ten server processes (TAILOR_PROCESSES, each with its own weights and working memory):
    # their planned RAM, not the node's 1.6 TiB.
    assert plan.processes == 10 and plan.container.request_memory_bytes < 320 * GIB
    assert plan.container.gpu_count == 8


def test_eight_h100_render_one_pod_per_gpu_behind_one_service() -> None:
    plan = plan_for("h100x8-2tb")
    c = plan.container
    assert (c.k8s_replicas, c.k8s_workers, c.k8s_request_cpus) == (8, 2, 6.0)  # 2 workers x 2 threads + 2
    assert c.k8s_request_memory_bytes < c.request_memory_bytes  # one process's share, not the host's
    docs = [d for d in yaml.safe_load_all(render(plan, ["k8s"])["k8s.yaml"]) if d]
    deployment, service = docs
    assert deployment["spec"]["replicas"] == 8 and service["kind"] == "Service"
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["TAILOR_GPUS"], env["TAILOR_WORKERS"], env["TAILOR_MAX_QUEUE"]) == ("1", "2", str(
        int(plan.env["TAILOR_MAX_QUEUE"]) // 8))
    # The single host keeps one process over all eight GPUs.
    assert plan.env["TAILOR_GPUS"] == "8" and c.gpu_count == 8


def test_t4_pod_leaves_the_node_room() -> None:
    plan = plan_for("t4-8gb-4cpu")
    assert plan.container.request_cpus == 3.0  # 1 worker x 2 threads + 1 for the server, of 4 vCPUs
    assert plan.container.cpus == 4.0  # the single-host container may use the machine


@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_k8s_render_is_valid_and_reserves_the_right_gpu(machine: Machine) -> None:
    plan = plan_for(machine.facts)
    docs = [d for d in yaml.safe_load_all(render(plan, ["k8s"])["k8s.yaml"]) if d]
    version = kubernetes_validate.latest_version()
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)
    pod = docs[0]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert requests["cpu"] == limits["cpu"] and requests["memory"] == limits["memory"]
    c = plan.container
    per_pod = c.k8s_replicas > 1
    assert docs[0]["spec"]["replicas"] == c.k8s_replicas
    assert float(requests["cpu"]) == (c.k8s_request_cpus if per_pod else c.request_cpus)
    assert requests["memory"] == f"{(c.k8s_request_memory_bytes if per_pod else c.request_memory_bytes) // 1024**2}Mi"
    facts = host(machine.facts)
    assert pod["nodeSelector"]["kubernetes.io/arch"] == ("arm64" if facts.cpu.architecture == "aarch64" else "amd64")
    if machine.k8s_gpu is None:
        assert not any(k.startswith("nvidia.com/") for k in limits)
    else:
        resource, count = machine.k8s_gpu
        assert limits[resource] == str(count)
        assert pod["nodeSelector"]["nvidia.com/gpu.product"] == plan.container.gpu_product
        assert " MIG " not in plan.container.gpu_product
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in env  # the device plugin picks the devices
    if plan.profile == "jetson-edge":
        assert pod["runtimeClassName"] == "nvidia"
        assert pod["nodeSelector"]["tailor.dev/l4t-major"] == "36"
    else:
        assert "runtimeClassName" not in pod


@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_compose_render_passes_docker_compose_config(machine: Machine, tmp_path: Path) -> None:
    binary = compose_binary()
    plan = plan_for(machine.facts)
    write_rendered(render(plan, ["compose"], RenderOptions()), tmp_path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    result = subprocess.run([binary, "-f", str(tmp_path / "docker-compose.yml"), "config"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, env=env, check=False)
    assert result.returncode == 0, result.stderr
    service = yaml.safe_load(result.stdout)["services"]["tailor-runtime"]
    assert "CUDA_VISIBLE_DEVICES" not in service["environment"]
    if machine.gpu_ids:
        device = service["deploy"]["resources"]["reservations"]["devices"][0]
        assert device["device_ids"] == list(machine.gpu_ids)
    else:
        assert "deploy" not in service
    assert (service.get("runtime") == "nvidia") == (plan.profile == "jetson-edge")
    assert service["environment"]["TAILOR_WORKERS"] == str(plan.workers)


@pytest.mark.parametrize("machine", MACHINES, ids=IDS)
def test_explain_says_why(machine: Machine, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import output

    monkeypatch.setattr(output._stdout, "width", 400)
    monkeypatch.setattr(output._stderr, "width", 400)
    assert main(["plan", "--facts", str(FACTS / f"{machine.facts}.json"), "--explain"]) == 0
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    for phrase in machine.explain:
        assert phrase in text, phrase
    assert "Kubernetes pod: requests = limits" in text or "Kubernetes: 8 pods behind one Service" in text


def test_cuda_visible_devices_is_respected(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = {"CUDA_VISIBLE_DEVICES": "2,5"}
    plan = plan_for("h100x8-2tb", environ)
    assert plan.container.gpu_device_ids == (
        "GPU-9c1d0002-6e2a-4b7d-a1f3-5e8b0c2d4f02", "GPU-9c1d0005-6e2a-4b7d-a1f3-5e8b0c2d4f05")
    assert plan.workers == 4 and plan.env["TAILOR_GPUS"] == "2"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "2,5"  # the user's value, kept as set
    assert any("GPU 0 (NVIDIA H100 80GB HBM3) is not used: hidden by CUDA_VISIBLE_DEVICES='2,5'" in w
               for w in plan.warnings)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert main(["plan", "--facts", str(FACTS / "h100x8-2tb.json"), "--json"]) == 0


def test_cuda_visible_devices_empty_hides_every_gpu() -> None:
    plan = plan_for("rtx3060-16gb", {"CUDA_VISIBLE_DEVICES": ""})
    assert plan.profile == "cpu-only" and plan.device == "cpu"


def test_fewer_workers_than_gpus_reserve_only_the_gpus_in_use() -> None:
    facts = host("h100x8-2tb")
    plan = make_plan(facts, select_profile(facts, load_profiles(), environ={}), {"workers": "3"}, environ={})
    assert plan.workers == 3 and plan.container.gpu_count == 3
    assert plan.env["TAILOR_GPUS"] == "3" and len(plan.env["CUDA_VISIBLE_DEVICES"].split(",")) == 3
    assert any("3 worker(s) for 8 usable GPUs" in w for w in plan.warnings)
