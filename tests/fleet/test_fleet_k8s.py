"""Fleet Kubernetes manifests: hardware classes, fields from the plan, schema-valid (kubernetes-validate).

Machines are the recorded facts files in tests/fixtures/facts (CPU, T4, RTX 3060, GTX 1050,
Jetson Orin NX, a cgroup-limited container) plus two variants built from the T4 file: a
two-GPU node and a MIG-enabled A100, so every kind of node the issue names is validated.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from orchestrator import pipeline
from orchestrator.fleet.facts_dir import plan_fleet
from orchestrator.fleet.k8s import (
    CLASS_LABEL,
    class_manifests,
    fleet_manifests,
    group_classes,
    node_selector,
)
from orchestrator.render.renderer import render
from orchestrator.select.profiles import load_profiles

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
K8S_VERSION = "1.30"
GIB = 1024**3


def _variant(name: str, tmp: Path, change) -> Path:
    data = json.loads((FACTS / "t4-8gb-4cpu.json").read_text())
    data = copy.deepcopy(data)
    change(data)
    data["hostname"] = name
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def _two_gpus(data: dict) -> None:
    second = copy.deepcopy(data["gpus"][0])
    second["index"], second["uuid"] = 1, "GPU-second"
    data["gpus"].append(second)


def _mig_a100(data: dict) -> None:
    gpu = data["gpus"][0]
    gpu.update(name="NVIDIA A100-SXM4-40GB", memory_total_bytes=40 * GIB, memory_free_bytes=39 * GIB,
               compute_capability="8.0", mig_mode="enabled")


@pytest.fixture(scope="module")
def fleet_dir(tmp_path_factory) -> Path:
    """Every recorded machine, one of them twice (same plan = same class), and the GPU variants."""
    d = tmp_path_factory.mktemp("facts")
    for path in FACTS.glob("*.json"):
        (d / path.name).write_text(path.read_text())
    (d / "cpu-4core-16gb-twin.json").write_text((FACTS / "cpu-4core-16gb.json").read_text())
    _variant("t4-x2", d, _two_gpus)
    _variant("a100-mig", d, _mig_a100)
    return d


@pytest.fixture(scope="module")
def rows(fleet_dir: Path):
    return list(plan_fleet(fleet_dir, load_profiles(())))


@pytest.fixture(scope="module")
def classes(rows):
    return group_classes((r.host, r.plan, r.facts) for r in rows if r.plan is not None)


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_every_manifest_passes_the_kubernetes_schema(classes) -> None:
    files = fleet_manifests(classes)
    assert "service.yaml" in files
    kinds = []
    for _name, text in files.items():
        for doc in _docs(text):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            kinds.append(doc["kind"])
    assert kinds.count("Deployment") == len(classes) and kinds.count("Service") == 1


def test_the_validator_rejects_a_broken_manifest(classes) -> None:
    # The schema check above can fail: an unknown field in a container is an error.
    deployment, _service = class_manifests(classes[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["gpuCount"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_hosts_with_the_same_plan_share_one_class(classes) -> None:
    by_host = {h: c for c in classes for h in c.hosts}
    assert by_host["cpu-4core-16gb"] is by_host["cpu-4core-16gb-twin"]
    assert by_host["cpu-4core-16gb"] is not by_host["t4-8gb-4cpu"]
    deployment, _ = class_manifests(by_host["cpu-4core-16gb"])
    assert deployment["spec"]["replicas"] == 2 * by_host["cpu-4core-16gb"].plan.container.k8s_replicas
    # Each class selects only its own pods; all classes share the Service's selector.
    assert deployment["spec"]["selector"]["matchLabels"][CLASS_LABEL] == by_host["cpu-4core-16gb"].key
    assert len({c.name for c in classes}) == len(classes)


def test_requests_and_limits_come_from_the_plan(classes) -> None:
    for cls in classes:
        deployment, _ = class_manifests(cls)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        plan = cls.plan.container
        per_pod = plan.k8s_replicas > 1
        memory = plan.k8s_request_memory_bytes if per_pod else plan.request_memory_bytes
        cpus = plan.k8s_request_cpus if per_pod else plan.request_cpus
        assert container["resources"]["requests"]["memory"] == f"{memory // 1024**2}Mi"
        assert float(container["resources"]["requests"]["cpu"]) == pytest.approx(cpus, abs=0.01)
        assert deployment["spec"]["replicas"] == len(cls.hosts) * plan.k8s_replicas
        limits = container["resources"]["limits"]
        gpu_resources = {k: v for k, v in limits.items() if k.startswith("nvidia.com/")}
        if plan.gpu_count == 0:
            assert gpu_resources == {}
        else:  # whole GPUs or MIG slices, split over the host's pods as the plan asks
            assert sum(int(v) for v in gpu_resources.values()) * plan.k8s_replicas >= plan.gpu_count
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["TAILOR_THREADS_PER_WORKER"] == str(cls.plan.threads)
        assert int(env["TAILOR_WORKERS"]) == (plan.k8s_workers if per_pod else cls.plan.workers)


def test_node_selectors_name_the_class_hardware(classes) -> None:
    by_host = {h: c for c in classes for h in c.hosts}
    jetson, _ = class_manifests(by_host["jetson-orin-nx-8gb"])
    assert jetson["spec"]["template"]["spec"]["nodeSelector"]["kubernetes.io/arch"] == "arm64"
    t4, _ = class_manifests(by_host["t4-8gb-4cpu"])
    selector = t4["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["kubernetes.io/arch"] == "amd64"
    assert selector["nvidia.com/gpu.product"] == by_host["t4-8gb-4cpu"].plan.container.gpu_product
    cpu, _ = class_manifests(by_host["cpu-4core-16gb"])
    assert cpu["spec"]["template"]["spec"]["nodeSelector"]["feature.node.kubernetes.io/cpu-cpuid.AVX2"] == "true"
    assert node_selector(by_host["jetson-orin-nx-8gb"].facts).get("feature.node.kubernetes.io/cpu-cpuid.AVX2") is None


def test_a_class_deployment_is_the_single_host_render_plus_fleet_fields(classes) -> None:
    # Same code as `deploy render --format k8s`: the pod's container is byte-for-byte that render's.
    for cls in classes:
        single = _docs(render(cls.plan, ("k8s",))["k8s.yaml"])[0]
        fleet, _ = class_manifests(cls)
        assert fleet["spec"]["template"]["spec"]["containers"] == single["spec"]["template"]["spec"]["containers"]
        assert fleet["metadata"]["name"] != single["metadata"]["name"]


def test_multi_gpu_and_mig_nodes_are_planned_and_valid(rows, classes) -> None:
    planned = {r.host: r for r in rows}
    assert planned["t4-x2"].plan is not None and planned["a100-mig"].plan is not None
    names = {h for c in classes for h in c.hosts}
    assert {"t4-x2", "a100-mig"} <= names


def test_the_same_plan_through_the_pipeline(fleet_dir: Path, rows) -> None:
    # The controller's plan for a facts file is what `deploy plan --facts FILE` computes.
    for row in rows[:3]:
        single = pipeline.plan_from(pipeline.Inputs(facts=fleet_dir / f"{row.host}.json", environ={})).plan
        assert row.plan is not None
        assert row.plan.to_dict() == single.to_dict()


def test_single_host_manifests_pass_the_schema_too(rows) -> None:
    # `deploy render --format k8s` is the code every class builds on; its output is valid alone.
    for row in rows:
        if row.plan is None:
            continue
        for doc in _docs(render(row.plan, ("k8s",))["k8s.yaml"]):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
