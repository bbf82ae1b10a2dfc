"""Profile loading and validation: every malformed profile names its file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.errors import ProfileError
from orchestrator.resources import profiles_dir
from orchestrator.select.profiles import load_profile_file, load_profiles

BUILTIN = ("gpu-large", "gpu-16gb", "t4-8gb", "jetson-edge", "jetson-cpu", "low-vram-gpu", "cpu-only")

GOOD = """\
description: a test profile
priority: 55
match:
  min_memory: 4GiB
  max_memory: 64GiB
  gpu: any
engine: onnx
device: cpu
precision: fp32
threads:
  per_worker_max: 2
container:
  flavor: cpu
  shm_size: 128MiB
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    directory = tmp_path / "profiles"
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_builtin_profiles_load_in_priority_order() -> None:
    loaded = load_profiles()
    assert tuple(p.name for p in loaded.profiles) == BUILTIN
    priorities = [p.priority for p in loaded.profiles]
    assert priorities == sorted(priorities, reverse=True)
    assert loaded.overrides == ()


def test_builtin_policies_follow_the_design() -> None:
    loaded = load_profiles()
    for name in ("gpu-large", "gpu-16gb", "t4-8gb", "low-vram-gpu", "jetson-edge"):
        p = loaded.get(name)
        assert (p.engine, p.device) == ("torch", "cuda")
        assert p.fallback == "onnx:en_US-joe-medium"
    assert loaded.get("gpu-large").batching.max_batch_size == 32
    assert loaded.get("gpu-large").match.min_vram_bytes is not None
    assert loaded.get("gpu-large").match.min_vram_bytes <= 40 * 1024**3
    for name in ("cpu-only", "jetson-cpu"):
        p = loaded.get(name)
        assert (p.engine, p.device, p.precision) == ("onnx", "cpu", "fp32")
    jetson = loaded.get("jetson-edge")
    assert jetson.container.flavor == "l4t" and not jetson.allocator.cuda_expandable_segments
    assert loaded.get("low-vram-gpu").match.gpu == "required"
    assert loaded.get("gpu-16gb").match.min_vram_bytes is not None


def test_good_profile_parses_sizes(tmp_path: Path) -> None:
    p = load_profile_file(write(tmp_path, "mine", GOOD))
    assert p.match.min_memory_bytes == 4 * 1024**3
    assert p.container.shm_size_bytes == 128 * 1024**2
    assert p.threads.per_worker_max == 2
    assert p.source.endswith("mine.yaml")


BAD_CASES = [
    # (what it stands for, text transform, expected line, expected field, words in the message)
    ("unknown key", lambda t: t.replace("  per_worker_max: 2", "  per_worker_max: 2\n  per_workr: 3"),
     12, "threads.per_workr", "unknown field"),
    ("wrong type", lambda t: t.replace("priority: 55", "priority: high"), 2, "priority", "expected an integer, got 'high'"),
    ("bad size", lambda t: t.replace("min_memory: 4GiB", "min_memory: lots"), 4, "match.min_memory", "size"),
    ("min above max", lambda t: t.replace("max_memory: 64GiB", "max_memory: 2GiB"), 4, "match.min_memory",
     "above match.max_memory"),
    ("fp16 on cpu", lambda t: t.replace("precision: fp32", "precision: fp16"), 9, "precision", "needs a CUDA device"),
    ("bad choice", lambda t: t.replace("engine: onnx", "engine: tensorrt"), 7, "engine", "not one of"),
    ("duplicate key", lambda t: t + "priority: 56\n", 15, "priority", "written twice"),
    ("missing required", lambda t: t.replace("device: cpu\n", ""), 1, "device", "is missing"),
    ("below minimum", lambda t: t.replace("per_worker_max: 2", "per_worker_max: 0"), 11, "threads.per_worker_max",
     "must be at least 1, got 0"),
    ("unquoted version", lambda t: t.replace("  gpu: any", "  gpu: any\n  min_compute_capability: 7.5"), 7,
     "match.min_compute_capability", "write the version in quotes ('7.5')"),
    ("bad list item", lambda t: t.replace("  gpu: any", "  gpu: any\n  architectures: [x86_64, arm]"), 7,
     "match.architectures[1]", "'arm' is not one of x86_64, aarch64"),
    ("expandable_segments on Jetson",
     lambda t: t.replace("  gpu: any", "  gpu: any\n  jetson: required\n  architectures: [aarch64]")
                .replace("device: cpu", "device: cuda").replace("flavor: cpu", "flavor: l4t")
     + "allocator:\n  cuda_expandable_segments: true\n", 18, "allocator.cuda_expandable_segments", "Jetson"),
    ("l4t flavor off Jetson", lambda t: t.replace("flavor: cpu", "flavor: l4t"), 13, "container.flavor",
     "only runs on Jetson"),
    ("mapping expected", lambda t: t.replace("threads:\n  per_worker_max: 2", "threads: 4"), 10, "threads",
     "expected a mapping"),
]


@pytest.mark.parametrize(("case", "transform", "line", "field", "words"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_malformed_profile_names_file_line_and_field(tmp_path: Path, case: str, transform, line: int,
                                                     field: str, words: str) -> None:
    path = write(tmp_path, "mine", transform(GOOD))
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    message = info.value.message
    assert message.startswith(f"{path}:{line}: field {field}:"), message
    assert words in message
    assert info.value.hint


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken", GOOD.replace("engine: onnx", "engine: [onnx"))
    with pytest.raises(ProfileError, match=re.escape(f"{path}:")) as info:
        load_profile_file(path)
    assert "not valid YAML" in info.value.message


def test_name_must_match_file(tmp_path: Path) -> None:
    path = write(tmp_path, "mine", "name: other\n" + GOOD)
    with pytest.raises(ProfileError, match=r"mine.yaml:1: field name: 'other' must match"):
        load_profile_file(path)


def test_user_profile_with_builtin_name_replaces_it_and_says_so(tmp_path: Path) -> None:
    text = (profiles_dir() / "cpu-only.yaml").read_text(encoding="utf-8").replace("per_worker_max: 4",
                                                                                 "per_worker_max: 1")
    write(tmp_path, "cpu-only", text)
    loaded = load_profiles([tmp_path / "profiles"])
    assert loaded.get("cpu-only").threads.per_worker_max == 1
    assert len(loaded.overrides) == 1
    assert "replaces" in loaded.overrides[0] and "cpu-only" in loaded.overrides[0]


def test_user_profile_is_added(tmp_path: Path) -> None:
    write(tmp_path, "mine", GOOD)
    loaded = load_profiles([tmp_path / "profiles"])
    assert "mine" in [p.name for p in loaded.profiles]
    assert loaded.overrides == ()


def test_equal_priorities_are_ambiguous(tmp_path: Path) -> None:
    write(tmp_path, "mine", GOOD.replace("priority: 55", "priority: 40"))  # low-vram-gpu has 40
    with pytest.raises(ProfileError, match=r"mine.yaml:2: field priority: 40 is also the priority of low-vram-gpu"):
        load_profiles([tmp_path / "profiles"])


def test_missing_profiles_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist"):
        load_profiles([tmp_path / "nope"])


def test_unknown_profile_name_lists_the_known_ones() -> None:
    with pytest.raises(ProfileError, match="cpu-only"):
        load_profiles().get("gpu-64gb")
