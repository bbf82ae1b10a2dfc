"""Kubernetes manifests for a fleet: one Deployment per hardware class, one Service.

A hardware class is the set of hosts whose plans are the same (profile, engine, device,
precision, workers x threads, runtime environment, container limits and GPU request) and whose
nodes are told apart by the same labels. Each class's Deployment is the single-host manifest
(``orchestrator.render.renderer.render(plan, ["k8s"])``, the same code and template as ``deploy render
--format k8s``) with only the fleet's additions:

- a name and a ``tailor.dev/class`` label per class, in the selector too, so classes never
  adopt each other's pods;
- ``replicas`` = hosts in the class x the single-host manifest's pods per host (more than one
  when a plan spans several whole GPUs: one pod per GPU), spread over nodes (preferred pod
  anti-affinity on the hostname) when a host runs one pod;
- node selectors from the class's facts: ``kubernetes.io/arch`` and, on x86 CPUs with AVX2, the
  Node Feature Discovery label ``feature.node.kubernetes.io/cpu-cpuid.AVX2`` (the GPU, MIG and
  Jetson selectors, and the resource requests and limits from the plan, come with the
  single-host manifest).

All classes share one Service: it selects every class's pods and targets their port by name
(``http``), so classes may even listen on different ports.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from orchestrator import __version__
from orchestrator.errors import RenderError
from orchestrator.plan.planner import Plan
from orchestrator.probe.facts import HostFacts
from orchestrator.render.renderer import SERVICE_NAME, render

CLASS_LABEL = "tailor.dev/class"
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
# Plan fields that shape the manifest; warnings, reasons and provenance (which quote a host's
# exact figures) are left out so hosts with the same plan fall into one class.
_CLASS_FIELDS = ("profile", "engine", "device", "precision", "workers", "threads", "inter_op_threads",
                 "max_concurrency", "preload", "env", "container")
"""Fields of ``Plan.to_view`` (``env`` is the whole runtime environment, the typed fields as text)."""


def node_selector(facts: HostFacts) -> dict[str, str]:
    """Labels a node of this class carries (kubelet and Node Feature Discovery)."""
    selector: dict[str, str] = {}
    arch = _ARCH.get(facts.cpu.architecture)
    if arch is not None:
        selector["kubernetes.io/arch"] = arch
    if arch == "amd64" and "avx2" in facts.cpu.isa_flags:
        selector["feature.node.kubernetes.io/cpu-cpuid.AVX2"] = "true"
    return selector


def class_key(plan: Plan, facts: HostFacts) -> str:
    data = plan.to_view()
    shaped = {name: data[name] for name in _CLASS_FIELDS}
    text = json.dumps([shaped, node_selector(facts)], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


@dataclass
class HardwareClass:
    key: str
    plan: Plan
    facts: HostFacts
    """The first host's facts (node labels are the same for every host of the class)."""
    hosts: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{SERVICE_NAME}-{self.plan.profile}-{self.key[:6]}"


def group_classes(hosts: Iterable[tuple[str, Plan, HostFacts]]) -> list[HardwareClass]:
    """Hosts grouped by class, largest class first (then by name). Keeps one plan per class."""
    classes: dict[str, HardwareClass] = {}
    for host, plan, facts in hosts:
        key = class_key(plan, facts)
        cls = classes.get(key)
        if cls is None:
            cls = classes[key] = HardwareClass(key, plan, facts)
        cls.hosts.append(host)
    return sorted(classes.values(), key=lambda c: (-len(c.hosts), c.name))


def class_manifests(cls: HardwareClass) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Deployment, Service) for one class: the single-host render plus the fleet's additions."""
    text = render(cls.plan, ("k8s",))["k8s.yaml"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    by_kind = {d.get("kind"): d for d in docs}
    deployment, service = by_kind.get("Deployment"), by_kind.get("Service")
    if deployment is None or service is None:
        raise RenderError(f"the single-host k8s render has {sorted(map(str, by_kind))}, not a Deployment and a Service",
                          "this is a bug in tailor's k8s template")
    labels = {CLASS_LABEL: cls.key, "tailor.dev/hosts": str(len(cls.hosts))}
    meta = deployment.setdefault("metadata", {})
    meta["name"] = cls.name
    meta.setdefault("labels", {}).update(labels)
    meta.setdefault("annotations", {})["tailor.dev/hosts"] = ",".join(sorted(cls.hosts))
    spec = deployment["spec"]
    pods_per_host = int(spec.get("replicas") or 1)
    spec["replicas"] = len(cls.hosts) * pods_per_host
    spec["selector"]["matchLabels"][CLASS_LABEL] = cls.key
    template = spec["template"]
    template["metadata"].setdefault("labels", {})[CLASS_LABEL] = cls.key
    pod = template["spec"]
    pod["nodeSelector"] = {**node_selector(cls.facts), **(pod.get("nodeSelector") or {})}
    if pods_per_host > 1:
        return deployment, service  # several pods per node by design (one per GPU)
    affinity = pod.setdefault("affinity", {})
    affinity["podAntiAffinity"] = {
        "preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "labelSelector": {"matchLabels": {CLASS_LABEL: cls.key}},
                "topologyKey": "kubernetes.io/hostname",
            },
        }],
    }
    return deployment, service


def fleet_manifests(classes: Iterable[HardwareClass]) -> dict[str, str]:
    """File name -> YAML text: ``<class name>.yaml`` per class and ``service.yaml``."""
    files: dict[str, str] = {}
    service: dict[str, Any] | None = None
    header = f"# Generated by tailor {__version__} (deploy fleet render --k8s); re-run it instead of editing.\n"
    for cls in classes:
        deployment, class_service = class_manifests(cls)
        service = service or class_service
        comment = (f"# Hardware class {cls.key}: {len(cls.hosts)} host(s), profile {cls.plan.profile}, "
                   f"{cls.plan.engine}/{cls.plan.device} {cls.plan.precision}, "
                   f"{cls.plan.workers}x{cls.plan.threads}\n")
        files[f"{cls.name}.yaml"] = header + comment + _dump(deployment)
    if service is not None:
        files["service.yaml"] = header + _dump(service)
    return files


def _dump(doc: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=False)
