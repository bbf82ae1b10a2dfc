"""Deployment profiles: schema, loading and validation of ``profiles/*.yaml``.

A profile says which machines it is meant for (match conditions) and how the runtime should
run there (engine, device, precision, threads, allocator, batching, memory headroom,
container). Built-in profiles ship in ``profiles/``; ``--profiles DIR`` adds a user's own, and
a user profile with the same name replaces the built-in one (recorded in ``overrides``).

Every problem is a :class:`ProfileError` naming the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from orchestrator.errors import ProfileError
from orchestrator.model import NOT_READ, Parse, Range, Reader, file_key, from_jsonable
from orchestrator.resources import profiles_dir
from orchestrator.units import SIZE_EXAMPLES, parse_size
from orchestrator.yaml_doc import YamlDoc, load_yaml_document

_HINT = "fix the profile file; see the built-in profiles in profiles/ for the schema"

Engine = Literal["onnx", "torch"]
Device = Literal["cpu", "cuda"]
Precision = Literal["fp32", "fp16", "bf16", "fp16-if-supported", "bf16-if-supported"]
Requirement = Literal["required", "excluded", "any"]
Flavor = Literal["cpu", "cuda", "l4t"]
Allocator = Literal["jemalloc", "tcmalloc", "none"]
Architecture = Literal["x86_64", "aarch64"]

def _error(message: str, hint: str) -> ProfileError:
    return ProfileError(message, hint)


def parse_version(text: str) -> tuple[int, ...] | None:
    """``(35, 4, 1)`` from ``R35.4.1``, ``35.4`` or ``8.6``; None when not a dotted version."""
    body = text.strip().lstrip("Rr")
    parts = body.split(".")
    if not body or not all(p.isdigit() for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _size(value: object) -> int:
    """Bytes from an integer or a string like ``8GiB`` (a profile's sizes)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size like 8GiB, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative, got {value}")
        return value
    parsed = parse_size(value) if isinstance(value, str) else None
    if parsed is None:
        raise ValueError(f"expected {SIZE_EXAMPLES}, got {value!r}")
    return parsed


def _version(value: object) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"write the version in quotes ('{value}'): YAML reads {value} as a number")
    if not isinstance(value, str) or parse_version(value) is None:
        raise ValueError(f"expected a dotted version like 7.5 or R35.4.1, got {value!r}")
    return value


Size = Annotated[int, Parse(_size)]
Version = Annotated[str, Parse(_version)]
AtLeast0 = Annotated[int, Range(0)]
AtLeast1 = Annotated[int, Range(1)]


@dataclass(frozen=True)
class MatchRules:
    """Conditions a machine must meet. Memory is effective RAM (cgroup-aware), VRAM the largest GPU."""

    min_memory_bytes: Size | None = field(default=None, metadata=file_key("min_memory"))
    max_memory_bytes: Size | None = field(default=None, metadata=file_key("max_memory"))
    min_vram_bytes: Size | None = field(default=None, metadata=file_key("min_vram"))
    max_vram_bytes: Size | None = field(default=None, metadata=file_key("max_vram"))
    min_compute_capability: Version | None = None
    architectures: tuple[Architecture, ...] = ()
    gpu: Requirement = "any"
    """``required`` (a discrete NVIDIA GPU reported by NVML), ``excluded`` or ``any``."""
    jetson: Requirement = "excluded"
    """``required``, ``excluded`` or ``any``."""
    l4t_min: Version | None = None
    l4t_max: Version | None = None


@dataclass(frozen=True)
class ThreadPolicy:
    per_worker_max: AtLeast1 = 4
    """Most intra-op threads one worker gets."""
    spread: Literal["workers", "threads"] = "threads"
    """How CPU-only plans split the CPUs: ``workers`` (as many 1-thread workers as CPUs first, then
    threads; best throughput for small voices) or ``threads`` (few wide workers; lowest latency for
    one request at a time)."""
    inter_op: AtLeast1 = 1
    reserve_cpus: AtLeast0 = 0
    """CPUs left to the HTTP server and the OS (never below one usable CPU)."""


@dataclass(frozen=True)
class AllocatorPolicy:
    malloc_arena_max: AtLeast1 = 2
    preload: Allocator = "none"
    """``jemalloc``, ``tcmalloc`` or ``none``; used only when the library exists on the host."""
    cuda_expandable_segments: bool = False
    ort_memory_arena: bool = True


@dataclass(frozen=True)
class BatchingPolicy:
    """Dynamic batching (``batching:`` in a profile): pays off on a GPU, adds latency on a CPU."""

    enabled: bool = False
    max_batch_size: AtLeast1 = 1
    """Upper bound; the plan lowers it to what fits in memory per worker."""
    batch_window_ms: Annotated[float, Range(0.0, 1000.0)] = 5.0


@dataclass(frozen=True)
class ConcurrencyPolicy:
    """``concurrency:``: how many workers at most and how deep the queue per slot."""

    max_workers: AtLeast1 = 4
    queue_per_slot: AtLeast0 = 4
    """Waiting requests allowed per concurrent slot (max_queue = slots x this)."""


@dataclass(frozen=True)
class MemoryPolicy:
    """``memory:``: what the plan keeps free for the OS and other processes."""

    headroom_fraction: Annotated[float, Range(0.0, 0.9)] = 0.2
    """Share of effective RAM kept free (capped at half of it)."""
    headroom_min_bytes: Size = field(default=512 * 1024**2, metadata=file_key("headroom_min"))
    """At least this much RAM kept free."""
    vram_headroom_fraction: Annotated[float, Range(0.0, 0.9)] = 0.1
    """Share of the GPU's memory kept free (CUDA context growth, fragmentation)."""


@dataclass(frozen=True)
class ContainerPolicy:
    """``container:``: which runtime image and how much /dev/shm."""

    flavor: Flavor
    """``cpu``, ``cuda`` or ``l4t`` (templates/docker/Dockerfile.<flavor>.j2)."""
    shm_size_bytes: Size = field(default=256 * 1024**2, metadata=file_key("shm_size"))


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One ``profiles/NAME.yaml``: the file's shape (defaults, choices, bounds) is declared here and
    read by the one validator (:func:`orchestrator.model.from_jsonable`)."""

    name: str
    """The file name without ``.yaml`` (writing it in the file is optional)."""
    description: str = ""
    priority: AtLeast0
    """Higher wins when several profiles fit; unique across the loaded set."""
    match: MatchRules = field(default_factory=MatchRules)
    engine: Engine
    device: Device
    fallback: str = ""
    """``ENGINE:VOICE[,ENGINE:VOICE]`` tried when the primary engine fails (TAILOR_FALLBACK)."""
    precision: Precision = "fp32"
    threads: ThreadPolicy = field(default_factory=ThreadPolicy)
    allocator: AllocatorPolicy = field(default_factory=AllocatorPolicy)
    batching: BatchingPolicy = field(default_factory=BatchingPolicy)
    concurrency: ConcurrencyPolicy = field(default_factory=ConcurrencyPolicy)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)
    container: ContainerPolicy
    source: str = field(default="", metadata=NOT_READ)
    """The file it came from."""
    priority_where: str = field(default="", metadata=NOT_READ)
    """``file:line`` of the priority key, for ambiguity errors."""


@dataclass(frozen=True)
class ProfileSet:
    profiles: tuple[Profile, ...]
    """Sorted by priority, highest first."""
    overrides: tuple[str, ...]
    """One sentence per user profile that replaced a built-in one."""

    def get(self, name: str) -> Profile:
        for profile in self.profiles:
            if profile.name == name:
                return profile
        raise ProfileError(f"no profile named {name!r}",
                           "choose one of: " + ", ".join(p.name for p in self.profiles))


def parse_profile(doc: YamlDoc, stem: str) -> Profile:
    """Validate one composed profile document; ``stem`` is the file name without ``.yaml``."""
    reader = Reader(ProfileError, doc.source, _HINT, lines=doc.lines, null_is_absent=True)
    data = doc.data if doc.data is not None else {}
    if isinstance(data, dict) and data.get("name") is None:
        data = {**data, "name": stem}
    profile: Profile = from_jsonable(Profile, data, reader)
    if profile.name != stem:
        raise reader.fail("name", f"{profile.name!r} must match the file name {stem!r}")
    _check_contradictions(profile, reader)
    return dataclasses.replace(profile, source=doc.source, priority_where=reader.where("priority"))


def _check_contradictions(p: Profile, reader: Reader) -> None:
    """Checks across fields, after the file decoded."""
    m = p.match
    pairs = (("min_memory", m.min_memory_bytes, "max_memory", m.max_memory_bytes),
             ("min_vram", m.min_vram_bytes, "max_vram", m.max_vram_bytes))
    for low_name, low, high_name, high in pairs:
        if low is not None and high is not None and low > high:
            raise reader.fail(f"match.{low_name}", f"{low} bytes is above match.{high_name} ({high} bytes)")
    if m.l4t_min and m.l4t_max and (parse_version(m.l4t_min) or ()) > (parse_version(m.l4t_max) or ()):
        raise reader.fail("match.l4t_min", f"{m.l4t_min} is above match.l4t_max ({m.l4t_max})")
    if (m.l4t_min or m.l4t_max) and m.jetson != "required":
        raise reader.fail("match.l4t_min" if m.l4t_min else "match.l4t_max",
                 "an L4T range only makes sense with match.jetson: required")
    if m.gpu == "excluded" and (m.min_vram_bytes or m.min_compute_capability):
        raise reader.fail("match.gpu", "excluded, yet match.min_vram / min_compute_capability ask for a GPU")
    if m.jetson == "required" and m.architectures and "aarch64" not in m.architectures:
        raise reader.fail("match.architectures", "Jetson boards are aarch64, but it is not listed")
    if p.device == "cpu" and p.precision != "fp32":
        raise reader.fail("precision", f"{p.precision} needs a CUDA device; device is cpu (use fp32)")
    if p.allocator.cuda_expandable_segments and m.jetson == "required":
        raise reader.fail("allocator.cuda_expandable_segments",
                 "expandable_segments is not supported by the Jetson (L4T) CUDA allocator; set false")
    if p.allocator.cuda_expandable_segments and p.device != "cuda":
        raise reader.fail("allocator.cuda_expandable_segments", "only applies to device cuda")
    if p.container.flavor == "l4t" and m.jetson != "required":
        raise reader.fail("container.flavor", "the l4t image only runs on Jetson; set match.jetson: required")
    if p.container.flavor == "cpu" and p.device == "cuda":
        raise reader.fail("container.flavor", "device cuda needs the cuda (or l4t) image flavor")
    if p.container.flavor == "cuda" and m.jetson == "required":
        raise reader.fail("container.flavor", "Jetson needs the l4t image flavor")
    if p.device == "cuda" and m.gpu != "required" and m.jetson != "required":
        raise reader.fail("device", "cuda needs match.gpu: required or match.jetson: required")
    if p.batching.enabled is False and p.batching.max_batch_size > 1:
        raise reader.fail("batching.max_batch_size", "is above 1 while batching.enabled is false")


def load_profile_file(path: Path) -> Profile:
    doc = load_yaml_document(path, _error, _HINT)
    return parse_profile(doc, path.stem)


def _load_dir(directory: Path) -> list[Profile]:
    if not directory.is_dir():
        raise ProfileError(f"profiles directory {directory} does not exist",
                           "pass --profiles with a directory holding NAME.yaml files")
    return [load_profile_file(p) for p in sorted(directory.glob("*.yaml"))]


def load_profiles(extra_dirs: Sequence[Path] = (), builtin_dir: Path | None = None) -> ProfileSet:
    """Built-in profiles, then each extra directory in order (same name replaces, and says so)."""
    by_name: dict[str, Profile] = {p.name: p for p in _load_dir(builtin_dir or profiles_dir())}
    overrides: list[str] = []
    for directory in extra_dirs:
        for profile in _load_dir(directory):
            if profile.name in by_name:
                overrides.append(f"profile {profile.name} from {profile.source} replaces "
                                 f"the one from {by_name[profile.name].source}")
            by_name[profile.name] = profile
    if not by_name:
        raise ProfileError("no profiles found", "add NAME.yaml files to the profiles directory")
    seen: dict[int, Profile] = {}
    for profile in sorted(by_name.values(), key=lambda p: p.name):
        other = seen.get(profile.priority)
        if other is not None:
            raise ProfileError(
                f"{profile.priority_where}: field priority: {profile.priority} is also the priority "
                f"of {other.name} ({other.priority_where}); ranking would be ambiguous",
                "give every profile a distinct priority",
            )
        seen[profile.priority] = profile
    ordered = tuple(sorted(by_name.values(), key=lambda p: -p.priority))
    return ProfileSet(profiles=ordered, overrides=tuple(overrides))
