"""Round trip for every format: plan -> rendered files -> read back -> the same launch spec.

For each recorded machine the pipeline plans, renders every format and writes the directory;
each format is then read back on its own (compose + .env by the production reader that `deploy
up DIR` uses; k8s and systemd by parsing the documents here) and compared with
``LaunchSpec.from_plan(plan)`` field by field, so no renderer can drop or bend a decision.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
import yaml

from orchestrator import pipeline
from orchestrator.envfile import parse_env_text
from orchestrator.errors import UsageError
from orchestrator.launch.rendered import spec_from_rendered_dir
from orchestrator.launch.spec import LaunchSpec
from orchestrator.plan.decisions import CONTAINER_GID, CONTAINER_UID, bind_address
from orchestrator.render.renderer import RenderOptions
from orchestrator.supervise.deployment import load_deployment

FACTS = Path(__file__).resolve().parents[1] / "fixtures" / "facts"
MACHINES = ["cpu-4core-16gb", "gtx1050-16gb", "jetson-orin-nx-8gb", "rtx3060-16gb", "t4-8gb-4cpu"]


def rendered(machine: str, directory: Path, **options: object) -> tuple[LaunchSpec, dict[str, str]]:
    planned = pipeline.plan_from(pipeline.Inputs(facts=FACTS / f"{machine}.json", environ={}))
    pipeline.write_deployment(directory, planned, options=RenderOptions(**options))  # type: ignore[arg-type]
    return planned.spec, dict(planned.plan.env)


def container_env(env: dict[str, str]) -> dict[str, str]:
    """What a container target carries: the bind decision applied, host allocators left out."""
    out = {k: v for k, v in env.items() if k not in ("LD_PRELOAD", "MALLOC_CONF", "TCMALLOC_RELEASE_RATE")}
    out["TAILOR_HOST"] = bind_address(in_container=True, network="bridge")[0]
    return out


@pytest.mark.parametrize("machine", MACHINES)
def test_compose_and_env_read_back_to_the_same_spec(tmp_path: Path, machine: str) -> None:
    spec, env = rendered(machine, tmp_path)
    (tmp_path / "plan.json").unlink()  # force the compose + .env reader
    back = spec_from_rendered_dir(tmp_path)
    for field in ("profile", "image", "flavor", "port", "cpus", "shm_size_bytes", "gpu_count", "gpu_device_ids",
                  "runtime", "read_only_root", "user", "network_mode", "pids_limit"):
        assert getattr(back, field) == getattr(spec, field), field
    # compose writes whole MiB: the limit read back is the plan's, rounded down to a MiB.
    assert spec.memory_limit_bytes is not None and back.memory_limit_bytes == spec.memory_limit_bytes // 2**20 * 2**20
    # .env holds the container's bind; read back for a host process it is loopback again.
    expected = container_env(env)
    expected["TAILOR_HOST"] = bind_address(in_container=False)[0]
    assert back.env_map == expected


@pytest.mark.parametrize("machine", MACHINES)
def test_plan_json_reads_back_to_the_identical_spec(tmp_path: Path, machine: str) -> None:
    spec, _env = rendered(machine, tmp_path)
    prepared = load_deployment(tmp_path)
    assert prepared.spec == spec and prepared.plan == spec.plan
    assert prepared.spec.pids_limit == spec.pids_limit


@pytest.mark.parametrize("machine", MACHINES)
def test_k8s_reads_back_to_the_same_decisions(tmp_path: Path, machine: str) -> None:
    spec, env = rendered(machine, tmp_path)
    deployment, service = yaml.safe_load_all((tmp_path / "k8s.yaml").read_text(encoding="utf-8"))
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == spec.image
    assert container["ports"][0] == {"name": "http", "containerPort": spec.port}
    assert service["spec"]["ports"][0] == {"name": "http", "port": spec.port, "targetPort": "http"}
    # The device plugin picks the pod's GPUs: host device numbering stays out of the pod.
    assert {e["name"]: e["value"] for e in container["env"]} == {
        k: v for k, v in container_env(env).items() if k != "CUDA_VISIBLE_DEVICES"}
    # Pods are sized from the plan's budget (issue 10), not from the single-host container limit.
    limits = container["resources"]["limits"]
    assert spec.plan is not None
    sized = spec.plan.container
    assert limits["memory"] == f"{sized.request_memory_bytes // 2**20}Mi"
    assert float(limits["cpu"]) == pytest.approx(sized.request_cpus, abs=0.01)
    assert sized.request_memory_bytes <= spec.memory_limit_bytes and sized.request_cpus <= spec.cpus
    assert int(limits.get("nvidia.com/gpu", 0)) == (spec.gpu_count if spec.runtime is None else 0)
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (CONTAINER_UID, CONTAINER_GID)
    assert spec.user == f"{CONTAINER_UID}:{CONTAINER_GID}"


@pytest.mark.parametrize("machine", MACHINES)
def test_systemd_reads_back_to_the_same_decisions(tmp_path: Path, machine: str) -> None:
    spec, env = rendered(machine, tmp_path)
    unit = configparser.ConfigParser(interpolation=None, strict=True)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((tmp_path / "tailor-runtime.service").read_text(encoding="utf-8"))
    service = unit["Service"]
    assert int(service["MemoryMax"]) == spec.memory_limit_bytes
    assert int(service["TasksMax"]) == spec.pids_limit
    assert service["CPUQuota"] == f"{round((spec.cpus or 0) * 100)}%"
    host_env = parse_env_text((tmp_path / "tailor-runtime.env").read_text(encoding="utf-8"), "tailor-runtime.env",
                              UsageError, "re-render")
    assert host_env["TAILOR_HOST"] == bind_address(in_container=False)[0]
    assert {k: v for k, v in host_env.items() if k != "TAILOR_HOST"} == \
        {k: v for k, v in env.items() if k != "TAILOR_HOST"}
    assert host_env["TAILOR_PORT"] == str(spec.port)


def test_public_and_host_network_options_survive_the_round_trip(tmp_path: Path) -> None:
    spec, _env = rendered("cpu-4core-16gb", tmp_path, public=True, network="host")
    (tmp_path / "plan.json").unlink()
    back = spec_from_rendered_dir(tmp_path)
    assert back.network_mode == "host"
    assert back.env_map["TAILOR_HOST"] == bind_address(in_container=True, network="host", public=True)[0]
    assert back.port == spec.port
